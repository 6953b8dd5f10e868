"""Bookkeeping for the activity import: which source rows have already been imported."""

from django.conf import settings
from django.db import models
from django.utils import timezone


class ImportedEvent(models.Model):
    """One imported CSV row, identified by a hash of its content, so re-importing a file changes nothing."""

    class Event(models.TextChoices):
        REFERRAL_RECEIVED = "referral_received", "Referral received"
        CALL_ATTEMPT = "call_attempt", "Call attempt"
        APPOINTMENT = "appointment", "Appointment"

    key = models.CharField(max_length=64, unique=True, help_text="SHA-256 of the row's normalised values.")
    event = models.CharField(max_length=20, choices=Event.choices)
    source_referral_id = models.CharField(max_length=64)
    referral = models.ForeignKey("scheduling.Referral", on_delete=models.PROTECT, related_name="+")
    appointment = models.ForeignKey("scheduling.Appointment", on_delete=models.PROTECT, related_name="+", null=True, blank=True)
    contact_attempt = models.ForeignKey(
        "scheduling.ContactAttempt", on_delete=models.PROTECT, related_name="+", null=True, blank=True
    )
    file_name = models.CharField(max_length=255, blank=True)
    line_number = models.PositiveIntegerField()
    imported_at = models.DateTimeField(default=timezone.now)
    imported_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", null=True, blank=True)

    class Meta:
        ordering = ["imported_at", "id"]

    def __str__(self):
        return f"{self.get_event_display()} from line {self.line_number} of {self.file_name or 'an import'}"
