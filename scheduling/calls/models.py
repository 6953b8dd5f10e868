"""Every telephone call attempt, answered or not. Rows are never changed or deleted."""

from django.conf import settings
from django.db import models
from django.utils import timezone


class ContactAttemptQuerySet(models.QuerySet):
    def effective(self):
        """Attempts that still count: those not undone."""
        return self.filter(undo__isnull=True)


class ContactAttempt(models.Model):
    class Outcome(models.TextChoices):
        ANSWERED = "answered", "Answered"
        NO_ANSWER = "no_answer", "No answer"
        VOICEMAIL = "voicemail", "Voicemail left"
        BUSY = "busy", "Engaged"
        WRONG_NUMBER = "wrong_number", "Wrong number"
        NOT_IN_SERVICE = "not_in_service", "Number not in service"
        CALLBACK_REQUESTED = "callback_requested", "Call back requested"
        DECLINED = "declined", "Declined"

    # A call that got through to the patient (a care contact may follow); the rest did not.
    SUCCESSFUL_OUTCOMES = frozenset({Outcome.ANSWERED.value, Outcome.CALLBACK_REQUESTED.value, Outcome.DECLINED.value})

    referral = models.ForeignKey("scheduling.Referral", on_delete=models.PROTECT, related_name="contact_attempts")
    appointment = models.ForeignKey(
        "scheduling.Appointment", on_delete=models.PROTECT, related_name="contact_attempts", null=True, blank=True
    )
    practitioner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="contact_attempts")
    attempted_at = models.DateTimeField(default=timezone.now)
    outcome = models.CharField(max_length=20, choices=Outcome.choices)
    callback_at = models.DateTimeField(null=True, blank=True, help_text="When the patient asked to be called back.")
    minutes_spent = models.PositiveSmallIntegerField(default=0)
    note = models.CharField(max_length=300, blank=True)
    recorded_at = models.DateTimeField(default=timezone.now, editable=False)
    recorded_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", null=True, blank=True)
    # Imported rows keep the key they had in the source system, so a re-import changes nothing.
    import_key = models.CharField(max_length=64, blank=True)
    is_demo = models.BooleanField(default=False, editable=False)

    objects = ContactAttemptQuerySet.as_manager()

    class Meta:
        ordering = ["attempted_at", "id"]
        indexes = [
            models.Index(fields=["referral", "attempted_at"]),
            models.Index(fields=["practitioner", "attempted_at"]),
            models.Index(fields=["attempted_at"]),
        ]
        constraints = [
            models.UniqueConstraint(fields=["import_key"], condition=~models.Q(import_key=""), name="attempt_import_key_unique"),
        ]

    def __str__(self):
        return f"{self.get_outcome_display()} at {timezone.localtime(self.attempted_at):%d %b %H:%M}"

    @property
    def was_successful(self) -> bool:
        return self.outcome in self.SUCCESSFUL_OUTCOMES


class ContactAttemptUndo(models.Model):
    """Records that an attempt was logged by mistake. The attempt itself stays as it was."""

    attempt = models.OneToOneField(ContactAttempt, on_delete=models.PROTECT, related_name="undo")
    undone_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    undone_at = models.DateTimeField(default=timezone.now)
    reason = models.CharField(max_length=200, default="Logged by mistake")
