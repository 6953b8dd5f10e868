"""End to end: sooner-slot offers through a real django-q2 cluster, the official twilio client against
the fake Twilio server, and Twilio's signed webhooks answered by the running app.

A cancellation with notice releases the slot; the queue texts the first wave; the first "YES <code>"
books it and the other offers are withdrawn; a second YES at the same moment gets the "gone" text and
no booking; a wave released in quiet hours waits for the morning; an expired offer books nothing; a
patient's later appointment is moved into the slot and that time is offered in turn.

The stack (qcluster on the shared clock, fake Twilio, live server) is tests/test_reminders_e2e.py's.
"""

import datetime as dt
import logging
import threading

import pytest
from django.urls import reverse
from django_q.tasks import async_task, fetch

from scheduling.booking.models import Appointment, Rearrangement
from scheduling.booking.services import cancel_appointment, set_wants_sooner
from scheduling.offers.models import OfferedSlot, OfferInvitation
from scheduling.offers.tasks import ADVANCE_FUNCTION
from scheduling.reminders.models import InboundMessage, OutboundMessage
from tests.booking_helpers import book
from tests.factories import london, make_referral
from tests.offer_helpers import give_pattern, offers_on, waiting
from tests.test_reminders_e2e import (  # noqa: F401  (fixtures)
    BOOKED_AT,
    START,
    app,
    clock,
    fake_twilio,
    run_dispatch,
    sent_to,
    start_worker,
    wait_for_status,
    wait_until,
)

pytestmark = pytest.mark.e2e
S = OutboundMessage.Status
Handling = InboundMessage.Handling


def run_advance(*, timeout: float = 20) -> dict:
    """Put the offers task on the queue, as its every-minute schedule does, and wait for a worker to run it."""
    task_id = async_task(ADVANCE_FUNCTION, save=True)
    task = wait_until(lambda: fetch(task_id), what="a worker to advance the offers", timeout=timeout)
    assert task.success, task.result
    return task.result


def offer_texts(patient) -> list[OutboundMessage]:
    return list(OutboundMessage.objects.filter(patient=patient, kind=OutboundMessage.SLOT_OFFER).order_by("id"))


def reply(fake_twilio, app, patient, body):
    status, _ = fake_twilio.send_inbound(app.url + reverse("sms:twilio_inbound"), from_=patient.mobile_phone, body=body)
    assert status == 200


