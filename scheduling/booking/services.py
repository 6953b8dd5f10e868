"""Writes to appointments: book, record the outcome, cancel, rearrange, correct."""

import datetime
from dataclasses import dataclass
from datetime import timedelta

from dateutil.relativedelta import relativedelta
from django.core.exceptions import ValidationError
from django.db import IntegrityError, OperationalError, transaction
from django.utils import timezone

from scheduling.audit import AuditEntry, delete_and_log, log_action, record_change, save_and_log
from scheduling.booking.db import is_lost_race, is_open_assessment_violation, is_overlap_violation
from scheduling.booking.models import (
    Appointment,
    AvailabilityException,
    BookingSettings,
    Rearrangement,
    WorkingHours,
)
from scheduling.booking import rules, selectors
from scheduling.booking.rules import EARLIEST_OUTCOME_BEFORE_START
from scheduling.booking.signals import appointment_booked, appointment_cancelled, availability_added
from scheduling.caseload.models import Referral, ServiceSettings
from scheduling.caseload.services import advance_referral_to, assign_practitioner
from scheduling.codes import (
    ATTENDED_OUTCOMES,
    CANCELLED_OUTCOMES,
    AppointmentType,
    AttendanceOutcome,
    ConsultationMechanism,
)
from scheduling.uktime import local_date, time_on_day

Status = Referral.Status
# Outcomes a clinician records at or after the appointment time (cancellations go through cancel_appointment).
ATTENDANCE_OUTCOMES = frozenset(
    o.value
    for o in (
        AttendanceOutcome.ATTENDED,
        AttendanceOutcome.ATTENDED_LATE,
        AttendanceOutcome.LATE_NOT_SEEN,
        AttendanceOutcome.DID_NOT_ATTEND,
    )
)


class SlotTaken(ValidationError):
    """The practitioner already holds an overlapping appointment (or another booking won the race)."""


class AlreadyDone(ValidationError):
    """The same write was already made (a double submit): nothing changed; `appointment` is the result."""

    def __init__(self, message, *, appointment, code):
        self.appointment = appointment
        super().__init__(message, code=code)


class AlreadyBooked(AlreadyDone):
    pass


class AlreadyCancelled(AlreadyDone):
    pass


class AlreadyRearranged(AlreadyDone):
    pass


def _open_assessment(referral, *, exclude_pk=None):
    """The referral's assessment still to happen (no outcome yet), if any: there may be only one."""
    pending = Appointment.objects.filter(
        referral=referral, appointment_type=AppointmentType.ASSESSMENT, outcome=AttendanceOutcome.NOT_APPLICABLE
    )
    if exclude_pk:
        pending = pending.exclude(pk=exclude_pk)
    return pending.order_by("start").first()


def _assessment_already_booked(existing: Appointment) -> SlotTaken:
    return SlotTaken(
        f"This referral already has an assessment booked for {time_on_day(existing.start)}; rearrange it instead.",
        code="assessment_already_booked",
    )


def _insert_appointment(**values) -> Appointment:
    """Create the row; if the database refuses it because another booking committed after our check
    (the no-overlap guard, the one-open-assessment index, or a deadlock / serialization failure
    between two such inserts), say so as SlotTaken. The caller's transaction then rolls back."""
    try:
        with transaction.atomic():
            return Appointment.objects.create(**values)
    except IntegrityError as exc:
        if is_open_assessment_violation(exc):
            existing = _open_assessment(values["referral"])
            if existing is not None:
                raise _assessment_already_booked(existing) from exc
            raise SlotTaken(
                "Someone has just booked an assessment for this referral; reload to see it.", code="assessment_already_booked"
            ) from exc
        if is_overlap_violation(exc):
            raise _someone_just_booked(values) from exc
        raise
    except OperationalError as exc:
        # Two inserts checking each other's rows under the exclusion constraint can deadlock; the
        # one PostgreSQL aborts has lost the race just as if the other had committed first.
        if is_lost_race(exc):
            raise _someone_just_booked(values) from exc
        raise


def _someone_just_booked(values) -> SlotTaken:
    return SlotTaken(
        f"Someone else has just booked {time_on_day(values['start'])} for "
        f"{values['practitioner'].get_full_name() or values['practitioner']}. Choose another time.",
        code="slot_taken",
    )


# The audit entry written when the lead time gave way to a patient agreeing the time on the phone.
ON_THE_PHONE = "booked with the patient on the phone"


def _check_lead_time(start, *, now=None, patient_on_phone: bool = False) -> bool:
    """Refuse a start inside the service's lead time. With the patient on the phone agreeing the time
    there and then, the lead time (which exists so the patient hears in time) gives way, but the time
    must still be ahead. Returns True when it gave way (to audit)."""
    now = now or timezone.now()
    hours = ServiceSettings.current().booking_lead_time_hours
    earliest = now + timedelta(hours=hours)
    if start is None or not timezone.is_aware(start) or start >= earliest:
        return False
    if patient_on_phone:
        if start <= now:
            raise ValidationError(
                f"{timezone.localtime(start):%H:%M on %a %d %b} has already passed; choose a later time.", code="in_the_past"
            )
        return True
    raise ValidationError(
        f"Appointments must be booked at least {hours} hours ahead "
        f"(the earliest is {timezone.localtime(earliest):%H:%M on %a %d %b}), unless the patient agrees the time "
        "on the phone.",
        code="too_soon",
    )


