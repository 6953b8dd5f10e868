"""The patient details page: staff correct names, date of birth, phones, SMS consent, voicemail and contact
windows. Every change audited in words; registration's checks; a new number re-plans the reminders and resolves
the worklist items it answers; withdrawn consent cancels pending texts; a stale form never overwrites."""

import datetime as dt
import logging
import re
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from scheduling.booking.services import book_appointment
from scheduling.calls.services import CallButton, record_call_outcome
from scheduling.audit import AuditEntry
from scheduling.caseload.models import CaseloadCover, Patient
from scheduling.worklist.models import AdminTask
from scheduling.caseload.patient_details import change_patient_details, describe_detail_change, details_version
from scheduling.caseload.phones import display_phone
from scheduling.caseload.services import record_sms_opt_out
from scheduling.worklist.services import raise_admin_task
from scheduling.reminders import sending
from scheduling.submissions import new_token
from scheduling.reminders.models import OutboundMessage
from scheduling.reminders.rules import WRONG_NUMBER_REASON
from tests.factories import london, make_referral, make_user

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("frozen", "confirmations_off")]
S = OutboundMessage.Status
# Tuesday 10 March 2026, 10:00 in London (GMT).
NOW = london(2026, 3, 10, 10, 0)
NEW_MOBILE = "07700 900456"
NEW_MOBILE_E164 = "+447700900456"


def book(referral, pwp, actor, start, kind="assessment"):
    return book_appointment(referral=referral, practitioner=pwp, appointment_type=kind, start=start, actor=actor)


def as_form(patient, **changes) -> dict:
    """What the page's form holds for this patient, with some fields changed."""
    values = dict(
        given_name=patient.given_name,
        family_name=patient.family_name,
        date_of_birth=patient.date_of_birth,
        mobile_phone=patient.mobile_phone,
        other_phone=patient.other_phone,
        sms_consent=patient.sms_consent,
        voicemail_allowed=patient.voicemail_allowed,
        preferred_days=list(patient.preferred_days),
        preferred_times=list(patient.preferred_times),
        version=details_version(patient),
    )
    values.update(changes)
    return values


def change(patient, actor, **changes):
    return change_patient_details(patient=patient, actor=actor, **as_form(patient, **changes))


def snapshot(patient_pk):
    return Patient.objects.filter(pk=patient_pk).values().get()


def outbox(patient):
    return list(OutboundMessage.objects.filter(patient=patient).order_by("id").values_list("kind", "status", "status_reason"))


# --- Audit --------------------------------------------------------------------------------------------


def test_a_new_mobile_is_saved_and_audited_with_who_when_from_and_to(referral, admin_user):
    patient = referral.patient
    old = patient.mobile_phone
    result = change(patient, admin_user, mobile_phone=NEW_MOBILE, reason="New number given on the phone")
    patient.refresh_from_db()
    assert (patient.mobile_phone, patient.mobile_is_mobile) == (NEW_MOBILE_E164, True)
    [entry] = AuditEntry.objects.filter(patient=patient)
    assert [c.pk for c in result.changes] == [entry.pk]
    assert (entry.field, entry.old_value, entry.new_value, entry.actor, entry.at) == (
        "mobile_phone", old, NEW_MOBILE_E164, admin_user, NOW
    )
    words = describe_detail_change(entry, user_names={admin_user.pk: "Sam Admin"})
    assert words == f"Mobile for texts: {display_phone(old)} → 07700 900456 – New number given on the phone, by Sam Admin"
    assert old not in str(entry) and NEW_MOBILE_E164 not in str(entry)


