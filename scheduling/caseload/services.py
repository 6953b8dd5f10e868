"""Writes to patients, referrals and admin tasks. Views, commands and tasks all call these."""

import datetime

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from scheduling.caseload.audit import record_change
from scheduling.caseload.models import AdminTask, Patient, Referral, TimeOfDay
from scheduling.caseload.nhs_number import normalise_nhs_number
from scheduling.caseload.phones import parse_uk_phone
from scheduling.codes import ATTENDED_OUTCOMES, AppointmentType, EndOfCare, ReferralSource

Status = Referral.Status


class DuplicatePatient(ValidationError):
    def __init__(self, existing: Patient):
        self.existing = existing
        super().__init__(
            {"nhs_number": ValidationError("A patient with this NHS number already exists.", code="duplicate")}
        )


def _clean_contact_windows(preferred_days, preferred_times) -> tuple[list[int], list[str]]:
    errors = {}
    try:
        days = sorted({int(d) for d in preferred_days or []})
    except (TypeError, ValueError):
        days = [-1]
    if any(d < 0 or d > 6 for d in days):
        errors["preferred_days"] = "Preferred days must be weekday numbers 0 (Monday) to 6 (Sunday)."
    times = [t for t in TimeOfDay.values if t in set(preferred_times or [])]
    unknown = set(preferred_times or []) - set(TimeOfDay.values)
    if unknown:
        errors["preferred_times"] = f"Unknown time of day: {', '.join(sorted(unknown))}."
    if errors:
        raise ValidationError(errors)
    return days, times


def register_patient(
    *,
    nhs_number: str,
    given_name: str,
    family_name: str,
    date_of_birth: datetime.date,
    mobile_phone: str = "",
    other_phone: str = "",
    sms_consent: bool = False,
    voicemail_allowed: bool = False,
    preferred_days=(),
    preferred_times=(),
    is_demo: bool = False,
) -> Patient:
    errors = {}
    try:
        nhs_number = normalise_nhs_number(nhs_number)
    except ValidationError as exc:
        errors["nhs_number"] = exc.messages
    if not (given_name or "").strip():
        errors["given_name"] = "Enter the patient's first name."
    if not (family_name or "").strip():
        errors["family_name"] = "Enter the patient's last name."
    if date_of_birth is None or date_of_birth > timezone.localdate():
        errors["date_of_birth"] = "Enter a date of birth that is not in the future."
    mobile = other = None
    if mobile_phone:
        try:
            mobile = parse_uk_phone(mobile_phone)
        except ValidationError as exc:
            errors["mobile_phone"] = exc.messages
    if other_phone:
        try:
            other = parse_uk_phone(other_phone)
        except ValidationError as exc:
            errors["other_phone"] = exc.messages
    if mobile is not None and not mobile.is_mobile:
        errors["mobile_phone"] = "This is not a mobile number; put a landline in 'other phone'."
    if sms_consent and not mobile_phone:
        errors["sms_consent"] = "SMS consent needs a mobile number."
    try:
        days, times = _clean_contact_windows(preferred_days, preferred_times)
    except ValidationError as exc:
        errors.update(exc.message_dict)
    if errors:
        raise ValidationError(errors)
    existing = Patient.objects.filter(nhs_number=nhs_number).first()
    if existing is not None:
        raise DuplicatePatient(existing)
    try:
        # The unique NHS number is the last guard: two submissions at once both pass the check above.
        with transaction.atomic():
            return _create_patient(
                nhs_number=nhs_number, given_name=given_name, family_name=family_name, date_of_birth=date_of_birth,
                mobile=mobile, other=other, sms_consent=sms_consent, voicemail_allowed=voicemail_allowed, days=days,
                times=times, is_demo=is_demo,
            )
    except IntegrityError:
        existing = Patient.objects.filter(nhs_number=nhs_number).first()
        if existing is None:
            raise
        raise DuplicatePatient(existing) from None


