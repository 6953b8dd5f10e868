"""The send task with the console backend: claimed once, never after a cancellation, quiet hours,
catch-up after downtime. (Twilio errors: test_reminders_twilio.py; the real queue: test_reminders_e2e.py.)"""

import datetime as dt

import pytest
import time_machine

from scheduling.booking.services import cancel_appointment
from scheduling.calls.models import OptInInvitation
from scheduling.caseload.services import record_sms_opt_out
from scheduling.reminders import sending
from scheduling.reminders.models import OutboundMessage
from tests.factories import london, make_referral

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("confirmations_off")]
S = OutboundMessage.Status


def early(appointment):
    return OutboundMessage.objects.get(appointment=appointment, kind="reminder_2d")


def test_a_due_reminder_is_sent_once_however_often_its_task_runs(appointment):
    message = early(appointment)
    at = london(2026, 6, 8, 10, 0)
    assert sending.send_message(message_id=message.pk, now=at) == S.DELIVERED
    assert sending.send_message(message_id=message.pk, now=at) == S.DELIVERED
    message.refresh_from_db()
    assert message.attempts == 1
    assert message.provider_sid.startswith("CONSOLE")
    assert message.to_number == appointment.referral.patient.mobile_phone


def test_a_reminder_is_not_sent_before_it_is_due(appointment):
    message = early(appointment)
    assert sending.send_message(message_id=message.pk, now=london(2026, 6, 8, 9, 59)) == S.SCHEDULED


def test_a_cancellation_while_the_send_is_queued_means_nothing_is_sent(appointment, admin_user):
    message = early(appointment)
    seen = []
    with time_machine.travel(london(2026, 6, 8, 10, 0), tick=False):
        sending.dispatch_due_messages(enqueue=seen.append)
        assert seen == [message.pk]
        cancel_appointment(appointment=appointment, cancelled_by="patient", reason="Away", actor=admin_user)
        assert sending.send_message(message_id=message.pk) == S.CANCELLED
    message.refresh_from_db()
    assert message.attempts == 0 and message.provider_sid == ""


def test_the_dispatcher_does_not_enqueue_the_same_row_every_minute(appointment):
    seen = []
    sending.dispatch_due_messages(now=london(2026, 6, 8, 10, 0), enqueue=seen.append)
    sending.dispatch_due_messages(now=london(2026, 6, 8, 10, 1), enqueue=seen.append)
    assert seen == [early(appointment).pk]
    # A task lost from the queue: the row is still scheduled and is enqueued again later.
    sending.dispatch_due_messages(now=london(2026, 6, 8, 10, 6), enqueue=seen.append)
    assert seen == [early(appointment).pk, early(appointment).pk]


def test_a_row_still_waiting_behind_a_backlog_is_not_enqueued_again_until_the_queue_drains(appointment):
    from django_q.models import OrmQ
    from django_q.tasks import async_task

    seen = []
    sending.dispatch_due_messages(now=london(2026, 6, 8, 10, 0), enqueue=seen.append)
    # Ten minutes on, its task is (as far as anyone can tell) still in a long queue: left alone.
    async_task("math.floor", 1.5)  # a real task waiting in the database broker
    sending.dispatch_due_messages(now=london(2026, 6, 8, 10, 10), enqueue=seen.append)
    assert seen == [early(appointment).pk]
    # The queue has drained and the row is still scheduled: its task was lost, so it goes again.
    OrmQ.objects.all().delete()
    sending.dispatch_due_messages(now=london(2026, 6, 8, 10, 11), enqueue=seen.append)
    assert seen == [early(appointment).pk, early(appointment).pk]


def test_nothing_is_dispatched_in_quiet_hours(appointment):
    seen = []
    assert sending.dispatch_due_messages(now=london(2026, 6, 8, 21, 0), enqueue=seen.append) == 0
    assert seen == []


def test_catch_up_after_downtime_sends_the_latest_useful_reminder_and_skips_the_rest(appointment):
    # The worker was down from before the 2-day reminder until the morning of the appointment.
    at = london(2026, 6, 10, 8, 30)
    seen = []
    sending.dispatch_due_messages(now=at, enqueue=seen.append)
    results = {OutboundMessage.objects.get(pk=pk).kind: sending.send_message(message_id=pk, now=at) for pk in seen}
    assert results == {"reminder_2d": S.SKIPPED, "reminder_0d": S.DELIVERED}
    assert "later reminder" in early(appointment).status_reason


