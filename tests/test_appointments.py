from datetime import timedelta

import pytest
import time_machine
from django.core.exceptions import ValidationError
from django.utils import timezone

from scheduling.booking.models import Appointment, Rearrangement
from scheduling.booking.services import (
    SlotTaken,
    book_appointment,
    cancel_appointment,
    correct_appointment_outcome,
    is_late_cancellation,
    rearrange_appointment,
    record_appointment_outcome,
)
from scheduling.calls.models import ContactAttempt
from scheduling.calls.services import log_contact_attempt
from scheduling.audit import AuditEntry
from scheduling.caseload.models import Referral
from scheduling.codes import AttendanceOutcome as O
from tests.factories import london

S = Referral.Status


def book(referral, pwp, actor, start, kind="assessment", **kw):
    return book_appointment(referral=referral, practitioner=pwp, appointment_type=kind, start=start, actor=actor, **kw)


def test_booking_an_assessment_moves_the_referral_and_audits_it(referral, pwp, admin_user):
    appt = book(referral, pwp, admin_user, timezone.now() + timedelta(days=2))
    referral.refresh_from_db()
    assert referral.status == S.ASSESSMENT_BOOKED
    assert (appt.duration_minutes, appt.session_number, appt.mechanism, appt.outcome) == (60, 1, "02", "0")
    assert appt.nhs_appointment_type_code == "01"
    assert AuditEntry.objects.filter(appointment=appt, field="booking", actor=admin_user).exists()


def test_an_overlapping_booking_for_the_same_practitioner_is_refused(referral, pwp, admin_user):
    start = timezone.now() + timedelta(days=2)
    book(referral, pwp, admin_user, start)
    with pytest.raises(SlotTaken):
        book(referral, pwp, admin_user, start + timedelta(minutes=30), kind="treatment")
    # Back to back is fine.
    book(referral, pwp, admin_user, start + timedelta(minutes=60), kind="treatment")


def test_a_cancelled_appointment_frees_its_slot(referral, pwp, admin_user):
    start = timezone.now() + timedelta(days=2)
    appt = book(referral, pwp, admin_user, start)
    cancel_appointment(appointment=appt, cancelled_by="patient", reason="Away", actor=admin_user)
    book(referral, pwp, admin_user, start)


def test_a_naive_start_time_is_refused(referral, pwp, admin_user):
    with pytest.raises(ValidationError) as exc:
        book(referral, pwp, admin_user, timezone.now().replace(tzinfo=None))
    assert "start" in exc.value.message_dict


@pytest.mark.parametrize("outcome", ["5", "6"])
def test_attending_the_assessment_marks_the_referral_assessed(referral, pwp, admin_user, outcome):
    appt = book(referral, pwp, admin_user, timezone.now() - timedelta(minutes=70))
    record_appointment_outcome(appointment=appt, outcome=outcome, actor=pwp)
    referral.refresh_from_db()
    assert referral.status == S.ASSESSED
    assert AuditEntry.objects.filter(appointment=appt, field="outcome", old_value="0", new_value=outcome).exists()


def test_attending_the_first_treatment_session_puts_the_referral_in_treatment(referral, pwp, admin_user):
    a = book(referral, pwp, admin_user, timezone.now() - timedelta(days=7))
    record_appointment_outcome(appointment=a, outcome="5", actor=pwp)
    t = book(referral, pwp, admin_user, timezone.now() - timedelta(minutes=50), kind="treatment", session_number=2)
    record_appointment_outcome(appointment=t, outcome="5", actor=pwp)
    referral.refresh_from_db()
    assert referral.status == S.IN_TREATMENT


@pytest.mark.parametrize("outcome", ["3", "7"])
def test_a_missed_assessment_sends_the_referral_back_for_rebooking(referral, pwp, admin_user, outcome):
    appt = book(referral, pwp, admin_user, timezone.now() - timedelta(minutes=20))
    record_appointment_outcome(appointment=appt, outcome=outcome, actor=pwp)
    referral.refresh_from_db()
    assert referral.status == S.CONTACTED