def _check_how_far_ahead(start, *, now=None):
    months = BookingSettings.current().max_months_ahead
    latest = (now or timezone.now()) + relativedelta(months=months)
    if start is not None and timezone.is_aware(start) and start > latest:
        raise ValidationError(
            f"Appointments can be booked at most {months} months ahead (the latest is {timezone.localtime(latest):%a %d %b %Y}).",
            code="too_far_ahead",
        )


def _why_unavailable(*, practitioner, start, duration_minutes: int) -> str | None:
    """Why the practitioner's diary has no room for this time (bank holiday, leave, not working), or None.
    Existing appointments are not considered here: _check_bookable and the database refuse clashes."""
    start = start.astimezone(datetime.timezone.utc)
    end = start + timedelta(minutes=duration_minutes)
    day = local_date(start)
    diary = selectors.Diary(practitioner_ids=[practitioner.pk], first_day=day, last_day=day)
    why = diary.why_unavailable(practitioner.pk, start, end)
    if why == "outside working hours" and not diary.working_blocks(practitioner.pk, day):
        why = f"not a working day ({day:%A})"
    return why


def _check_diary(*, practitioner, start, duration_minutes: int, override_reason: str) -> str | None:
    """Refuse a time outside the practitioner's working hours, on their leave or a bank holiday, unless the
    person booking gives a reason to override. Returns what was overridden (to audit), or None."""
    why = _why_unavailable(practitioner=practitioner, start=start, duration_minutes=duration_minutes)
    if why and not (override_reason or "").strip():
        name = practitioner.get_full_name() or practitioner
        raise ValidationError(
            f"{name} is not available at {time_on_day(start)}: {why}. To book it anyway, tick the override and say why.",
            code="unavailable",
        )
    return why


def _check_bookable(*, referral: Referral, practitioner, appointment_type: str, start, duration_minutes: int, exclude_pk=None):
    errors = {}
    if appointment_type not in AppointmentType.values:
        errors["appointment_type"] = f"'{appointment_type}' is not an appointment type."
    if start is None or timezone.is_naive(start):
        errors["start"] = "The start time must include its time zone."
    if not duration_minutes or duration_minutes <= 0 or duration_minutes > 240:
        errors["duration_minutes"] = "The length must be between 1 and 240 minutes."
    if referral.status == Status.DISCHARGED:
        errors["referral"] = "This referral is discharged; re-refer before booking."
    if practitioner is None:
        errors["practitioner"] = "Choose a practitioner."
    if errors:
        raise ValidationError(errors)
    if appointment_type == AppointmentType.ASSESSMENT:
        existing = _open_assessment(referral, exclude_pk=exclude_pk)
        if existing is not None:
            raise _assessment_already_booked(existing)
    end = start.astimezone(datetime.timezone.utc) + timedelta(minutes=duration_minutes)  # UTC: see Appointment.save
    clash = Appointment.objects.overlapping(practitioner=practitioner, start=start, end=end)
    if exclude_pk:
        clash = clash.exclude(pk=exclude_pk)
    clash = clash.first()
    if clash is not None:
        local = timezone.localtime(clash.start)
        raise SlotTaken(
            f"{practitioner.get_full_name() or practitioner} already has an appointment at "
            f"{local:%H:%M on %a %d %b %Y} that overlaps this time.",
            code="slot_taken",
        )


