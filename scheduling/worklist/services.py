"""Writes to the worklist: raising and resolving admin tasks, taking and releasing items."""

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from scheduling.uktime import time_on_day
from scheduling.worklist import selectors
from scheduling.worklist.models import AdminTask, WorklistClaim


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


# --- Sharing the worklist: taking and releasing items ---------------------------------------------


class ItemTaken(ValidationError):
    """Someone else holds the item; `claim` is theirs (the message names them, never the patient)."""

    def __init__(self, claim: WorklistClaim, *, action: str):
        self.claim = claim
        super().__init__(
            f"{claim.holder_name} took this item at {time_on_day(claim.taken_at)}, so {action}. If you have agreed "
            f"it with them, use “Take over from {claim.holder_name}”.",
            code="item_taken",
        )


def _open_claim(key: str) -> WorklistClaim | None:
    return (
        WorklistClaim.objects.select_for_update(of=("self",))
        .select_related("taken_by")
        .filter(item_key=key, released_at__isnull=True)
        .first()
    )


def _end_claim(claim: WorklistClaim, *, actor, release: str, at) -> None:
    WorklistClaim.objects.filter(pk=claim.pk, released_at__isnull=True).update(
        released_at=at, released_by=actor, release=release
    )


def take_worklist_item(*, key: str, actor, take_over: int | None = None, now=None) -> WorklistClaim:
    """Take an item so colleagues see it is being worked on. Taking one that someone else holds is
    refused naming them, unless `take_over` is their claim's id (the person knowingly takes it over:
    a newer holder since then is refused again). Taking one's own item again changes nothing."""
    now = now or timezone.now()
    item = selectors.worklist_item(key=key, now=now)
    if item is None:
        raise ValidationError("This item is no longer on the worklist: it was done or has changed.", code="gone")
    with transaction.atomic():
        current = _open_claim(key)
        if current is not None and current.taken_at < item.since:
            # Taken before the item last changed; nobody is shown holding it, so it lapses quietly.
            _end_claim(current, actor=actor, release=WorklistClaim.Release.LAPSED, at=now)
            current = None
        if current is not None and current.taken_by_id == actor.pk:
            return current
        if current is not None:
            if take_over != current.pk:
                raise ItemTaken(current, action="nobody else phones the patient meanwhile")
            _end_claim(current, actor=actor, release=WorklistClaim.Release.TAKEN_OVER, at=now)
        try:
            with transaction.atomic():
                return WorklistClaim.objects.create(item_key=key, taken_by=actor, taken_at=now)
        except IntegrityError:
            # Someone took it between our look and our insert; the unique constraint kept one holder.
            winner = WorklistClaim.objects.select_related("taken_by").filter(item_key=key, released_at__isnull=True).first()
            if winner is None:
                raise
            if winner.taken_by_id == actor.pk:
                return winner
            raise ItemTaken(winner, action="nobody else phones the patient meanwhile") from None


def release_worklist_item(*, key: str, actor, now=None) -> WorklistClaim | None:
    """Give an item back. Only its holder releases it (others take it over); releasing an item nobody
    holds changes nothing and returns None."""
    now = now or timezone.now()
    with transaction.atomic():
        current = _open_claim(key)
        if current is None:
            return None
        if current.taken_by_id != actor.pk:
            raise ItemTaken(current, action="only they can release it")
        _end_claim(current, actor=actor, release=WorklistClaim.Release.RELEASED, at=now)
        current.refresh_from_db()
        return current
