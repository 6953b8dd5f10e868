"""Appointments and the rearrangements that replace them."""

from datetime import timedelta
from datetime import timezone as dt_timezone

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from scheduling.booking.db import OPEN_ASSESSMENT_GUARD_NAME
from scheduling.codes import (
    APPOINTMENT_TYPE_NHS_CODES,
    ATTENDED_OUTCOMES,
    CANCELLED_OUTCOMES,
    AppointmentType,
    AttendanceOutcome,
    ConsultationMechanism,
)
from scheduling.singletons import SingletonSettings


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
    # For cancellations (CANCELLED_OUTCOMES, including rearrangements): when the cancellation was asked for,
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
    # The patient would take an earlier time if one comes free (set by admin staff; sooner-slot offers).
    wants_sooner = models.BooleanField(default=False, db_default=False, editable=False)

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
                condition=Q(outcome__in=sorted(CANCELLED_OUTCOMES), cancelled_at__isnull=False)
                | ~Q(outcome__in=sorted(CANCELLED_OUTCOMES)),
                name="appointment_cancellation_has_time",
            ),
            # One assessment still to happen per referral; moving it is a rearrangement (which
            # cancels the original before inserting the replacement).
            models.UniqueConstraint(
                fields=["referral"],
                condition=Q(appointment_type=AppointmentType.ASSESSMENT, outcome=AttendanceOutcome.NOT_APPLICABLE),
                name=OPEN_ASSESSMENT_GUARD_NAME,
            ),
        ]

    def __str__(self):
        local = timezone.localtime(self.start)
        return f"{self.get_appointment_type_display()} {local:%a %d %b %Y %H:%M}"

    def save(self, *args, **kwargs):
        # In UTC: adding to a Europe/London datetime adds wall-clock time, wrong across a clock change.
        start = self.start.astimezone(dt_timezone.utc) if timezone.is_aware(self.start) else self.start
        self.end = start + timedelta(minutes=self.duration_minutes)
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
    """`original` was moved to `replacement`. The original carries a cancelled outcome and cancelled_at."""

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


# --- Availability and booking configuration ------------------------------------------------------

# Slot lengths until a manager sets the service's own (BookingSettings). The activity import gives a row
# without a length these, not the service's current ones: a row's import key includes its length, so the
# same file must give the same keys whatever the settings are when it is imported again.
DEFAULT_MINUTES = {
    AppointmentType.ASSESSMENT: 60,
    AppointmentType.TREATMENT: 45,
    AppointmentType.REVIEW: 30,
}


class BookingSettings(SingletonSettings):
    """Slot lengths and course shape a manager changes in the database. A single row (pk=1)."""

    assessment_minutes = models.PositiveSmallIntegerField(
        default=DEFAULT_MINUTES[AppointmentType.ASSESSMENT], help_text="Length of an initial assessment."
    )
    treatment_minutes = models.PositiveSmallIntegerField(
        default=DEFAULT_MINUTES[AppointmentType.TREATMENT], help_text="Length of a treatment session."
    )
    review_minutes = models.PositiveSmallIntegerField(
        default=DEFAULT_MINUTES[AppointmentType.REVIEW], help_text="Length of a review session."
    )
    course_treatment_sessions = models.PositiveSmallIntegerField(
        default=7, help_text="Weekly treatment sessions in a course after the assessment."
    )
    first_review_months = models.PositiveSmallIntegerField(
        default=3, help_text="Months after the last treatment session for the first review (0 = none)."
    )
    second_review_months = models.PositiveSmallIntegerField(
        default=6, help_text="Months after the last treatment session for the second review (0 = none)."
    )
    search_weeks = models.PositiveSmallIntegerField(default=8, help_text="How far ahead the slot finder looks, in weeks.")
    max_months_ahead = models.PositiveSmallIntegerField(
        default=18, help_text="How far ahead staff may book an appointment, in months."
    )

    class Meta:
        verbose_name_plural = "booking settings"
        constraints = [
            models.CheckConstraint(
                condition=Q(assessment_minutes__gte=5, assessment_minutes__lte=240)
                & Q(treatment_minutes__gte=5, treatment_minutes__lte=240)
                & Q(review_minutes__gte=5, review_minutes__lte=240),
                name="booking_slot_lengths_sensible",
            ),
            models.CheckConstraint(
                condition=Q(max_months_ahead__gte=1, max_months_ahead__lte=60), name="booking_max_months_ahead_sensible"
            ),
        ]

    def __str__(self):
        return "Booking settings"

    def minutes_for(self, appointment_type: str) -> int:
        return {
            AppointmentType.ASSESSMENT: self.assessment_minutes,
            AppointmentType.TREATMENT: self.treatment_minutes,
            AppointmentType.REVIEW: self.review_minutes,
        }[appointment_type]


class WorkingHours(models.Model):
    """One block of a practitioner's weekly working pattern, in Europe/London local time.

    Mon-Thu 09:00-17:00 with lunch 12:30-13:30 is eight rows: 09:00-12:30 and 13:30-17:00 each day.
    """

    WEEKDAYS = [(0, "Monday"), (1, "Tuesday"), (2, "Wednesday"), (3, "Thursday"), (4, "Friday"), (5, "Saturday"), (6, "Sunday")]

    practitioner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="working_hours")
    weekday = models.PositiveSmallIntegerField(choices=WEEKDAYS)
    starts = models.TimeField()
    ends = models.TimeField()

    class Meta:
        ordering = ["practitioner", "weekday", "starts"]
        verbose_name_plural = "working hours"
        constraints = [
            models.CheckConstraint(condition=Q(ends__gt=models.F("starts")), name="working_hours_end_after_start"),
            models.CheckConstraint(condition=Q(weekday__lte=6), name="working_hours_weekday_valid"),
        ]

    def __str__(self):
        return f"{self.get_weekday_display()} {self.starts:%H:%M}-{self.ends:%H:%M}"


class AvailabilityException(models.Model):
    """Time a practitioner cannot be booked (leave, training, sickness). Never deleted: withdrawn instead."""

    class Kind(models.TextChoices):
        LEAVE = "leave", "Annual leave"
        TRAINING = "training", "Training"
        SICKNESS = "sickness", "Sickness"
        OTHER = "other", "Other"

    practitioner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="availability_exceptions")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()
    note = models.CharField(max_length=200, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    withdrawn_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["starts_at"]
        indexes = [models.Index(fields=["practitioner", "starts_at"])]
        constraints = [
            models.CheckConstraint(condition=Q(ends_at__gt=models.F("starts_at")), name="exception_ends_after_start"),
        ]

    def __str__(self):
        return f"{self.get_kind_display()} {timezone.localtime(self.starts_at):%d %b %H:%M}-{timezone.localtime(self.ends_at):%d %b %H:%M}"