def test_catch_up_too_close_to_the_appointment_skips_and_records_why(appointment):
    at = london(2026, 6, 10, 13, 30)
    for message in OutboundMessage.objects.filter(appointment=appointment):
        assert sending.send_message(message_id=message.pk, now=at) == S.SKIPPED
    assert set(OutboundMessage.objects.filter(appointment=appointment).values_list("status_reason", flat=True)) == {
        "too close to (or after) the appointment by the time it could be sent",
    }


def test_an_opt_out_after_planning_stops_the_reminder(appointment):
    record_sms_opt_out(patient=appointment.referral.patient)
    message = early(appointment)
    # Opting out cancels what is pending at once...
    message.refresh_from_db()
    if message.status == S.SCHEDULED:
        # ...and if anything were left, the send task refuses it.
        assert sending.send_message(message_id=message.pk, now=london(2026, 6, 8, 10)) == S.SKIPPED


def test_a_row_left_sending_by_a_dead_worker_is_rescheduled_when_the_gateway_never_got_it(appointment):
    message = early(appointment)
    at = london(2026, 6, 8, 10, 0)
    OutboundMessage.objects.filter(pk=message.pk).update(status=S.SENDING, claimed_at=at, attempts=1)
    assert sending.reconcile_stuck_messages(now=at + dt.timedelta(seconds=60)) == 0  # still within the task's time
    assert sending.reconcile_stuck_messages(now=at + dt.timedelta(minutes=3)) == 1
    message.refresh_from_db()
    assert message.status == S.SCHEDULED
    assert sending.send_message(message_id=message.pk, now=at + dt.timedelta(minutes=4)) == S.DELIVERED


def test_delivery_reports_only_move_forward_and_are_all_recorded(appointment):
    message = early(appointment)
    OutboundMessage.objects.filter(pk=message.pk).update(status=S.SENT, provider_sid="SM123")
    assert sending.apply_delivery_report(message_id=message.pk, reported_status="delivered") is True
    assert sending.apply_delivery_report(message_id=message.pk, reported_status="sent") is False
    assert sending.apply_delivery_report(message_id=message.pk, reported_status="delivered") is False
    message.refresh_from_db()
    assert message.status == S.DELIVERED
    assert list(message.events.filter(source="twilio").values_list("reported_status", "applied")) == [
        ("delivered", True), ("sent", False), ("delivered", False),
    ]


def test_an_undelivered_report_with_a_carrier_error_puts_the_patient_on_the_worklist(appointment):
    from scheduling.worklist.models import AdminTask

    message = early(appointment)
    OutboundMessage.objects.filter(pk=message.pk).update(status=S.SENT, provider_sid="SM123")
    sending.apply_delivery_report(message_id=message.pk, reported_status="undelivered", error_code="30005")
    task = AdminTask.objects.get(patient=appointment.referral.patient)
    assert task.kind == AdminTask.Kind.WRONG_NUMBER
    assert "30005" in task.detail
    message.refresh_from_db()
    assert (message.status, message.error_code) == (S.UNDELIVERED, "30005")


def test_an_opt_in_invitation_is_queued_when_the_contact_policy_runs_out(pwp):
    from scheduling.calls.services import record_call_outcome

    referral = make_referral(pwp)
    for day in (1, 2, 3):
        with time_machine.travel(london(2026, 6, day, 10 + 2 * day), tick=False):
            record_call_outcome(referral=referral, button="no_answer", actor=pwp)
    invitation = OptInInvitation.objects.get(referral=referral)
    message = OutboundMessage.objects.get(opt_in_invitation=invitation)
    assert message.status == S.SCHEDULED
    assert "call us on" in message.body
    assert sending.send_message(message_id=message.pk, now=london(2026, 6, 3, 17)) == S.DELIVERED
    invitation.refresh_from_db()
    assert invitation.sent_at is not None
