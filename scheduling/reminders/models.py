"""SMS: reminder rules, editable templates, the outbox, delivery reports and replies.

A reminder *rule* (days before, local time) is kept apart from the concrete *message* it produces
(an OutboundMessage with a due time), as pretix does: changing a rule never silently moves
messages already planned, and every message is a row before anything is sent.
"""

import datetime

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from scheduling.codes import AppointmentType
from scheduling.singletons import SingletonSettings


# Callables, not fixed times: Django's check for a fixed date/time default (fields.W161) would
# otherwise fire whenever a command starts within seconds of 08:00 or 20:00.
def default_quiet_hours_start() -> datetime.time:
    return datetime.time(20, 0)


def default_quiet_hours_end() -> datetime.time:
    return datetime.time(8, 0)


class SmsSettings(SingletonSettings):
    """Service-wide SMS settings a manager changes in the database. A single row (pk=1)."""

    quiet_hours_start = models.TimeField(default=default_quiet_hours_start, help_text="Local time after which nothing is sent.")
    quiet_hours_end = models.TimeField(default=default_quiet_hours_end, help_text="Local time before which nothing is sent.")
    minimum_notice_minutes = models.PositiveSmallIntegerField(
        default=60,
        help_text="A reminder is no longer useful, and is skipped, when the appointment is closer than this.",
    )
    max_send_attempts = models.PositiveSmallIntegerField(
        default=4, help_text="Tries (the first one included) after transient Twilio errors before a message is failed."
    )
    send_confirmations = models.BooleanField(
        default=True, help_text="Text the patient when a call is booked or moved (a service that tells them otherwise may turn it off)."
    )
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", null=True, blank=True)

    class Meta:
        verbose_name_plural = "SMS settings"

    def __str__(self):
        return "SMS settings"


class MessageTemplate(models.Model):
    """The wording of one kind of SMS. Placeholders in {braces}; see reminders.content."""

    class Key(models.TextChoices):
        REMINDER = "reminder", "Appointment reminder (days before)"
        REMINDER_SAME_DAY = "reminder_same_day", "Appointment reminder (on the day)"
        OPT_IN_INVITATION = "opt_in_invitation", "Invitation to get in touch (calls unanswered)"
        CONFIRMATION = "confirmation", "Booking confirmation (when a call is booked)"
        CONFIRMATION_MOVED = "confirmation_moved", "Confirmation of a new time (when a call is moved)"

    key = models.CharField(max_length=30, choices=Key.choices, unique=True)
    body = models.TextField()
    # Append the patient's self-service link (scheduling.patient_links) to texts about an appointment.
    # Off by default; only added when SMS_PUBLIC_BASE_URL is set.
    include_link = models.BooleanField("add the self-service link", default=False)
    updated_at = models.DateTimeField(default=timezone.now)
    updated_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", null=True, blank=True)

    class Meta:
        ordering = ["key"]

    def __str__(self):
        return self.get_key_display()

    @classmethod
    def may_carry_link(cls, key: str) -> bool:
        """Texts about one appointment may carry its self-service link (an invitation names none)."""
        return key != cls.Key.OPT_IN_INVITATION


class ReminderRule(models.Model):
    """When reminders for one appointment type go: `days_before` the appointment's local date, at
    `send_at` local time (0 days before = on the morning of the appointment)."""

    appointment_type = models.CharField(max_length=20, choices=AppointmentType.choices)
    days_before = models.PositiveSmallIntegerField()
    send_at = models.TimeField(help_text="Local (UK) time of day the reminder is sent.")
    template = models.CharField(max_length=30, choices=MessageTemplate.Key.choices, default=MessageTemplate.Key.REMINDER)
    active = models.BooleanField(default=True)
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", null=True, blank=True)

    class Meta:
        ordering = ["appointment_type", "-days_before", "send_at"]
        constraints = [
            models.UniqueConstraint(fields=["appointment_type", "days_before"], name="one_reminder_rule_per_type_and_day")
        ]

    def __str__(self):
        when = "on the day" if self.days_before == 0 else f"{self.days_before} days before"
        return f"{self.get_appointment_type_display()}: {when} at {self.send_at:%H:%M}"

    @property
    def kind(self) -> str:
        return OutboundMessage.reminder_kind(self.days_before)


class OutboundMessageQuerySet(models.QuerySet):
    def pending(self):
        return self.filter(status=OutboundMessage.Status.SCHEDULED)


