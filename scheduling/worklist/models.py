"""What admin staff must act on: tasks raised by calls and texts, and who has taken which item."""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from scheduling.codes import TaskKind, TaskSource


class AdminTask(models.Model):
    """Something admin staff must act on that an event raised (not derivable from other rows)."""

    # Kept in codes.py, so a capability below reads tasks by kind without importing this one.
    Kind = TaskKind
    Source = TaskSource

    kind = models.CharField(max_length=30, choices=Kind.choices)
    source = models.CharField(max_length=20, choices=Source.choices)
    patient = models.ForeignKey("scheduling.Patient", on_delete=models.PROTECT, related_name="admin_tasks", null=True, blank=True)
    referral = models.ForeignKey("scheduling.Referral", on_delete=models.PROTECT, related_name="admin_tasks", null=True, blank=True)
    appointment = models.ForeignKey(
        "scheduling.Appointment", on_delete=models.PROTECT, related_name="admin_tasks", null=True, blank=True
    )
    detail = models.CharField(max_length=500, blank=True)
    raised_at = models.DateTimeField(default=timezone.now)
    raised_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", null=True, blank=True
    )
    resolution = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["raised_at", "id"]
        indexes = [models.Index(fields=["resolved_at", "raised_at"])]

    def __str__(self):
        return f"{self.get_kind_display()} ({'resolved' if self.resolved_at else 'open'})"


# An item key names one worklist item: "task:<AdminTask id>" or "<derived kind>:referral:<Referral id>".
WORKLIST_KEY_MAX_LENGTH = 60


class WorklistClaim(models.Model):
    """Someone is working on a worklist item, so a colleague does not phone the same patient.

    Never deleted: a release or take-over sets released_at/released_by on the claim and a take-over adds
    a new claim. Items are AdminTask rows and derived items alike, so a claim names its item by key."""

    class Release(models.TextChoices):
        RELEASED = "released", "Released"
        TAKEN_OVER = "taken_over", "Taken over"
        # The item changed after it was taken (a new call, a missed assessment); the claim no longer shows.
        LAPSED = "lapsed", "Item changed after it was taken"

    item_key = models.CharField(max_length=WORKLIST_KEY_MAX_LENGTH)
    taken_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    taken_at = models.DateTimeField(default=timezone.now)
    released_at = models.DateTimeField(null=True, blank=True)
    released_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", null=True, blank=True)
    release = models.CharField(max_length=20, choices=Release.choices, blank=True)

    class Meta:
        ordering = ["taken_at", "id"]
        indexes = [models.Index(fields=["item_key", "taken_at"])]
        constraints = [
            # Two people taking the same item at the same moment: the database keeps one holder.
            models.UniqueConstraint(
                fields=["item_key"], condition=Q(released_at__isnull=True), name="worklist_claim_one_holder_per_item"
            ),
            models.CheckConstraint(
                condition=Q(released_at__isnull=True, release="") | Q(released_at__isnull=False) & ~Q(release=""),
                name="worklist_claim_release_has_reason",
            ),
        ]

    def __str__(self):
        return f"{self.item_key} taken {self.taken_at:%Y-%m-%d %H:%M}"

    @property
    def holder_name(self) -> str:
        return self.taken_by.get_full_name() or self.taken_by.get_username()
