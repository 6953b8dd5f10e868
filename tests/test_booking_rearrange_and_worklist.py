from datetime import timedelta

import pytest
import time_machine
from django.core.exceptions import ValidationError
from django.utils import timezone

from scheduling.booking.models import Appointment, Rearrangement
from scheduling.worklist.selectors import admin_worklist
from scheduling.booking.services import (
    cancel_appointment,
    is_late_cancellation,
    is_late_rearrangement,
    rearrange_appointment,
    record_appointment_outcome,
)
from scheduling.booking.signals import appointment_booked, appointment_cancelled
from scheduling.caseload.models import ServiceSettings
from scheduling.worklist.models import AdminTask
from scheduling.caseload.services import discharge_referral
from scheduling.worklist.services import raise_admin_task, resolve_admin_task
from tests.booking_helpers import book
from tests.factories import london, make_referral

START = london(2026, 3, 4, 10, 0)


@pytest.fixture
def booked(referral, pwp, admin_user):
    with time_machine.travel(london(2026, 3, 1, 9), tick=False):
        return book(referral, pwp, START, actor=admin_user, kind="treatment", session_number=4)


@pytest.mark.parametrize("notice,late", [(timedelta(hours=23, minutes=59), True), (timedelta(hours=24), False)])
def test_a_patient_rearrangement_with_less_than_24_hours_notice_is_a_late_cancellation(booked, admin_user, notice, late):
    with time_machine.travel(START - notice, tick=False):
        r = rearrange_appointment(
            appointment=booked, new_start=START + timedelta(days=7), asked_by="patient", reason="Hospital appointment",
            actor=admin_user,
        )
    assert r.notice_given == notice
    assert is_late_rearrangement(r) is late
    assert r.replacement.session_number == 4 and r.original.outcome == "2"


def test_the_late_notice_threshold_is_the_services_setting(booked, admin_user):
    ServiceSettings.objects.update_or_create(pk=1, defaults={"late_cancellation_notice_hours": 48})
    with time_machine.travel(START - timedelta(hours=30), tick=False):
        r = rearrange_appointment(appointment=booked, new_start=START + timedelta(days=7), asked_by="patient", actor=admin_user)
    assert is_late_rearrangement(r)


def test_when_the_patient_asked_is_recorded_not_when_the_admin_typed_it(booked, admin_user):
    asked = START - timedelta(hours=30)
    with time_machine.travel(START - timedelta(hours=2), tick=False):
        r = rearrange_appointment(
            appointment=booked, new_start=START + timedelta(days=7), asked_by="patient", actor=admin_user, asked_at=asked
        )
    assert r.asked_at == asked and not is_late_rearrangement(r)


def test_a_service_rearrangement_is_never_late_and_is_coded_4(booked, admin_user):
    with time_machine.travel(START - timedelta(hours=1), tick=False):
        r = rearrange_appointment(appointment=booked, new_start=START + timedelta(days=7), asked_by="service", actor=admin_user)
    assert r.original.outcome == "4" and not is_late_rearrangement(r)


@pytest.mark.parametrize("by,code", [("patient", "2"), ("service", "4")])
def test_cancelling_by_patient_or_service_uses_the_nhs_code(booked, admin_user, by, code):
    with time_machine.travel(START - timedelta(hours=3), tick=False):
        cancel_appointment(appointment=booked, cancelled_by=by, reason="Unwell", actor=admin_user)
    booked.refresh_from_db()
    assert booked.outcome == code and booked.cancellation_reason == "Unwell"
    assert is_late_cancellation(booked) is (by == "patient")


def test_a_cancellation_must_say_who_cancelled(booked, admin_user):
    with pytest.raises(ValidationError):
        cancel_appointment(appointment=booked, cancelled_by="gp", reason="x", actor=admin_user)
    booked.refresh_from_db()
    assert booked.outcome == "0"


def test_rearranging_sends_the_cancel_and_book_hooks_inside_the_transaction(booked, admin_user):
    seen = []

    def on_cancel(sender, appointment, actor, **kw):
        seen.append(("cancelled", appointment.pk))

    def on_book(sender, appointment, actor, **kw):
        seen.append(("booked", appointment.pk))

    appointment_cancelled.connect(on_cancel)
    appointment_booked.connect(on_book)
    try:
        with time_machine.travel(START - timedelta(days=2), tick=False):
            r = rearrange_appointment(appointment=booked, new_start=START + timedelta(days=7), asked_by="patient", actor=admin_user)
    finally:
        appointment_cancelled.disconnect(on_cancel)
        appointment_booked.disconnect(on_book)
    assert seen == [("cancelled", booked.pk), ("booked", r.replacement.pk)]