def book_appointment(
    *,
    referral: Referral,
    practitioner,
    appointment_type: str,
    start: datetime.datetime,
    actor=None,
    duration_minutes: int | None = None,
    session_number: int | None = None,
    mechanism: str = ConsultationMechanism.TELEPHONE,
    booked_at=None,
    is_demo: bool = False,
    enforce_lead_time: bool = False,
    enforce_availability: bool = False,
    override_reason: str = "",
    patient_on_phone: bool = False,
    via: str = "",
) -> Appointment:
    """Book one appointment. `via` (AuditEntry.Via) says how it came in when no staff member booked it (the
    patient taking an offered time on the self-service page). Staff screens pass enforce_lead_time=True (the service's booking lead
    time, and no further ahead than BookingSettings.max_months_ahead) and enforce_availability=True
    (working hours, leave, bank holidays; `override_reason` books outside them, audited); imports and
    the demo, which record the past, do not. `patient_on_phone` (the patient agreed this time on the
    phone just now) lets the lead time give way; that is audited as ON_THE_PHONE.

    Booking an assessment for a referral nobody is assigned to assigns it to the practitioner, in the
    same transaction.

    Booking the same referral, practitioner, type and start again (a double submit) changes nothing
    and raises AlreadyBooked carrying the first appointment."""
    if not duration_minutes:
        lengths = BookingSettings.current()
        # An unknown type is refused below; a length is still needed to say only that.
        known = appointment_type in AppointmentType.values
        duration_minutes = lengths.minutes_for(appointment_type) if known else lengths.treatment_minutes
    # Settings are read (and created on first use) outside the transaction: creating the settings row
    # inside it would make concurrent bookings queue behind each other's uncommitted insert.
    waived = False
    if enforce_lead_time:
        waived = _check_lead_time(start, patient_on_phone=patient_on_phone)
        _check_how_far_ahead(start)
    overridden = None
    if enforce_availability and practitioner is not None and start is not None and timezone.is_aware(start):
        overridden = _check_diary(
            practitioner=practitioner, start=start, duration_minutes=duration_minutes, override_reason=override_reason
        )
    with transaction.atomic():
        # Lock the referral row: two bookings for one referral serialise here.
        referral = Referral.objects.select_for_update().get(pk=referral.pk)
        if practitioner is not None and start is not None and timezone.is_aware(start):
            same = Appointment.objects.filter(
                referral=referral, practitioner=practitioner, appointment_type=appointment_type, start=start,
                outcome=AttendanceOutcome.NOT_APPLICABLE,
            ).first()
            if same is not None:
                raise AlreadyBooked(f"Already booked: {same}.", appointment=same, code="already_booked")
        _check_bookable(
            referral=referral,
            practitioner=practitioner,
            appointment_type=appointment_type,
            start=start,
            duration_minutes=duration_minutes,
        )
        if session_number is None and appointment_type == AppointmentType.ASSESSMENT:
            session_number = 1
        appointment = _insert_appointment(
            referral=referral,
            practitioner=practitioner,
            appointment_type=appointment_type,
            start=start,
            duration_minutes=duration_minutes,
            session_number=session_number,
            mechanism=mechanism,
            booked_by=actor,
            booked_at=booked_at or timezone.now(),
            is_demo=is_demo,
        )
        record_change(
            referral=referral, appointment=appointment, field="booking", old="", new="booked", actor=actor,
            at=appointment.booked_at, via=via,
        )
        if overridden:
            _audit_override(appointment=appointment, why=overridden, reason=override_reason, actor=actor)
        if waived:
            _audit_lead_time_waived(appointment=appointment, actor=actor)
        if (
            appointment_type == AppointmentType.ASSESSMENT
            and referral.assigned_practitioner_id is None
            and practitioner is not None
        ):
            # An unassigned referral joins the caseload of the practitioner who assesses it.
            assign_practitioner(referral=referral, practitioner=practitioner, actor=actor)
        _follow_booking_on_referral(appointment=appointment, actor=actor)
        appointment.follow_ups = _follow_ups(appointment_booked.send(sender=Appointment, appointment=appointment, actor=actor))
    return appointment


def _follow_ups(responses) -> list[str]:
    """What the capabilities above did about a booking, in words (e.g. the confirmation text planned)."""
    return [answer for _receiver, answer in responses if answer]


def _follow_booking_on_referral(*, appointment: Appointment, actor):
    if appointment.appointment_type == AppointmentType.ASSESSMENT:
        advance_referral_to(
            referral=appointment.referral, from_statuses={Status.AWAITING_CONTACT, Status.CONTACTED},
            to_status=Status.ASSESSMENT_BOOKED, actor=actor, reason="Assessment booked", at=appointment.booked_at,
        )


def _audit_override(*, appointment: Appointment, why: str, reason: str, actor):
    record_change(
        referral=appointment.referral, appointment=appointment, field="availability_override", old=why[:40],
        new="booked anyway", actor=actor, reason=f"Override: {reason.strip()}",
    )


def _audit_lead_time_waived(*, appointment: Appointment, actor):
    hours = ServiceSettings.current().booking_lead_time_hours
    record_change(
        referral=appointment.referral, appointment=appointment, field="lead_time", old=f"{hours} hours", new="waived",
        actor=actor, reason=ON_THE_PHONE,
    )


def record_appointment_outcome(*, appointment: Appointment, outcome: str, actor=None, at=None) -> Appointment:
    """Record attended (5/6), late not seen (7) or did not attend (3) on a booked appointment."""
    now = at or timezone.now()
    if outcome not in ATTENDANCE_OUTCOMES:
        raise ValidationError(
            f"Outcome '{outcome}' cannot be recorded here; cancellations are recorded by cancelling.", code="invalid_outcome"
        )
    with transaction.atomic():
        locked = Appointment.objects.select_for_update().select_related("referral").get(pk=appointment.pk)
        if locked.outcome != AttendanceOutcome.NOT_APPLICABLE:
            raise ValidationError(
                f"This appointment already has an outcome ({locked.get_outcome_display()}).", code="invalid_transition"
            )
        if now < locked.start - EARLIEST_OUTCOME_BEFORE_START:
            raise ValidationError("An outcome cannot be recorded for an appointment that has not started.", code="too_early")
        locked.outcome = outcome
        locked.outcome_recorded_at = now
        locked.save(update_fields=["outcome", "outcome_recorded_at"])
        record_change(
            referral=locked.referral, appointment=locked, field="outcome", old=AttendanceOutcome.NOT_APPLICABLE,
            new=outcome, actor=actor, at=now,
        )
        _follow_outcome_on_referral(appointment=locked, actor=actor, at=now)
    appointment.refresh_from_db()
    return appointment


