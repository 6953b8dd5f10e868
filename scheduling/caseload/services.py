"""Writes to patients and referrals. Views, commands and tasks all call these."""

import datetime

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from scheduling.audit import log_action, record_change, save_and_log
from scheduling.caseload.models import Patient, PractitionerProfile, Referral, ServiceSettings, TimeOfDay
from scheduling.caseload.nhs_number import normalise_nhs_number
from scheduling.caseload.signals import referral_discharging
from scheduling.caseload.phones import UK_MOBILE_FOR_TEXTS_MESSAGE, parse_uk_phone
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


# T-CBT services are for adults: a date of birth must give an age from 16 to 120 on the day the
# referral was received (on today, for a patient registered without a referral).
MIN_AGE_YEARS = 16
MAX_AGE_YEARS = 120
# The new-referral form records referrals as they arrive; older history comes in through the
# activity import (import_referral, which does not apply this limit).
MAX_RECEIVED_AGE_YEARS = 2


def _years_before(day: datetime.date, years: int) -> datetime.date:
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February
        return day.replace(year=day.year - years, day=28)


def _age_on(date_of_birth: datetime.date, day: datetime.date) -> int:
    return day.year - date_of_birth.year - ((day.month, day.day) < (date_of_birth.month, date_of_birth.day))


def _date_of_birth_error(date_of_birth, *, on: datetime.date) -> str | None:
    if date_of_birth is None:
        return "Enter the patient's date of birth."
    if date_of_birth > timezone.localdate():
        return "The date of birth cannot be in the future."
    if date_of_birth > on:
        return None  # a referral received before birth: reported on the received date
    age = _age_on(date_of_birth, on)
    if age < MIN_AGE_YEARS:
        return (
            f"The date of birth makes the patient {age} on {on:%d %b %Y}; "
            f"this service takes adults aged {MIN_AGE_YEARS} or over."
        )
    if age > MAX_AGE_YEARS:
        return f"The date of birth makes the patient {age} on {on:%d %b %Y}; check the year."
    return None


def _received_on_error(received_on, *, date_of_birth=None) -> str | None:
    today = timezone.localdate()
    if received_on is None:
        return "Enter the date the referral was received."
    if received_on > today:
        return "The date the referral was received cannot be in the future."
    earliest = _years_before(today, MAX_RECEIVED_AGE_YEARS)
    if received_on < earliest:
        return (
            f"The date the referral was received cannot be before {earliest:%d %b %Y} "
            f"(more than {MAX_RECEIVED_AGE_YEARS} years ago); check the year."
        )
    if date_of_birth is not None and received_on < date_of_birth:
        return "The date the referral was received is before the patient's date of birth."
    return None


def _clean_patient(
    *,
    nhs_number,
    given_name,
    family_name,
    date_of_birth,
    mobile_phone,
    other_phone,
    sms_consent,
    voicemail_allowed,
    preferred_days,
    preferred_times,
    is_demo,
    age_on: datetime.date,
) -> tuple[dict, dict]:
    """Check everything about a new patient without writing. Returns (field values, errors by field)."""
    errors = {}
    try:
        nhs_number = normalise_nhs_number(nhs_number)
    except ValidationError as exc:
        errors["nhs_number"] = exc.messages
    if not (given_name or "").strip():
        errors["given_name"] = "Enter the patient's first name."
    if not (family_name or "").strip():
        errors["family_name"] = "Enter the patient's last name."
    dob_error = _date_of_birth_error(date_of_birth, on=age_on)
    if dob_error:
        errors["date_of_birth"] = dob_error
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
    if mobile is not None and not mobile.is_uk_mobile:
        errors["mobile_phone"] = UK_MOBILE_FOR_TEXTS_MESSAGE
    if sms_consent and not mobile_phone:
        errors["sms_consent"] = "SMS consent needs a mobile number."
    days = times = None
    try:
        days, times = _clean_contact_windows(preferred_days, preferred_times)
    except ValidationError as exc:
        errors.update(exc.message_dict)
    values = dict(
        nhs_number=nhs_number,
        given_name=(given_name or "").strip(),
        family_name=(family_name or "").strip(),
        date_of_birth=date_of_birth,
        mobile_phone=mobile.e164 if mobile else "",
        mobile_is_mobile=bool(mobile and mobile.is_uk_mobile),
        other_phone=other.e164 if other else "",
        sms_consent=sms_consent,
        voicemail_allowed=voicemail_allowed,
        preferred_days=days,
        preferred_times=times,
        is_demo=is_demo,
    )
    return values, errors


