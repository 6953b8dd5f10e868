"""A worklist two people can share: filter by kind, search by name or NHS number, counts per kind, real
times, the reason in words, a link to the record, and taking / releasing items so two people do not phone
the same patient (one holder even when two take at once)."""

import threading
from datetime import timedelta

import pytest
import time_machine
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from scheduling import roles
from scheduling.worklist.models import WorklistClaim
from scheduling.worklist.selectors import admin_worklist, worklist_page
from scheduling.booking import services
from scheduling.booking.services import cancel_appointment
from scheduling.worklist.services import ItemTaken, release_worklist_item, take_worklist_item
from scheduling.calls.services import CallButton, record_call_outcome
from scheduling.worklist.models import AdminTask
from scheduling.worklist.services import raise_admin_task, resolve_admin_task
from tests.booking_helpers import book
from tests.factories import london, make_patient, make_referral, make_user
from tests.test_worklist_discharge import AFTER_DEADLINE, unreachable_referral

MORNING = london(2026, 3, 10, 9, 41)


@pytest.fixture
def colleague(db):
    return make_user("admin.two", roles.ADMIN_STAFF)


@pytest.fixture
def mixed(pwp, admin_user):
    """Two new referrals (one received days before it was entered), a wrong number and a text reply."""
    with time_machine.travel(MORNING, tick=False):
        smith = make_referral(pwp, actor=admin_user, patient=make_patient(given_name="Ada", family_name="Smithson", nhs_number="9434765919"))
        late = make_referral(pwp, actor=admin_user, received_on=MORNING.date() - timedelta(days=4),
                             patient=make_patient(given_name="Bryn", family_name="Jones"))
        wrong = raise_admin_task(kind=AdminTask.Kind.WRONG_NUMBER, source=AdminTask.Source.CALL_LIST, referral=late,
                                 detail="Number not in service")
        reply = raise_admin_task(kind=AdminTask.Kind.SMS_REPLY, source=AdminTask.Source.SMS, patient=smith.patient,
                                 detail="Reply received")
    return {"smith": smith, "late": late, "wrong": wrong, "reply": reply}


# --- Filters, search, counts ---------------------------------------------------------------------


def test_the_kind_filter_keeps_one_kind_and_the_counts_cover_every_kind(mixed):
    with time_machine.travel(MORNING + timedelta(hours=1), tick=False):
        page = worklist_page(kind="no_assessment")
    assert {i.key for i in page.items} == {f"no_assessment:referral:{mixed['smith'].pk}", f"no_assessment:referral:{mixed['late'].pk}"}
    counts = {kind: n for kind, _, n in page.counts}
    assert counts["no_assessment"] == 2 and counts["wrong_number"] == 1 and counts["sms_reply"] == 1
    assert counts["suggest_discharge"] == 0 and page.total == 4
    # Every kind has words for its chip, no code.
    assert dict((k, words) for k, words, _ in page.counts)["no_assessment"] == "No assessment booked"


def test_an_nhs_number_finds_its_items_with_or_without_spaces(mixed):
    smith = mixed["smith"]
    with time_machine.travel(MORNING + timedelta(hours=1), tick=False):
        for query in ("9434765919", "943 476 5919", " 943  476 5919 ", "943-476-5919", "943 476"):
            page = worklist_page(query=query)
            assert {i.key for i in page.items} == {f"no_assessment:referral:{smith.pk}", f"task:{mixed['reply'].pk}"}, query
        assert worklist_page(query="943 476 5918").items == []


def test_a_name_search_matches_every_word_and_counts_follow_the_search(mixed):
    with time_machine.travel(MORNING + timedelta(hours=1), tick=False):
        page = worklist_page(query="bryn JON")
        assert {i.key for i in page.items} == {f"no_assessment:referral:{mixed['late'].pk}", f"task:{mixed['wrong'].pk}"}
        assert {kind: n for kind, _, n in page.counts if n} == {"no_assessment": 1, "wrong_number": 1}
        assert page.total == 2
        assert worklist_page(query="bryn smithson").items == []
        assert [i.key for i in worklist_page(kind="wrong_number", query="jones").items] == [f"task:{mixed['wrong'].pk}"]


