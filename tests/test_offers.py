"""Sooner-slot offers: a slot released with notice is texted to the right patients in waves, the first
"YES <code>" books it, the rest are told it has gone, and nothing is booked after it expires."""

import datetime as dt

import pytest
from django.core.exceptions import ValidationError

from scheduling.audit import AuditEntry
from scheduling.booking.models import Appointment, AvailabilityException, Rearrangement
from scheduling.booking.services import (
    add_availability_exception, cancel_appointment, set_wants_sooner, withdraw_availability_exception,
)
from scheduling.caseload.services import record_sms_opt_out
from scheduling.offers import selectors, services
from scheduling.offers.models import OfferedSlot, OfferInvitation
from scheduling.reminders import content
from scheduling.reminders.models import InboundMessage, OutboundMessage
from scheduling.reminders.replies import meaning_of, offer_code_of, offer_decline_code_of
from scheduling.worklist.models import AdminTask
from tests.booking_helpers import book
from tests.factories import london, make_referral
from tests.offer_helpers import give_pattern, offers_on, reply, waiting

NOW = london(2026, 6, 1, 9)  # Monday
START = london(2026, 6, 10, 14)  # Wednesday 10 June, 14:00
Slot = OfferedSlot.Status
Inv = OfferInvitation.Status
Handling = InboundMessage.Handling


@pytest.fixture
def world(pwp, admin_user, freeze):
    freeze(NOW)
    give_pattern(pwp)
    offers_on()
    booked = book(make_referral(pwp, received_on=dt.date(2026, 5, 1)), pwp, START, actor=admin_user)
    queue = [waiting(pwp, dt.date(2026, 1, day)) for day in (10, 20, 5, 25, 15)]
    # Longest wait first: received 5, 10, 15, 20, 25 January.
    queue.sort(key=lambda r: r.received_on)
    return {"booked": booked, "queue": queue}


def release(world, admin_user, *, by="patient"):
    cancel_appointment(appointment=world["booked"], cancelled_by=by, reason="Away", actor=admin_user)
    return OfferedSlot.objects.filter(status=Slot.OPEN).first()


def offer_texts():
    return OutboundMessage.objects.filter(kind=OutboundMessage.SLOT_OFFER).order_by("id")


def test_it_offers_a_slot_cancelled_with_notice_to_the_longest_waiting_referrals_first(world, admin_user):
    slot = release(world, admin_user)
    assert slot.start == START and slot.duration_minutes == 60 and slot.released_by == OfferedSlot.ReleasedBy.CANCELLED
    assert slot.expires_at == START - dt.timedelta(hours=24)
    counts = services.advance_offers()
    assert counts["texted"] == 3
    invited = [i.referral for i in OfferInvitation.objects.order_by("id")]
    assert invited == world["queue"][:3]
    texts = list(offer_texts())
    assert [t.status for t in texts] == [OutboundMessage.Status.SCHEDULED] * 3
    for invitation, text in zip(OfferInvitation.objects.order_by("id"), texts):
        assert f"reply YES {invitation.code}" in text.body
        assert "First come, first served" in text.body and "Wednesday 10 June at 2pm" in text.body
        assert "2pm on Tuesday" in text.body  # the offer's deadline, 24 hours before
        assert content.clinical_words_in(text.body) == [] and "STOP" in text.body
    assert AuditEntry.objects.filter(subject_type=AuditEntry.Subject.OFFER_INVITATION).count() == 3


def test_it_offers_nothing_when_offers_are_off_at_short_notice_or_when_the_service_cancels(world, admin_user, freeze):
    offers_on(enabled=False)
    assert release(world, admin_user) is None
    offers_on()
    pwp = world["booked"].practitioner
    offers_on(minimum_notice_hours=2)
    other = book(make_referral(pwp), pwp, london(2026, 6, 1, 16))
    cancel_appointment(appointment=other, cancelled_by="patient", reason="Ill")  # 7 hours: under the 24-hour threshold
    late = book(make_referral(pwp), pwp, london(2026, 6, 11, 10))
    cancel_appointment(appointment=late, cancelled_by="service", reason="PWP on a course")
    assert not OfferedSlot.objects.exists()


def test_it_passes_over_patients_who_cannot_be_texted_or_prefer_other_days(world, admin_user):
    first, second, third, fourth, fifth = world["queue"]
    record_sms_opt_out(patient=first.patient, reason="STOP")
    second.patient.sms_consent = False
    second.patient.save()
    third.patient.preferred_days = [0, 1]  # Mon, Tue only: the slot is a Wednesday
    third.patient.save()
    fourth.patient.preferred_times = ["afternoon"]
    fourth.patient.save()
    release(world, admin_user)
    services.advance_offers()
    assert [i.referral for i in OfferInvitation.objects.order_by("id")] == [fourth, fifth]


