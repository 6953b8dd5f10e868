"""Clinical notes: PWPs working the caseload write and amend them; managers read them; admin staff never see
their text anywhere (referral page, search, exports, Django admin, logs). Amendments are new versions."""

import logging
import re
from datetime import timedelta

import pytest
import time_machine
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone

from scheduling.calls.services import CallButton, record_call_outcome
from scheduling.caseload.models import CaseloadCover, ClinicalNote
from scheduling.caseload.notes import amend_note, write_note
from scheduling.reports.exports import report_csv, report_json
from tests.booking_helpers import book
from tests.factories import london, make_referral

pytestmark = pytest.mark.django_db
NOTE = "Sleep poor this week; pacing plan discussed. Zebra-marker-4711."
AMENDED = "Sleep poor this week; pacing plan agreed for mornings. Zebra-marker-4712."


def detail_url(referral):
    return reverse("caseload:referral_detail", args=[referral.pk])


def write_url(referral):
    return reverse("caseload:write_note", args=[referral.pk])


def amend_url(note):
    return reverse("caseload:amend_note", args=[note.referral_id, note.pk])


def form_token(client, referral) -> str:
    html = client.get(detail_url(referral)).content.decode()
    return re.search(r'name="form_token" value="([0-9a-f]{32})"', html).group(1)


@pytest.fixture
def covering_pwp(other_pwp, pwp, manager):
    today = timezone.localdate()
    CaseloadCover.objects.create(covering=other_pwp, covered=pwp, starts_on=today, ends_on=today, created_by=manager)
    return other_pwp


# --- Writing and reading --------------------------------------------------------------------------------


def test_a_pwp_writes_a_note_on_their_own_caseload_and_reads_it_with_author_and_time(client, pwp, referral):
    client.force_login(pwp)
    response = client.post(write_url(referral), {"text": NOTE, "form_token": form_token(client, referral)})
    note = ClinicalNote.objects.get(referral=referral)
    assert response.status_code == 302 and response["Location"].endswith(f"#note-{note.pk}")
    assert (note.author, note.text, note.appointment, note.contact_attempt) == (pwp, NOTE, None, None)
    page = client.get(detail_url(referral)).content.decode()
    assert NOTE in page and "Written by Pwp.One Tester" in page
    assert timezone.localtime(note.written_at).strftime("%H:%M") in page


def test_a_pwp_covering_the_caseload_writes_and_reads_notes(client, covering_pwp, referral):
    client.force_login(covering_pwp)
    assert client.post(write_url(referral), {"text": NOTE}).status_code == 302
    assert ClinicalNote.objects.get().author == covering_pwp
    assert NOTE in client.get(detail_url(referral)).content.decode()


def test_a_session_note_names_its_appointment(client, pwp, admin_user, referral):
    appointment = book(referral, pwp, london(2026, 3, 10, 10), actor=admin_user)
    client.force_login(pwp)
    assert client.post(write_url(referral), {"text": NOTE, "appointment": appointment.pk}).status_code == 302
    assert ClinicalNote.objects.get().appointment == appointment
    page = client.get(detail_url(referral)).content.decode()
    assert "Session note: Initial assessment, Tue 10 Mar 2026 10:00" in page


def test_a_note_on_a_call_names_the_attempt_and_is_shown_with_it(client, pwp, referral):
    attempt = record_call_outcome(referral=referral, button=CallButton.SPOKE, actor=pwp)
    note = write_note(referral=referral, author=pwp, text=NOTE, contact_attempt=attempt)
    assert note.contact_attempt == attempt
    client.force_login(pwp)
    page = client.get(detail_url(referral)).content.decode()
    row = page[page.index(f'id="attempt-{attempt.pk}"'):]
    assert f'href="#note-{note.pk}"' in row[: row.index("</tr>")]
    assert "On the call: Answered" in page


def test_a_note_cannot_name_another_referrals_appointment_or_call(pwp, admin_user, referral):
    other = make_referral(pwp, actor=admin_user)
    appointment = book(other, pwp, london(2026, 3, 10, 10), actor=admin_user)
    attempt = record_call_outcome(referral=other, button=CallButton.NO_ANSWER, actor=pwp)
    with pytest.raises(ValidationError) as error:
        write_note(referral=referral, author=pwp, text=NOTE, appointment=appointment, contact_attempt=attempt)
    assert set(error.value.message_dict) == {"appointment", "contact_attempt"}
    assert not ClinicalNote.objects.exists()


