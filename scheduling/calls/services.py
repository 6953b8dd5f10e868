"""Writes to contact attempts."""

from datetime import timedelta

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from scheduling.calls.models import ContactAttempt
from scheduling.caseload.models import Referral
from scheduling.caseload.services import advance_referral_to

Outcome = ContactAttempt.Outcome


def log_contact_attempt(
    *,
    referral: Referral,
    practitioner,
    outcome: str,
    actor=None,
    appointment=None,
    attempted_at=None,
    callback_at=None,
    minutes_spent: int = 0,
    note: str = "",
    import_key: str = "",
    is_demo: bool = False,
) -> ContactAttempt:
    """Record one call attempt. A first successful contact moves the referral to 'contacted'."""
    now = timezone.now()
    attempted_at = attempted_at or now
    errors = {}
    if outcome not in Outcome.values:
        errors["outcome"] = f"'{outcome}' is not a call outcome."
    if outcome == Outcome.CALLBACK_REQUESTED and callback_at is None:
        errors["callback_at"] = "Enter when the patient asked to be called back."
    if callback_at is not None and callback_at < attempted_at:
        errors["callback_at"] = "The call-back time must be after the call."
    if attempted_at > now + timedelta(minutes=5):
        errors["attempted_at"] = "A call attempt cannot be in the future."
    if minutes_spent < 0 or minutes_spent > 240:
        errors["minutes_spent"] = "Minutes spent must be between 0 and 240."
    if appointment is not None and appointment.referral_id != referral.pk:
        errors["appointment"] = "That appointment belongs to another referral."
    if referral.status == Referral.Status.DISCHARGED:
        errors["referral"] = "This referral is discharged."
    if errors:
        raise ValidationError(errors)
    with transaction.atomic():
        attempt = ContactAttempt.objects.create(
            referral=referral,
            appointment=appointment,
            practitioner=practitioner,
            attempted_at=attempted_at,
            outcome=outcome,
            callback_at=callback_at,
            minutes_spent=minutes_spent,
            note=(note or "")[:300],
            recorded_by=actor,
            import_key=import_key,
            is_demo=is_demo,
        )
        if outcome in ContactAttempt.SUCCESSFUL_OUTCOMES:
            advance_referral_to(
                referral=referral, from_statuses={Referral.Status.AWAITING_CONTACT}, to_status=Referral.Status.CONTACTED,
                actor=actor, reason="First successful contact",
                at=attempted_at,
            )
    return attempt