def test_it_books_the_first_yes_withdraws_the_other_offers_and_tells_a_second_yes_it_has_gone(world, admin_user, freeze):
    release(world, admin_user)
    services.advance_offers()
    first, second, third = OfferInvitation.objects.order_by("id")
    freeze(NOW + dt.timedelta(minutes=5))
    taken = reply(second.patient, f"yes {second.code}")
    assert taken.meaning == InboundMessage.Meaning.OFFER_REPLY and taken.handling == Handling.OFFER_TAKEN
    appointment = taken.appointment
    assert appointment.referral == second.referral and appointment.start == START and appointment.appointment_type == "assessment"
    slot = OfferedSlot.objects.get()
    assert slot.status == Slot.FILLED and slot.filled_by == appointment
    assert [i.status for i in OfferInvitation.objects.order_by("id")] == [Inv.WITHDRAWN, Inv.ACCEPTED, Inv.WITHDRAWN]
    # The withdrawn offers' texts not yet sent are cancelled; the taker is confirmed by the booking's own text.
    assert OutboundMessage.objects.get(pk=first.message_id).status == OutboundMessage.Status.CANCELLED
    assert OutboundMessage.objects.filter(appointment=appointment, kind=OutboundMessage.CONFIRMATION).exists()

    late = reply(first.patient, f"YES{first.code}")
    assert late.handling == Handling.OFFER_GONE and late.appointment is None
    gone = OutboundMessage.objects.get(patient=first.patient, kind=OutboundMessage.SLOT_OFFER_GONE)
    assert "sorry, that slot has just gone" in gone.body
    assert Appointment.objects.filter(start=START).not_cancelled().count() == 1


def test_a_second_yes_from_the_patient_who_took_it_books_nothing_more_and_sends_no_gone_text(world, admin_user, freeze):
    release(world, admin_user)
    services.advance_offers()
    taker = OfferInvitation.objects.order_by("id").first()
    freeze(NOW + dt.timedelta(minutes=5))
    booked = reply(taker.patient, f"YES {taker.code}").appointment
    again = reply(taker.patient, f"yes {taker.code} thanks")
    assert again.handling == Handling.OFFER_TAKEN and again.appointment == booked
    assert not OutboundMessage.objects.filter(patient=taker.patient, kind=OutboundMessage.SLOT_OFFER_GONE).exists()
    assert Appointment.objects.filter(referral=taker.referral).count() == 1


def test_it_answers_a_code_that_matches_nothing_with_the_gone_text_not_a_confirmation(world, admin_user):
    patient = world["booked"].referral.patient
    answer = reply(patient, "YES 4821")
    assert answer.handling == Handling.OFFER_GONE
    world["booked"].refresh_from_db()
    assert world["booked"].confirmed_at is None
    assert OutboundMessage.objects.filter(patient=patient, kind=OutboundMessage.SLOT_OFFER_GONE).count() == 1
    assert meaning_of("YES") == InboundMessage.Meaning.CONFIRM  # a plain yes still confirms


@pytest.mark.parametrize("body", ["YES 4821", "yes4821", "Yes, 4821 thanks", "Y-4821", " y 4821"])
def test_it_reads_each_way_of_writing_yes_and_a_code(body):
    assert offer_code_of(body) == "4821"


@pytest.mark.parametrize("body", ["YES", "YES 48211", "4821", "NO 4821", "yesterday 4821"])
def test_it_reads_no_code_in_other_replies(body):
    assert offer_code_of(body) == ""


@pytest.mark.parametrize("body", ["NO 4821", "no4821", "N-4821", "No, 4821 sorry"])
def test_it_reads_each_way_of_writing_no_and_a_code(body):
    assert offer_decline_code_of(body) == "4821" and offer_code_of(body) == ""
    assert meaning_of(body) == InboundMessage.Meaning.OFFER_REPLY


def test_when_the_whole_wave_says_no_the_next_wave_goes_at_once(world, admin_user, freeze):
    offers_on(wave_size=2, minutes_between_waves=30)
    release(world, admin_user)
    services.advance_offers()
    first, second = OfferInvitation.objects.order_by("id")
    freeze(NOW + dt.timedelta(minutes=2))
    answer = reply(first.patient, f"NO {first.code}")
    assert answer.meaning == InboundMessage.Meaning.OFFER_REPLY and answer.handling == Handling.APPLIED
    assert services.advance_offers()["texted"] == 0  # the other patient may still say yes
    answer = reply(second.patient, "No thanks")  # a bare no straight after the offer answers the offer
    assert answer.handling == Handling.APPLIED and answer.meaning == InboundMessage.Meaning.REARRANGE
    assert [i.status for i in OfferInvitation.objects.order_by("id")] == [Inv.DECLINED, Inv.DECLINED]
    assert not AdminTask.objects.filter(kind=AdminTask.Kind.REARRANGE_REQUEST).exists()
    assert AuditEntry.objects.filter(subject_type=AuditEntry.Subject.OFFER_INVITATION, new_value=Inv.DECLINED).count() == 2
    assert services.advance_offers()["texted"] == 2  # 28 minutes before the interval was up
    assert OfferedSlot.objects.get().waves_sent == 2


