"""Sooner-slot offers: a released slot (an appointment cancelled or moved with notice, or time a
practitioner made available) offered by text, a few patients at a time, first come first served.

An OfferedSlot is the time on offer; an OfferInvitation is one patient texted about it, with the
short code they reply with ("YES 4821"). Every status change is audited (scheduling/audit.py)."""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from scheduling.codes import AppointmentType
from scheduling.singletons import SingletonSettings


class OfferSettings(SingletonSettings):
    """Whether and how released slots are offered. A single row (pk=1), changed by managers (audited)."""

    class Scope(models.TextChoices):
        CASELOAD = "caseload", "The practitioner's caseload (and unassigned referrals)"
        TEAM = "team", "The practitioner's whole team (and unassigned referrals)"

    # Off by default: a service (and every existing test) sees no new texts until a manager turns it on.
    enabled = models.BooleanField(default=False, help_text="Offer released slots to waiting patients by text.")
    minimum_notice_hours = models.PositiveSmallIntegerField(
        default=24, help_text="Only the part of a slot at least this far ahead is offered; offers expire this long before it."
    )
    wave_size = models.PositiveSmallIntegerField(default=3, help_text="Patients texted at a time.")
    minutes_between_waves = models.PositiveSmallIntegerField(
        default=30, help_text="The next patients are texted after this long (or at once when all declined)."
    )
    scope = models.CharField(max_length=10, choices=Scope.choices, default=Scope.CASELOAD)
    # Off by default, as the reminders' own per-template setting: a link makes the text longer (2 SMS parts).
    include_link = models.BooleanField(
        default=False, help_text="End each offer text with the patient's self-service link, where they can take the time."
    )
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", null=True, blank=True)

    class Meta:
        verbose_name_plural = "offer settings"
        constraints = [
            models.CheckConstraint(condition=Q(wave_size__gte=1, wave_size__lte=20), name="offer_wave_size_sensible"),
            models.CheckConstraint(
                condition=Q(minutes_between_waves__gte=5, minutes_between_waves__lte=24 * 60),
                name="offer_minutes_between_waves_sensible",
            ),
            models.CheckConstraint(condition=Q(minimum_notice_hours__lte=14 * 24), name="offer_minimum_notice_sensible"),
        ]

    def __str__(self):
        return "Offer settings"

    @classmethod
    def read(cls) -> "OfferSettings":
        """The settings without writing the row (the defaults, offers off, until a manager saves them): read
        inside every cancellation, where creating it would be a write of its own."""
        return cls.objects.filter(pk=1).first() or cls()


class OfferedSlot(models.Model):
    class Status(models.TextChoices):
        OPEN = "open", "Offered"
        FILLED = "filled", "Taken"
        EXPIRED = "expired", "Expired"
        STOPPED = "stopped", "Stopped by staff"

    class ReleasedBy(models.TextChoices):
        CANCELLED = "cancelled", "Appointment cancelled"
        MOVED = "moved", "Appointment moved"
        AVAILABILITY = "availability", "Availability added"

    practitioner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="offered_slots")
    start = models.DateTimeField()
    duration_minutes = models.PositiveSmallIntegerField()
    appointment_type = models.CharField(max_length=20, choices=AppointmentType.choices)
    released_by = models.CharField(max_length=15, choices=ReleasedBy.choices)
    released_appointment = models.ForeignKey(
        "scheduling.Appointment", on_delete=models.PROTECT, related_name="+", null=True, blank=True
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    # When the next wave is due (None: nobody left to text, or closed).
    next_wave_at = models.DateTimeField(null=True, blank=True)
    waves_sent = models.PositiveSmallIntegerField(default=0)
    closed_at = models.DateTimeField(null=True, blank=True)
    closed_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", null=True, blank=True)
    filled_by = models.OneToOneField(
        "scheduling.Appointment", on_delete=models.PROTECT, related_name="filled_offer", null=True, blank=True
    )

    class Meta:
        ordering = ["start", "id"]
        indexes = [
            models.Index(fields=["status", "next_wave_at"]),
            models.Index(fields=["status", "expires_at"]),
            models.Index(fields=["practitioner", "start"]),
        ]
        constraints = [
            # Two releases of the same time (a cancellation racing a withdrawn absence) offer it once.
            models.UniqueConstraint(fields=["practitioner", "start"], condition=Q(status="open"), name="one_open_offer_per_slot"),
            models.CheckConstraint(condition=Q(expires_at__lte=models.F("start")), name="offer_expires_before_slot"),
        ]

    def __str__(self):
        return f"Offered slot {self.pk} ({self.status})"

    @property
    def is_open(self) -> bool:
        return self.status == self.Status.OPEN


class OfferInvitation(models.Model):
    class Status(models.TextChoices):
        SENT = "sent", "Offered"
        ACCEPTED = "accepted", "Took it"
        WITHDRAWN = "withdrawn", "Withdrawn (taken by someone else or stopped)"
        EXPIRED = "expired", "Expired"
        GONE = "gone", "Replied too late"
        DECLINED = "declined", "Declined"

    class Group(models.TextChoices):
        WAITING = "waiting", "Waiting for an assessment"
        SOONER = "sooner", "Booked later, asked for sooner"
        COURSE = "course", "Course waiting to start"

    slot = models.ForeignKey(OfferedSlot, on_delete=models.PROTECT, related_name="invitations")
    referral = models.ForeignKey("scheduling.Referral", on_delete=models.PROTECT, related_name="offer_invitations")
    patient = models.ForeignKey("scheduling.Patient", on_delete=models.PROTECT, related_name="offer_invitations")
    # For a patient booked later: the appointment that is moved into the slot when they take it.
    later_appointment = models.ForeignKey(
        "scheduling.Appointment", on_delete=models.PROTECT, related_name="+", null=True, blank=True
    )
    group = models.CharField(max_length=10, choices=Group.choices)
    code = models.CharField(max_length=4)
    wave = models.PositiveSmallIntegerField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.SENT)
    message = models.ForeignKey(
        "scheduling.OutboundMessage", on_delete=models.PROTECT, related_name="+", null=True, blank=True
    )
    created_at = models.DateTimeField(default=timezone.now)
    answered_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["slot", "wave", "id"]
        indexes = [models.Index(fields=["patient", "status"]), models.Index(fields=["slot", "status"])]
        constraints = [
            models.UniqueConstraint(fields=["slot", "referral"], name="one_invitation_per_slot_and_referral"),
            # The code a patient replies with finds one offer of theirs.
            models.UniqueConstraint(fields=["patient", "code"], condition=Q(status="sent"), name="offer_code_unique_per_patient"),
        ]

    def __str__(self):
        return f"Offer invitation {self.pk} ({self.status})"