def test_a_manager_reads_notes_but_has_no_form_to_write_them(client, manager, pwp, referral):
    write_note(referral=referral, author=pwp, text=NOTE)
    client.force_login(manager)
    page = client.get(detail_url(referral)).content.decode()
    assert NOTE in page and "Write a note" not in page
    assert client.post(write_url(referral), {"text": "Manager note"}).status_code == 403


def test_another_pwp_is_refused_without_the_patients_name_and_nothing_is_written(client, other_pwp, pwp, referral):
    note = write_note(referral=referral, author=pwp, text=NOTE)
    client.force_login(other_pwp)
    for response in (
        client.post(write_url(referral), {"text": "Not mine"}),
        client.post(amend_url(note), {"text": "Not mine"}),
        client.get(detail_url(referral)),
    ):
        html = response.content.decode()
        assert response.status_code == 403
        assert referral.patient.family_name not in html and NOTE not in html
    assert list(ClinicalNote.objects.values_list("text", flat=True)) == [NOTE]


def test_admin_staff_cannot_write_notes_and_never_see_their_text_on_the_referral_page(client, admin_user, pwp, referral):
    attempt = record_call_outcome(referral=referral, button=CallButton.SPOKE, actor=pwp)
    write_note(referral=referral, author=pwp, text=NOTE, contact_attempt=attempt)
    client.force_login(admin_user)
    response = client.get(detail_url(referral))
    html = response.content.decode()
    assert response.status_code == 200
    assert NOTE not in html and "Zebra-marker" not in html and "Clinical note" not in html
    assert "Write a note" not in html
    refused = client.post(write_url(referral), {"text": "Admin note"})
    assert refused.status_code == 403 and referral.patient.family_name not in refused.content.decode()
    assert ClinicalNote.objects.count() == 1


def test_searching_referrals_for_a_notes_text_finds_nothing(client, admin_user, manager, pwp, referral):
    write_note(referral=referral, author=pwp, text=NOTE)
    for user in (admin_user, pwp, manager):
        client.force_login(user)
        found = client.get(reverse("caseload:referral_list"), {"q": referral.patient.family_name}).content.decode()
        assert referral.patient.family_name in found
        html = client.get(reverse("caseload:referral_list"), {"q": "Zebra-marker-4711"}).content.decode()
        assert referral.patient.family_name not in html
        assert "Zebra-marker-4711" not in html.replace('value="Zebra-marker-4711"', "")


def test_django_admin_never_shows_note_text_to_admin_staff(client, admin_user, pwp, referral):
    note = write_note(referral=referral, author=pwp, text=NOTE)
    admin_user.is_staff = True
    admin_user.save()
    client.force_login(admin_user)
    assert client.get(reverse("admin:scheduling_clinicalnote_changelist")).status_code == 403
    assert client.get(reverse("admin:scheduling_clinicalnote_change", args=[note.pk])).status_code == 403
    changelist = reverse("admin:scheduling_referral_changelist")
    assert referral.patient.family_name in client.get(changelist, {"q": referral.patient.family_name}).content.decode()
    found = client.get(changelist, {"q": "Zebra-marker-4711"}).content.decode()
    assert referral.patient.family_name not in found and "pacing" not in found


def test_the_capacity_report_exports_never_contain_note_text(client, manager, pwp, referral):
    appointment = book(referral, pwp, london(2026, 3, 10, 10), actor=manager)
    write_note(referral=referral, author=pwp, text=NOTE, appointment=appointment)
    client.force_login(manager)
    for fmt in ("csv", "json"):
        response = client.get(reverse("reports:export", args=[fmt]))
        assert response.status_code == 200
        body = b"".join(response.streaming_content) if response.streaming else response.content
        assert b"Zebra-marker" not in body and b"pacing" not in body
    # The export functions themselves take a report of numbers; no note is ever handed to them.
    assert "Zebra" not in report_csv({"a": 1}) + report_json({"a": 1})