def _follow_outcome_on_referral(*, appointment: Appointment, actor, at):
    referral = appointment.referral
    if appointment.outcome in ATTENDED_OUTCOMES:
        if appointment.appointment_type == AppointmentType.ASSESSMENT:
            advance_referral_to(
                referral=referral, from_statuses={Status.ASSESSMENT_BOOKED}, to_status=Status.ASSESSED, actor=actor,
                reason="Assessment attended", at=at,
            )
        elif appointment.appointment_type == AppointmentType.TREATMENT:
            advance_referral_to(
                referral=referral, from_statuses={Status.ASSESSED}, to_status=Status.IN_TREATMENT, actor=actor,
                reason="First treatment session attended", at=at,
            )
    elif appointment.appointment_type == AppointmentType.ASSESSMENT:
        _step_back_if_no_assessment_pending(referral=referral, actor=actor, at=at)


def _step_back_if_no_assessment_pending(*, referral: Referral, actor, at=None):
    """A missed or cancelled assessment leaves the referral needing a new one booked."""
    pending = referral.appointments.not_cancelled().filter(
        appointment_type=AppointmentType.ASSESSMENT, outcome=AttendanceOutcome.NOT_APPLICABLE
    )
    if not pending.exists():
        advance_referral_to(
            referral=referral, from_statuses={Status.ASSESSMENT_BOOKED}, to_status=Status.CONTACTED, actor=actor,
            reason="Assessment needs rebooking", at=at,
        )


def _cancel(
    *, appointment: Appointment, cancelled_by: str, reason: str, actor, asked_at, step_back: bool, enforce_asked_at: bool = False,
    via: str = "",
    rearranged: bool = False,
) -> Appointment:
    if cancelled_by not in Appointment.CancelledBy.values:
        raise ValidationError({"cancelled_by": "Say whether the patient or the service cancelled."})
    locked = Appointment.objects.select_for_update().select_related("referral").get(pk=appointment.pk)
    if locked.is_cancelled:
        raise AlreadyCancelled(
            f"Already cancelled: {locked} (recorded {timezone.localtime(locked.outcome_recorded_at or locked.cancelled_at):%d %b %Y %H:%M}).",
            appointment=locked, code="already_cancelled",
        )
    if locked.outcome != AttendanceOutcome.NOT_APPLICABLE:
        raise ValidationError(
            f"This appointment cannot be cancelled: it already has an outcome ({locked.get_outcome_display()}).",
            code="invalid_transition",
        )
    now = timezone.now()
    asked_at = asked_at or now
    if asked_at > now:
        raise ValidationError({"asked_at": "When the cancellation was asked for cannot be in the future."})
    # Imports, the demo and history recorded after the fact book "now" for a past appointment, so their
    # booked_at is not when it was really booked; staff screens record the present and are held to it.
    if enforce_asked_at and asked_at < locked.booked_at:
        raise ValidationError({"asked_at": (
            f"When the cancellation was asked for ({timezone.localtime(asked_at):%d %b %Y %H:%M}) cannot be before "
            f"the appointment was booked ({timezone.localtime(locked.booked_at):%d %b %Y %H:%M})."
        )})
    outcome = AttendanceOutcome.CANCELLED_BY_PATIENT if cancelled_by == "patient" else AttendanceOutcome.CANCELLED_BY_PROVIDER
    locked.outcome = outcome
    locked.outcome_recorded_at = now
    locked.cancelled_at = asked_at
    locked.cancelled_by = cancelled_by
    locked.cancellation_reason = (reason or "")[:200]
    locked.cancellation_recorded_by = actor
    locked.save(
        update_fields=[
            "outcome", "outcome_recorded_at", "cancelled_at", "cancelled_by", "cancellation_reason", "cancellation_recorded_by",
        ]
    )
    record_change(
        referral=locked.referral, appointment=locked, field="outcome", old=AttendanceOutcome.NOT_APPLICABLE, new=outcome,
        actor=actor, reason=reason, via=via,
    )
    appointment_cancelled.send(sender=Appointment, appointment=locked, actor=actor, rearranged=rearranged)
    if step_back and locked.appointment_type == AppointmentType.ASSESSMENT:
        _step_back_if_no_assessment_pending(referral=locked.referral, actor=actor)
    return locked


def cancel_appointment(
    *, appointment: Appointment, cancelled_by: str, reason: str, actor=None, asked_at=None, enforce_asked_at: bool = False,
    via: str = "",
) -> Appointment:
    """Cancel by the patient (NHS code 2) or the service (code 4), recording when it was asked for (never
    in the future; with enforce_asked_at, as staff screens pass, never before the appointment was booked).
    Cancelling again (a double submit) changes nothing and raises AlreadyCancelled. `via` (AuditEntry.Via)
    records that the patient did it themselves on the self-service page."""
    with transaction.atomic():
        locked = _cancel(
            appointment=appointment, cancelled_by=cancelled_by, reason=reason, actor=actor, asked_at=asked_at, step_back=True,
            enforce_asked_at=enforce_asked_at, via=via,
        )
    appointment.refresh_from_db()
    return locked