def test_each_changed_field_is_its_own_entry_in_words(referral, admin_user):
    patient = referral.patient
    change(
        patient, admin_user, given_name="Jo", date_of_birth=dt.date(1971, 5, 17), sms_consent=False,
        voicemail_allowed=False, preferred_days=["0", "2"], preferred_times=["evening"],
    )
    names = {admin_user.pk: "Sam Admin"}
    words = [describe_detail_change(e, user_names=names) for e in AuditEntry.objects.filter(patient=patient)]
    assert words == [
        "First name: Test → Jo, by Sam Admin",
        "Date of birth: 17 May 1970 → 17 May 1971, by Sam Admin",
        "Text messages: consents → no consent, by Sam Admin",
        "Voicemail: may be left → do not leave, by Sam Admin",
        "Preferred days: any day → Mon, Wed, by Sam Admin",
        "Preferred times: any time → Early evening (17:00-20:00), by Sam Admin",
    ]
    patient.refresh_from_db()
    assert (patient.given_name, patient.preferred_days, patient.preferred_times) == ("Jo", [0, 2], ["evening"])


def test_saving_the_same_details_again_changes_nothing(referral, admin_user):
    patient = referral.patient
    change(patient, admin_user, mobile_phone=NEW_MOBILE)
    again = change(patient, admin_user, mobile_phone=NEW_MOBILE)
    assert again.changes == [] and again.resolved_tasks == []
    assert AuditEntry.objects.filter(patient=patient).count() == 1


def test_the_referral_record_shows_the_change_in_words(client, referral, admin_user):
    change(referral.patient, admin_user, mobile_phone=NEW_MOBILE, reason="Patient rang with a new number")
    client.force_login(admin_user)
    html = client.get(reverse("caseload:referral_detail", args=[referral.pk])).content.decode()
    history = re.search(r'<ul class="history record-list">(.*?)</ul>', html, re.S).group(1)
    assert "Mobile for texts:" in history and "→ 07700 900456 – Patient rang with a new number, by Admin.One Tester" in history


# --- Registration's checks: a refusal changes nothing -------------------------------------------------


@pytest.mark.parametrize(
    "changes, field, words",
    [
        ({"mobile_phone": "01632 960123"}, "mobile_phone", "must be a UK mobile"),
        ({"mobile_phone": "not a phone"}, "mobile_phone", "is not a phone number"),
        ({"other_phone": "12"}, "other_phone", "phone number"),
        ({"given_name": "  "}, "given_name", "Enter the patient's first name."),
        ({"family_name": ""}, "family_name", "Enter the patient's last name."),
        ({"date_of_birth": dt.date(2015, 1, 1)}, "date_of_birth", "this service takes adults aged 16 or over"),
        ({"date_of_birth": dt.date(2027, 1, 1)}, "date_of_birth", "cannot be in the future"),
        ({"date_of_birth": None}, "date_of_birth", "Enter the patient's date of birth."),
        ({"mobile_phone": "", "sms_consent": True}, "sms_consent", "SMS consent needs a mobile number."),
        ({"preferred_times": ["midnight"]}, "preferred_times", "Unknown time of day: midnight."),
        ({"preferred_days": ["9"]}, "preferred_days", "weekday numbers"),
    ],
)
def test_a_bad_value_is_refused_naming_the_field_and_changes_nothing(referral, admin_user, pwp, changes, field, words):
    book(referral, pwp, admin_user, NOW + timedelta(days=7))
    patient = referral.patient
    before, texts_before = snapshot(patient.pk), outbox(patient)
    with pytest.raises(ValidationError) as refused:
        change(patient, admin_user, voicemail_allowed=False, **changes)
    assert words in " ".join(refused.value.message_dict[field])
    assert snapshot(patient.pk) == before and outbox(patient) == texts_before
    assert not AuditEntry.objects.filter(subject_type=AuditEntry.Subject.PATIENT).exists()


def test_an_imported_patient_without_a_date_of_birth_can_have_a_number_corrected(referral, admin_user):
    Patient.objects.filter(pk=referral.patient_id).update(date_of_birth=None)
    patient = Patient.objects.get(pk=referral.patient_id)
    change(patient, admin_user, mobile_phone=NEW_MOBILE)
    patient.refresh_from_db()
    assert patient.mobile_phone == NEW_MOBILE_E164 and patient.date_of_birth is None