def test_a_cancellation_with_notice_is_offered_by_text_and_the_first_yes_books_it(
    clock, start_worker, fake_twilio, app, pwp, admin_user, caplog
):
    caplog.set_level(logging.DEBUG)
    give_pattern(pwp)
    offers_on(wave_size=2)
    booked = book(make_referral(pwp), pwp, START, actor=admin_user)
    first, second, third = (waiting(pwp, dt.date(2026, 1, day)) for day in (5, 6, 7))
    worker = start_worker()

    cancel_appointment(appointment=booked, cancelled_by="patient", reason="Away that week", actor=admin_user)
    # Released on commit, and its first wave sent by the queue.
    wait_until(lambda: OfferInvitation.objects.count() == 2, what="the first wave")
    slot = OfferedSlot.objects.get()
    assert {i.referral_id for i in OfferInvitation.objects.all()} == {first.pk, second.pk}
    assert run_dispatch() >= 2
    for referral in (first, second):
        [text] = offer_texts(referral.patient)
        wait_for_status(text, S.DELIVERED)
        [sent] = sent_to(fake_twilio, referral.patient.mobile_phone)
        code = OfferInvitation.objects.get(referral=referral).code
        assert sent["body"] == text.body and f"reply YES {code}" in sent["body"] and "First come, first served" in sent["body"]

    # Both say yes at the same moment: one booking; the other is told it has gone.
    codes = {r.pk: OfferInvitation.objects.get(referral=r).code for r in (first, second)}
    threads = [threading.Thread(target=reply, args=(fake_twilio, app, r.patient, f"Yes {codes[r.pk]}")) for r in (second, first)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    replies = wait_until(lambda: list(InboundMessage.objects.order_by("id")) if InboundMessage.objects.count() == 2 else None,
                         what="both replies to be stored")
    assert sorted(r.handling for r in replies) == [Handling.OFFER_GONE, Handling.OFFER_TAKEN]
    taken = next(r for r in replies if r.handling == Handling.OFFER_TAKEN)
    gone = next(r for r in replies if r.handling == Handling.OFFER_GONE)
    assert Appointment.objects.not_cancelled().filter(start=START, practitioner=pwp).count() == 1
    assert taken.appointment.referral.patient == taken.patient
    slot.refresh_from_db()
    assert slot.status == OfferedSlot.Status.FILLED and slot.filled_by == taken.appointment
    statuses = {i.patient_id: i.status for i in OfferInvitation.objects.all()}
    assert statuses[taken.patient_id] == OfferInvitation.Status.ACCEPTED
    assert statuses[gone.patient_id] in (OfferInvitation.Status.GONE, OfferInvitation.Status.WITHDRAWN)
    assert not OfferInvitation.objects.filter(referral=third).exists()  # no second wave for a filled slot

    clock.move_to(BOOKED_AT + dt.timedelta(minutes=2))
    run_dispatch()
    gone_text = OutboundMessage.objects.get(patient=gone.patient, kind=OutboundMessage.SLOT_OFFER_GONE)
    wait_for_status(gone_text, S.DELIVERED)
    assert "sorry, that slot has just gone" in sent_to(fake_twilio, gone.patient.mobile_phone)[-1]["body"]
    confirmation = OutboundMessage.objects.get(appointment=taken.appointment, kind=OutboundMessage.CONFIRMATION)
    wait_for_status(confirmation, S.DELIVERED)

    for referral in (first, second, third):
        number = referral.patient.mobile_phone
        assert number not in worker.output() and number not in caplog.text
    assert "YES" not in worker.output()


def test_a_wave_released_in_quiet_hours_waits_for_the_morning_and_an_expired_offer_books_nothing(
    clock, start_worker, fake_twilio, app, pwp, admin_user
):
    give_pattern(pwp)
    offers_on()
    clock.move_to(london(2026, 6, 8, 20, 30))  # quiet hours (20:00-08:00)
    booked = book(make_referral(pwp), pwp, START, actor=admin_user)
    patient = waiting(pwp, dt.date(2026, 1, 5)).patient
    start_worker()
    cancel_appointment(appointment=booked, cancelled_by="patient", reason="Working", actor=admin_user)
    slot = wait_until(lambda: OfferedSlot.objects.first(), what="the slot to be released")
    assert run_advance()["texted"] == 0
    assert not OfferInvitation.objects.exists() and run_dispatch() == 0

    clock.move_to(london(2026, 6, 9, 8, 0))
    assert run_advance()["texted"] == 1
    [text] = offer_texts(patient)
    assert london(2026, 6, 9, 8, 0) <= text.due_at < london(2026, 6, 9, 8, 1)
    clock.move_to(london(2026, 6, 9, 8, 1))  # each process's clock ticks from its own reading of a move
    assert run_dispatch() == 1
    wait_for_status(text, S.DELIVERED)
    code = OfferInvitation.objects.get().code

    # The offer expired at 14:00 the day before the slot (24 hours' minimum notice): a later yes books nothing.
    clock.move_to(london(2026, 6, 9, 14, 5))
    assert run_advance()["expired"] == 1
    reply(fake_twilio, app, patient, f"YES {code}")
    answer = wait_until(lambda: InboundMessage.objects.first(), what="the reply to be stored")
    assert answer.handling == Handling.OFFER_GONE
    slot.refresh_from_db()
    assert slot.status == OfferedSlot.Status.EXPIRED
    assert not Appointment.objects.not_cancelled().filter(start=START).exists()
    clock.move_to(london(2026, 6, 9, 14, 6))
    run_dispatch()
    wait_for_status(OutboundMessage.objects.get(kind=OutboundMessage.SLOT_OFFER_GONE), S.DELIVERED)


def test_a_later_appointment_is_moved_into_the_slot_and_its_own_time_is_offered_in_turn(
    clock, start_worker, fake_twilio, app, pwp, admin_user
):
    give_pattern(pwp)
    offers_on()
    booked = book(make_referral(pwp), pwp, START, actor=admin_user)  # Wednesday 10 June
    later_time = london(2026, 6, 22, 10)  # a Monday
    later = book(make_referral(pwp, received_on=dt.date(2026, 5, 1)), pwp, later_time, actor=admin_user)
    set_wants_sooner(appointment=later, wants_sooner=True, actor=admin_user)
    # Waits longer, but only takes Monday calls: not offered the Wednesday, offered the Monday freed next.
    monday_only = waiting(pwp, dt.date(2026, 1, 5), preferred_days=[0])
    start_worker()

    cancel_appointment(appointment=booked, cancelled_by="patient", reason="Away", actor=admin_user)
    invitation = wait_until(lambda: OfferInvitation.objects.first(), what="the first wave")
    assert invitation.later_appointment == later
    run_dispatch()
    wait_for_status(offer_texts(later.referral.patient)[0], S.DELIVERED)

    clock.move_to(BOOKED_AT + dt.timedelta(minutes=5))
    reply(fake_twilio, app, later.referral.patient, f"YES{invitation.code}")
    moved = wait_until(lambda: Rearrangement.objects.filter(original=later).first(), what="the move")
    assert moved.asked_by == "patient" and moved.replacement.start == START
    # The freed Monday is offered in turn, by the queue, to the patient who only takes Mondays.
    turn = wait_until(lambda: OfferInvitation.objects.filter(referral=monday_only).first(), what="the freed time's wave")
    assert turn.slot.start == later_time and turn.slot.released_by == OfferedSlot.ReleasedBy.MOVED
    clock.move_to(BOOKED_AT + dt.timedelta(minutes=6))
    run_dispatch()
    wait_for_status(offer_texts(monday_only.patient)[0], S.DELIVERED)
    assert "Monday 22 June at 10am" in sent_to(fake_twilio, monday_only.patient.mobile_phone)[-1]["body"]