@pytest.mark.parametrize("outcome", ["0", "2", "4", "9"])
def test_only_attendance_outcomes_can_be_recorded(referral, pwp, admin_user, outcome):
    appt = book(referral, pwp, admin_user, timezone.now() - timedelta(minutes=20))
    with pytest.raises(ValidationError):
        record_appointment_outcome(appointment=appt, outcome=outcome, actor=pwp)
    appt.refresh_from_db()
    assert appt.outcome == "0"


def test_an_outcome_cannot_be_recorded_twice(referral, pwp, admin_user):
    appt = book(referral, pwp, admin_user, timezone.now() - timedelta(minutes=20))
    record_appointment_outcome(appointment=appt, outcome="5", actor=pwp)
    with pytest.raises(ValidationError) as exc:
        record_appointment_outcome(appointment=appt, outcome="3", actor=pwp)
    assert exc.value.code == "invalid_transition"


def test_an_outcome_cannot_be_recorded_for_an_appointment_hours_away(referral, pwp, admin_user):
    appt = book(referral, pwp, admin_user, timezone.now() + timedelta(hours=3))
    with pytest.raises(ValidationError) as exc:
        record_appointment_outcome(appointment=appt, outcome="5", actor=pwp)
    assert exc.value.code == "too_early"


@pytest.mark.parametrize("by,code", [("patient", "2"), ("service", "4")])
def test_cancellation_records_the_nhs_code_and_when_it_was_asked(referral, pwp, admin_user, by, code):
    appt = book(referral, pwp, admin_user, timezone.now() + timedelta(days=2))
    asked = timezone.now() - timedelta(hours=1)
    cancel_appointment(appointment=appt, cancelled_by=by, reason="Unwell", actor=admin_user, asked_at=asked)
    appt.refresh_from_db()
    assert (appt.outcome, appt.cancelled_by, appt.cancelled_at, appt.cancellation_recorded_by) == (code, by, asked, admin_user)
    referral.refresh_from_db()
    assert referral.status == S.CONTACTED  # the assessment needs rebooking


def test_an_attended_appointment_cannot_be_cancelled(referral, pwp, admin_user):
    appt = book(referral, pwp, admin_user, timezone.now() - timedelta(minutes=70))
    record_appointment_outcome(appointment=appt, outcome="5", actor=pwp)
    with pytest.raises(ValidationError):
        cancel_appointment(appointment=appt, cancelled_by="patient", reason="x", actor=admin_user)


def test_rearranging_keeps_the_session_number_and_links_both_appointments(referral, pwp, admin_user):
    a = book(referral, pwp, admin_user, timezone.now() - timedelta(days=7))
    record_appointment_outcome(appointment=a, outcome="5", actor=pwp)
    t = book(referral, pwp, admin_user, timezone.now() + timedelta(days=2), kind="treatment", session_number=3)
    new_start = timezone.now() + timedelta(days=9)
    r = rearrange_appointment(appointment=t, new_start=new_start, asked_by="patient", reason="Hospital visit", actor=admin_user)
    t.refresh_from_db()
    assert t.outcome == O.CANCELLED_BY_PATIENT
    assert (r.replacement.start, r.replacement.session_number, r.replacement.duration_minutes) == (new_start, 3, 45)
    assert Rearrangement.objects.get(original=t).replacement == r.replacement


def test_rearranging_an_assessment_keeps_the_referral_booked(referral, pwp, admin_user):
    a = book(referral, pwp, admin_user, timezone.now() + timedelta(days=2))
    rearrange_appointment(appointment=a, new_start=timezone.now() + timedelta(days=4), asked_by="service", actor=admin_user)
    referral.refresh_from_db()
    assert referral.status == S.ASSESSMENT_BOOKED
    assert not AuditEntry.objects.filter(referral=referral, new_value=S.CONTACTED).exists()


