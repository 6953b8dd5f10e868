"""Correcting a patient's details after registration: names, date of birth, phones, SMS consent,
voicemail and preferred contact windows. The NHS number is not changed here (see README).

Every change is an audit entry about the patient (scheduling.audit: who, when, from, to). The same
checks as registration apply (services._clean_patient). The page carries the id of the latest change it
showed as its version: a field someone else changed since then, to something other than what this form
says, is refused naming the field, never silently overwritten. What follows from a change in the other
capabilities (reminders planned again or cancelled, worklist items resolved) hangs on signals.patient_details_changed, sent
inside the same transaction.
"""

import datetime
from dataclasses import dataclass, field

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from scheduling.audit import AuditEntry, log_action
from scheduling.caseload.models import WEEKDAY_NAMES, Patient, TimeOfDay
from scheduling.caseload.phones import display_phone
from scheduling.caseload.selectors import can_view_all_caseloads, referrals_visible_to
from scheduling.caseload.services import _clean_patient, _date_of_birth_error
from scheduling.caseload.signals import patient_details_changed
from scheduling.roles import is_pwp

# The fields this page changes, in the order the page and the history show them.
EDITABLE_FIELDS = [
    "given_name",
    "family_name",
    "date_of_birth",
    "mobile_phone",
    "other_phone",
    "sms_consent",
    "voicemail_allowed",
    "preferred_days",
    "preferred_times",
]
FIELD_WORDS = {
    "given_name": "First name",
    "family_name": "Last name",
    "date_of_birth": "Date of birth",
    "mobile_phone": "Mobile for texts",
    "other_phone": "Other phone",
    "sms_consent": "Text messages",
    "voicemail_allowed": "Voicemail",
    "preferred_days": "Preferred days",
    "preferred_times": "Preferred times",
    # Not on this page: the patient's own STOP and START texts (caseload.services.record_sms_opt_out/_in).
    "sms_opted_out": "Opted out of texts (STOP)",
}
PHONE_FIELDS = {"mobile_phone", "other_phone"}
CHANGED_MEANWHILE = "changed_meanwhile"


# --- Who may ------------------------------------------------------------------------------------


def can_change_patient_details(user, patient: Patient) -> bool:
    """Admin staff and managers change any patient's details; a PWP those of a patient with a referral
    on a caseload they work (their own or one they cover), the rule the call list and record use."""
    if not user.is_authenticated:
        return False
    if can_view_all_caseloads(user) and user.has_perm("scheduling.change_patient"):
        return True
    return is_pwp(user) and referrals_visible_to(user).filter(patient=patient).exists()


def may_change_details_on_a_viewed_referral(user) -> bool:
    """can_change_patient_details for a user already allowed to view one of the patient's referrals
    (the referral page): a PWP who may view it works that caseload. Asks the database nothing."""
    return is_pwp(user) or (can_view_all_caseloads(user) and user.has_perm("scheduling.change_patient"))


# --- Stored values and words --------------------------------------------------------------------


