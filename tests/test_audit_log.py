"""One audit log for every subject: referrals and appointments as before, and now a patient's details and
consent, settings, message templates, rules, working hours and absences, written by the services that
make each change (the product's pages and Django admin both go through them)."""

import datetime as dt

import pytest
import time_machine
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.forms.models import model_to_dict
from django.urls import reverse

from scheduling.audit import AuditEntry, log_action
from scheduling.booking.models import AvailabilityException, BookingSettings, WorkingHours
from scheduling.booking.services import add_availability_exception, withdraw_availability_exception
from scheduling.calls.models import ContactPolicy
from scheduling.caseload.models import ServiceSettings
from scheduling.caseload.patient_details import change_patient_details, details_version
from scheduling.reminders.models import MessageTemplate, ReminderRule
from scheduling.reminders.replies import handle_inbound
from scheduling.reminders.services import opt_out_patient
from tests.booking_helpers import book
from tests.factories import london

Subject, Action = AuditEntry.Subject, AuditEntry.Action
NOW = london(2026, 3, 2, 9)
NEW_WORDING = "Hi {first_name}, we will ring you on {day} {date} at {time}. Reply C to confirm, R to rearrange, STOP to end texts."


def entries(subject_type):
    return list(AuditEntry.objects.filter(subject_type=subject_type).order_by("id"))


def admin_form(instance, **changes) -> dict:
    """What Django admin's change form posts for `instance`, with `changes` (a False checkbox is left out)."""
    posted = {name: value for name, value in model_to_dict(instance).items() if value is not None and value is not False}
    posted.update(changes)
    return posted


def change_mobile(patient, actor, mobile, reason=""):
    return change_patient_details(
        patient=patient, actor=actor, version=details_version(patient), given_name=patient.given_name,
        family_name=patient.family_name, date_of_birth=patient.date_of_birth, mobile_phone=mobile,
        other_phone=patient.other_phone, sms_consent=patient.sms_consent, voicemail_allowed=patient.voicemail_allowed,
        preferred_days=patient.preferred_days, preferred_times=patient.preferred_times, reason=reason,
    )


# --- Availability -------------------------------------------------------------------------------------------


def test_adding_an_availability_exception_records_who_added_it(frozen, pwp, manager):
    leave = add_availability_exception(
        practitioner=pwp, kind="leave", starts_at=london(2026, 3, 3), ends_at=london(2026, 3, 4), actor=manager
    )
    [entry] = entries(Subject.AVAILABILITY_EXCEPTION)
    assert (entry.subject_id, entry.action, entry.actor, entry.at) == (leave.pk, Action.ADDED, manager, NOW)
    assert entry.data["values"]["kind"] == "leave" and entry.data["values"]["practitioner"] == str(pwp.pk)


def test_withdrawing_an_availability_exception_records_who_withdrew_it(frozen, pwp, manager, admin_user):
    leave = add_availability_exception(
        practitioner=pwp, kind="leave", starts_at=london(2026, 3, 3), ends_at=london(2026, 3, 4), actor=admin_user
    )
    withdraw_availability_exception(exception=leave, actor=manager)
    withdrawn = AuditEntry.objects.get(subject_type=Subject.AVAILABILITY_EXCEPTION, action=Action.WITHDRAWN)
    assert (withdrawn.subject_id, withdrawn.actor, withdrawn.at) == (leave.pk, manager, NOW)
    leave.refresh_from_db()
    assert leave.withdrawn_at == NOW


def test_withdrawing_an_absence_twice_is_refused_and_audited_once(frozen, pwp, manager):
    leave = add_availability_exception(
        practitioner=pwp, kind="leave", starts_at=london(2026, 3, 3), ends_at=london(2026, 3, 4), actor=manager
    )
    withdraw_availability_exception(exception=leave, actor=manager)
    with pytest.raises(Exception, match="already withdrawn"):
        withdraw_availability_exception(exception=leave, actor=manager)
    assert AuditEntry.objects.filter(action=Action.WITHDRAWN).count() == 1