def test_items_show_the_real_time_of_their_event_not_midnight(mixed, pwp, admin_user):
    with time_machine.travel(MORNING + timedelta(hours=1), tick=False):
        items = {i.key: i for i in admin_worklist()}
    smith = items[f"no_assessment:referral:{mixed['smith'].pk}"]
    assert smith.since == MORNING and not smith.since_is_date
    # Received four days before it was entered: only that day is known, shown without a time.
    late = items[f"no_assessment:referral:{mixed['late'].pk}"]
    assert late.since_is_date and timezone.localtime(late.since).date() == MORNING.date() - timedelta(days=4)
    assert items[f"task:{mixed['wrong'].pk}"].since == MORNING


def test_a_cancelled_assessment_puts_the_item_back_at_the_time_of_the_cancellation(pwp, admin_user, referral):
    appointment = book(referral, pwp, timezone.now() + timedelta(days=3), actor=admin_user)
    with time_machine.travel(timezone.now() + timedelta(hours=2), tick=False):
        cancel_appointment(appointment=appointment, cancelled_by="patient", reason="Away", actor=admin_user)
        cancelled_at = timezone.now()
    [item] = [i for i in admin_worklist() if i.referral_id == referral.pk]
    assert item.since == cancelled_at


def test_a_suggested_discharge_says_why_in_words_at_the_time_of_the_last_call(pwp, admin_user):
    referral = unreachable_referral(pwp, admin_user)
    last_call = referral.contact_attempts.order_by("-attempted_at").first().attempted_at
    with time_machine.travel(AFTER_DEADLINE, tick=False):
        [item] = [i for i in admin_worklist() if i.referral_id == referral.pk]
    assert item.label == "Suggest discharge: unable to contact (end of care: not assessed (including unable to contact))"
    assert "code" not in item.label
    invitation = referral.opt_in_invitations.get()
    assert item.since == max(last_call, invitation.sent_at or invitation.due_at)
    assert timezone.localtime(item.since).strftime("%H:%M") != "00:00"


def test_every_item_links_to_the_patients_record(mixed):
    with time_machine.travel(MORNING + timedelta(hours=1), tick=False):
        items = {i.key: i for i in admin_worklist()}
    # A text reply raised against the patient alone links to their referral.
    assert items[f"task:{mixed['reply'].pk}"].record_referral_id == mixed["smith"].pk
    assert items[f"task:{mixed['wrong'].pk}"].record_referral_id == mixed["late"].pk


# --- Taking and releasing ------------------------------------------------------------------------


def test_a_taken_item_shows_who_took_it_and_when(mixed, admin_user):
    key = f"task:{mixed['wrong'].pk}"
    with time_machine.travel(MORNING + timedelta(minutes=5), tick=False):
        claim = take_worklist_item(key=key, actor=admin_user)
        item = next(i for i in admin_worklist() if i.key == key)
    assert item.claim == claim and claim.taken_by == admin_user and claim.taken_at == MORNING + timedelta(minutes=5)
    assert claim.holder_name == "Admin.One Tester"


def test_taking_an_item_someone_else_holds_is_refused_naming_them_and_changes_nothing(mixed, admin_user, colleague):
    key = f"no_assessment:referral:{mixed['smith'].pk}"
    with time_machine.travel(MORNING + timedelta(minutes=5), tick=False):
        first = take_worklist_item(key=key, actor=admin_user)
        with pytest.raises(ItemTaken) as refused:
            take_worklist_item(key=key, actor=colleague)
    message = refused.value.messages[0]
    assert "Admin.One Tester took this item at 09:46" in message and "Take over from Admin.One Tester" in message
    assert "Smithson" not in message
    assert list(WorklistClaim.objects.values_list("pk", "released_at")) == [(first.pk, None)]


def test_taking_ones_own_item_again_changes_nothing(mixed, admin_user):
    key = f"task:{mixed['reply'].pk}"
    first = take_worklist_item(key=key, actor=admin_user)
    assert take_worklist_item(key=key, actor=admin_user) == first
    assert WorklistClaim.objects.count() == 1