def _clean_referral(*, source, received_on, reason, step, date_of_birth=None) -> dict:
    """Check a new referral without writing. Returns errors by field."""
    errors = {}
    if source not in ReferralSource.values:
        errors["source"] = f"'{source}' is not a source-of-referral code this service accepts."
    received_error = _received_on_error(received_on, date_of_birth=date_of_birth)
    if received_error:
        errors["received_on"] = received_error
    if step not in (2, 3):
        errors["step"] = "Step must be 2 or 3."
    if not (reason or "").strip():
        errors["reason"] = "Enter the reason for referral."
    return errors


def _existing_patient(nhs_number: str) -> Patient | None:
    return Patient.objects.filter(nhs_number=nhs_number).first()


def _insert_patient(values: dict) -> Patient:
    """Insert inside the caller's transaction. A twin request that registered the same NHS number
    first (both passed the duplicate check) trips the unique constraint: that is the same answer as
    the check, never a 500. The savepoint keeps the caller's transaction usable to look the twin up."""
    try:
        with transaction.atomic():
            return Patient.objects.create(
                **values, sms_consent_recorded_at=timezone.now() if values["sms_consent"] else None
            )
    except IntegrityError:
        existing = _existing_patient(values["nhs_number"])
        if existing is None:
            raise
        raise DuplicatePatient(existing) from None


def _insert_referral(
    *, patient, source, received_on, reason, step, assigned_practitioner, actor, external_id, is_demo,
    received_reason="Referral received", at=None,
):
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
    record_change(referral=referral, field="status", old="", new=referral.status, actor=actor, reason=received_reason, at=at)
    return referral


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
    values, errors = _clean_patient(
        nhs_number=nhs_number, given_name=given_name, family_name=family_name, date_of_birth=date_of_birth,
        mobile_phone=mobile_phone, other_phone=other_phone, sms_consent=sms_consent,
        voicemail_allowed=voicemail_allowed, preferred_days=preferred_days, preferred_times=preferred_times,
        is_demo=is_demo, age_on=timezone.localdate(),
    )
    if errors:
        raise ValidationError(errors)
    existing = _existing_patient(values["nhs_number"])
    if existing is not None:
        raise DuplicatePatient(existing)
    return _insert_patient(values)


def _clean_patient_with_referral(
    *, nhs_number, given_name, family_name, date_of_birth, mobile_phone, other_phone, sms_consent,
    voicemail_allowed, preferred_days, preferred_times, source, received_on, reason, step, is_demo,
) -> tuple[dict, dict]:
    received_ok = _received_on_error(received_on) is None
    values, errors = _clean_patient(
        nhs_number=nhs_number, given_name=given_name, family_name=family_name, date_of_birth=date_of_birth,
        mobile_phone=mobile_phone, other_phone=other_phone, sms_consent=sms_consent,
        voicemail_allowed=voicemail_allowed, preferred_days=preferred_days, preferred_times=preferred_times,
        is_demo=is_demo, age_on=received_on if received_ok else timezone.localdate(),
    )
    dob_ok = "date_of_birth" not in errors
    errors.update(
        _clean_referral(
            source=source, received_on=received_on, reason=reason, step=step,
            date_of_birth=date_of_birth if dob_ok else None,
        )
    )
    return values, errors