def rearrange_appointment(
    *,
    appointment: Appointment,
    new_start: datetime.datetime,
    asked_by: str,
    reason: str = "",
    actor=None,
    asked_at=None,
    practitioner=None,
    enforce_lead_time: bool = False,
    enforce_availability: bool = False,
    enforce_asked_at: bool = False,
    patient_on_phone: bool = False,
    override_reason: str = "",
    via: str = "",
) -> Rearrangement:
    """Move an appointment: the original is cancelled (2 or 4) and a replacement keeps its session number.

    Open "patient asked to rearrange" admin tasks for the appointment (or for its referral with no
    appointment named) are resolved in the same transaction. Reminder receivers of
    appointment_cancelled / appointment_booked cancel and re-plan reminders in it too.

    The original is cancelled before the replacement is inserted, so an assessment's replacement never
    meets the one-open-assessment-per-referral index. Moving it again to the same time (a double
    submit) changes nothing and raises AlreadyRearranged. Moving it to the time it already has (same
    practitioner, start and length) is refused: it would record a cancellation and an identical booking.
    With enforce_availability, `override_reason` moves it outside the practitioner's availability, audited.
    """
    if asked_by not in Rearrangement.AskedBy.values:
        raise ValidationError({"asked_by": "Say whether the patient or the service asked to rearrange."})
    _refuse_same_slot(appointment=appointment, new_start=new_start, practitioner=practitioner)
    waived = False
    if enforce_lead_time:
        waived = _check_lead_time(new_start, patient_on_phone=patient_on_phone)
        _check_how_far_ahead(new_start)
    overridden = None
    if enforce_availability and timezone.is_aware(new_start):
        overridden = _check_diary(
            practitioner=practitioner or appointment.practitioner, start=new_start, duration_minutes=appointment.duration_minutes,
            override_reason=override_reason,
        )
    asked_at = asked_at or timezone.now()
    with transaction.atomic():
        _refuse_if_already_moved(appointment=appointment, new_start=new_start, practitioner=practitioner)
        original = _cancel(
            appointment=appointment, cancelled_by=asked_by, reason=reason or "Rearranged", actor=actor, asked_at=asked_at,
            step_back=False, enforce_asked_at=enforce_asked_at, via=via, rearranged=True,
        )
        practitioner = practitioner or original.practitioner
        _check_bookable(
            referral=original.referral,
            practitioner=practitioner,
            appointment_type=original.appointment_type,
            start=new_start,
            duration_minutes=original.duration_minutes,
        )
        replacement = _insert_appointment(
            referral=original.referral,
            practitioner=practitioner,
            appointment_type=original.appointment_type,
            start=new_start,
            duration_minutes=original.duration_minutes,
            session_number=original.session_number,
            mechanism=original.mechanism,
            booked_by=actor,
            is_demo=original.is_demo,
        )
        record_change(
            referral=original.referral, appointment=replacement, field="booking", old="", new="booked", actor=actor,
            reason=f"Rearranged from appointment {original.pk}", via=via,
        )
        if overridden:
            _audit_override(appointment=replacement, why=overridden, reason=override_reason, actor=actor)
        if waived:
            _audit_lead_time_waived(appointment=replacement, actor=actor)
        rearrangement = Rearrangement.objects.create(
            original=original, replacement=replacement, asked_by=asked_by, reason=(reason or "")[:200], asked_at=asked_at,
            recorded_by=actor,
        )
        replacement.follow_ups = _follow_ups(
            appointment_booked.send(sender=Appointment, appointment=replacement, actor=actor, rearranged_from=original)
        )
    appointment.refresh_from_db()
    return rearrangement


def _refuse_same_slot(*, appointment: Appointment, new_start, practitioner):
    # The replacement keeps the original's length, so the same practitioner and start is the same slot.
    same_practitioner = practitioner is None or practitioner.pk == appointment.practitioner_id
    if same_practitioner and new_start is not None and new_start == appointment.start and not appointment.is_cancelled:
        raise ValidationError(
            f"That is the time it already has ({time_on_day(appointment.start)} with "
            f"{appointment.practitioner.get_full_name() or appointment.practitioner}); choose a different time.",
            code="same_slot",
        )


def _refuse_if_already_moved(*, appointment: Appointment, new_start, practitioner):
    locked = Appointment.objects.select_for_update().get(pk=appointment.pk)
    if not locked.is_cancelled:
        return
    moved = Rearrangement.objects.filter(original=locked).select_related("replacement").first()
    if moved is None:
        raise ValidationError("This appointment was cancelled; book a new one instead.", code="invalid_transition")
    replacement = moved.replacement
    if replacement.start == new_start and (practitioner is None or replacement.practitioner_id == practitioner.pk):
        raise AlreadyRearranged(f"Already rearranged to {replacement}.", appointment=replacement, code="already_rearranged")
    raise ValidationError(
        f"This appointment was already moved to {replacement}; rearrange that one instead.", code="invalid_transition"
    )


