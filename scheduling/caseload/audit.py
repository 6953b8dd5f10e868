from django.utils import timezone

from scheduling.caseload.models import AuditEntry


def record_change(*, referral, field: str, old: str, new: str, actor=None, appointment=None, reason: str = "", at=None):
    """Write one audit entry. Call inside the transaction that makes the change."""
    return AuditEntry.objects.create(
        referral=referral,
        appointment=appointment,
        field=field,
        old_value=str(old or ""),
        new_value=str(new),
        actor=actor,
        at=at or timezone.now(),
        reason=reason[:200],
    )