def patient_with_referral_errors(
    *,
    nhs_number: str = "",
    given_name: str = "",
    family_name: str = "",
    date_of_birth: datetime.date | None = None,
    source: str = "",
    received_on: datetime.date | None = None,
    reason: str = "",
    mobile_phone: str = "",
    other_phone: str = "",
    sms_consent: bool = False,
    voicemail_allowed: bool = False,
    preferred_days=(),
    preferred_times=(),
    step: int = 2,
) -> dict:
    """What register_patient_with_referral would refuse, by field, without writing: a form whose own
    parsing failed still shows every other problem on the same submit."""
    return _clean_patient_with_referral(
        nhs_number=nhs_number, given_name=given_name, family_name=family_name, date_of_birth=date_of_birth,
        mobile_phone=mobile_phone, other_phone=other_phone, sms_consent=sms_consent,
        voicemail_allowed=voicemail_allowed, preferred_days=preferred_days, preferred_times=preferred_times,
        source=source, received_on=received_on, reason=reason, step=step, is_demo=False,
    )[1]


def register_patient_with_referral(
    *,
    nhs_number: str,
    given_name: str,
    family_name: str,
    date_of_birth: datetime.date,
    source: str,
    received_on: datetime.date,
    reason: str,
    mobile_phone: str = "",
    other_phone: str = "",
    sms_consent: bool = False,
    voicemail_allowed: bool = False,
    preferred_days=(),
    preferred_times=(),
    step: int = 2,
    assigned_practitioner=None,
    actor=None,
    is_demo: bool = False,
) -> Referral:
    """A new patient and their first referral: every field is checked before anything is written, and
    both are written in one transaction, so a refusal leaves no half-registered patient behind."""
    values, errors = _clean_patient_with_referral(
        nhs_number=nhs_number, given_name=given_name, family_name=family_name, date_of_birth=date_of_birth,
        mobile_phone=mobile_phone, other_phone=other_phone, sms_consent=sms_consent,
        voicemail_allowed=voicemail_allowed, preferred_days=preferred_days, preferred_times=preferred_times,
        source=source, received_on=received_on, reason=reason, step=step, is_demo=is_demo,
    )
    if errors:
        raise ValidationError(errors)
    existing = _existing_patient(values["nhs_number"])
    if existing is not None:
        raise DuplicatePatient(existing)
    with transaction.atomic():
        patient = _insert_patient(values)
        return _insert_referral(
            patient=patient, source=source, received_on=received_on, reason=reason, step=step,
            assigned_practitioner=assigned_practitioner, actor=actor, external_id="", is_demo=is_demo,
        )


def record_sms_opt_out(*, patient: Patient, actor=None, reason: str = "", at=None) -> Patient:
    """STOP: no further SMS of any kind until the patient opts back in. Audited on the patient (the actor is
    None when the patient texted it or Twilio reported it)."""
    at = at or timezone.now()
    with transaction.atomic():
        # Only the first STOP sets the time and is audited; repeats keep the original opt-out time.
        stopped = Patient.objects.filter(pk=patient.pk, sms_opted_out=False).update(sms_opted_out=True, sms_opted_out_at=at)
        if stopped:
            log_action(subject=patient, actor=actor, field="sms_opted_out", old="no", new="yes", reason=reason, at=at)
    patient.refresh_from_db(fields=["sms_opted_out", "sms_opted_out_at"])
    return patient


def record_sms_opt_in(*, patient: Patient, actor=None, reason: str = "", at=None) -> Patient:
    """START: texts may go again. Audited on the patient when it lifts an opt-out."""
    with transaction.atomic():
        started = Patient.objects.filter(pk=patient.pk, sms_opted_out=True).update(sms_opted_out=False)
        if started:
            log_action(subject=patient, actor=actor, field="sms_opted_out", old="yes", new="no", reason=reason, at=at)
    patient.refresh_from_db(fields=["sms_opted_out", "sms_opted_out_at"])
    return patient