def test_a_date_of_birth_after_the_referral_was_received_is_refused(pwp, admin_user):
    referral = make_referral(pwp, actor=admin_user, received_on=dt.date(2026, 1, 5))
    with pytest.raises(ValidationError) as refused:
        change(referral.patient, admin_user, date_of_birth=dt.date(2010, 2, 1))
    assert "16 or over" in refused.value.message_dict["date_of_birth"][0]


# --- Reminders follow the number ---------------------------------------------------------------------


def test_a_new_mobile_replans_the_pending_reminders_and_they_go_to_the_new_number(referral, pwp, admin_user):
    appointment = book(referral, pwp, admin_user, london(2026, 3, 20, 14))
    old_rows = list(OutboundMessage.objects.filter(appointment=appointment, status=S.SCHEDULED))
    assert {m.kind for m in old_rows} == {"reminder_2d", "reminder_0d"}
    result = change(referral.patient, admin_user, mobile_phone=NEW_MOBILE)
    assert result.follow_ups == ["2 reminders planned again; they go to the new number."]
    for row in old_rows:
        row.refresh_from_db()
        assert (row.status, row.status_reason) == (S.CANCELLED, "the mobile number changed: planned again for the new number")
    new_rows = OutboundMessage.objects.filter(appointment=appointment, status=S.SCHEDULED).order_by("due_at")
    assert [(m.kind, m.due_at) for m in new_rows] == [
        ("reminder_2d", london(2026, 3, 18, 10)), ("reminder_0d", london(2026, 3, 20, 8))
    ]
    first = new_rows[0]
    assert sending.send_message(message_id=first.pk, now=first.due_at) == S.DELIVERED
    first.refresh_from_db()
    assert first.to_number == NEW_MOBILE_E164


def test_a_reminder_already_handed_to_twilio_stays_as_it_is_and_is_not_planned_again(referral, pwp, admin_user):
    appointment = book(referral, pwp, admin_user, london(2026, 3, 20, 14))
    early = OutboundMessage.objects.get(appointment=appointment, kind="reminder_2d")
    assert sending.send_message(message_id=early.pk, now=early.due_at) == S.DELIVERED
    old_number = referral.patient.mobile_phone
    change(referral.patient, admin_user, mobile_phone=NEW_MOBILE)
    early.refresh_from_db()
    assert (early.status, early.to_number) == (S.DELIVERED, old_number)
    assert OutboundMessage.objects.filter(appointment=appointment, kind="reminder_2d").count() == 1
    assert OutboundMessage.objects.filter(appointment=appointment, kind="reminder_0d", status=S.SCHEDULED).count() == 1


def test_a_past_or_cancelled_appointment_gets_no_new_reminders(referral, pwp, admin_user):
    from scheduling.booking.services import cancel_appointment

    cancelled = book(referral, pwp, admin_user, london(2026, 3, 20, 14))
    cancel_appointment(appointment=cancelled, cancelled_by="patient", reason="Away", actor=admin_user)
    change(referral.patient, admin_user, mobile_phone=NEW_MOBILE)
    assert not OutboundMessage.objects.filter(appointment=cancelled, status=S.SCHEDULED).exists()


def test_withdrawn_consent_cancels_pending_texts_with_the_reason(referral, pwp, admin_user):
    appointment = book(referral, pwp, admin_user, london(2026, 3, 20, 14))
    result = change(referral.patient, admin_user, sms_consent=False)
    assert result.follow_ups == ["2 texts not yet sent cancelled: consent withdrawn."]
    assert set(OutboundMessage.objects.filter(appointment=appointment).values_list("status", "status_reason")) == {
        (S.CANCELLED, "SMS consent withdrawn")
    }