def test_a_failing_hook_rolls_the_rearrangement_back(booked, admin_user):
    def broken(sender, appointment, actor, **kw):
        raise RuntimeError("reminder planner failed")

    appointment_booked.connect(broken)
    try:
        with time_machine.travel(START - timedelta(days=2), tick=False), pytest.raises(RuntimeError):
            rearrange_appointment(appointment=booked, new_start=START + timedelta(days=7), asked_by="patient", actor=admin_user)
    finally:
        appointment_booked.disconnect(broken)
    booked.refresh_from_db()
    assert booked.outcome == "0" and not Rearrangement.objects.exists()


# --- The worklist ------------------------------------------------------------------------------


def test_a_new_referral_appears_on_the_worklist_and_clears_when_its_assessment_is_booked(pwp, admin_user):
    referral = make_referral(pwp, actor=admin_user, received_on=timezone.localdate() - timedelta(days=3))
    items = [i for i in admin_worklist() if i.referral_id == referral.pk]
    assert [i.kind for i in items] == ["no_assessment"]
    assert items[0].action_url == f"/booking/referrals/{referral.pk}/slots/?type=assessment"
    appt = book(referral, pwp, timezone.now() + timedelta(days=3), actor=admin_user)
    assert not [i for i in admin_worklist() if i.referral_id == referral.pk]
    # A cancelled assessment puts it back; a discharged referral never shows.
    cancel_appointment(appointment=appt, cancelled_by="patient", reason="Away", actor=admin_user)
    assert [i.label for i in admin_worklist() if i.referral_id == referral.pk] == ["Contacted: book the assessment"]
    discharge_referral(referral=referral, end_code="50", actor=admin_user, reason="Unable to contact")
    assert not [i for i in admin_worklist() if i.referral_id == referral.pk]


def test_a_missed_assessment_puts_the_referral_back_on_the_worklist(pwp, admin_user, referral):
    appt = book(referral, pwp, timezone.now() - timedelta(minutes=30), actor=admin_user)
    assert not [i for i in admin_worklist() if i.referral_id == referral.pk]
    record_appointment_outcome(appointment=appt, outcome="3", actor=pwp)
    assert [i.kind for i in admin_worklist() if i.referral_id == referral.pk] == ["no_assessment"]


def test_the_worklist_is_oldest_first_across_tasks_and_referrals(pwp, admin_user):
    today = timezone.localdate()
    old_referral = make_referral(pwp, actor=admin_user, received_on=today - timedelta(days=10))
    with time_machine.travel(timezone.now() - timedelta(days=5)):
        reply = raise_admin_task(kind=AdminTask.Kind.SMS_REPLY, source=AdminTask.Source.SMS, detail="Reply received")
    with time_machine.travel(timezone.now() - timedelta(days=20)):
        failed = raise_admin_task(kind=AdminTask.Kind.SMS_FAILED, source=AdminTask.Source.SMS, referral=old_referral)
    new_referral = make_referral(pwp, actor=admin_user, received_on=today)
    order = [(i.kind, i.task_id or i.referral_id) for i in admin_worklist()]
    assert order == [
        ("sms_failed", failed.pk), ("no_assessment", old_referral.pk), ("sms_reply", reply.pk), ("no_assessment", new_referral.pk),
    ]


def test_a_rearrange_request_links_to_the_rearrangement_and_clears_when_it_is_done(booked, admin_user, pwp):
    task = raise_admin_task(
        kind=AdminTask.Kind.REARRANGE_REQUEST, source=AdminTask.Source.CALL_LIST, appointment=booked, actor=pwp,
        detail="Wants a later time",
    )
    other = raise_admin_task(kind=AdminTask.Kind.REARRANGE_REQUEST, source=AdminTask.Source.SMS, referral=booked.referral)
    unrelated = raise_admin_task(kind=AdminTask.Kind.WRONG_NUMBER, source=AdminTask.Source.CALL_LIST, referral=booked.referral)
    item = next(i for i in admin_worklist() if i.task_id == task.pk)
    assert item.action_url == f"/booking/appointments/{booked.pk}/rearrange/"
    with time_machine.travel(START - timedelta(days=2), tick=False):
        rearrange_appointment(appointment=booked, new_start=START + timedelta(days=7), asked_by="patient", actor=admin_user)
    open_ids = {i.task_id for i in admin_worklist() if i.task_id}
    assert task.pk not in open_ids and other.pk not in open_ids and unrelated.pk in open_ids
    task.refresh_from_db()
    assert task.resolved_by == admin_user and task.resolution.startswith("Rearranged to Wed 11 Mar 2026 10:00")


def test_any_task_disappears_when_marked_done(admin_user):
    task = raise_admin_task(kind=AdminTask.Kind.WRONG_NUMBER, source=AdminTask.Source.CALL_LIST, detail="Number not in service")
    assert task.pk in {i.task_id for i in admin_worklist()}
    resolve_admin_task(task=task, actor=admin_user, resolution="New number recorded")
    assert task.pk not in {i.task_id for i in admin_worklist()}
    assert Appointment.objects.count() == 0
