"""Writes for sooner-slot offers: releasing a slot, texting waves of candidates, taking an offer by
reply, withdrawing, expiring and stopping. Every status change is audited (scheduling/audit.py).

Texts go through the SMS outbox (reminders.services.queue_text), so its consent, wrong-number, quiet-hours
and delivery machinery applies. Booking goes through the booking services; their no-overlap constraint is
the last guard when two patients take the same slot at once."""

import datetime as dt
import logging
import secrets
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone
from django_q.tasks import async_task

from scheduling import patient_links
from scheduling.audit import log_action, save_and_log
from scheduling.booking.availability import round_up_to_grid
from scheduling.booking.models import Appointment, BookingSettings, Rearrangement
from scheduling.booking.services import SlotTaken, book_appointment, rearrange_appointment
from scheduling.codes import AppointmentType
from scheduling.offers import selectors
from scheduling.offers.models import OfferedSlot, OfferInvitation, OfferSettings
from scheduling.reminders import content
from scheduling.reminders.models import InboundMessage, OutboundMessage, SmsSettings
from scheduling.reminders.services import cancel_pending_messages, in_quiet_hours, queue_text
from scheduling.reminders.signals import OfferReplyAnswer
from scheduling.uktime import LONDON

logger = logging.getLogger(__name__)
SlotStatus = OfferedSlot.Status
InvitationStatus = OfferInvitation.Status
ADVANCE_TASK = "scheduling.offers.tasks.advance_offers"

# No service, condition or treatment named (a lock screen can be read by anyone); first come, first served.
OFFER_TEXT = (
    "Hi {first_name}, an earlier phone call is free: {day} {date} at {time}. First come, first served: "
    "to take it, reply YES {code} by {deadline}. Reply STOP to end texts."
)
# With the self-service link (OfferSettings.include_link): the page or the code, whichever comes first.
OFFER_TEXT_WITH_LINK = (
    "Hi {first_name}, an earlier phone call is free: {day} {date} at {time}. First come, first served: "
    "to take it, open {link} or reply YES {code} by {deadline}. Reply STOP to end texts."
)
GONE_TEXT = "Hi {first_name}, sorry, that slot has just gone. Nothing has changed for you. Reply STOP to end texts."
# Slots offered for one availability change, at most (the earliest free ones): a new working pattern would
# otherwise text dozens of patients at once.
AVAILABILITY_SLOT_CAP = 3


# --- Releasing a slot ------------------------------------------------------------------------------