def correct_appointment_outcome(*, appointment: Appointment, outcome: str, actor, reason: str) -> Appointment:
    """Correct a wrongly recorded attendance outcome (e.g. an undo). Needs a reason; audited."""
    if not (reason or "").strip():
        raise ValidationError({"reason": "Say why the outcome is being corrected."})
    if outcome not in ATTENDANCE_OUTCOMES | {AttendanceOutcome.NOT_APPLICABLE.value}:
        raise ValidationError({"outcome": "Only attendance outcomes can be corrected; rebook a cancelled appointment."})
    with transaction.atomic():
        locked = Appointment.objects.select_for_update().select_related("referral").get(pk=appointment.pk)
        if locked.is_cancelled:
            raise ValidationError("A cancelled appointment cannot be corrected; book a new one.", code="invalid_transition")
        old = locked.outcome
        if old == outcome:
            raise ValidationError("The appointment already has that outcome.", code="no_change")
        locked.outcome = outcome
        locked.outcome_recorded_at = timezone.now() if outcome != AttendanceOutcome.NOT_APPLICABLE else None
        locked.save(update_fields=["outcome", "outcome_recorded_at"])
        record_change(
            referral=locked.referral, appointment=locked, field="outcome", old=old, new=outcome, actor=actor,
            reason=f"Correction: {reason}",
        )
    appointment.refresh_from_db()
    return appointment


def confirm_appointment(*, appointment: Appointment, at=None, source: str = "SMS", actor=None, via: str = "") -> bool:
    """The patient said they will be there (a text reply "C"). Only the first confirmation is kept;
    a cancelled appointment, or one with an outcome, is not confirmed. Returns whether it changed."""
    at = at or timezone.now()
    with transaction.atomic():
        locked = Appointment.objects.select_for_update().select_related("referral").get(pk=appointment.pk)
        if locked.confirmed_at is not None or locked.outcome != AttendanceOutcome.NOT_APPLICABLE:
            appointment.confirmed_at = locked.confirmed_at
            return False
        locked.confirmed_at = at
        locked.save(update_fields=["confirmed_at"])
        record_change(
            referral=locked.referral, appointment=locked, field="confirmed", old="", new=f"by {source}"[:40],
            actor=actor, at=at, via=via,
        )
    appointment.confirmed_at = at
    return True


def notice_hours(appointment: Appointment) -> float | None:
    notice = appointment.notice_given
    return None if notice is None else notice.total_seconds() / 3600


def is_late_cancellation(appointment: Appointment, *, service_settings: ServiceSettings | None = None) -> bool:
    """booking.rules.is_late_cancellation against the service's settings as they are now."""
    return rules.is_late_cancellation(appointment, service_settings=service_settings or ServiceSettings.current())


@dataclass(frozen=True)
class CancellationNotice:
    """What a cancellation asked for at `asked_at` would be, before it is recorded."""

    asked_at: datetime.datetime
    notice: timedelta
    threshold_hours: int
    short: bool  # less notice than the threshold: counts as lost capacity (booking.rules.short_notice_q)

    @property
    def notice_hours(self) -> float:
        return self.notice.total_seconds() / 3600

    @property
    def not_late_if_asked_before(self) -> datetime.datetime:
        return self.asked_at + self.notice - timedelta(hours=self.threshold_hours)


def cancellation_notice(
    *, appointment: Appointment, asked_at=None, service_settings: ServiceSettings | None = None
) -> CancellationNotice:
    """The notice a cancellation asked for at `asked_at` (default now) gives, against the service's threshold.
    By the patient and short, it is a late cancellation; by the service and short, a short-notice
    service cancellation; either way it counts as lost capacity."""
    service_settings = service_settings or ServiceSettings.current()
    asked_at = asked_at or timezone.now()
    notice = appointment.start - asked_at
    return CancellationNotice(
        asked_at=asked_at, notice=notice, threshold_hours=service_settings.late_cancellation_notice_hours,
        short=rules.is_short_notice(notice, service_settings=service_settings),
    )


def is_late_rearrangement(rearrangement: Rearrangement, *, service_settings: ServiceSettings | None = None) -> bool:
    """A patient-asked rearrangement with less notice than the threshold counts as a late cancellation."""
    return is_late_cancellation(rearrangement.original, service_settings=service_settings)


class CourseConflict(ValidationError):
    """A course could not be booked as planned; `plan` holds the sessions with their problems."""

    def __init__(self, message, *, plan):
        self.plan = plan
        super().__init__(message, code="course_conflict")


def book_course(
    *,
    referral: Referral,
    practitioner,
    first_start: datetime.datetime,
    actor=None,
    include_reviews: bool = True,
    expected_starts: list | None = None,
    enforce_lead_time: bool = True,
    patient_on_phone: bool = False,
) -> list[Appointment]:
    """Book the referral's remaining treatment sessions weekly at the same local time (skipping weeks
    the practitioner is away, bank holidays included), then the reviews: all of them or none.

    `expected_starts` are the starts the admin saw in the preview; if the diary changed since, nothing
    is booked and CourseConflict carries the new plan.
    """
    if first_start is None or timezone.is_naive(first_start):
        raise ValidationError({"first_start": "The first session's start must include its time zone."})
    waived = False
    if enforce_lead_time:
        waived = _check_lead_time(first_start, patient_on_phone=patient_on_phone)
        _check_how_far_ahead(first_start)
    with transaction.atomic():
        Referral.objects.select_for_update().get(pk=referral.pk)
        plan = selectors.plan_course(referral=referral, practitioner=practitioner, first_start=first_start, include_reviews=include_reviews)
        if not plan:
            raise ValidationError("This referral's course is already fully booked.", code="nothing_to_book")
        problems = [p for p in plan if p.problem]
        if problems:
            raise CourseConflict(
                f"{len(problems)} session{'s' if len(problems) != 1 else ''} cannot be booked at this time; nothing was booked.",
                plan=plan,
            )
        if expected_starts is not None and [p.start for p in plan] != list(expected_starts):
            raise CourseConflict("The diary changed since the preview; check the new dates. Nothing was booked.", plan=plan)
        if enforce_lead_time:
            _check_how_far_ahead(max(p.start for p in plan))
        booked = [
            book_appointment(
                referral=referral, practitioner=practitioner, appointment_type=p.appointment_type, start=p.start,
                duration_minutes=p.duration_minutes, session_number=p.session_number, actor=actor,
            )
            for p in plan
        ]
        if waived:
            _audit_lead_time_waived(appointment=booked[0], actor=actor)
    return booked


