"""Reads for the self-service page: the appointment a link now leads to, what the page says about it, what
cancelling now would mean, and the next free times the patient may pick."""

import datetime as dt
from dataclasses import dataclass

from django.utils import timezone

from scheduling.booking.models import Appointment, BookingSettings, Rearrangement
from scheduling.booking.selectors import Slot, earliest_bookable, find_free_slots
from scheduling.booking import rules
from scheduling.caseload.models import ServiceSettings
from scheduling.codes import AttendanceOutcome
from scheduling.offers.models import OfferedSlot, OfferInvitation
from scheduling.patient_links import PatientLink

# How many times the page offers to move to: enough to choose from, few enough for a phone screen.
SLOTS_OFFERED = 6


def live_appointment(link: PatientLink) -> Appointment:
    """The appointment the link leads to now: the one it was sent for, or, if that was moved (by the patient
    here or by staff), the time it was moved to. Moves stay within the referral, so within the patient."""
    appointment = link.appointment
    for _ in range(50):  # a chain of moves is short; the bound only guards against a loop in bad data
        moved = Rearrangement.objects.select_related("replacement__referral").filter(original=appointment).first()
        if moved is None:
            break
        appointment = moved.replacement
    return appointment


def when_words(moment: dt.datetime) -> str:
    """'Tuesday 3 March at 2:30pm', in UK time: the words the texts use."""
    local = timezone.localtime(moment)
    hour = local.hour % 12 or 12
    minutes = f":{local.minute:02d}" if local.minute else ""
    return f"{local:%A} {local.day} {local:%B} at {hour}{minutes}{'am' if local.hour < 12 else 'pm'}"


@dataclass(frozen=True)
class PageState:
    appointment: Appointment
    when: str
    service_phone: str
    confirmed: bool
    cancelled: bool
    over: bool  # started, or has an outcome: nothing to do here any more
    practitioner_first_name: str

    @property
    def can_act(self) -> bool:
        return not (self.cancelled or self.over)


def page_state(link: PatientLink, *, now=None) -> PageState:
    now = now or timezone.now()
    appointment = live_appointment(link)
    return PageState(
        appointment=appointment,
        when=when_words(appointment.start),
        service_phone=ServiceSettings.current().service_phone,
        confirmed=appointment.confirmed_at is not None,
        cancelled=appointment.is_cancelled,
        over=appointment.start <= now or (
            appointment.outcome != AttendanceOutcome.NOT_APPLICABLE and not appointment.is_cancelled
        ),
        practitioner_first_name=appointment.practitioner.first_name,
    )


@dataclass(frozen=True)
class Notice:
    hours_given: float
    threshold_hours: int
    late: bool


def notice_if_cancelled_now(appointment: Appointment, *, now=None) -> Notice:
    """Whether cancelling now would be late, by booking's one rule (booking.rules.is_short_notice), which the
    cancel service and the reports apply too."""
    service_settings = ServiceSettings.current()
    notice = appointment.start - (now or timezone.now())
    return Notice(
        hours_given=notice.total_seconds() / 3600,
        threshold_hours=service_settings.late_cancellation_notice_hours,
        late=rules.is_short_notice(notice, service_settings=service_settings),
    )


def times_to_move_to(appointment: Appointment, *, now=None) -> list[Slot]:
    """The slot finder's next free times with the same practitioner, as long as this appointment, within the
    patient's preferred days and times, from the service's booking lead time on; never its own time."""
    patient = appointment.referral.patient
    return find_free_slots(
        practitioner_ids=[appointment.practitioner_id],
        duration_minutes=appointment.duration_minutes,
        earliest=earliest_bookable(now=now),
        weeks=BookingSettings.current().search_weeks,
        preferred_days=patient.preferred_days,
        preferred_times=patient.preferred_times,
        limit=SLOTS_OFFERED,
        ignore_appointment_ids=[appointment.pk],
        exclude_slots=[(appointment.practitioner_id, appointment.start)],
    )


@dataclass(frozen=True)
class OfferState:
    """What an offer link's page shows: the time on offer, and whether it can still be taken, this patient took
    it (`booked`, the appointment), or it has gone (taken by someone else, stopped, expired)."""

    invitation: OfferInvitation
    when: str
    minutes: int
    service_phone: str
    can_take: bool
    booked: Appointment | None


def offer_state(link: PatientLink, *, now=None) -> OfferState:
    now = now or timezone.now()
    invitation = OfferInvitation.objects.select_related("slot__filled_by").get(pk=link.offer_id)
    slot = invitation.slot
    booked = slot.filled_by if invitation.status == OfferInvitation.Status.ACCEPTED else None
    minutes = BookingSettings.current().minutes_for(slot.appointment_type)
    if invitation.later_appointment_id:
        minutes = Appointment.objects.filter(pk=invitation.later_appointment_id).values_list("duration_minutes", flat=True).first() or minutes
    return OfferState(
        invitation=invitation,
        when=when_words((booked or slot).start),
        minutes=booked.duration_minutes if booked else minutes,
        service_phone=ServiceSettings.current().service_phone,
        can_take=(invitation.status == OfferInvitation.Status.SENT and slot.status == OfferedSlot.Status.OPEN
                  and now < slot.expires_at),
        booked=booked,
    )