def test_an_absence_added_and_withdrawn_in_django_admin_is_audited_with_the_manager(client, frozen, pwp, manager):
    client.force_login(manager)
    response = client.post(reverse("admin:scheduling_availabilityexception_add"), {
        "practitioner": pwp.pk, "kind": "training", "starts_at_0": "2026-03-05", "starts_at_1": "09:00",
        "ends_at_0": "2026-03-05", "ends_at_1": "12:00", "note": "",
    })
    assert response.status_code == 302, response.content.decode()[:2000]
    training = AvailabilityException.objects.get()
    assert training.created_by == manager
    posted = {
        "practitioner": pwp.pk, "kind": "training", "starts_at_0": "2026-03-05", "starts_at_1": "09:00",
        "ends_at_0": "2026-03-05", "ends_at_1": "12:00", "note": "", "withdrawn_at_0": "2026-03-02",
        "withdrawn_at_1": "09:00",
    }
    assert client.post(reverse("admin:scheduling_availabilityexception_change", args=[training.pk]), posted).status_code == 302
    added, withdrawn = entries(Subject.AVAILABILITY_EXCEPTION)
    assert (added.action, added.actor, withdrawn.action, withdrawn.actor) == (Action.ADDED, manager, Action.WITHDRAWN, manager)
    assert list(withdrawn.data["changes"]) == ["withdrawn_at"]


def test_working_hours_added_changed_and_removed_in_django_admin_are_audited(client, pwp, manager):
    client.force_login(manager)
    posted = {"practitioner": pwp.pk, "weekday": 0, "starts": "09:00", "ends": "12:30"}
    assert client.post(reverse("admin:scheduling_workinghours_add"), posted).status_code == 302
    block = WorkingHours.objects.get()
    changed = {**posted, "ends": "13:00"}
    assert client.post(reverse("admin:scheduling_workinghours_change", args=[block.pk]), changed).status_code == 302
    delete = client.post(reverse("admin:scheduling_workinghours_delete", args=[block.pk]), {"post": "yes"})
    assert delete.status_code == 302 and not WorkingHours.objects.exists()
    added, edited, removed = entries(Subject.WORKING_HOURS)
    assert [e.action for e in (added, edited, removed)] == [Action.ADDED, Action.CHANGED, Action.REMOVED]
    assert edited.data["changes"] == {"ends": ["12:30:00", "13:00:00"]}
    assert removed.subject_id == block.pk and removed.data["values"]["ends"] == "13:00:00"
    assert {e.actor for e in (added, edited, removed)} == {manager}


# --- Settings, templates, rules and the contact policy -------------------------------------------------------


def test_changing_sms_settings_is_audited(client, manager):
    client.force_login(manager)
    response = client.post(reverse("sms:settings"), {
        "quiet_hours_start": "21:30", "quiet_hours_end": "08:00", "minimum_notice_minutes": "60", "max_send_attempts": "3",
        "send_confirmations": "on",
    })
    assert response.status_code == 302
    [entry] = entries(Subject.SMS_SETTINGS)
    assert (entry.action, entry.actor) == (Action.CHANGED, manager)
    assert entry.data["changes"] == {"quiet_hours_start": ["20:00:00", "21:30:00"], "max_send_attempts": ["4", "3"]}


def test_saving_sms_settings_unchanged_writes_no_entry(client, manager):
    client.force_login(manager)
    unchanged = {"quiet_hours_start": "20:00", "quiet_hours_end": "08:00", "minimum_notice_minutes": "60",
                 "max_send_attempts": "4", "send_confirmations": "on"}
    assert client.post(reverse("sms:settings"), unchanged).status_code == 302
    assert entries(Subject.SMS_SETTINGS) == []


def test_new_wording_for_a_message_template_is_audited_with_the_wording_before_and_after(client, manager):
    before = MessageTemplate.objects.get(key="reminder").body
    client.force_login(manager)
    assert client.post(reverse("sms:edit_template", args=["reminder"]), {"body": NEW_WORDING, "save": "1"}).status_code == 302
    [entry] = entries(Subject.MESSAGE_TEMPLATE)
    assert (entry.subject_id, entry.actor) == (MessageTemplate.objects.get(key="reminder").pk, manager)
    assert entry.data["changes"] == {"body": [before, NEW_WORDING]}


