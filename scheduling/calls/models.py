"""Every telephone call attempt, answered or not. Rows are never changed or deleted."""

from django.conf import settings
from django.db import models
from django.utils import timezone

from scheduling.singletons import SingletonSettings


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
            # Each referral's first successful call (capacity report): SUCCESSFUL_OUTCOMES, spelt out because
            # Meta cannot see the class body.
            models.Index(
                fields=["referral", "attempted_at"],
                condition=models.Q(outcome__in=["answered", "callback_requested", "declined"]),
                name="attempt_successful_idx",
            ),
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


class ContactPolicy(SingletonSettings):
    """How the service tries to reach people it has not yet spoken to. A single row (pk=1) a manager
    changes in Django admin; created with the defaults the first time it is read."""

    max_attempts = models.PositiveSmallIntegerField(
        default=3, help_text="Call attempts before an opt-in invitation is sent."
    )
    min_working_days_between = models.PositiveSmallIntegerField(
        default=1, help_text="Working days to leave between failed attempts (so attempts fall on different days)."
    )
    vary_time_of_day = models.BooleanField(
        default=True, help_text="Suggest a part of the day (morning, afternoon, early evening) that has not already failed."
    )
    opt_in_days = models.PositiveSmallIntegerField(
        default=14, help_text="Days the patient has to get in touch after the opt-in invitation, before discharge is suggested."
    )
    undo_minutes = models.PositiveSmallIntegerField(
        default=5, help_text="Minutes during which the person who logged a call outcome can undo it."
    )

    class Meta:
        verbose_name = "contact policy"
        verbose_name_plural = "contact policy"

    def __str__(self):
        return "Contact policy"


class OptInInvitationQuerySet(models.QuerySet):
    def active(self):
        return self.filter(withdrawn_at__isnull=True)


class OptInInvitation(models.Model):
    """Every policy attempt failed: the patient is (or should be) invited to get in touch by `deadline`.
    Recorded whether or not an SMS can be sent; the reminders capability sends it and sets `sent_at`."""

    referral = models.ForeignKey("scheduling.Referral", on_delete=models.PROTECT, related_name="opt_in_invitations")
    # The failed attempt that used up the policy's attempts.
    attempt = models.OneToOneField(ContactAttempt, on_delete=models.PROTECT, related_name="opt_in_invitation", null=True, blank=True)
    due_at = models.DateTimeField(default=timezone.now)
    deadline = models.DateField(help_text="After this day with no contact, discharge is suggested.")
    sms_possible = models.BooleanField(default=False, help_text="Whether the patient could be sent an SMS when it fell due.")
    sent_at = models.DateTimeField(null=True, blank=True)
    # The mobile number it is (or was) to be texted to, as it was when it fell due, so the row can say
    # where it went even after the number is changed. Blank when no SMS was possible.
    sms_to = models.CharField(max_length=16, blank=True)
    recorded_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", null=True, blank=True)
    recorded_at = models.DateTimeField(default=timezone.now)
    # Withdrawn when the attempt that made it due is undone. Never deleted.
    withdrawn_at = models.DateTimeField(null=True, blank=True)
    withdrawn_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", null=True, blank=True)

    objects = OptInInvitationQuerySet.as_manager()

    class Meta:
        ordering = ["due_at", "id"]
        indexes = [models.Index(fields=["referral", "due_at"]), models.Index(fields=["deadline"])]

    def __str__(self):
        return f"Opt-in invitation for referral {self.referral_id}, reply by {self.deadline:%d %b %Y}"


class WrongNumberMarkQuerySet(models.QuerySet):
    def in_force(self):
        """Marks whose attempt still counts and whose numbers are still the patient's numbers: a change of
        either number (a correction) ends the mark without anyone having to clear it."""
        return self.filter(
            attempt__undo__isnull=True,
            mobile_phone=models.F("patient__mobile_phone"),
            other_phone=models.F("patient__other_phone"),
        )


class WrongNumberMark(models.Model):
    """A call found the patient's number wrong or not in service. The numbers on record at that moment are
    kept with it: while they are unchanged nothing is texted to the patient; once someone corrects them the
    mark no longer applies. Never edited or deleted (undoing the attempt ends it too)."""

    attempt = models.OneToOneField(ContactAttempt, on_delete=models.PROTECT, related_name="wrong_number_mark")
    patient = models.ForeignKey("scheduling.Patient", on_delete=models.PROTECT, related_name="wrong_number_marks")
    mobile_phone = models.CharField(max_length=16, blank=True)
    other_phone = models.CharField(max_length=16, blank=True)
    marked_at = models.DateTimeField(default=timezone.now)

    objects = WrongNumberMarkQuerySet.as_manager()

    class Meta:
        indexes = [models.Index(fields=["patient", "marked_at"])]

    def __str__(self):
        return f"Number marked wrong (attempt {self.attempt_id})"


class CallOutcomeEffect(models.Model):
    """What one click on the call list changed besides the attempt itself, so an undo can reverse exactly
    that (with new audited changes: nothing here or there is edited or deleted)."""

    attempt = models.OneToOneField(ContactAttempt, on_delete=models.PROTECT, related_name="effect")
    button = models.CharField(max_length=20)
    appointment_outcome_before = models.CharField(max_length=1, blank=True)
    appointment_outcome_after = models.CharField(max_length=1, blank=True)
    referral_status_before = models.CharField(max_length=20)
    referral_status_after = models.CharField(max_length=20)
    admin_task = models.ForeignKey("scheduling.AdminTask", on_delete=models.PROTECT, related_name="+", null=True, blank=True)

    def __str__(self):
        return f"Effect of {self.button} (attempt {self.attempt_id})"