def test_a_take_over_names_the_claim_it_replaces_and_keeps_both_claims(mixed, admin_user, colleague, manager):
    key = f"task:{mixed['reply'].pk}"
    first = take_worklist_item(key=key, actor=admin_user)
    second = take_worklist_item(key=key, actor=colleague, take_over=first.pk)
    first.refresh_from_db()
    assert (first.released_by, first.release) == (colleague, WorklistClaim.Release.TAKEN_OVER)
    assert second.taken_by == colleague and second.released_at is None
    # A take-over of a claim that is no longer the holder's is refused naming the new holder.
    with pytest.raises(ItemTaken) as refused:
        take_worklist_item(key=key, actor=manager, take_over=first.pk)
    assert "Admin.Two Tester took this item" in refused.value.messages[0]
    assert WorklistClaim.objects.count() == 2


def test_release_gives_the_item_back_and_only_the_holder_may_release(mixed, admin_user, colleague):
    key = f"task:{mixed['reply'].pk}"
    claim = take_worklist_item(key=key, actor=admin_user)
    with pytest.raises(ItemTaken) as refused:
        release_worklist_item(key=key, actor=colleague)
    assert "only they can release it" in refused.value.messages[0]
    released = release_worklist_item(key=key, actor=admin_user)
    assert (released.pk, released.released_by, released.release) == (claim.pk, admin_user, "released")
    assert next(i for i in admin_worklist() if i.key == key).claim is None
    assert release_worklist_item(key=key, actor=admin_user) is None
    # Taken again later: a new claim; the old one is kept.
    take_worklist_item(key=key, actor=colleague)
    assert WorklistClaim.objects.count() == 2


def test_an_item_that_is_done_or_gone_cannot_be_taken_and_its_claim_stops_showing(mixed, admin_user, pwp):
    key = f"task:{mixed['wrong'].pk}"
    take_worklist_item(key=key, actor=admin_user)
    resolve_admin_task(task=mixed["wrong"], actor=admin_user, resolution="New number recorded")
    assert key not in {i.key for i in admin_worklist()}
    with pytest.raises(ValidationError) as refused:
        take_worklist_item(key=key, actor=admin_user)
    assert "no longer on the worklist" in refused.value.messages[0]
    with pytest.raises(ValidationError):
        take_worklist_item(key="task:999999", actor=admin_user)
    # The claim is kept, never deleted.
    assert WorklistClaim.objects.filter(item_key=key).count() == 1


def test_a_claim_taken_before_the_item_came_back_does_not_show(pwp, admin_user, colleague, referral):
    key = f"no_assessment:referral:{referral.pk}"
    take_worklist_item(key=key, actor=admin_user)
    appointment = book(referral, pwp, timezone.now() + timedelta(days=3), actor=admin_user)
    with time_machine.travel(timezone.now() + timedelta(minutes=10), tick=False):
        cancel_appointment(appointment=appointment, cancelled_by="patient", reason="Away", actor=admin_user)
    with time_machine.travel(timezone.now() + timedelta(minutes=20), tick=False):
        item = next(i for i in admin_worklist() if i.key == key)
        assert item.claim is None
        # Someone else may take it without a take-over; the old claim lapses, kept.
        take_worklist_item(key=key, actor=colleague)
    old = WorklistClaim.objects.get(taken_by=admin_user)
    assert old.release == WorklistClaim.Release.LAPSED and old.released_by == colleague