def test_a_bare_no_to_a_reminder_still_asks_to_rearrange_though_an_offer_was_answered_before(world, admin_user, pwp):
    release(world, admin_user)
    services.advance_offers()
    invitation = OfferInvitation.objects.order_by("id").first()
    reply(invitation.patient, f"NO {invitation.code}")
    later = book(invitation.referral, pwp, london(2026, 6, 24, 10), actor=admin_user)
    answer = reply(invitation.patient, "NO")  # no open offer: the usual reading
    assert answer.meaning == InboundMessage.Meaning.REARRANGE and answer.handling == Handling.FOR_STAFF
    assert AdminTask.objects.filter(kind=AdminTask.Kind.REARRANGE_REQUEST, appointment=later).exists()


def test_it_books_nothing_for_an_offer_that_has_expired(world, admin_user, freeze):
    release(world, admin_user)
    services.advance_offers()
    invitation = OfferInvitation.objects.order_by("id").first()
    freeze(START - dt.timedelta(hours=23))
    assert services.advance_offers()["expired"] == 1
    assert OfferedSlot.objects.get().status == Slot.EXPIRED
    assert set(OfferInvitation.objects.values_list("status", flat=True)) == {Inv.EXPIRED}
    answer = reply(invitation.patient, f"YES {invitation.code}")
    assert answer.handling == Handling.OFFER_GONE
    assert not Appointment.objects.filter(referral=invitation.referral).exists()


def test_it_sends_the_next_wave_after_the_interval_and_stops_when_nobody_is_left(world, admin_user, freeze):
    offers_on(wave_size=2, minutes_between_waves=30)
    release(world, admin_user)
    assert services.advance_offers()["texted"] == 2
    freeze(NOW + dt.timedelta(minutes=29))
    assert services.advance_offers()["texted"] == 0
    freeze(NOW + dt.timedelta(minutes=31))
    assert services.advance_offers()["texted"] == 2
    freeze(NOW + dt.timedelta(minutes=62))
    assert services.advance_offers()["texted"] == 1
    freeze(NOW + dt.timedelta(minutes=93))
    assert services.advance_offers()["texted"] == 0
    slot = OfferedSlot.objects.get()
    assert slot.waves_sent == 3 and slot.next_wave_at is None and slot.status == Slot.OPEN
    assert list(OfferInvitation.objects.values_list("wave", flat=True).order_by("id")) == [1, 1, 2, 2, 3]


def test_it_sends_no_further_wave_once_offers_are_turned_off(world, admin_user, freeze):
    offers_on(wave_size=1)
    release(world, admin_user)
    assert services.advance_offers()["texted"] == 1
    offers_on(enabled=False)
    freeze(NOW + dt.timedelta(minutes=31))
    assert services.advance_offers()["texted"] == 0
    assert OfferedSlot.objects.get().status == Slot.OPEN  # the texted patient may still take it until it expires


def test_it_holds_a_wave_released_in_quiet_hours_until_they_end(world, admin_user, freeze):
    freeze(london(2026, 6, 1, 21, 30))
    slot = release(world, admin_user)
    assert services.advance_offers()["texted"] == 0
    freeze(london(2026, 6, 2, 7, 59))
    assert services.advance_offers()["texted"] == 0
    freeze(london(2026, 6, 2, 8, 0))
    assert services.advance_offers()["texted"] == 3
    assert all(t.due_at == london(2026, 6, 2, 8, 0) for t in offer_texts())
    assert slot.pk == OfferedSlot.objects.get().pk