class OutboundMessage(models.Model):
    """The SMS outbox. A row is written before anything is sent and is never deleted."""

    class Status(models.TextChoices):
        SCHEDULED = "scheduled", "Scheduled"
        SENDING = "sending", "Sending"
        SENT = "sent", "Sent"
        DELIVERED = "delivered", "Delivered"
        UNDELIVERED = "undelivered", "Not delivered"
        FAILED = "failed", "Failed"
        SKIPPED = "skipped", "Skipped"
        CANCELLED = "cancelled", "Cancelled"

    # Delivery reports move a message forward only: a late "sent" never overwrites "delivered".
    RANK = {
        Status.SCHEDULED: 0,
        Status.SENDING: 1,
        Status.SENT: 2,
        Status.DELIVERED: 3,
        Status.UNDELIVERED: 3,
        Status.FAILED: 3,
        Status.SKIPPED: 3,
        Status.CANCELLED: 3,
    }
    FINAL = frozenset({Status.DELIVERED, Status.UNDELIVERED, Status.FAILED, Status.SKIPPED, Status.CANCELLED})

    OPT_IN_INVITATION = "opt_in_invitation"
    # Sent once when a call is booked, or moved (the new appointment's), not before it.
    CONFIRMATION = "confirmation"
    CONFIRMATION_MOVED = "confirmation_moved"
    CONFIRMATION_KINDS = (CONFIRMATION, CONFIRMATION_MOVED)
    # Sooner-slot offers (scheduling/offers): the offer, and "sorry, that slot has just gone".
    SLOT_OFFER = "slot_offer"
    SLOT_OFFER_GONE = "slot_offer_gone"

    patient = models.ForeignKey("scheduling.Patient", on_delete=models.PROTECT, related_name="outbound_messages")
    appointment = models.ForeignKey(
        "scheduling.Appointment", on_delete=models.PROTECT, related_name="outbound_messages", null=True, blank=True
    )
    # The start the reminder was planned for: together with the kind, one reminder per occurrence.
    appointment_start = models.DateTimeField(null=True, blank=True)
    opt_in_invitation = models.OneToOneField(
        "scheduling.OptInInvitation", on_delete=models.PROTECT, related_name="outbound_message", null=True, blank=True
    )
    # "reminder_2d", "reminder_0d", ..., "confirmation", "confirmation_moved" or "opt_in_invitation".
    kind = models.CharField(max_length=30)
    body = models.TextField()
    to_number = models.CharField(max_length=16, blank=True, help_text="E.164, set when the message is handed to the gateway.")
    due_at = models.DateTimeField()
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.SCHEDULED)
    status_reason = models.CharField(max_length=200, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    backend = models.CharField(max_length=20, blank=True)
    provider_sid = models.CharField("Twilio message SID", max_length=64, blank=True)
    error_code = models.CharField(max_length=10, blank=True)
    error_message = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", null=True, blank=True)
    enqueued_at = models.DateTimeField(null=True, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    objects = OutboundMessageQuerySet.as_manager()

    class Meta:
        ordering = ["due_at", "id"]
        indexes = [
            models.Index(fields=["status", "due_at"]),
            models.Index(fields=["patient", "created_at"]),
            models.Index(fields=["provider_sid"]),
        ]
        constraints = [
            # One message that may still go (or went) per kind and occurrence. Cancelled and skipped rows
            # are left out, so a reminder cancelled while the number was wrong (or consent withdrawn) can be
            # planned again once it is put right, and never twice alongside a live one.
            models.UniqueConstraint(
                fields=["appointment", "appointment_start", "kind"],
                condition=Q(appointment__isnull=False) & ~Q(status__in=["cancelled", "skipped"]),
                name="one_live_message_per_kind_per_appointment_occurrence",
            ),
            models.CheckConstraint(
                condition=Q(appointment__isnull=True) | Q(appointment_start__isnull=False),
                name="appointment_message_has_occurrence_start",
            ),
        ]

    def __str__(self):
        return f"SMS {self.pk} ({self.kind}, {self.status})"

    @staticmethod
    def reminder_kind(days_before: int) -> str:
        return f"reminder_{days_before}d"

    @property
    def is_final(self) -> bool:
        return self.status in self.FINAL

    @property
    def kind_display(self) -> str:
        if self.kind == self.OPT_IN_INVITATION:
            return "Invitation to get in touch"
        if self.kind == self.CONFIRMATION:
            return "Booking confirmation"
        if self.kind == self.CONFIRMATION_MOVED:
            return "Confirmation of the new time"
        if self.kind == self.SLOT_OFFER:
            return "Offer of an earlier time"
        if self.kind == self.SLOT_OFFER_GONE:
            return "Offered time already gone"
        if self.kind.startswith("reminder_"):
            days = int(self.kind.removeprefix("reminder_").removesuffix("d") or 0)
            return "Reminder on the day" if days == 0 else f"Reminder {days} day{'s' if days != 1 else ''} before"
        return self.kind


class MessageEvent(models.Model):
    """Every change of an outbound message's status, and every delivery report received, with who
    (a user, the worker or Twilio) and when. Never edited or deleted."""

    class Source(models.TextChoices):
        PLANNER = "planner", "Planned"
        WORKER = "worker", "Queue worker"
        TWILIO = "twilio", "Twilio delivery report"
        RECONCILER = "reconciler", "Reconciliation"
        STAFF = "staff", "Staff"

    message = models.ForeignKey(OutboundMessage, on_delete=models.PROTECT, related_name="events")
    at = models.DateTimeField(default=timezone.now)
    source = models.CharField(max_length=12, choices=Source.choices)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", null=True, blank=True)
    old_status = models.CharField(max_length=12, blank=True)
    new_status = models.CharField(max_length=12, blank=True)
    # For delivery reports: the status Twilio reported, whether it moved ours, and its error code.
    reported_status = models.CharField(max_length=20, blank=True)
    applied = models.BooleanField(default=True)
    error_code = models.CharField(max_length=10, blank=True)
    detail = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["at", "id"]
        indexes = [models.Index(fields=["message", "at"])]

    def __str__(self):
        return f"SMS {self.message_id}: {self.old_status or '-'} -> {self.new_status or self.reported_status}"


class InboundMessage(models.Model):
    """A text a patient (or anyone) sent us, with what we understood it to mean. Never deleted."""

    class Meaning(models.TextChoices):
        CONFIRM = "confirm", "Confirmed the appointment"
        REARRANGE = "rearrange", "Asked to rearrange"
        OPT_OUT = "opt_out", "Asked to stop texts"
        OPT_IN = "opt_in", "Asked to start texts again"
        OFFER_REPLY = "offer_reply", "Answered an offer of an earlier time"
        OTHER = "other", "Other message"

    class Handling(models.TextChoices):
        APPLIED = "applied", "Applied"
        UNKNOWN_SENDER = "unknown_sender", "Number not recognised"
        SHARED_NUMBER = "shared_number", "Number belongs to more than one patient"
        NO_UPCOMING_APPOINTMENT = "no_upcoming_appointment", "No upcoming appointment to apply it to"
        FOR_STAFF = "for_staff", "Passed to admin staff"
        OFFER_TAKEN = "offer_taken", "Offered time booked"
        OFFER_GONE = "offer_gone", "Offered time already gone (told so)"

    provider_sid = models.CharField(max_length=64, unique=True)
    from_number = models.CharField(max_length=20)
    to_number = models.CharField(max_length=20, blank=True)
    body = models.TextField(blank=True)
    received_at = models.DateTimeField(default=timezone.now)
    patient = models.ForeignKey("scheduling.Patient", on_delete=models.PROTECT, related_name="inbound_messages", null=True, blank=True)
    appointment = models.ForeignKey(
        "scheduling.Appointment", on_delete=models.PROTECT, related_name="inbound_messages", null=True, blank=True
    )
    meaning = models.CharField(max_length=12, choices=Meaning.choices)
    handling = models.CharField(max_length=30, choices=Handling.choices)
    admin_task = models.ForeignKey("scheduling.AdminTask", on_delete=models.PROTECT, related_name="+", null=True, blank=True)

    class Meta:
        ordering = ["received_at", "id"]
        indexes = [models.Index(fields=["patient", "received_at"])]

    def __str__(self):
        return f"Reply {self.pk} ({self.meaning}, {self.handling})"


class DispatchHeartbeat(models.Model):
    """When the django-q2 schedule last ran the SMS dispatcher, and what that run did. One row
    (pk=1), overwritten by every run and read by /healthz. Operational only: no patient data."""

    last_run_at = models.DateTimeField(null=True, blank=True, help_text="Start of the last run that completed.")
    enqueued = models.PositiveIntegerField(default=0, help_text="Send tasks the last completed run enqueued.")
    reconciled = models.PositiveIntegerField(default=0, help_text="Rows stuck in sending it checked with Twilio.")
    in_quiet_hours = models.BooleanField(default=False, help_text="The last completed run fell in quiet hours.")
    ran_on = models.CharField(max_length=100, blank=True, help_text="host:pid of the worker that ran it.")
    last_failed_at = models.DateTimeField(null=True, blank=True)
    # The exception's class only: messages can carry numbers or text from a patient's row.
    last_error = models.CharField(max_length=100, blank=True)

    class Meta:
        verbose_name = "SMS dispatcher heartbeat"

    def __str__(self):
        return f"SMS dispatcher last ran {self.last_run_at:%Y-%m-%d %H:%M:%S}" if self.last_run_at else "SMS dispatcher never ran"