def _create_patient(
    *, nhs_number, given_name, family_name, date_of_birth, mobile, other, sms_consent, voicemail_allowed, days, times, is_demo
) -> Patient:
    return Patient.objects.create(
        nhs_number=nhs_number,
        given_name=given_name.strip(),
        family_name=family_name.strip(),
        date_of_birth=date_of_birth,
        mobile_phone=mobile.e164 if mobile else "",
        mobile_is_mobile=bool(mobile and mobile.is_mobile),
        other_phone=other.e164 if other else "",
        sms_consent=sms_consent,
        sms_consent_recorded_at=timezone.now() if sms_consent else None,
        voicemail_allowed=voicemail_allowed,
        preferred_days=days,
        preferred_times=times,
        is_demo=is_demo,
    )


def record_sms_opt_out(*, patient: Patient, at=None) -> Patient:
    """STOP: no further SMS of any kind until the patient opts back in."""
    # Only the first STOP sets the time; repeats keep the original opt-out time.
    Patient.objects.filter(pk=patient.pk, sms_opted_out=False).update(
        sms_opted_out=True, sms_opted_out_at=at or timezone.now()
    )
    patient.refresh_from_db(fields=["sms_opted_out", "sms_opted_out_at"])
    return patient


def record_sms_opt_in(*, patient: Patient) -> Patient:
    Patient.objects.filter(pk=patient.pk).update(sms_opted_out=False)
    patient.refresh_from_db(fields=["sms_opted_out", "sms_opted_out_at"])
    return patient


def create_referral(
    *,
    patient: Patient,
    source: str,
    received_on: datetime.date,
    reason: str,
    actor=None,
    step: int = 2,
    assigned_practitioner=None,
    external_id: str = "",
    is_demo: bool = False,
) -> Referral:
    errors = {}
    if source not in ReferralSource.values:
        errors["source"] = f"'{source}' is not a source-of-referral code this service accepts."
    if received_on is None or received_on > timezone.localdate():
        errors["received_on"] = "The date the referral was received cannot be in the future."
    if step not in (2, 3):
        errors["step"] = "Step must be 2 or 3."
    if not (reason or "").strip():
        errors["reason"] = "Enter the reason for referral."
    if errors:
        raise ValidationError(errors)
    with transaction.atomic():
        referral = Referral.objects.create(
            patient=patient,
            source=source,
            received_on=received_on,
            reason=reason.strip(),
            step=step,
            assigned_practitioner=assigned_practitioner,
            created_by=actor,
            external_id=external_id,
            is_demo=is_demo,
        )
        record_change(referral=referral, field="status", old="", new=referral.status, actor=actor, reason="Referral received")
    return referral


def change_referral_status(*, referral: Referral, to_status: str, actor=None, reason: str = "", at=None) -> Referral:
    """Move a referral along its life, refusing transitions the service does not allow."""
    with transaction.atomic():
        locked = Referral.objects.select_for_update().get(pk=referral.pk)
        if to_status not in Referral.TRANSITIONS.get(locked.status, set()):
            raise ValidationError(
                f"A referral that is '{locked.get_status_display()}' cannot move to "
                f"'{Status(to_status).label if to_status in Status.values else to_status}'.",
                code="invalid_transition",
            )
        if to_status == Status.DISCHARGED:
            raise ValidationError("Use discharge_referral to discharge, so an end code is recorded.", code="needs_end_code")
        old = locked.status
        locked.status = to_status
        locked.save(update_fields=["status"])
        record_change(referral=locked, field="status", old=old, new=to_status, actor=actor, reason=reason, at=at)
    referral.status = to_status
    return referral


def revert_referral_status(*, referral: Referral, from_status: str, to_status: str, actor, reason: str) -> bool:
    """Put a referral back to the status it had before a change made by mistake (an undo), only while it
    still has `from_status`. Audited like any change; discharge is never reverted here. Returns whether it moved."""
    if not (reason or "").strip():
        raise ValidationError({"reason": "Say why the status is being put back."})
    if Status.DISCHARGED in (from_status, to_status) or to_status not in Status.values:
        raise ValidationError("A discharge cannot be undone here; re-refer instead.", code="invalid_transition")
    with transaction.atomic():
        locked = Referral.objects.select_for_update().get(pk=referral.pk)
        if locked.status != from_status or from_status == to_status:
            return False
        locked.status = to_status
        locked.save(update_fields=["status"])
        record_change(referral=locked, field="status", old=from_status, new=to_status, actor=actor, reason=f"Undo: {reason}")
    referral.status = to_status
    return True