def stored_value(name: str, value) -> str:
    """A field's value as its audit entry keeps it."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


def _days_words(value: str) -> str:
    days = [int(d) for d in value.split(",") if d.isdigit() and int(d) < 7]
    return ", ".join(WEEKDAY_NAMES[d] for d in days) if days else "any day"


def _times_words(value: str) -> str:
    labels = dict(TimeOfDay.choices)
    times = [labels.get(t, t) for t in value.split(",") if t]
    return ", ".join(times) if times else "any time"


def _date_words(value: str) -> str:
    try:
        day = datetime.date.fromisoformat(value)
    except ValueError:
        return value or "not recorded"
    return f"{day.day} {day:%b %Y}"


_VALUE_WORDS = {
    "date_of_birth": _date_words,
    "mobile_phone": lambda v: display_phone(v) if v else "none",
    "other_phone": lambda v: display_phone(v) if v else "none",
    "sms_consent": lambda v: "consents" if v == "yes" else "no consent",
    "voicemail_allowed": lambda v: "may be left" if v == "yes" else "do not leave",
    "preferred_days": _days_words,
    "preferred_times": _times_words,
}


def value_words(name: str, value: str) -> str:
    return _VALUE_WORDS.get(name, lambda v: v or "none")(value)


def describe_detail_change(entry: AuditEntry, *, user_names: dict[int, str]) -> str:
    """"Mobile for texts: 07700 900123 → 07700 900456 – new number given on the phone, by Sam Patel"."""
    label = FIELD_WORDS.get(entry.field, entry.field.replace("_", " ").capitalize())
    text = f"{label}: {value_words(entry.field, entry.old_value)} → {value_words(entry.field, entry.new_value)}"
    if entry.reason:
        text += f" – {entry.reason}"
    if entry.actor_id:
        text += f", by {user_names.get(entry.actor_id, 'a former member of staff')}"
    return text


def details_version(patient: Patient) -> int:
    """The id of the latest change to this patient's details (0 if none): the page's version marker."""
    return detail_changes(patient).aggregate(latest=Max("id"))["latest"] or 0


def detail_changes(patient: Patient):
    """The audit entries about the patient themselves (details and consent), oldest first."""
    return AuditEntry.objects.filter(patient=patient)


# --- The change ---------------------------------------------------------------------------------


@dataclass
class DetailsChange:
    changes: list[AuditEntry] = field(default_factory=list)
    resolved_tasks: list = field(default_factory=list)  # worklist tasks the change answered
    follow_ups: list[str] = field(default_factory=list)  # what other capabilities did, in words


def _actor_name(user) -> str:
    return (user.get_full_name() or user.get_username()) if user is not None else "someone"


def _conflicts(*, patient: Patient, version: int, wanted: dict) -> dict:
    """Fields changed by someone else since `version` that this form would set to something else."""
    latest = {}
    for change in detail_changes(patient).filter(id__gt=version).select_related("actor").order_by("id"):
        latest[change.field] = change
    errors = {}
    for name, change in latest.items():
        if name not in wanted or wanted[name] == stored_value(name, getattr(patient, name)):
            continue  # this form says what the record already says: nothing to overwrite
        local = timezone.localtime(change.at)
        errors[name] = ValidationError(
            f"{FIELD_WORDS[name]} was changed by {_actor_name(change.actor)} at {local:%H:%M} on {local.day} {local:%b} "
            f"since you opened this page; it is now {value_words(name, change.new_value)}. Nothing was saved: "
            "check it and save again.",
            code=CHANGED_MEANWHILE,
        )
    return errors


def _dob_errors(*, patient: Patient, date_of_birth) -> str | None:
    """As registration: 16 to 120 today and on the date the earliest open referral was received."""
    error = _date_of_birth_error(date_of_birth, on=timezone.localdate())
    if error:
        return error
    received = (
        patient.referrals.filter(status__in=patient.referrals.model.OPEN_STATUSES)
        .order_by("received_on")
        .values_list("received_on", flat=True)
        .first()
    )
    if received is not None:
        if received < date_of_birth:
            return f"The date of birth is after the date the referral was received ({received:%d %b %Y})."
        return _date_of_birth_error(date_of_birth, on=received)
    return None


def change_patient_details(
    *,
    patient: Patient,
    actor,
    version: int,
    given_name: str,
    family_name: str,
    date_of_birth,
    mobile_phone: str = "",
    other_phone: str = "",
    sms_consent: bool = False,
    voicemail_allowed: bool = False,
    preferred_days=(),
    preferred_times=(),
    reason: str = "",
    now=None,
) -> DetailsChange:
    """Change a patient's details in one transaction, with the patient's row locked: checked as at
    registration, each changed field audited, the worklist items a corrected number answers resolved,
    and patient_details_changed sent so the reminders follow. A refusal (bad value, or a field someone
    else changed since `version`) raises ValidationError by field and changes nothing. Submitting the
    same details again changes nothing and returns an empty DetailsChange."""
    now = now or timezone.now()
    reason = (reason or "").strip()
    if len(reason) > 200:
        raise ValidationError({"reason": "Keep the reason to 200 characters."})
    with transaction.atomic():
        locked = Patient.objects.select_for_update().get(pk=patient.pk)
        values, errors = _clean_patient(
            nhs_number=locked.nhs_number, given_name=given_name, family_name=family_name, date_of_birth=date_of_birth,
            mobile_phone=mobile_phone, other_phone=other_phone, sms_consent=sms_consent,
            voicemail_allowed=voicemail_allowed, preferred_days=preferred_days, preferred_times=preferred_times,
            is_demo=locked.is_demo, age_on=timezone.localdate(),
        )
        errors.pop("nhs_number", None)
        errors.pop("date_of_birth", None)
        if date_of_birth != locked.date_of_birth:
            # An imported patient may have no date of birth: correcting their phone does not require one.
            dob_error = _dob_errors(patient=locked, date_of_birth=date_of_birth)
            if dob_error:
                errors["date_of_birth"] = dob_error
        wanted = {name: stored_value(name, values[name]) for name in EDITABLE_FIELDS if errors.get(name) is None}
        conflicts = _conflicts(patient=locked, version=version, wanted=wanted)
        if conflicts or errors:
            raise ValidationError({**errors, **conflicts})
        changed = {}
        for name in EDITABLE_FIELDS:
            old, new = stored_value(name, getattr(locked, name)), stored_value(name, values[name])
            if old != new:
                changed[name] = (old, new)
        result = DetailsChange()
        if not changed:
            return result
        for name in changed:
            setattr(locked, name, values[name])
        update_fields = list(changed)
        if "mobile_phone" in changed:
            locked.mobile_is_mobile = values["mobile_is_mobile"]
            update_fields.append("mobile_is_mobile")
        if "sms_consent" in changed:
            locked.sms_consent_recorded_at = now
            update_fields.append("sms_consent_recorded_at")
        locked.save(update_fields=update_fields)
        result.changes = [
            log_action(subject=locked, actor=actor, field=name, old=old, new=new, reason=reason, at=now)
            for name, (old, new) in changed.items()
        ]
        responses = patient_details_changed.send(sender=Patient, patient=locked, changes=changed, actor=actor, now=now)
        answers = [answer for _, answer in responses if answer]
        result.follow_ups = [answer.words for answer in answers if answer.words]
        result.resolved_tasks = [task for answer in answers for task in answer.resolved_tasks]
    for name in EDITABLE_FIELDS + ["mobile_is_mobile", "sms_consent_recorded_at"]:
        setattr(patient, name, getattr(locked, name))
    return result