def test_adding_and_changing_a_reminder_rule_is_audited(client, manager):
    client.force_login(manager)
    client.post(reverse("sms:new_rule"), {"appointment_type": "review", "days_before": "5", "send_at": "11:15", "active": "on"})
    rule = ReminderRule.objects.get(appointment_type="review", days_before=5)
    client.post(reverse("sms:edit_rule", args=[rule.pk]), {"appointment_type": "review", "days_before": "5", "send_at": "12:00"})
    added, changed = entries(Subject.REMINDER_RULE)
    assert (added.action, added.subject_id, added.data["values"]["send_at"]) == (Action.ADDED, rule.pk, "11:15:00")
    assert changed.data["changes"] == {"send_at": ["11:15:00", "12:00:00"], "active": ["True", "False"]}


def test_changing_booking_settings_in_django_admin_is_audited(client, manager):
    booking_settings = BookingSettings.current()
    client.force_login(manager)
    posted = admin_form(booking_settings, treatment_minutes=50)
    response = client.post(reverse("admin:scheduling_bookingsettings_change", args=[booking_settings.pk]), posted)
    assert response.status_code == 302
    assert BookingSettings.current().treatment_minutes == 50
    [entry] = entries(Subject.BOOKING_SETTINGS)
    assert (entry.actor, entry.data["changes"]) == (manager, {"treatment_minutes": ["45", "50"]})


def test_changing_service_settings_in_django_admin_is_audited(client, manager):
    service_settings = ServiceSettings.current()
    client.force_login(manager)
    posted = admin_form(service_settings, late_cancellation_notice_hours=48)
    assert client.post(reverse("admin:scheduling_servicesettings_change", args=[1]), posted).status_code == 302
    [entry] = entries(Subject.SERVICE_SETTINGS)
    assert (entry.actor, entry.data["changes"]) == (manager, {"late_cancellation_notice_hours": ["24", "48"]})


def test_changing_the_contact_policy_in_django_admin_is_audited(client, manager):
    policy = ContactPolicy.current()
    client.force_login(manager)
    posted = admin_form(policy, max_attempts=4)
    posted.pop("vary_time_of_day")  # unticked
    assert client.post(reverse("admin:scheduling_contactpolicy_change", args=[1]), posted).status_code == 302
    [entry] = entries(Subject.CONTACT_POLICY)
    assert entry.actor == manager
    assert entry.data["changes"] == {"max_attempts": ["3", "4"], "vary_time_of_day": ["True", "False"]}


def test_settings_entries_are_listed_for_managers_in_django_admin_and_cannot_be_changed_or_deleted(client, manager):
    client.force_login(manager)
    client.post(reverse("admin:scheduling_bookingsettings_change", args=[1]), admin_form(BookingSettings.current(), review_minutes=40))
    [entry] = entries(Subject.BOOKING_SETTINGS)
    listing = client.get(reverse("admin:scheduling_auditentry_changelist"), {"subject_type": "booking_settings"})
    assert listing.status_code == 200 and "review_minutes: 30 → 40" in listing.content.decode()
    assert client.get(reverse("admin:scheduling_auditentry_delete", args=[entry.pk])).status_code == 403
    assert client.post(reverse("admin:scheduling_auditentry_change", args=[entry.pk]), {"reason": "x"}).status_code == 403
    entry.refresh_from_db()
    assert entry.reason == ""


# --- The patient: details and consent, on the referral page ----------------------------------------------------


def test_a_patient_detail_change_appears_on_the_referral_page_in_words(client, referral, admin_user):
    change_mobile(referral.patient, admin_user, "07700 900456", reason="New number given on the phone")
    client.force_login(admin_user)
    html = client.get(reverse("caseload:referral_detail", args=[referral.pk])).content.decode()
    assert "Mobile for texts: " in html and "→ 07700 900456 – New number given on the phone, by Admin.One Tester" in html


