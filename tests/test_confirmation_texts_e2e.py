"""End to end: a booking's confirmation text through a real django-q2 cluster and the official twilio
client to the fake Twilio server, delivered, shown in the outbox; a move while its send waits in the
queue; and the patient's free-text answer reaching their record and the PWP's call list.

The stack (qcluster on the shared clock, fake Twilio, live server) is the one tests/test_reminders_e2e.py
sets up; its fixtures are used from there.
"""

import datetime as dt
import logging

import pytest
from django.urls import reverse
from django_q.models import OrmQ

from scheduling.booking.services import rearrange_appointment
from scheduling.reminders import sending
from scheduling.reminders.models import InboundMessage, MessageEvent, OutboundMessage
from tests.booking_helpers import book
from tests.factories import london, make_referral
from tests.test_reminders_e2e import (  # noqa: F401  (fixtures)
    BOOKED_AT,
    START,
    app,
    clock,
    fake_twilio,
    queue_is_empty,
    run_dispatch,
    sent_to,
    start_worker,
    status_of,
    wait_for_status,
    wait_until,
)

pytestmark = pytest.mark.e2e
S = OutboundMessage.Status


def confirmation(appointment, kind="confirmation") -> OutboundMessage:
    return OutboundMessage.objects.get(appointment=appointment, kind=kind)


def test_a_booking_is_confirmed_by_text_once_delivered_and_shown_in_the_outbox_and_a_reply_reaches_the_record(
    clock, start_worker, fake_twilio, app, client, pwp, admin_user, caplog
):
    caplog.set_level(logging.DEBUG)
    worker = start_worker()
    appointment = book(make_referral(pwp), pwp, START, actor=admin_user)
    message = confirmation(appointment)
    number = appointment.referral.patient.mobile_phone
    assert message.status == S.SCHEDULED and BOOKED_AT <= message.due_at < BOOKED_AT + dt.timedelta(minutes=1)

    assert run_dispatch() == 1
    wait_for_status(message, S.DELIVERED)
    [sent] = sent_to(fake_twilio, number)
    assert sent["body"] == message.body and "Wednesday 10 June at 2pm" in sent["body"]
    assert message.provider_sid == sent["sid"] and message.attempts == 1
    assert message.events.filter(source=MessageEvent.Source.TWILIO, reported_status="delivered", applied=True).exists()

    # Later runs send nothing more: the reminders are not due for days.
    clock.move_to(BOOKED_AT + dt.timedelta(minutes=3))
    assert run_dispatch() == 0
    assert len(sent_to(fake_twilio, number)) == 1

    client.force_login(admin_user)
    outbox = client.get(reverse("sms:outbox"), {"kind": "confirmation"}).content.decode()
    assert "1 message" in outbox and "Booking confirmation" in outbox and "Delivered" in outbox

    # The patient answers in their own words, through Twilio's signed webhook to the running app.
    status, _ = fake_twilio.send_inbound(app.url + reverse("sms:twilio_inbound"), from_=number,
                                         body="Thanks, ring after 3pm if you can")
    assert status == 200
    inbound = wait_until(lambda: InboundMessage.objects.filter(patient=appointment.referral.patient).first(),
                         what="the reply to be stored")
    assert inbound.meaning == InboundMessage.Meaning.OTHER and inbound.admin_task_id is not None
    client.force_login(pwp)
    record = client.get(reverse("caseload:referral_detail", args=[appointment.referral.pk])).content.decode()
    assert "Text from the patient: “Thanks, ring after 3pm if you can”" in record
    assert "Booking confirmation" in record  # the sent text is on the record as well

    for secret in (number, number[3:], message.body, "ring after 3pm"):
        assert secret not in worker.output()
        assert secret not in caplog.text


def test_a_booking_moved_while_its_confirmation_waits_in_the_queue_sends_only_the_new_times(
    clock, start_worker, fake_twilio, app, pwp, admin_user
):
    appointment = book(make_referral(pwp), pwp, START, actor=admin_user)
    first = confirmation(appointment)
    number = appointment.referral.patient.mobile_phone
    clock.move_to(BOOKED_AT + dt.timedelta(seconds=30))
    # The dispatcher has queued the send, but no worker has taken it yet.
    assert sending.dispatch_due_messages() == 1
    assert OrmQ.objects.count() == 1
    moved = rearrange_appointment(appointment=appointment, new_start=london(2026, 6, 11, 10), asked_by="patient",
                                  reason="Working that day", actor=admin_user)
    second = confirmation(moved.replacement, "confirmation_moved")

    start_worker()
    wait_until(queue_is_empty, what="the queued send task to run")
    assert status_of(first) == S.CANCELLED and first.attempts == 0 and first.claimed_at is None
    assert fake_twilio.requests == []

    assert run_dispatch() == 1
    wait_for_status(second, S.DELIVERED)
    [sent] = sent_to(fake_twilio, number)
    assert sent["body"] == second.body and "moved to Thursday 11 June at 10am" in sent["body"]