def release_slot(*, practitioner, start, duration_minutes: int, appointment_type: str, released_by: str,
                 released_appointment=None, now=None) -> OfferedSlot | None:
    """Offer a time that came free, if offers are on: only the part at least the minimum notice ahead, and
    only if the appointment type still fits in it. Runs in the caller's transaction; the first wave is
    sent after it commits (by the queue, or the every-minute task if no worker took it). None if nothing
    is offered."""
    now = now or timezone.now()
    offer_settings = OfferSettings.read()
    if not offer_settings.enabled:
        return None
    notice = dt.timedelta(hours=offer_settings.minimum_notice_hours)
    end = start + dt.timedelta(minutes=duration_minutes)
    offered_start = max(start, round_up_to_grid(now + notice))
    minutes = int((end - offered_start).total_seconds() // 60)
    if minutes < BookingSettings.current().minutes_for(appointment_type):
        return None
    try:
        with transaction.atomic():
            slot = OfferedSlot.objects.create(
                practitioner=practitioner, start=offered_start, duration_minutes=minutes, appointment_type=appointment_type,
                released_by=released_by, released_appointment=released_appointment, created_at=now,
                expires_at=offered_start - notice, next_wave_at=now,
            )
    except IntegrityError:
        return None  # already on offer (one open offer per practitioner and start)
    log_action(subject=slot, actor=None, action="added", field="status", new=slot.status,
               reason=slot.get_released_by_display(), appointment=released_appointment)
    transaction.on_commit(lambda: async_task(ADVANCE_TASK, slot.pk))
    return slot


def release_for_cancellation(*, appointment, rearranged: bool, now=None) -> OfferedSlot | None:
    return release_slot(
        practitioner=appointment.practitioner, start=appointment.start, duration_minutes=appointment.duration_minutes,
        appointment_type=appointment.appointment_type, released_appointment=appointment, now=now,
        released_by=OfferedSlot.ReleasedBy.MOVED if rearranged else OfferedSlot.ReleasedBy.CANCELLED,
    )


def release_availability(*, practitioner, starts_at, ends_at, now=None) -> list[OfferedSlot]:
    """Time a practitioner made available: the earliest AVAILABILITY_SLOT_CAP free assessment slots in it
    (beyond the minimum notice), offered as assessments (the longest wait is for those)."""
    from_booking = selectors_free_slots(practitioner=practitioner, starts_at=starts_at, ends_at=ends_at, now=now)
    released = []
    for start, minutes in from_booking:
        slot = release_slot(practitioner=practitioner, start=start, duration_minutes=minutes,
                            appointment_type=AppointmentType.ASSESSMENT, released_by=OfferedSlot.ReleasedBy.AVAILABILITY,
                            now=now)
        if slot is not None:
            released.append(slot)
    return released


def selectors_free_slots(*, practitioner, starts_at, ends_at, now=None):
    """(start, minutes) of the first free assessment-length slots between starts_at and ends_at."""
    now = now or timezone.now()
    offer_settings = OfferSettings.read()
    if not offer_settings.enabled:
        return []
    minutes = BookingSettings.current().minutes_for(AppointmentType.ASSESSMENT)
    earliest = max(starts_at, now + dt.timedelta(hours=offer_settings.minimum_notice_hours))
    if earliest >= ends_at:
        return []
    return selectors.free_slots_between(
        practitioner=practitioner, earliest=earliest, ends_at=ends_at, minutes=minutes, limit=AVAILABILITY_SLOT_CAP
    )


# --- Waves -----------------------------------------------------------------------------------------

def _set_status(obj, status: str, *, actor=None, reason: str = "", at=None, via: str = "", appointment=None, **fields):
    old = obj.status
    obj.status = status
    for name, value in fields.items():
        setattr(obj, name, value)
    obj.save(update_fields=["status", *fields])
    referral = getattr(obj, "referral", None)
    log_action(subject=obj, actor=actor, field="status", old=old, new=status, reason=reason, at=at, referral=referral,
               via=via, appointment=appointment)


def _new_code(patient_id: int) -> str:
    taken = set(OfferInvitation.objects.filter(patient_id=patient_id, status=InvitationStatus.SENT).values_list("code", flat=True))
    while True:
        code = f"{1000 + secrets.randbelow(9000)}"
        if code not in taken:
            return code


def _deadline_words(moment: dt.datetime) -> str:
    local = moment.astimezone(LONDON)
    hour = local.hour % 12 or 12
    minutes = f":{local.minute:02d}" if local.minute else ""
    return f"{hour}{minutes}{'am' if local.hour < 12 else 'pm'} on {local:%A}"


def offer_text(*, slot: OfferedSlot, patient, code: str, link: str = "") -> str:
    values = content.appointment_placeholders(appointment=slot, patient=patient)
    values.update(code=code, deadline=_deadline_words(slot.expires_at), link=link)
    filled = {name: "" for name in content.PLACEHOLDERS} | values
    return content.to_gsm7((OFFER_TEXT_WITH_LINK if link else OFFER_TEXT).format(**filled)).strip()


def gone_text(patient) -> str:
    return content.to_gsm7(GONE_TEXT.format(first_name=patient.given_name)).strip()


def _still_free(slot: OfferedSlot) -> bool:
    end = slot.start + dt.timedelta(minutes=slot.duration_minutes)
    return not Appointment.objects.overlapping(practitioner=slot.practitioner, start=slot.start, end=end).exists()


def send_wave(*, slot: OfferedSlot, now=None) -> list[OfferInvitation]:
    """Text the next few candidates about an open slot (the caller holds its row lock)."""
    now = now or timezone.now()
    offer_settings = OfferSettings.read()
    if not _still_free(slot):
        # Booked again meanwhile (a move to a nearby time, staff booking it): nothing to offer.
        close_slot(slot=slot, status=SlotStatus.FILLED, reason="the time was booked by staff", now=now)
        return []
    candidates = selectors.offer_candidates(slot=slot, limit=offer_settings.wave_size, offer_settings=offer_settings)
    wave = slot.waves_sent + 1
    with_link = offer_settings.include_link and patient_links.links_available()
    invitations = []
    for candidate in candidates:
        code = _new_code(candidate.patient.pk)
        # Each text its own link; the token is made before the text, the link row after the invitation it names.
        token = patient_links.new_token()[0] if with_link else ""
        message = queue_text(
            patient=candidate.patient, kind=OutboundMessage.SLOT_OFFER, now=now, not_after=slot.expires_at,
            body=offer_text(slot=slot, patient=candidate.patient, code=code, link=patient_links.link_url(token) if token else ""),
        )
        invitation = OfferInvitation.objects.create(
            slot=slot, referral=candidate.referral, patient=candidate.patient, later_appointment=candidate.later_appointment,
            group=candidate.group, code=code, wave=wave, message=message, created_at=now,
            status=InvitationStatus.SENT if message.status == OutboundMessage.Status.SCHEDULED else InvitationStatus.EXPIRED,
            closed_at=None if message.status == OutboundMessage.Status.SCHEDULED else now,
        )
        log_action(subject=invitation, actor=None, action="added", field="status", new=invitation.status,
                   reason=f"wave {wave}: {invitation.get_group_display()}", referral=candidate.referral, at=now)
        if token and invitation.status == InvitationStatus.SENT:
            patient_links.issue_offer_link(invitation=invitation, token=token, expires_at=slot.expires_at, now=now)
        invitations.append(invitation)
    slot.waves_sent = wave if invitations else slot.waves_sent
    slot.next_wave_at = now + dt.timedelta(minutes=offer_settings.minutes_between_waves) if invitations else None
    slot.save(update_fields=["waves_sent", "next_wave_at"])
    logger.info("offers.wave slot_id=%s wave=%s texted=%s", slot.pk, wave, len(invitations))
    return invitations


def advance_offers(*, now=None, slot_id: int | None = None) -> dict[str, int]:
    """The every-minute task (and the one enqueued when a slot is released): expire what is past its
    time, then send the next wave of each due slot, unless it is quiet hours. Due slots are claimed with
    SELECT ... FOR UPDATE SKIP LOCKED, one at a time, so two workers never text the same wave."""
    now = now or timezone.now()
    counts = {"expired": expire_offers(now=now), "waves": 0, "texted": 0}
    if in_quiet_hours(now, SmsSettings.current()) or not OfferSettings.read().enabled:
        return counts  # waves wait for the morning (or for offers to be on again); expiries above still apply
    is_due = Q(next_wave_at__lte=now)
    if slot_id is not None:
        # Enqueued when the slot was released: its first wave is due, whatever this host's clock says.
        is_due |= Q(pk=slot_id, waves_sent=0, next_wave_at__isnull=False)
    due = OfferedSlot.objects.filter(is_due, status=SlotStatus.OPEN, expires_at__gt=now)
    if slot_id is not None:
        due = due.filter(pk=slot_id)
    for pk in list(due.order_by("next_wave_at", "id").values_list("pk", flat=True)[:200]):
        with transaction.atomic():
            slot = (OfferedSlot.objects.select_for_update(skip_locked=True, of=("self",))
                    .filter(is_due, pk=pk, status=SlotStatus.OPEN).select_related("practitioner").first())
            if slot is None:
                continue  # another worker has it, or it closed meanwhile
            invitations = send_wave(slot=slot, now=now)
            counts["waves"] += 1
            counts["texted"] += len(invitations)
    return counts


def expire_offers(*, now=None) -> int:
    now = now or timezone.now()
    expired = 0
    for pk in list(OfferedSlot.objects.filter(status=SlotStatus.OPEN, expires_at__lte=now).values_list("pk", flat=True)):
        with transaction.atomic():
            slot = OfferedSlot.objects.select_for_update().filter(pk=pk, status=SlotStatus.OPEN).first()
            if slot is not None:
                close_slot(slot=slot, status=SlotStatus.EXPIRED, reason="nobody took it in time", now=now)
                expired += 1
    return expired


def close_slot(*, slot: OfferedSlot, status: str, reason: str, actor=None, now=None, filled_by=None,
               keep_invitation=None) -> None:
    """Close an open slot (the caller holds its lock) and every invitation still open, withdrawing their texts
    not yet handed to Twilio."""
    now = now or timezone.now()
    _set_status(slot, status, actor=actor, reason=reason, at=now, closed_at=now, closed_by=actor, next_wave_at=None,
                filled_by=filled_by)
    invitation_status = InvitationStatus.EXPIRED if status == SlotStatus.EXPIRED else InvitationStatus.WITHDRAWN
    for invitation in slot.invitations.filter(status=InvitationStatus.SENT).select_related("message"):
        if keep_invitation is not None and invitation.pk == keep_invitation.pk:
            continue
        _set_status(invitation, invitation_status, actor=actor, reason=reason, at=now, closed_at=now)
        if invitation.message is not None:
            cancel_pending_messages(message=invitation.message, reason=f"offer {invitation.get_status_display().lower()}",
                                    actor=actor, now=now)


def stop_offer(*, slot: OfferedSlot, actor) -> OfferedSlot:
    """Staff stop offering a slot: open invitations are withdrawn (texts not yet sent are cancelled); a
    reply after this gets the "gone" text. Stopping a closed slot again changes nothing."""
    with transaction.atomic():
        locked = OfferedSlot.objects.select_for_update().get(pk=slot.pk)
        if locked.status != SlotStatus.OPEN:
            raise ValidationError(f"This offer is already closed ({locked.get_status_display().lower()}).", code="already_closed")
        close_slot(slot=locked, status=SlotStatus.STOPPED, reason="stopped by staff", actor=actor)
    return locked


# --- Taking an offer ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Acceptance:
    """What came of one patient taking their offer: the appointment booked (or moved) into the slot, or why not
    (`gone`: taken by someone else, closed, stopped or expired, or not bookable for this patient)."""

    invitation: OfferInvitation
    appointment: Appointment | None = None
    already: bool = False  # this patient had taken it already (the same answer twice)
    reason: str = ""

    @property
    def taken(self) -> bool:
        return self.appointment is not None


def _mark_gone(invitation: OfferInvitation, *, at, reason: str, via: str) -> None:
    if invitation.status == InvitationStatus.SENT:
        _set_status(invitation, InvitationStatus.GONE, reason=reason, at=at, via=via, answered_at=at, closed_at=at)
    elif invitation.answered_at is None:
        invitation.answered_at = at
        invitation.save(update_fields=["answered_at"])


def _book(invitation: OfferInvitation, slot: OfferedSlot, *, at, via: str) -> Appointment:
    if invitation.group == OfferInvitation.Group.SOONER and invitation.later_appointment_id:
        moved: Rearrangement = rearrange_appointment(
            appointment=invitation.later_appointment, new_start=slot.start, practitioner=slot.practitioner, asked_by="patient",
            reason="Took an earlier time offered by text", asked_at=at, via=via,
        )
        return moved.replacement
    return book_appointment(
        referral=invitation.referral, practitioner=slot.practitioner, appointment_type=slot.appointment_type, start=slot.start,
        session_number=2 if slot.appointment_type == AppointmentType.TREATMENT else None, via=via,
    )


def accept_offer(*, invitation: OfferInvitation, at=None, via: str = "") -> Acceptance:
    """One patient takes their offer, by a "YES <code>" reply (via "") or on the self-service page (via
    AuditEntry.Via.SELF_SERVICE): the one path for both. The first acceptance books the slot: the slot row is
    locked, so acceptances take turns, and the booking's no-overlap constraint is the last guard. The other
    open offers of the slot are withdrawn (their unsent texts cancelled). Anything else (taken, closed,
    stopped, expired, not bookable for this patient) books nothing and marks this offer as answered too late;
    the caller tells the patient (a text, or the page). Taking it again returns the first booking."""
    at = at or timezone.now()
    with transaction.atomic():
        slot = OfferedSlot.objects.select_for_update(of=("self",)).select_related("practitioner").get(pk=invitation.slot_id)
        invitation = (OfferInvitation.objects.select_for_update(of=("self",))
                      .select_related("patient", "referral", "later_appointment").get(pk=invitation.pk))
        if invitation.status == InvitationStatus.ACCEPTED and slot.filled_by_id:
            return Acceptance(invitation=invitation, appointment=slot.filled_by, already=True)
        if invitation.status != InvitationStatus.SENT or slot.status != SlotStatus.OPEN:
            _mark_gone(invitation, at=at, reason="the offer had closed", via=via)
            return Acceptance(invitation=invitation, reason="closed")
        if at >= slot.expires_at:
            close_slot(slot=slot, status=SlotStatus.EXPIRED, reason="nobody took it in time", now=at)
            _mark_gone(invitation, at=at, reason="answered after the offer expired", via=via)
            return Acceptance(invitation=invitation, reason="expired")
        try:
            with transaction.atomic():
                appointment = _book(invitation, slot, at=at, via=via)
        except SlotTaken:
            close_slot(slot=slot, status=SlotStatus.FILLED, reason="the time was booked elsewhere", now=at)
            _mark_gone(invitation, at=at, reason="the time was booked elsewhere", via=via)
            return Acceptance(invitation=invitation, reason="booked_elsewhere")
        except ValidationError as exc:
            logger.info("offers.accept_refused invitation_id=%s code=%s", invitation.pk, getattr(exc, "code", ""))
            _mark_gone(invitation, at=at, reason="could not be booked for this patient", via=via)
            return Acceptance(invitation=invitation, reason="not_bookable")
        how = "on the self-service page" if via else "by text reply"
        # Linked to the new appointment, so the call list can say how it was taken.
        _set_status(invitation, InvitationStatus.ACCEPTED, reason=f"took it {how}", at=at, via=via, appointment=appointment,
                    answered_at=at, closed_at=at)
        close_slot(slot=slot, status=SlotStatus.FILLED, reason=f"taken {how}", now=at, filled_by=appointment,
                   keep_invitation=invitation)
    logger.info("offers.accepted slot_id=%s invitation_id=%s appointment_id=%s", slot.pk, invitation.pk, appointment.pk)
    return Acceptance(invitation=invitation, appointment=appointment)


# --- Replies -----------------------------------------------------------------------------------------

def _gone_text_answer(*, patient, now) -> OfferReplyAnswer:
    queue_text(patient=patient, kind=OutboundMessage.SLOT_OFFER_GONE, body=gone_text(patient), now=now)
    return OfferReplyAnswer(handling=InboundMessage.Handling.OFFER_GONE, patient=patient)


def answer_offer_reply(*, patients, code: str, at=None) -> OfferReplyAnswer:
    """A "YES <code>" reply: accept_offer, as the self-service page does; the others, late replies and codes
    that match nothing open get the "sorry, that slot has just gone" text and no booking."""
    at = at or timezone.now()
    patient_ids = [p.pk for p in patients]
    invitations = OfferInvitation.objects.filter(patient_id__in=patient_ids, code=code).select_related("patient")
    invitation = invitations.filter(status=InvitationStatus.SENT).first() or invitations.order_by("-created_at", "-id").first()
    if invitation is None:
        if len(patients) != 1:
            return OfferReplyAnswer(handling=InboundMessage.Handling.SHARED_NUMBER)
        return _gone_text_answer(patient=patients[0], now=at)
    with transaction.atomic():  # the offer's answer and the "gone" text commit together
        acceptance = accept_offer(invitation=invitation, at=at)
        if not acceptance.taken:
            return _gone_text_answer(patient=acceptance.invitation.patient, now=at)
        # A second YES from the patient who took it books nothing more and sends nothing: "sorry, gone" would
        # tell them they had lost the time they hold (their booking's confirmation has gone, or will).
    return OfferReplyAnswer(handling=InboundMessage.Handling.OFFER_TAKEN, appointment=acceptance.appointment,
                            patient=acceptance.invitation.patient)


def decline_offer(*, patients, code: str, at=None) -> OfferReplyAnswer | None:
    """A "NO <code>" reply, or a bare "No" from a patient whose latest text was an offer still open: that offer
    is declined (audited), and once nobody texted about the slot is left to answer, its next wave is due at
    once rather than after the interval. None when a bare "No" answers something else (a reminder, say), so
    the reply is read as usual. A code that matches nothing open changes nothing."""
    at = at or timezone.now()
    still_open = OfferInvitation.objects.filter(patient__in=patients, status=InvitationStatus.SENT)
    if code:
        invitation = still_open.filter(code=code).first()
        if invitation is None:
            return OfferReplyAnswer(handling=InboundMessage.Handling.APPLIED, patient=patients[0] if len(patients) == 1 else None)
    else:
        if len(patients) != 1:
            return None
        latest = (OutboundMessage.objects.filter(patient=patients[0])
                  .exclude(status__in=[OutboundMessage.Status.CANCELLED, OutboundMessage.Status.SKIPPED])
                  .order_by("-created_at", "-id").first())
        invitation = still_open.filter(message=latest).first() if latest is not None else None
        if invitation is None:
            return None
    with transaction.atomic():
        slot = OfferedSlot.objects.select_for_update(of=("self",)).get(pk=invitation.slot_id)
        invitation = OfferInvitation.objects.select_for_update(of=("self",)).select_related("patient").get(pk=invitation.pk)
        if invitation.status == InvitationStatus.SENT:
            _set_status(invitation, InvitationStatus.DECLINED, reason="replied NO", at=at, answered_at=at, closed_at=at)
            if slot.status == SlotStatus.OPEN and not slot.invitations.filter(status=InvitationStatus.SENT).exists():
                slot.next_wave_at = at
                slot.save(update_fields=["next_wave_at"])
    logger.info("offers.declined slot_id=%s invitation_id=%s", slot.pk, invitation.pk)
    return OfferReplyAnswer(handling=InboundMessage.Handling.APPLIED, patient=invitation.patient)


# --- Settings --------------------------------------------------------------------------------------

def update_offer_settings(*, actor, enabled: bool, minimum_notice_hours: int, wave_size: int, minutes_between_waves: int,
                          scope: str, include_link: bool = False) -> OfferSettings:
    errors = {}
    if not 1 <= wave_size <= 20:
        errors["wave_size"] = "Texts at a time must be between 1 and 20."
    if not 5 <= minutes_between_waves <= 24 * 60:
        errors["minutes_between_waves"] = "Minutes between waves must be between 5 and 1440."
    if not 0 <= minimum_notice_hours <= 14 * 24:
        errors["minimum_notice_hours"] = "Minimum notice must be between 0 and 336 hours (two weeks)."
    if scope not in OfferSettings.Scope.values:
        errors["scope"] = "Choose the practitioner's caseload or their team."
    if errors:
        raise ValidationError(errors)
    offer_settings = OfferSettings.current()
    offer_settings.enabled = enabled
    offer_settings.minimum_notice_hours = minimum_notice_hours
    offer_settings.wave_size = wave_size
    offer_settings.minutes_between_waves = minutes_between_waves
    offer_settings.scope = scope
    offer_settings.include_link = bool(include_link)
    offer_settings.updated_by = actor
    save_and_log(instance=offer_settings, actor=actor)
    return offer_settings