def advance_referral_to(
    *, referral: Referral, from_statuses: set[str], to_status: str, actor=None, reason: str = "", at=None
) -> bool:
    """Follow-on change (e.g. "assessment attended" -> assessed): made only when the referral is in
    one of `from_statuses`, otherwise nothing happens. Returns whether it moved."""
    current = Referral.objects.values_list("status", flat=True).get(pk=referral.pk)
    if current in from_statuses:
        change_referral_status(referral=referral, to_status=to_status, actor=actor, reason=reason, at=at)
        return True
    return False


def discharge_referral(*, referral: Referral, end_code: str, actor=None, reason: str = "", ended_on=None) -> Referral:
    """Discharge with an NHS end-of-care code. Future appointments are cancelled by the service."""
    from scheduling.booking.services import cancel_appointment

    if end_code not in EndOfCare.values:
        raise ValidationError({"end_code": f"'{end_code}' is not an end-of-care code."})
    with transaction.atomic():
        locked = Referral.objects.select_for_update().get(pk=referral.pk)
        if locked.status == Status.DISCHARGED:
            raise ValidationError("This referral is already discharged.", code="invalid_transition")
        was_assessed = locked.appointments.filter(
            appointment_type=AppointmentType.ASSESSMENT, outcome__in=ATTENDED_OUTCOMES
        ).exists()
        if end_code == EndOfCare.NOT_ASSESSED and was_assessed:
            raise ValidationError({"end_code": "End code 50 (not assessed) cannot be used: this person was assessed."})
        if end_code in (EndOfCare.COMPLETED, EndOfCare.ENDED_BY_CLINICIAN, EndOfCare.ENDED_BY_PATIENT) and (
            locked.status != Status.IN_TREATMENT
        ):
            raise ValidationError({"end_code": "This end code is for people who started treatment."})
        for appointment in locked.appointments.not_cancelled().filter(start__gt=timezone.now(), outcome="0"):
            cancel_appointment(appointment=appointment, cancelled_by="service", reason="Referral discharged", actor=actor)
        old = locked.status
        locked.status = Status.DISCHARGED
        locked.end_code = end_code
        locked.ended_on = ended_on or timezone.localdate()
        locked.save(update_fields=["status", "end_code", "ended_on"])
        record_change(referral=locked, field="status", old=old, new=Status.DISCHARGED, actor=actor, reason=reason)
        record_change(referral=locked, field="end_code", old="", new=end_code, actor=actor, reason=reason)
    referral.refresh_from_db()
    return referral


def assign_practitioner(*, referral: Referral, practitioner, actor=None) -> Referral:
    with transaction.atomic():
        locked = Referral.objects.select_for_update().get(pk=referral.pk)
        old = locked.assigned_practitioner_id
        locked.assigned_practitioner = practitioner
        locked.save(update_fields=["assigned_practitioner"])
        record_change(referral=locked, field="assigned_practitioner", old=old or "", new=practitioner.pk, actor=actor)
    referral.assigned_practitioner = practitioner
    return referral


def raise_admin_task(
    *, kind: str, source: str, detail: str = "", patient=None, referral=None, appointment=None, actor=None
) -> AdminTask:
    if appointment is not None and referral is None:
        referral = appointment.referral
    if referral is not None and patient is None:
        patient = referral.patient
    return AdminTask.objects.create(
        kind=kind,
        source=source,
        detail=detail[:500],
        patient=patient,
        referral=referral,
        appointment=appointment,
        raised_by=actor,
    )


def resolve_admin_task(*, task: AdminTask, actor, resolution: str = "") -> AdminTask:
    updated = AdminTask.objects.filter(pk=task.pk, resolved_at__isnull=True).update(
        resolved_at=timezone.now(), resolved_by=actor, resolution=resolution[:200]
    )
    if not updated:
        raise ValidationError("This task was already resolved.", code="already_resolved")
    task.refresh_from_db()
    return task