def referral_errors(*, patient: Patient, source: str = "", received_on=None, reason: str = "", step: int = 2) -> dict:
    """What create_referral would refuse, by field, without writing."""
    errors = _clean_referral(
        source=source, received_on=received_on, reason=reason, step=step, date_of_birth=patient.date_of_birth
    )
    if "received_on" not in errors and patient.date_of_birth is not None:
        dob_error = _date_of_birth_error(patient.date_of_birth, on=received_on)
        if dob_error:
            # The stored date of birth cannot be corrected here, so the refusal is about this referral.
            errors["received_on"] = f"This referral cannot be taken: {dob_error[0].lower()}{dob_error[1:]}"
    return errors


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
    """A new referral for a patient already registered."""
    errors = referral_errors(patient=patient, source=source, received_on=received_on, reason=reason, step=step)
    if errors:
        raise ValidationError(errors)
    with transaction.atomic():
        return _insert_referral(
            patient=patient, source=source, received_on=received_on, reason=reason, step=step,
            assigned_practitioner=assigned_practitioner, actor=actor, external_id=external_id, is_demo=is_demo,
        )


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
    """Discharge with an NHS end-of-care code. Future appointments are cancelled (by booking, on
    signals.referral_discharging) in the same transaction."""
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
        referral_discharging.send(sender=Referral, referral=locked, actor=actor)
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


def save_service_settings(*, service_settings: ServiceSettings, actor) -> ServiceSettings:
    """A manager's change to the service settings (Django admin), audited with each value from and to."""
    save_and_log(instance=service_settings, actor=actor)
    return service_settings


# --- The activity import's history ----------------------------------------------------------------

# The activity import knows a patient by NHS number only; the name says so rather than inventing one.
IMPORTED_GIVEN_NAME = "Not recorded"
IMPORTED_FAMILY_NAME = "(imported)"


def find_or_add_imported_patient(*, nhs_number: str) -> tuple[Patient, bool]:
    """The patient with this (normalised) NHS number, or a new one named "Not recorded (imported)" with no
    date of birth and no phones: the import's file has nothing else. Returns (patient, created)."""
    patient = _existing_patient(nhs_number)
    if patient is not None:
        return patient, False
    values, errors = _clean_patient(
        nhs_number=nhs_number, given_name=IMPORTED_GIVEN_NAME, family_name=IMPORTED_FAMILY_NAME, date_of_birth=None,
        mobile_phone="", other_phone="", sms_consent=False, voicemail_allowed=False, preferred_days=(),
        preferred_times=(), is_demo=False, age_on=timezone.localdate(),
    )
    errors.pop("date_of_birth", None)  # the file has none; the column is nullable for this
    if errors:
        raise ValidationError(errors)
    return _insert_patient(values), True


def import_referral(
    *, patient: Patient, source: str, received_on: datetime.date, external_id: str, assigned_practitioner=None,
    actor=None, at=None,
) -> Referral:
    """A referral from another system's history, received on `received_on` (any date up to today: the
    new-referral form's two-year limit is for referrals arriving now). Audited at `at`, when it was received."""
    errors = {}
    if source not in ReferralSource.values:
        errors["source"] = f"'{source}' is not a source-of-referral code this service accepts."
    if received_on is None or received_on > timezone.localdate():
        errors["received_on"] = "The date the referral was received cannot be in the future."
    if errors:
        raise ValidationError(errors)
    with transaction.atomic():
        return _insert_referral(
            patient=patient, source=source, received_on=received_on, reason="Imported referral", step=2,
            assigned_practitioner=assigned_practitioner, actor=actor, external_id=external_id, is_demo=False,
            received_reason="Referral received (activity import)", at=at,
        )


def add_imported_practitioner(*, username: str, full_name: str):
    """A practitioner the import's file names who has no account: an account with no usable password (no
    login) and a practitioner profile."""
    words = full_name.strip().split()
    with transaction.atomic():
        user = get_user_model()(
            username=username,
            first_name=" ".join(words[:-1])[:150] if len(words) > 1 else "",
            last_name=words[-1][:150] if words else "",
        )
        user.set_unusable_password()
        user.save()
        PractitionerProfile.objects.create(user=user)
    return user