def test_a_rearrangement_into_a_taken_slot_changes_nothing(referral, pwp, admin_user):
    a = book(referral, pwp, admin_user, timezone.now() + timedelta(days=2))
    b = book(referral, pwp, admin_user, timezone.now() + timedelta(days=4), kind="treatment")
    with pytest.raises(SlotTaken):
        rearrange_appointment(appointment=a, new_start=b.start, asked_by="patient", actor=admin_user)
    a.refresh_from_db()
    assert a.outcome == "0" and not Rearrangement.objects.exists()


@pytest.mark.parametrize("notice,late", [(timedelta(hours=23, minutes=59), True), (timedelta(hours=24), False)])
def test_late_cancellation_is_less_than_24_hours_notice(referral, pwp, admin_user, notice, late):
    start = london(2026, 3, 4, 10, 0)
    with time_machine.travel(london(2026, 3, 1, 9, 0), tick=False):
        appt = book(referral, pwp, admin_user, start)
    with time_machine.travel(start - notice, tick=False):
        cancel_appointment(appointment=appt, cancelled_by="patient", reason="Can't make it", actor=admin_user)
    appt.refresh_from_db()
    assert appt.notice_given == notice
    assert is_late_cancellation(appt) is late


def test_a_service_cancellation_is_never_a_late_patient_cancellation(referral, pwp, admin_user):
    appt = book(referral, pwp, admin_user, timezone.now() + timedelta(hours=2))
    cancel_appointment(appointment=appt, cancelled_by="service", reason="Clinician unwell", actor=admin_user)
    appt.refresh_from_db()
    assert not is_late_cancellation(appt)


def test_a_correction_needs_a_reason_and_is_audited(referral, pwp, admin_user):
    appt = book(referral, pwp, admin_user, timezone.now() - timedelta(minutes=70))
    record_appointment_outcome(appointment=appt, outcome="5", actor=pwp)
    with pytest.raises(ValidationError):
        correct_appointment_outcome(appointment=appt, outcome="0", actor=pwp, reason="")
    correct_appointment_outcome(appointment=appt, outcome="0", actor=pwp, reason="Clicked the wrong button")
    appt.refresh_from_db()
    assert appt.outcome == "0"
    entry = AuditEntry.objects.filter(appointment=appt).latest("id")
    assert (entry.old_value, entry.new_value, entry.reason) == ("5", "0", "Correction: Clicked the wrong button")


def test_a_successful_call_moves_an_awaiting_referral_to_contacted(referral, pwp):
    log_contact_attempt(referral=referral, practitioner=pwp, outcome="no_answer", actor=pwp)
    referral.refresh_from_db()
    assert referral.status == S.AWAITING_CONTACT
    log_contact_attempt(referral=referral, practitioner=pwp, outcome="answered", actor=pwp)
    referral.refresh_from_db()
    assert referral.status == S.CONTACTED


def test_a_call_does_not_move_a_booked_referral_backwards(referral, pwp, admin_user):
    book(referral, pwp, admin_user, timezone.now() + timedelta(days=2))
    log_contact_attempt(referral=referral, practitioner=pwp, outcome="answered", actor=pwp)
    referral.refresh_from_db()
    assert referral.status == S.ASSESSMENT_BOOKED


def test_a_callback_request_needs_a_time(referral, pwp):
    with pytest.raises(ValidationError) as exc:
        log_contact_attempt(referral=referral, practitioner=pwp, outcome="callback_requested", actor=pwp)
    assert "callback_at" in exc.value.message_dict
    assert not ContactAttempt.objects.exists()


def test_the_database_refuses_a_cancellation_without_its_time(referral, pwp, admin_user):
    from django.db import IntegrityError, transaction

    appt = book(referral, pwp, admin_user, timezone.now() + timedelta(days=1))
    with pytest.raises(IntegrityError), transaction.atomic():
        Appointment.objects.filter(pk=appt.pk).update(outcome="2")
