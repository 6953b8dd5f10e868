"""Reads for sooner-slot offers: who to text about a freed slot (benchmarked: a few queries whatever the
number of open referrals), and what the worklist and booking pages show."""

import datetime as dt
from dataclasses import dataclass

from django.db.models import Exists, OuterRef, Q

from scheduling.booking.models import Appointment, BookingSettings
from scheduling.booking.selectors import find_free_slots, preference_windows, team_practitioner_ids
from scheduling.calls.models import WrongNumberMark
from scheduling.caseload.models import Patient, Referral
from scheduling.codes import AppointmentType, AttendanceOutcome
from scheduling.offers.models import OfferedSlot, OfferInvitation, OfferSettings
from scheduling.reminders.rules import sms_refusal_reason
from scheduling.uktime import local_date

Group = OfferInvitation.Group
# Candidates read per query: enough that patients' day and time preferences rarely need a second read.
CHUNK = 50


@dataclass(frozen=True)
class Candidate:
    referral: Referral
    patient: Patient
    group: str
    later_appointment: Appointment | None = None


def _textable(prefix: str) -> Q:
    """SMS consent, a mobile, not opted out, and no call found the number wrong (the outbox's own rule,
    sms_refusal_reason, is applied to each candidate as well; this lets the database skip the rest)."""
    p = f"{prefix}patient__"
    return Q(**{f"{p}sms_consent": True, f"{p}sms_opted_out": False, f"{p}mobile_is_mobile": True}) & ~Q(
        **{f"{p}mobile_phone": ""}
    )


def _scope(slot: OfferedSlot, offer_settings: OfferSettings, prefix: str = "") -> Q:
    """The practitioner's caseload, or their team's, plus referrals nobody is assigned to yet (booking an
    assessment assigns them to its practitioner)."""
    field = f"{prefix}assigned_practitioner"
    if offer_settings.scope == OfferSettings.Scope.TEAM:
        mine = Q(**{f"{field}_id__in": team_practitioner_ids(slot.practitioner)})
    else:
        mine = Q(**{f"{field}_id": slot.practitioner_id})
    return mine | Q(**{f"{field}__isnull": True})


def _fits_preferences(patient: Patient, slot: OfferedSlot, end: dt.datetime) -> bool:
    windows = preference_windows(local_date(slot.start), patient.preferred_days, patient.preferred_times)
    if windows is None:
        return True
    return any(ws <= slot.start and end <= we for ws, we in windows)


def _not_busy_then(slot: OfferedSlot, end: dt.datetime, patient_ref: str) -> Q:
    busy = Appointment.objects.not_cancelled().filter(
        referral__patient_id=OuterRef(patient_ref), start__lt=end, end__gt=slot.start
    )
    return ~Exists(busy)


def _not_already_offered(slot: OfferedSlot, referral_ref: str) -> Q:
    # Not invited to this slot before (any wave), nor holding an open offer of another one, nor the
    # referral whose cancellation released it.
    released = Q()
    if slot.released_appointment_id:
        released = ~Q(**{f"{referral_ref}__in": Appointment.objects.filter(pk=slot.released_appointment_id).values("referral_id")})
    return released & ~Exists(
        OfferInvitation.objects.filter(referral_id=OuterRef(referral_ref)).filter(
            Q(slot_id=slot.pk) | Q(status=OfferInvitation.Status.SENT)
        )
    )


def _no_wrong_number(patient_ref: str) -> Q:
    return ~Exists(WrongNumberMark.objects.in_force().filter(patient_id=OuterRef(patient_ref)))


def offer_candidates(*, slot: OfferedSlot, limit: int, offer_settings: OfferSettings | None = None,
                     booking_settings: BookingSettings | None = None) -> list[Candidate]:
    """Up to `limit` patients to text about `slot`, best first: referrals waiting for an initial assessment
    (longest wait first), then patients booked later than the slot for the same type who asked for sooner,
    then courses waiting to start (assessed, no treatment booked). Each fits the slot's type and length and
    the patient's preferred days and times, may be texted, is free then, and was not offered it before."""
    offer_settings = offer_settings or OfferSettings.read()
    booking_settings = booking_settings or BookingSettings.current()
    found: list[Candidate] = []
    for group, rows in _groups(slot, offer_settings, booking_settings):
        offset = 0
        while len(found) < limit:
            chunk = list(rows[offset:offset + CHUNK])
            for candidate in chunk:
                later = candidate if isinstance(candidate, Appointment) else None
                referral = later.referral if later else candidate
                patient = referral.patient
                length = later.duration_minutes if later else booking_settings.minutes_for(slot.appointment_type)
                end = slot.start + dt.timedelta(minutes=length)
                if _fits_preferences(patient, slot, end) and not sms_refusal_reason(patient, wrong_number=False):
                    found.append(Candidate(referral=referral, patient=patient, group=group, later_appointment=later))
                    if len(found) >= limit:
                        break
            if len(chunk) < CHUNK:
                break
            offset += CHUNK
        if len(found) >= limit:
            break
    return found