def test_consent_given_again_replans_reminders_for_future_appointments(referral, pwp, admin_user):
    appointment = book(referral, pwp, admin_user, london(2026, 3, 20, 14))
    change(referral.patient, admin_user, sms_consent=False)
    later = book(referral, pwp, admin_user, london(2026, 3, 27, 14), kind="treatment")
    assert set(OutboundMessage.objects.filter(appointment=later).values_list("status", flat=True)) == {S.SKIPPED}
    change(referral.patient, admin_user, sms_consent=True)
    for booked in (appointment, later):
        assert set(
            OutboundMessage.objects.filter(appointment=booked, status=S.SCHEDULED).values_list("kind", flat=True)
        ) == {"reminder_2d", "reminder_0d"}


def test_consent_given_to_a_patient_who_replied_stop_plans_nothing(referral, pwp, admin_user):
    book(referral, pwp, admin_user, london(2026, 3, 20, 14))
    change(referral.patient, admin_user, sms_consent=False)
    record_sms_opt_out(patient=referral.patient)
    result = change(referral.patient, admin_user, sms_consent=True)
    assert result.follow_ups == ["No reminders planned: patient replied STOP (opted out)."]
    assert not OutboundMessage.objects.filter(patient=referral.patient, status=S.SCHEDULED).exists()


def test_a_removed_mobile_cancels_pending_texts(referral, pwp, admin_user):
    book(referral, pwp, admin_user, london(2026, 3, 20, 14))
    change(referral.patient, admin_user, mobile_phone="", sms_consent=False, other_phone="01632 960111")
    assert not OutboundMessage.objects.filter(patient=referral.patient, status=S.SCHEDULED).exists()


# --- Worklist items a new number answers -------------------------------------------------------------


def test_a_new_mobile_resolves_the_wrong_number_item_and_the_call_list_stops_saying_so(client, referral, pwp, admin_user):
    today = book(referral, pwp, admin_user, NOW + timedelta(hours=2))
    later = book(referral, pwp, admin_user, london(2026, 3, 20, 14), kind="treatment")
    record_call_outcome(referral=referral, button=CallButton.WRONG_NUMBER, actor=pwp, appointment=today)
    assert set(OutboundMessage.objects.filter(appointment=later).values_list("status_reason", flat=True)) == {
        WRONG_NUMBER_REASON
    }
    task = AdminTask.objects.get(kind=AdminTask.Kind.WRONG_NUMBER)
    client.force_login(pwp)
    assert "Number wrong: waiting for a new number." in client.get(reverse("calls:today")).content.decode()

    result = change(referral.patient, admin_user, mobile_phone=NEW_MOBILE)

    task.refresh_from_db()
    assert [t.pk for t in result.resolved_tasks] == [task.pk]
    assert (task.resolved_by, task.resolved_at) == (admin_user, NOW)
    assert task.resolution == "The mobile number was corrected on the patient's details page; texts now go to the new number."
    assert set(
        OutboundMessage.objects.filter(appointment=later, status=S.SCHEDULED).values_list("kind", flat=True)
    ) == {"reminder_2d", "reminder_0d"}
    html = client.get(reverse("calls:today")).content.decode()
    assert "Number wrong: waiting for a new number." not in html
    assert "07700 900456" in html


def test_a_new_mobile_resolves_a_text_failed_item(referral, admin_user):
    task = raise_admin_task(
        kind=AdminTask.Kind.SMS_FAILED, source=AdminTask.Source.SMS, referral=referral,
        detail="Reminder 2 days before could not be sent: the phone was switched off or unreachable",
    )
    change(referral.patient, admin_user, mobile_phone=NEW_MOBILE)
    task.refresh_from_db()
    assert task.resolved_at == NOW and "mobile number was corrected" in task.resolution


def test_a_new_other_phone_resolves_a_wrong_number_found_on_a_call_but_not_a_failed_text(referral, pwp, admin_user):
    later = book(referral, pwp, admin_user, london(2026, 3, 20, 14))
    record_call_outcome(referral=referral, button=CallButton.WRONG_NUMBER, actor=pwp)
    wrong = AdminTask.objects.get(kind=AdminTask.Kind.WRONG_NUMBER)
    failed = raise_admin_task(kind=AdminTask.Kind.SMS_FAILED, source=AdminTask.Source.SMS, referral=referral)
    result = change(referral.patient, admin_user, other_phone="01632 960222")
    wrong.refresh_from_db()
    failed.refresh_from_db()
    assert wrong.resolution == "The other phone was corrected on the patient's details page."
    assert failed.resolved_at is None
    # The mark no longer applies, so the texts the wrong number stopped are planned again.
    assert result.follow_ups == ["2 reminders planned again; they go to the number on record."]
    assert OutboundMessage.objects.filter(appointment=later, status=S.SCHEDULED).count() == 2