def test_note_text_is_never_logged(client, pwp, referral, caplog):
    client.force_login(pwp)
    with caplog.at_level(logging.DEBUG):
        client.post(write_url(referral), {"text": NOTE})
        note = ClinicalNote.objects.get()
        client.post(amend_url(note), {"text": AMENDED})
        client.post(write_url(referral), {"text": "x" * 5001 + "Zebra-marker-9"})
        client.get(detail_url(referral))
    assert "Zebra-marker" not in caplog.text and "pacing" not in caplog.text


# --- Validation --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, error",
    [
        ("", "Note: write the note before saving it."),
        ("   \n  ", "Note: write the note before saving it."),
        ("x" * 5001, "Note: at most 5,000 characters (this one has 5,001)."),
    ],
)
def test_an_empty_or_too_long_note_is_refused_with_the_field_named_and_nothing_is_written(client, pwp, referral, text, error):
    client.force_login(pwp)
    response = client.post(write_url(referral), {"text": text})
    assert response.status_code == 400
    assert error in response.content.decode()
    assert not ClinicalNote.objects.exists()


def test_the_service_refuses_empty_and_too_long_text_too(pwp, referral):
    for text in ("", "  ", "x" * 5001):
        with pytest.raises(ValidationError) as error:
            write_note(referral=referral, author=pwp, text=text)
        assert "text" in error.value.message_dict
    assert write_note(referral=referral, author=pwp, text="x" * 5000).text == "x" * 5000


def test_an_appointment_of_another_referral_is_refused_in_the_form(client, pwp, admin_user, referral):
    other = make_referral(pwp, actor=admin_user)
    appointment = book(other, pwp, london(2026, 3, 10, 10), actor=admin_user)
    client.force_login(pwp)
    response = client.post(write_url(referral), {"text": NOTE, "appointment": appointment.pk})
    assert response.status_code == 400
    assert "Session: choose one of this referral&#x27;s appointments, or none." in response.content.decode()
    assert not ClinicalNote.objects.exists()


# --- Versions -----------------------------------------------------------------------------------------


def test_amending_keeps_the_earlier_version_and_shows_the_latest_marked_amended(client, pwp, referral):
    client.force_login(pwp)
    client.post(write_url(referral), {"text": NOTE})
    original = ClinicalNote.objects.get()
    response = client.post(amend_url(original), {"text": AMENDED})
    latest = ClinicalNote.objects.get(supersedes=original)
    assert response.status_code == 302 and response["Location"].endswith(f"#note-{latest.pk}")
    original.refresh_from_db()
    assert (original.text, latest.text, latest.author) == (NOTE, AMENDED, pwp)
    assert ClinicalNote.objects.count() == 2
    page = client.get(detail_url(referral)).content.decode()
    assert "Amended" in page and "Earlier versions (1)" in page
    assert page.index(AMENDED) < page.index("Earlier versions") < page.index(NOTE)


def test_amending_twice_keeps_every_version_in_order(pwp, covering_pwp, referral):
    first = write_note(referral=referral, author=pwp, text="one")
    second = amend_note(note=first, author=pwp, text="two")
    third = amend_note(note=second, author=covering_pwp, text="three")
    assert [(n.text, n.supersedes_id) for n in ClinicalNote.objects.order_by("id")] == [
        ("one", None), ("two", first.pk), ("three", second.pk)
    ]
    assert third.author == covering_pwp


def test_an_earlier_version_cannot_be_amended_again(pwp, referral):
    first = write_note(referral=referral, author=pwp, text="one")
    amend_note(note=first, author=pwp, text="two")
    with pytest.raises(ValidationError) as error:
        amend_note(note=first, author=pwp, text="something else")
    assert "amended by someone else" in error.value.message_dict["text"][0]
    assert ClinicalNote.objects.count() == 2


def test_an_amendment_that_changes_nothing_is_refused(pwp, referral):
    first = write_note(referral=referral, author=pwp, text="one")
    with pytest.raises(ValidationError):
        amend_note(note=first, author=pwp, text="  one ")
    assert ClinicalNote.objects.count() == 1


def test_notes_cannot_be_changed_or_deleted_in_django_admin_even_by_a_manager(client, manager, pwp, referral):
    note = write_note(referral=referral, author=pwp, text=NOTE)
    client.force_login(manager)
    assert client.get(reverse("admin:scheduling_clinicalnote_delete", args=[note.pk])).status_code == 403
    client.post(reverse("admin:scheduling_clinicalnote_change", args=[note.pk]), {"text": "changed"})
    note.refresh_from_db()
    assert note.text == NOTE