def test_the_database_keeps_one_holder_per_item(mixed, admin_user, colleague):
    WorklistClaim.objects.create(item_key="task:1", taken_by=admin_user)
    with pytest.raises(IntegrityError), transaction.atomic():
        WorklistClaim.objects.create(item_key="task:1", taken_by=colleague)


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("both_see_it_free", [False, True])
def test_people_taking_the_same_item_at_once_leaves_exactly_one_holder(monkeypatch, both_see_it_free):
    if connection.vendor != "postgresql":
        pytest.skip("Real concurrent connections are tested on PostgreSQL")
    pwp = make_user("pwp.race", roles.PWP)
    people = [make_user(f"admin.race{i}", roles.ADMIN_STAFF) for i in range(2 if both_see_it_free else 4)]
    if both_see_it_free:
        # Both requests look for a holder before either inserts, so only the database can decide.
        real_open_claim = services._open_claim
        both_looked = threading.Barrier(2, timeout=20)

        def look_then_wait(key):
            found = real_open_claim(key)
            both_looked.wait()
            return found

        monkeypatch.setattr(services, "_open_claim", look_then_wait)
    referral = make_referral(pwp, actor=people[0])
    key = f"no_assessment:referral:{referral.pk}"
    everyone_ready = threading.Barrier(len(people), timeout=30)
    responses = [None] * len(people)

    def take(i):
        try:
            client = Client()
            client.force_login(people[i])
            everyone_ready.wait()
            responses[i] = client.post(reverse("worklist:take"), {"item": key}, follow=True)
        finally:
            connection.close()

    threads = [threading.Thread(target=take, args=(i,)) for i in range(len(people))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert [r.status_code for r in responses] == [200] * len(people)
    [holder] = WorklistClaim.objects.filter(item_key=key, released_at__isnull=True)
    assert WorklistClaim.objects.filter(item_key=key).count() == 1
    name = holder.taken_by.get_full_name()
    for person, response in zip(people, responses):
        page = response.content.decode()
        if person == holder.taken_by:
            assert "Taken: colleagues now see this item as taken by you" in page
        else:
            assert f"{name} took this item at" in page and f"Take over from {name}" in page


# --- The pages ----------------------------------------------------------------------------------


def _page(client, **params):
    return client.get(reverse("worklist:index"), params)


def test_the_page_shows_chips_with_counts_and_a_record_link_on_each_item(client, mixed, admin_user):
    client.force_login(admin_user)
    html = _page(client).content.decode()
    assert "No assessment booked</span> <strong>2</strong>" in html
    assert "Phone number wrong or not in service</span> <strong>1</strong>" in html
    assert f'href="?kind=no_assessment"' in html
    for referral in (mixed["smith"], mixed["late"]):
        assert reverse("caseload:referral_detail", args=[referral.pk]) in html
    assert "NHS 943 476 5919" in html
    html = _page(client, kind="sms_reply", q="943 476").content.decode()
    assert html.count('class="worklist-item ') == 1 and 'href="?kind=sms_reply&amp;q=943+476"' in html


def test_a_chip_link_lands_on_that_kind(client, mixed, admin_user):
    client.force_login(admin_user)
    response = client.get(reverse("worklist:index") + "?kind=wrong_number")
    assert response.status_code == 200
    assert [i.key for i in response.context["items"]] == [f"task:{mixed['wrong'].pk}"]


def test_the_record_link_lands_on_the_patients_referral_page(client, mixed, admin_user):
    client.force_login(admin_user)
    item = next(i for i in _page(client).context["items"] if i.key == f"task:{mixed['reply'].pk}")
    response = client.get(reverse("caseload:referral_detail", args=[item.record_referral_id]))
    assert response.status_code == 200 and "Ada Smithson" in response.content.decode()


def test_take_and_release_post_back_to_the_same_filtered_list_at_the_item(client, mixed, admin_user, colleague):
    client.force_login(admin_user)
    key = f"task:{mixed['wrong'].pk}"
    response = client.post(reverse("worklist:take"), {"item": key, "kind": "wrong_number", "q": "bryn"})
    assert response.status_code == 302
    assert response["Location"] == f"/booking/?kind=wrong_number&q=bryn#item-task-{mixed['wrong'].pk}"
    page = client.get(response["Location"]).content.decode()
    assert "Taken: colleagues now see this item as taken by you" in page and "Taken by you at" in page
    # The colleague sees it taken, by name, and a take-over button naming the holder.
    other = Client()
    other.force_login(colleague)
    page = _page(other).content.decode()
    assert "Taken by Admin.One Tester at" in page and "Take over from Admin.One Tester" in page
    refused = other.post(reverse("worklist:take"), {"item": key}, follow=True).content.decode()
    assert "Admin.One Tester took this item at" in refused
    claim = WorklistClaim.objects.get()
    taken = other.post(reverse("worklist:take"), {"item": key, "take_over": claim.pk}, follow=True).content.decode()
    assert "Taken by you at" in taken
    response = other.post(reverse("worklist:release"), {"item": key})
    assert response.status_code == 302 and response["Location"] == f"/booking/#item-task-{mixed['wrong'].pk}"
    assert not WorklistClaim.objects.filter(released_at__isnull=True).exists()
    assert WorklistClaim.objects.count() == 2


def test_the_take_form_carries_a_form_token(client, mixed, admin_user):
    client.force_login(admin_user)
    html = _page(client).content.decode()
    assert 'action="/booking/take/"' in html and 'name="form_token"' in html


@pytest.mark.parametrize(
    "params, named",
    [
        ({"kind": "nonsense"}, "kind"),
        ({"kind": "<script>"}, "kind"),
        ({"q": "x" * 101}, "search"),
        ({"q": "9" * 500}, "search"),
        ({"q": "a\x00b"}, "q"),
    ],
)
def test_hostile_list_parameters_are_a_400_naming_them(client, admin_user, params, named):
    client.force_login(admin_user)
    response = _page(client, **params)
    assert response.status_code == 400
    assert named in response.content.decode()


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"item": "task:abc"},
        {"item": "task:0"},
        {"item": "task:99999999999"},
        {"item": "referral:5"},
        {"item": "no_assessment:referral:5:extra"},
        {"item": "task:1" + " " * 100},
        {"item": "task:1", "take_over": "x"},
        {"item": "task:1", "take_over": "-1"},
        {"item": "task:1", "kind": "nope"},
        {"item": "task:1", "q": "y" * 200},
    ],
)
def test_hostile_take_and_release_posts_are_a_400_and_change_nothing(client, admin_user, data):
    client.force_login(admin_user)
    names = ["worklist:take"] + ([] if "take_over" in data else ["worklist:release"])
    for name in names:
        response = client.post(reverse(name), data)
        assert response.status_code == 400, (name, data)
    assert not WorklistClaim.objects.exists()