def test_a_name_change_resolves_nothing_and_replans_nothing(referral, pwp, admin_user):
    book(referral, pwp, admin_user, london(2026, 3, 20, 14))
    task = raise_admin_task(kind=AdminTask.Kind.WRONG_NUMBER, source=AdminTask.Source.SMS, referral=referral)
    texts = outbox(referral.patient)
    change(referral.patient, admin_user, family_name="Smith-Jones")
    task.refresh_from_db()
    assert task.resolved_at is None and outbox(referral.patient) == texts


# --- Someone else changed it meanwhile ----------------------------------------------------------------


def test_a_field_changed_by_someone_else_since_the_form_opened_is_refused_naming_it(referral, admin_user, manager):
    patient = referral.patient
    opened = as_form(patient)
    change(patient, manager, mobile_phone=NEW_MOBILE)
    before = snapshot(patient.pk)
    # The first person's form still holds the old mobile, and changes the name.
    with pytest.raises(ValidationError) as refused:
        change_patient_details(patient=patient, actor=admin_user, **{**opened, "given_name": "Jo"})
    message = refused.value.message_dict["mobile_phone"][0]
    assert message.startswith("Mobile for texts was changed by Manager.One Tester at 10:00 on 10 Mar")
    assert "it is now 07700 900456" in message and "Nothing was saved" in message
    assert snapshot(patient.pk) == before
    assert AuditEntry.objects.filter(patient=patient).count() == 1


def test_a_stale_form_that_agrees_with_the_other_change_saves_its_own_change(referral, admin_user, manager):
    patient = referral.patient
    opened = as_form(patient)
    change(patient, manager, mobile_phone=NEW_MOBILE)
    change_patient_details(patient=patient, actor=admin_user, **{**opened, "mobile_phone": NEW_MOBILE, "given_name": "Jo"})
    patient.refresh_from_db()
    assert (patient.given_name, patient.mobile_phone) == ("Jo", NEW_MOBILE_E164)


# --- The page: who may open it ------------------------------------------------------------------------


def url(patient_pk) -> str:
    return reverse("caseload:patient_details", args=[patient_pk])


@pytest.mark.parametrize("who", ["admin_user", "manager", "pwp"])
def test_admin_staff_managers_and_the_patients_pwp_open_the_page(client, referral, who, request):
    client.force_login(request.getfixturevalue(who))
    response = client.get(url(referral.patient_id))
    assert response.status_code == 200
    html = response.content.decode()
    assert referral.patient.full_name in html and 'name="version"' in html and 'name="form_token"' in html


def test_a_pwp_covering_the_caseload_opens_the_page(client, referral, pwp, other_pwp, manager):
    CaseloadCover.objects.create(
        covering=other_pwp, covered=pwp, starts_on=NOW.date(), ends_on=NOW.date() + timedelta(days=7), created_by=manager
    )
    client.force_login(other_pwp)
    assert client.get(url(referral.patient_id)).status_code == 200


def test_another_pwp_gets_403_without_the_patients_name_and_changes_nothing(client, referral, other_pwp):
    client.force_login(other_pwp)
    patient = referral.patient
    before = snapshot(patient.pk)
    for response in (
        client.get(url(patient.pk)),
        client.post(url(patient.pk), {**as_form(patient), "mobile_phone": NEW_MOBILE}),
    ):
        assert response.status_code == 403
        body = response.content.decode()
        assert patient.family_name not in body and patient.given_name + " " not in body
    assert snapshot(patient.pk) == before