# --- Safe to submit twice ----------------------------------------------------------------------------


def test_the_same_note_posted_twice_with_its_form_token_is_written_once(client, pwp, referral):
    client.force_login(pwp)
    data = {"text": NOTE, "form_token": form_token(client, referral)}
    first = client.post(write_url(referral), data)
    second = client.post(write_url(referral), data)
    assert ClinicalNote.objects.count() == 1
    assert second.status_code == first.status_code == 302 and second["Location"] == first["Location"]


def test_the_same_note_without_a_token_within_two_minutes_is_recorded_once(client, pwp, referral):
    client.force_login(pwp)
    with time_machine.travel(london(2026, 3, 10, 10), tick=False):
        client.post(write_url(referral), {"text": NOTE})
    with time_machine.travel(london(2026, 3, 10, 10, 1) + timedelta(seconds=59), tick=False):
        client.post(write_url(referral), {"text": NOTE})
    assert ClinicalNote.objects.count() == 1
    with time_machine.travel(london(2026, 3, 10, 10, 2) + timedelta(seconds=1), tick=False):
        client.post(write_url(referral), {"text": NOTE})
    assert ClinicalNote.objects.count() == 2


def test_the_same_text_by_another_author_is_a_separate_note(pwp, covering_pwp, referral):
    write_note(referral=referral, author=pwp, text=NOTE)
    write_note(referral=referral, author=covering_pwp, text=NOTE)
    assert ClinicalNote.objects.count() == 2


def test_the_same_amendment_sent_twice_is_recorded_once(client, pwp, referral):
    original = write_note(referral=referral, author=pwp, text=NOTE)
    client.force_login(pwp)
    first = client.post(amend_url(original), {"text": AMENDED})
    second = client.post(amend_url(original), {"text": AMENDED})
    assert first.status_code == second.status_code == 302
    assert ClinicalNote.objects.count() == 2
    assert second["Location"] == first["Location"]


def test_existing_notes_without_the_new_fields_still_show(client, pwp, referral):
    ClinicalNote.objects.create(referral=referral, author=pwp, text=NOTE, written_at=timezone.now() - timedelta(days=400))
    client.force_login(pwp)
    assert NOTE in client.get(detail_url(referral)).content.decode()


# --- Races (real concurrent connections) -----------------------------------------------------------------


def run_at_once(work, n=2):
    """Run `work(i)` in n threads released together; return what each returned or raised."""
    import threading

    from django.db import connection

    results = [None] * n
    start = threading.Barrier(n, timeout=20)

    def run(i):
        try:
            start.wait()
            results[i] = work(i)
        except Exception as exc:  # noqa: BLE001  (the test inspects it)
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return results


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_the_same_note_sent_twice_at_the_same_moment_is_recorded_once(pwp, referral):
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("Real concurrent connections are tested on PostgreSQL")
    results = run_at_once(lambda i: write_note(referral=referral, author=pwp, text=NOTE), n=4)
    assert all(isinstance(r, ClinicalNote) for r in results), results
    assert ClinicalNote.objects.count() == 1
    assert {r.pk for r in results} == {ClinicalNote.objects.get().pk}


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_two_different_amendments_of_one_version_at_the_same_moment_keep_one_and_refuse_the_other(pwp, other_pwp, referral, manager):
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("Real concurrent connections are tested on PostgreSQL")
    today = timezone.localdate()
    CaseloadCover.objects.create(covering=other_pwp, covered=pwp, starts_on=today, ends_on=today, created_by=manager)
    note = write_note(referral=referral, author=pwp, text=NOTE)
    authors = [pwp, other_pwp]
    results = run_at_once(lambda i: amend_note(note=note, author=authors[i], text=f"{AMENDED} by {i}"))
    saved = [r for r in results if isinstance(r, ClinicalNote)]
    refused = [r for r in results if isinstance(r, ValidationError)]
    assert len(saved) == 1 and len(refused) == 1, results
    assert "amended by someone else" in refused[0].message_dict["text"][0]
    assert ClinicalNote.objects.count() == 2
    assert ClinicalNote.objects.get(supersedes=note).pk == saved[0].pk