def _availability_exception_errors(*, kind: str, starts_at, ends_at) -> dict:
    errors = {}
    if kind not in AvailabilityException.Kind.values:
        errors["kind"] = f"'{kind}' is not a kind of absence."
    if starts_at is None or ends_at is None or timezone.is_naive(starts_at) or timezone.is_naive(ends_at):
        errors["starts_at"] = "Start and end must include their time zone."
    elif ends_at <= starts_at:
        errors["ends_at"] = "The end must be after the start."
    return errors


def add_availability_exception(
    *, practitioner, kind: str, starts_at: datetime.datetime, ends_at: datetime.datetime, actor=None, note: str = ""
) -> AvailabilityException:
    """Leave, training or sickness, audited with who added it. Existing appointments in the period are not
    moved automatically; the slot finder and course planner stop offering the time."""
    errors = _availability_exception_errors(kind=kind, starts_at=starts_at, ends_at=ends_at)
    if errors:
        raise ValidationError(errors)
    exception = AvailabilityException(
        practitioner=practitioner, kind=kind, starts_at=starts_at, ends_at=ends_at, created_by=actor, note=(note or "")[:200]
    )
    save_and_log(instance=exception, actor=actor)
    return exception


def withdraw_availability_exception(*, exception: AvailabilityException, actor=None) -> AvailabilityException:
    """The absence no longer applies (it is kept, withdrawn); audited with who withdrew it."""
    now = timezone.now()
    with transaction.atomic():
        updated = AvailabilityException.objects.filter(pk=exception.pk, withdrawn_at__isnull=True).update(withdrawn_at=now)
        if not updated:
            raise ValidationError("This absence was already withdrawn.", code="already_withdrawn")
        exception.refresh_from_db()
        log_action(subject=exception, actor=actor, action=AuditEntry.Action.WITHDRAWN, at=now)
        _announce_availability(sender=AvailabilityException, practitioner=exception.practitioner,
                               starts_at=exception.starts_at, ends_at=exception.ends_at, actor=actor)
    return exception


# Working hours are a weekly pattern: a change is announced for this far ahead (offers cap what they use of it).
AVAILABILITY_HORIZON = timedelta(days=14)


def _announce_availability(*, sender, practitioner, starts_at, ends_at, actor):
    now = timezone.now()
    if ends_at > now:
        availability_added.send(sender=sender, practitioner=practitioner, starts_at=max(starts_at, now), ends_at=ends_at,
                                actor=actor)


def save_availability_exception(*, exception: AvailabilityException, actor) -> AvailabilityException:
    """A manager's add or change in Django admin, audited: setting "withdrawn at" there is a withdrawal."""
    errors = _availability_exception_errors(kind=exception.kind, starts_at=exception.starts_at, ends_at=exception.ends_at)
    if errors:
        raise ValidationError(errors)
    if exception.pk is None:
        exception.created_by = actor
    stored = AvailabilityException.objects.filter(pk=exception.pk).values_list("withdrawn_at", flat=True).first()
    withdrawn = exception.pk is not None and stored is None and exception.withdrawn_at is not None
    with transaction.atomic():
        save_and_log(instance=exception, actor=actor, action=AuditEntry.Action.WITHDRAWN if withdrawn else None)
        if withdrawn:
            _announce_availability(sender=AvailabilityException, practitioner=exception.practitioner,
                                   starts_at=exception.starts_at, ends_at=exception.ends_at, actor=actor)
    return exception


def save_booking_settings(*, booking_settings: BookingSettings, actor) -> BookingSettings:
    """A manager's change to slot lengths and the course shape (Django admin), audited with each value."""
    save_and_log(instance=booking_settings, actor=actor)
    return booking_settings


def save_working_hours(*, working_hours: WorkingHours, actor) -> WorkingHours:
    """A block of a practitioner's working week added or changed (Django admin), audited; announced as
    availability_added for the next AVAILABILITY_HORIZON."""
    with transaction.atomic():
        save_and_log(instance=working_hours, actor=actor)
        now = timezone.now()
        _announce_availability(sender=WorkingHours, practitioner=working_hours.practitioner, starts_at=now,
                               ends_at=now + AVAILABILITY_HORIZON, actor=actor)
    return working_hours