def test_an_unknown_patient_is_404(client, admin_user):
    client.force_login(admin_user)
    assert client.get(url(999999)).status_code == 404


def test_signing_in_is_needed(client, referral):
    response = client.get(url(referral.patient_id))
    assert response.status_code == 302 and "/login" in response["Location"]


# --- The page: saving ---------------------------------------------------------------------------------


def post_data(patient, **changes) -> dict:
    data = as_form(patient, **changes)
    data["date_of_birth"] = data["date_of_birth"].isoformat() if data["date_of_birth"] else ""
    data = {k: v for k, v in data.items() if v is not False and v is not None}  # unticked boxes are not sent
    data["form_token"] = new_token()  # a page's own token: one save per page, as in a browser
    return data


def test_saving_from_the_page_redirects_with_what_was_done(client, referral, pwp, admin_user):
    book(referral, pwp, admin_user, london(2026, 3, 20, 14))
    raise_admin_task(kind=AdminTask.Kind.WRONG_NUMBER, source=AdminTask.Source.SMS, referral=referral)
    client.force_login(admin_user)
    response = client.post(url(referral.patient_id), post_data(referral.patient, mobile_phone=NEW_MOBILE), follow=True)
    assert response.redirect_chain == [(url(referral.patient_id), 302)]
    html = response.content.decode()
    assert "Saved: Mobile for texts changed. 2 reminders planned again; they go to the new number." in html
    assert "Worklist item resolved: phone number wrong or not in service." in html
    assert 'value="07700 900456"' in html
    assert "Changes to these details" in html and "→ 07700 900456, by Admin.One Tester" in html


def test_the_same_form_sent_twice_changes_the_details_once(client, referral, admin_user):
    client.force_login(admin_user)
    data = post_data(referral.patient, mobile_phone=NEW_MOBILE)
    first = client.post(url(referral.patient_id), data)
    second = client.post(url(referral.patient_id), data)
    assert first.status_code == second.status_code == 302
    assert AuditEntry.objects.filter(patient=referral.patient).count() == 1


def test_a_refusal_on_the_page_names_the_field_and_keeps_what_was_typed(client, referral, admin_user):
    client.force_login(admin_user)
    before = snapshot(referral.patient_id)
    response = client.post(url(referral.patient_id), post_data(referral.patient, mobile_phone="01632 960123"))
    assert response.status_code == 400
    html = response.content.decode()
    assert "Nothing was saved" in html and "A mobile for texts must be a UK mobile number" in html
    assert 'value="01632 960123"' in html
    assert snapshot(referral.patient_id) == before


def test_a_stale_page_is_refused_and_shown_again_with_the_current_version(client, referral, admin_user, manager):
    opened = post_data(referral.patient)
    change(referral.patient, manager, mobile_phone=NEW_MOBILE)
    client.force_login(admin_user)
    response = client.post(url(referral.patient_id), {**opened, "given_name": "Jo"})
    assert response.status_code == 400
    html = response.content.decode()
    assert "Mobile for texts was changed by Manager.One Tester" in html
    assert f'name="version" value="{details_version(referral.patient)}"' in html
    assert Patient.objects.get(pk=referral.patient_id).given_name == "Test"


def test_phone_numbers_never_reach_the_logs(client, referral, pwp, admin_user, caplog):
    book(referral, pwp, admin_user, london(2026, 3, 20, 14))
    client.force_login(admin_user)
    with caplog.at_level(logging.DEBUG):
        client.post(url(referral.patient_id), post_data(referral.patient, mobile_phone=NEW_MOBILE), follow=True)
        client.post(url(referral.patient_id), post_data(referral.patient, other_phone="not a phone"))
    text = "\n".join(r.getMessage() for r in caplog.records)
    for number in (NEW_MOBILE_E164, NEW_MOBILE, "7700900456", "not a phone"):
        assert number not in text


# --- Links that lead here ----------------------------------------------------------------------------