def test_an_unknown_item_is_refused_with_a_message_not_an_error(client, admin_user):
    client.force_login(admin_user)
    page = client.post(reverse("worklist:take"), {"item": "task:424242"}, follow=True).content.decode()
    assert "no longer on the worklist" in page
    assert not WorklistClaim.objects.exists()


def test_only_admin_staff_and_managers_see_and_take_worklist_items(client, mixed, pwp, manager, admin_user):
    key = f"task:{mixed['reply'].pk}"
    client.force_login(pwp)
    assert _page(client).status_code == 403
    assert client.post(reverse("worklist:take"), {"item": key}).status_code == 403
    assert client.post(reverse("worklist:release"), {"item": key}).status_code == 403
    assert not WorklistClaim.objects.exists()
    client.force_login(manager)
    assert _page(client).status_code == 200
    assert client.post(reverse("worklist:take"), {"item": key}).status_code == 302
    assert WorklistClaim.objects.get().taken_by == manager
    client.logout()
    response = client.get(reverse("worklist:index"))
    assert response.status_code == 302 and reverse("login") in response["Location"]
    assert client.post(reverse("worklist:take"), {"item": key}).status_code == 302
    assert WorklistClaim.objects.count() == 1


def test_take_is_a_post_only_action(client, admin_user):
    client.force_login(admin_user)
    assert client.get(reverse("worklist:take"), {"item": "task:1"}).status_code == 405


def test_a_declined_call_is_listed_at_the_time_of_that_call_in_words(pwp, admin_user, referral):
    call_at = london(2026, 3, 10, 14, 37)
    with time_machine.travel(call_at, tick=False):
        record_call_outcome(referral=referral, button=CallButton.DECLINED, actor=pwp)
    with time_machine.travel(call_at + timedelta(hours=1), tick=False):
        [item] = [i for i in admin_worklist() if i.referral_id == referral.pk]
    assert item.kind == "suggest_discharge" and item.since == call_at
    assert item.label == "Suggest discharge: declined (end of care: not assessed (including unable to contact))"
    assert item.detail == "The patient declined on the last call"