def set_wants_sooner(*, appointment: Appointment, wants_sooner: bool, actor=None) -> Appointment:
    """Record that the patient would take an earlier time for this appointment if one comes free (sooner-slot
    offers look for these), or no longer would. Audited on the appointment; setting it to what it is changes nothing."""
    with transaction.atomic():
        locked = Appointment.objects.select_for_update().select_related("referral").get(pk=appointment.pk)
        if locked.outcome != AttendanceOutcome.NOT_APPLICABLE:
            raise ValidationError("Only an appointment still to happen can be brought forward.", code="invalid_transition")
        if locked.wants_sooner == wants_sooner:
            return locked
        locked.wants_sooner = wants_sooner
        locked.save(update_fields=["wants_sooner"])
        record_change(referral=locked.referral, appointment=locked, field="wants_sooner", old=str(not wants_sooner).lower(),
                      new=str(wants_sooner).lower(), actor=actor)
    appointment.wants_sooner = wants_sooner
    return locked


def remove_working_hours(*, working_hours: WorkingHours, actor) -> None:
    """A block of a practitioner's working week removed (Django admin); the audit entry keeps what it was."""
    delete_and_log(instance=working_hours, actor=actor)


# --- The activity import's history -----------------------------------------------------------------


def import_appointment(
    *,
    referral: Referral,
    practitioner,
    appointment_type: str,
    start: datetime.datetime,
    duration_minutes: int,
    booked_at: datetime.datetime,
    outcome: str = AttendanceOutcome.NOT_APPLICABLE,
    outcome_at: datetime.datetime | None = None,
    cancelled_by: str = "",
    cancellation_reason: str = "",
    actor=None,
    reason: str = "Activity import",
) -> Appointment:
    """Record an appointment from another system's history as it ended: booked at `booked_at`, then attended,
    missed or cancelled at `outcome_at` (for a cancellation, when it was asked for), or still to happen.

    The referral follows as it does live (an assessment booked, attended, missed or cancelled), and the booking
    and the outcome are audited at the times they happened. Rules for booking now are not applied to history:
    lead time, how far ahead, the diary, a referral discharged since; no texts are planned (no booking hook).
    The database still refuses an overlap or a second open assessment (IntegrityError, left to the caller)."""
    errors = {}
    if appointment_type not in AppointmentType.values:
        errors["appointment_type"] = f"'{appointment_type}' is not an appointment type."
    if outcome not in AttendanceOutcome.values:
        errors["outcome"] = f"'{outcome}' is not an attendance outcome."
    elif (outcome in CANCELLED_OUTCOMES) != bool(cancelled_by):
        errors["cancelled_by"] = "A cancellation says who cancelled, and only a cancellation does."
    elif outcome != AttendanceOutcome.NOT_APPLICABLE and outcome_at is None:
        errors["outcome_at"] = "Say when the outcome happened."
    if errors:
        raise ValidationError(errors)
    cancelled = outcome in CANCELLED_OUTCOMES
    with transaction.atomic():
        referral = Referral.objects.select_for_update().get(pk=referral.pk)
        appointment = Appointment.objects.create(
            referral=referral,
            practitioner=practitioner,
            appointment_type=appointment_type,
            start=start,
            duration_minutes=duration_minutes,
            session_number=1 if appointment_type == AppointmentType.ASSESSMENT else None,
            booked_at=booked_at,
            booked_by=actor,
            outcome=outcome,
            outcome_recorded_at=outcome_at if outcome != AttendanceOutcome.NOT_APPLICABLE else None,
            cancelled_at=outcome_at if cancelled else None,
            cancelled_by=cancelled_by,
            cancellation_reason=cancellation_reason[:200] if cancelled else "",
            cancellation_recorded_by=actor if cancelled else None,
        )
        record_change(
            referral=referral, appointment=appointment, field="booking", old="", new="booked", actor=actor, at=booked_at,
            reason=reason,
        )
        _follow_booking_on_referral(appointment=appointment, actor=actor)
        if outcome != AttendanceOutcome.NOT_APPLICABLE:
            record_change(
                referral=referral, appointment=appointment, field="outcome", old=AttendanceOutcome.NOT_APPLICABLE,
                new=outcome, actor=actor, at=outcome_at, reason=reason,
            )
            _follow_outcome_on_referral(appointment=appointment, actor=actor, at=outcome_at)
    return appointment


def link_imported_rearrangement(*, original: Appointment, asked_by: str, actor=None, reason: str = "Activity import"):
    """Link an imported appointment that was cancelled to move it to the next appointment of the same type for
    the same referral not already a replacement (the history names no replacement). The replacement takes the
    original's session number if it has none. Returns the Rearrangement, or None if there is nothing to link."""
    with transaction.atomic():
        if Rearrangement.objects.filter(original=original).exists():
            return None
        replacement = (
            Appointment.objects.filter(referral_id=original.referral_id, appointment_type=original.appointment_type, start__gt=original.start)
            .exclude(rearranged_from__isnull=False)
            .order_by("start", "pk")
            .first()
        )
        if replacement is None:
            return None
        if replacement.session_number is None and original.session_number is not None:
            Appointment.objects.filter(pk=replacement.pk).update(session_number=original.session_number)
            replacement.session_number = original.session_number
        return Rearrangement.objects.create(
            original=original, replacement=replacement, asked_by=asked_by, asked_at=original.cancelled_at, reason=reason,
            recorded_by=actor,
        )
