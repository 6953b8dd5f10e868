"""Appointments and the rearrangements that replace them."""

from datetime import timedelta

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from scheduling.codes import (
    APPOINTMENT_TYPE_NHS_CODES,
    ATTENDED_OUTCOMES,
    CANCELLED_OUTCOMES,
    AppointmentType,
    AttendanceOutcome,
    ConsultationMechanism,
)


class AppointmentQuerySet(models.QuerySet):
    def not_cancelled(self):
        return self.exclude(outcome__in=CANCELLED_OUTCOMES)

    def overlapping(self, *, practitioner, start, end):
        return self.not_cancelled().filter(practitioner=practitioner, start__lt=end, end__gt=start)


class Appointment(models.Model):
    class CancelledBy(models.TextChoices):
        PATIENT = "patient", "Patient"
        SERVICE = "service", "Service"

    referral = models.ForeignKey("scheduling.Referral", on_delete=models.PROTECT, related_name="appointments")
    practitioner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="appointments")
    appointment_type = models.CharField(max_length=20, choices=AppointmentType.choices)
    start = models.DateTimeField()
    duration_minutes = models.PositiveSmallIntegerField()
    # Stored (start + duration) so overlaps can be found and constrained by the database.
    end = models.DateTimeField(editable=False)
    mechanism = models.CharField(max_length=2, choices=ConsultationMechanism.choices, default=ConsultationMechanism.TELEPHONE)
    session_number = models.PositiveSmallIntegerField(null=True, blank=True, help_text="Position in the course, 1 = assessment.")
    outcome = models.CharField(
        max_length=1, choices=AttendanceOutcome.choices, default=AttendanceOutcome.NOT_APPLICABLE, editable=False
    )
    outcome_recorded_at = models.DateTimeField(null=True, blank=True, editable=False)
    # For cancellations (outcome 2 or 4, including rearrangements): when the cancellation was asked for,
    # so the notice given (start - cancelled_at) can be derived.
    cancelled_at = models.DateTimeField(null=True, blank=True, editable=False)
    cancelled_by = models.CharField(max_length=10, choices=CancelledBy.choices, blank=True, editable=False)
    cancellation_recorded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", null=True, blank=True, editable=False
    )
    cancellation_reason = models.CharField(max_length=200, blank=True, editable=False)
    # Set when the patient confirms by SMS reply.
    confirmed_at = models.DateTimeField(null=True, blank=True, editable=False)
    booked_at = models.DateTimeField(default=timezone.now, editable=False)
    booked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", null=True, blank=True, editable=False
    )
    is_demo = models.BooleanField(default=False, editable=False)

    objects = AppointmentQuerySet.as_manager()

    class Meta:
        ordering = ["start"]
        indexes = [
            models.Index(fields=["practitioner", "start"]),
            models.Index(fields=["start"]),
            models.Index(fields=["referral", "start"]),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(end__gt=models.F("start")), name="appointment_ends_after_start"),
            models.CheckConstraint(
                condition=Q(outcome__in=["2", "4"], cancelled_at__isnull=False) | ~Q(outcome__in=["2", "4"]),
                name="appointment_cancellation_has_time",
            ),
        ]

    def __str__(self):
        local = timezone.localtime(self.start)
        return f"{self.get_appointment_type_display()} {local:%a %d %b %Y %H:%M}"

    def save(self, *args, **kwargs):
        self.end = self.start + timedelta(minutes=self.duration_minutes)
        super().save(*args, **kwargs)

    @property
    def nhs_appointment_type_code(self) -> str:
        return APPOINTMENT_TYPE_NHS_CODES[self.appointment_type]

    @property
    def is_cancelled(self) -> bool:
        return self.outcome in CANCELLED_OUTCOMES

    @property
    def is_attended(self) -> bool:
        return self.outcome in ATTENDED_OUTCOMES

    @property
    def notice_given(self) -> timedelta | None:
        if self.cancelled_at is None:
            return None
        return self.start - self.cancelled_at


class Rearrangement(models.Model):
    """`original` was moved to `replacement`. The original carries outcome 2 or 4 and cancelled_at."""

    class AskedBy(models.TextChoices):
        PATIENT = "patient", "Patient"
        SERVICE = "service", "Service"

    original = models.OneToOneField(Appointment, on_delete=models.PROTECT, related_name="rearranged_to")
    replacement = models.OneToOneField(Appointment, on_delete=models.PROTECT, related_name="rearranged_from")
    asked_by = models.CharField(max_length=10, choices=AskedBy.choices)
    reason = models.CharField(max_length=200, blank=True)
    asked_at = models.DateTimeField()
    recorded_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", null=True, blank=True)
    recorded_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=~Q(original=models.F("replacement")), name="rearrangement_not_to_itself"),
        ]

    @property
    def notice_given(self) -> timedelta:
        return self.original.start - self.asked_at