def test_a_stop_text_is_audited_on_the_patient_and_shown_on_the_referral_page_in_words(client, referral, admin_user):
    patient = referral.patient
    handle_inbound(provider_sid="SM" + "1" * 32, from_number=patient.mobile_phone, to_number="+447700900000", body="STOP")
    [entry] = AuditEntry.objects.filter(patient=patient)
    assert (entry.subject_type, entry.field, entry.old_value, entry.new_value) == (Subject.PATIENT, "sms_opted_out", "no", "yes")
    assert entry.actor is None and entry.reason == "patient replied STOP"
    client.force_login(admin_user)
    html = client.get(reverse("caseload:referral_detail", args=[referral.pk])).content.decode()
    assert "Opted out of texts (STOP): no → yes – patient replied STOP" in html


def test_a_start_text_lifts_the_opt_out_and_is_audited_and_a_repeated_stop_is_audited_once(referral):
    patient = referral.patient
    opt_out_patient(patient=patient, reason="patient replied STOP")
    opt_out_patient(patient=patient, reason="patient replied STOP")
    handle_inbound(provider_sid="SM" + "2" * 32, from_number=patient.mobile_phone, to_number="+447700900000", body="START")
    assert [(e.old_value, e.new_value, e.reason) for e in AuditEntry.objects.filter(patient=patient).order_by("id")] == [
        ("no", "yes", "patient replied STOP"), ("yes", "no", "patient replied START"),
    ]


def test_an_entry_reads_without_values_or_the_patient(referral, admin_user):
    patient = referral.patient
    change_mobile(patient, admin_user, "07700 900456")
    entry = AuditEntry.objects.get(patient=patient)
    assert str(entry) == f"Patient {patient.pk}: changed mobile_phone"
    assert "900456" not in str(entry) and patient.family_name not in str(entry)


def test_log_action_names_its_subject_from_the_model_and_links_it_to_the_referral_page(referral, admin_user, pwp):
    entry = log_action(subject=referral, actor=admin_user, field="step", old="2", new="3")
    assert (entry.subject_type, entry.subject_id, entry.referral_id, entry.patient) == (
        Subject.REFERRAL, referral.pk, referral.pk, None
    )
    with time_machine.travel(london(2026, 3, 2, 9), tick=False):
        appointment = book(referral, pwp, london(2026, 3, 10, 10), actor=admin_user)
    entry = log_action(subject=appointment, actor=admin_user, field="confirmed", new="by phone")
    assert (entry.subject_type, entry.subject_id, entry.appointment, entry.referral_id) == (
        Subject.APPOINTMENT, appointment.pk, appointment, referral.pk
    )


# --- The migration ------------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_migrating_copies_patient_detail_changes_into_the_audit_log_and_gives_old_entries_their_subject():
    executor = MigrationExecutor(connection)
    before, after = [("scheduling", "0016_report_indexes")], [("scheduling", "0017_audit_log")]
    executor.migrate(before)
    old = executor.loader.project_state(before).apps
    patient = old.get_model("scheduling", "Patient").objects.create(
        nhs_number="9434765919", given_name="Ann", family_name="Old", mobile_phone="+447700900123"
    )
    referral = old.get_model("scheduling", "Referral").objects.create(
        patient=patient, source="A1", received_on=dt.date(2026, 3, 2), reason="Pain"
    )
    at = london(2026, 3, 2, 10)
    old.get_model("scheduling", "AuditEntry").objects.create(referral=referral, field="status", new_value="contacted", at=at)
    old.get_model("scheduling", "PatientDetailChange").objects.create(
        patient=patient, field="mobile_phone", old_value="+447700900123", new_value="+447700900456", at=at,
        reason="New number",
    )
    executor = MigrationExecutor(connection)
    executor.migrate(after)
    new = executor.loader.project_state(after).apps
    rows = new.get_model("scheduling", "AuditEntry").objects.order_by("id")
    assert [(e.subject_type, e.subject_id, e.action, e.field, e.old_value, e.new_value, e.reason) for e in rows] == [
        ("referral", referral.pk, "changed", "status", "", "contacted", ""),
        ("patient", patient.pk, "changed", "mobile_phone", "+447700900123", "+447700900456", "New number"),
    ]
    assert rows[1].patient_id == patient.pk and rows[1].at == at
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())  # as the other tests expect it