def test_it_moves_a_later_appointment_into_the_slot_and_offers_that_one_in_turn(world, admin_user, pwp, freeze):
    for referral in world["queue"]:
        record_sms_opt_out(patient=referral.patient, reason="STOP")
    later = book(make_referral(pwp, received_on=dt.date(2026, 3, 1)), pwp, london(2026, 6, 24, 10), actor=admin_user)
    set_wants_sooner(appointment=later, wants_sooner=True, actor=admin_user)
    assert AuditEntry.objects.filter(appointment=later, field="wants_sooner", new_value="true").exists()
    release(world, admin_user)
    services.advance_offers()
    [invitation] = OfferInvitation.objects.all()
    assert invitation.group == OfferInvitation.Group.SOONER and invitation.later_appointment == later
    freeze(NOW + dt.timedelta(minutes=3))
    answer = reply(later.referral.patient, f"YES {invitation.code}")
    assert answer.handling == Handling.OFFER_TAKEN
    moved = Rearrangement.objects.get(original=later)
    assert moved.asked_by == "patient" and moved.replacement.start == START and moved.notice_given > dt.timedelta(days=20)
    freed = OfferedSlot.objects.get(status=Slot.OPEN)
    assert freed.start == london(2026, 6, 24, 10) and freed.released_by == OfferedSlot.ReleasedBy.MOVED


def test_staff_can_stop_a_wave_and_later_replies_get_the_gone_text(world, admin_user):
    slot = release(world, admin_user)
    services.advance_offers()
    services.stop_offer(slot=slot, actor=admin_user)
    slot.refresh_from_db()
    assert slot.status == Slot.STOPPED and slot.closed_by == admin_user
    assert set(OfferInvitation.objects.values_list("status", flat=True)) == {Inv.WITHDRAWN}
    assert AuditEntry.objects.filter(subject_type=AuditEntry.Subject.OFFERED_SLOT, new_value=Slot.STOPPED, actor=admin_user).exists()
    with pytest.raises(ValidationError):
        services.stop_offer(slot=slot, actor=admin_user)
    invitation = OfferInvitation.objects.first()
    assert reply(invitation.patient, f"YES {invitation.code}").handling == Handling.OFFER_GONE


def test_it_offers_the_first_free_slots_when_an_absence_is_withdrawn(world, pwp, admin_user):
    absence = add_availability_exception(practitioner=pwp, kind=AvailabilityException.Kind.TRAINING,
                                         starts_at=london(2026, 6, 15, 9), ends_at=london(2026, 6, 15, 17), actor=admin_user)
    assert not OfferedSlot.objects.exists()
    withdraw_availability_exception(exception=absence, actor=admin_user)
    slots = list(OfferedSlot.objects.order_by("start"))
    assert len(slots) == services.AVAILABILITY_SLOT_CAP
    assert slots[0].start == london(2026, 6, 15, 9) and all(s.released_by == "availability" for s in slots)


def test_it_finds_candidates_in_a_few_queries_whatever_the_queue(world, admin_user, django_assert_max_num_queries, pwp):
    for day in range(1, 28):
        waiting(pwp, dt.date(2025, 12, day))
    slot = release(world, admin_user)
    with django_assert_max_num_queries(5):
        found = selectors.offer_candidates(slot=slot, limit=3)
    assert len(found) == 3 and found[0].referral.received_on == dt.date(2025, 12, 1)


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_two_acceptances_at_the_same_second_give_one_booking_and_one_gone_text():
    import threading

    from django.db import connection
    from django.utils import timezone

    from scheduling import roles
    from tests.factories import make_user

    if connection.vendor != "postgresql":
        pytest.skip("Real concurrent connections are tested on PostgreSQL")
    pwp = make_user("pwp.offer.race", roles.PWP)
    give_pattern(pwp, weekdays=range(7), blocks=((dt.time(0), dt.time(23, 59)),))
    offers_on()
    takers = [waiting(pwp, dt.date(2026, 1, day)) for day in (1, 2)]
    start = (timezone.now() + dt.timedelta(days=5)).replace(minute=0, second=0, microsecond=0)
    slot = services.release_slot(practitioner=pwp, start=start, duration_minutes=60, appointment_type="assessment",
                                 released_by=OfferedSlot.ReleasedBy.CANCELLED)
    services.advance_offers()
    invitations = {i.referral_id: i for i in OfferInvitation.objects.filter(slot=slot)}
    at = timezone.now()
    gate = threading.Barrier(2, timeout=20)
    answers = []

    def accept(referral):
        try:
            gate.wait()
            answers.append(reply(referral.patient, f"YES {invitations[referral.pk].code}", at=at).handling)
        finally:
            connection.close()

    threads = [threading.Thread(target=accept, args=(r,)) for r in takers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(answers) == [Handling.OFFER_GONE, Handling.OFFER_TAKEN]
    assert Appointment.objects.filter(practitioner=pwp, start=start).count() == 1
    assert OutboundMessage.objects.filter(kind=OutboundMessage.SLOT_OFFER_GONE).count() == 1
    assert OfferedSlot.objects.get(pk=slot.pk).status == Slot.FILLED