def href_of(html: str, css_class: str) -> str:
    match = re.search(rf'<a class="[^"]*\b{css_class}\b[^"]*" href="([^"]+)"', html)
    assert match, f"no link with class {css_class}"
    return match.group(1)


def test_the_referral_page_links_to_the_details_page(client, referral, pwp):
    client.force_login(pwp)
    html = client.get(reverse("caseload:referral_detail", args=[referral.pk])).content.decode()
    landing = client.get(href_of(html, "details-link"))
    assert landing.status_code == 200 and landing.request["PATH_INFO"] == url(referral.patient_id)
    assert f"Details: {referral.patient.full_name}" in landing.content.decode()


def test_the_call_list_row_links_to_the_details_page(client, referral, pwp):
    record_call_outcome(referral=referral, button=CallButton.WRONG_NUMBER, actor=pwp)
    client.force_login(pwp)
    html = client.get(reverse("calls:today")).content.decode()
    row = re.search(rf'<li id="referral-{referral.pk}".*?</li>', html, re.S).group(0)
    assert ">Correct the number</a>" in row
    landing = client.get(href_of(row, "details-link"))
    assert landing.status_code == 200 and landing.request["PATH_INFO"] == url(referral.patient_id)


@pytest.mark.parametrize("kind", [AdminTask.Kind.WRONG_NUMBER, AdminTask.Kind.SMS_FAILED])
def test_the_worklist_item_correct_the_number_leads_to_the_details_page(client, referral, admin_user, kind):
    from scheduling.worklist.selectors import admin_worklist

    task = raise_admin_task(kind=kind, source=AdminTask.Source.SMS, referral=referral)
    [item] = [i for i in admin_worklist() if i.task_id == task.pk]
    assert item.action_label == "Correct the number"
    client.force_login(admin_user)
    html = client.get(reverse("worklist:index")).content.decode()
    assert f'href="{item.action_url}"' in html
    landing = client.get(item.action_url)
    assert landing.status_code == 200 and landing.request["PATH_INFO"] == url(referral.patient_id)
    assert f'id="task-{task.pk}"' in landing.content.decode()


# --- Two people at once (real concurrent connections) --------------------------------------------------


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_two_people_saving_different_numbers_at_once_one_wins_and_the_other_is_told(pwp, admin_user, manager, monkeypatch):
    import threading
    import time

    from django.db import connection

    from scheduling.caseload import patient_details

    if connection.vendor != "postgresql":
        pytest.skip("Real concurrent connections are tested on PostgreSQL")
    referral = make_referral(pwp, actor=admin_user)
    opened = as_form(referral.patient)
    first_holds_the_row = threading.Event()
    real_clean = patient_details._clean_patient

    def clean_slowly(**kwargs):
        # Runs with the patient's row locked: the second save must wait here until the first commits.
        if threading.current_thread().name == "first":
            first_holds_the_row.set()
            time.sleep(0.5)
        return real_clean(**kwargs)

    monkeypatch.setattr(patient_details, "_clean_patient", clean_slowly)
    outcomes = {}

    def save(name, actor, mobile):
        try:
            change_patient_details(patient=Patient.objects.get(pk=referral.patient_id), actor=actor,
                                   **{**opened, "mobile_phone": mobile})
            outcomes[name] = "saved"
        except ValidationError as exc:
            outcomes[name] = exc.message_dict
        finally:
            connection.close()

    first = threading.Thread(target=save, args=("first", admin_user, "07700 900456"), name="first")
    second = threading.Thread(target=save, args=("second", manager, "07700 900789"), name="second")
    first.start()
    assert first_holds_the_row.wait(10)
    second.start()
    first.join(30)
    second.join(30)

    assert outcomes["first"] == "saved"
    assert outcomes["second"]["mobile_phone"][0].startswith("Mobile for texts was changed by Admin.One Tester")
    assert Patient.objects.get(pk=referral.patient_id).mobile_phone == NEW_MOBILE_E164
    assert AuditEntry.objects.filter(patient_id=referral.patient_id).count() == 1