def _groups(slot: OfferedSlot, offer_settings: OfferSettings, booking_settings: BookingSettings):
    """(group, queryset) in the order they are offered; each queryset is read lazily, a chunk at a time."""
    length = booking_settings.minutes_for(slot.appointment_type)
    if length > slot.duration_minutes:
        return
    end = slot.start + dt.timedelta(minutes=length)
    Status = Referral.Status
    if slot.appointment_type == AppointmentType.ASSESSMENT:
        yield Group.WAITING, (
            Referral.objects.filter(status__in=[Status.AWAITING_CONTACT, Status.CONTACTED])
            .filter(_scope(slot, offer_settings), _textable(""), _not_already_offered(slot, "pk"),
                    _no_wrong_number("patient_id"), _not_busy_then(slot, end, "patient_id"))
            .select_related("patient").order_by("received_on", "id")
        )
    yield Group.SOONER, (
        Appointment.objects.filter(
            appointment_type=slot.appointment_type, outcome=AttendanceOutcome.NOT_APPLICABLE, wants_sooner=True,
            start__gt=slot.start, duration_minutes__lte=slot.duration_minutes, referral__status__in=Referral.OPEN_STATUSES,
        )
        .filter(_scope(slot, offer_settings, "referral__"), _textable("referral__"),
                _not_already_offered(slot, "referral_id"), _no_wrong_number("referral__patient_id"),
                _not_busy_then(slot, end, "referral__patient_id"))
        .select_related("referral__patient").order_by("referral__received_on", "referral_id", "start")
    )
    if slot.appointment_type == AppointmentType.TREATMENT:
        treatment_booked = Appointment.objects.not_cancelled().filter(
            referral_id=OuterRef("pk"), appointment_type=AppointmentType.TREATMENT
        )
        yield Group.COURSE, (
            Referral.objects.filter(status=Status.ASSESSED)
            .filter(_scope(slot, offer_settings), _textable(""), ~Exists(treatment_booked),
                    _not_already_offered(slot, "pk"), _no_wrong_number("patient_id"),
                    _not_busy_then(slot, end, "patient_id"))
            .select_related("patient").order_by("received_on", "id")
        )


def free_slots_between(*, practitioner, earliest: dt.datetime, ends_at: dt.datetime, minutes: int, limit: int):
    """(start, minutes) of the first `limit` free slots of the practitioner's diary in [earliest, ends_at)."""
    weeks = max(1, -(-(ends_at - earliest).days // 7))
    slots = find_free_slots(practitioner_ids=[practitioner.pk], duration_minutes=minutes, earliest=earliest, weeks=weeks,
                            limit=limit)
    return [(slot.start, minutes) for slot in slots if slot.end <= ends_at]


# --- Pages -------------------------------------------------------------------------------------

def offers_for_page(*, practitioner_ids=None, referral=None, since=None, limit: int = 30) -> list[OfferedSlot]:
    """Offered slots, newest first, with their invitations counted: open ones and those closed since `since`."""
    slots = OfferedSlot.objects.select_related("practitioner", "filled_by__referral__patient").prefetch_related(
        "invitations__patient"
    )
    if practitioner_ids is not None:
        slots = slots.filter(practitioner_id__in=practitioner_ids)
    if referral is not None:
        slots = slots.filter(Q(invitations__referral=referral) | Q(released_appointment__referral=referral)).distinct()
    if since is not None:
        slots = slots.filter(Q(status=OfferedSlot.Status.OPEN) | Q(closed_at__gte=since))
    return list(slots.order_by("-created_at", "-id")[:limit])
