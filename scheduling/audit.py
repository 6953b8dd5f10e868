"""The audit log: one entry for every change of anything the service keeps (a referral, an appointment, a
patient's details or consent, a setting, a message template, a rule, an absence): what, what happened, who,
when, and from what to what. The capabilities' services write it with log_action inside the transaction
that makes the change; nothing edits or deletes an entry.

A base module: every capability may import it and it imports none of them (subjects are told apart by their
model's name, and the links are lazy references)."""

from django.conf import settings
from django.db import models, transaction
from django.utils import timezone


class AuditEntry(models.Model):
    """One change of one subject. Field-level changes keep `field`, `old_value` and `new_value` (shown in words
    on the referral and patient pages); a change of several settings at once keeps them in
    `data["changes"]` ({field: [old, new]}), an added row its values in `data["values"]`."""

    class Subject(models.TextChoices):
        REFERRAL = "referral", "Referral"
        APPOINTMENT = "appointment", "Appointment"
        PATIENT = "patient", "Patient"
        SERVICE_SETTINGS = "service_settings", "Service settings"
        BOOKING_SETTINGS = "booking_settings", "Booking settings"
        WORKING_HOURS = "working_hours", "Working hours"
        AVAILABILITY_EXCEPTION = "availability_exception", "Availability exception"
        CONTACT_POLICY = "contact_policy", "Contact policy"
        SMS_SETTINGS = "sms_settings", "SMS settings"
        MESSAGE_TEMPLATE = "message_template", "Message template"
        REMINDER_RULE = "reminder_rule", "Reminder rule"
        OFFER_SETTINGS = "offer_settings", "Offer settings"
        OFFERED_SLOT = "offered_slot", "Offered slot"
        OFFER_INVITATION = "offer_invitation", "Slot offer to a patient"

    class Via(models.TextChoices):
        """How a change came in when nobody on the staff made it (actor None): blank for the system or staff."""

        SELF_SERVICE = "self_service", "By the patient, self-service"

    class Action(models.TextChoices):
        CHANGED = "changed", "Changed"
        ADDED = "added", "Added"
        WITHDRAWN = "withdrawn", "Withdrawn"
        REMOVED = "removed", "Removed"

    subject_type = models.CharField(max_length=30, choices=Subject.choices)
    subject_id = models.PositiveBigIntegerField()
    action = models.CharField(max_length=20, choices=Action.choices, default=Action.CHANGED)
    # Links that put an entry on a referral page: the referral's own entries and its appointments', and (via
    # `patient`, set when the subject is the patient) the changes to the patient's details and consent.
    referral = models.ForeignKey(
        "scheduling.Referral", on_delete=models.PROTECT, related_name="audit_entries", null=True, blank=True
    )
    appointment = models.ForeignKey(
        "scheduling.Appointment", on_delete=models.PROTECT, related_name="audit_entries", null=True, blank=True
    )
    # Indexed with `at` below (its lookups are always a patient's entries by time).
    patient = models.ForeignKey(
        "scheduling.Patient", on_delete=models.PROTECT, related_name="audit_entries", null=True, blank=True,
        db_index=False,
    )
    field = models.CharField(max_length=50, blank=True)
    # Long enough for a name (100) or a phone number; staff read them on the patient's pages.
    old_value = models.CharField(max_length=200, blank=True)
    new_value = models.CharField(max_length=200, blank=True)
    data = models.JSONField(default=dict, blank=True)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", null=True, blank=True)
    at = models.DateTimeField(default=timezone.now)
    reason = models.CharField(max_length=200, blank=True)
    via = models.CharField(max_length=20, choices=Via.choices, blank=True, default="")

    class Meta:
        ordering = ["at", "id"]
        verbose_name_plural = "audit entries"
        indexes = [
            models.Index(fields=["referral", "at"], name="scheduling__referra_66cd38_idx"),
            models.Index(fields=["patient", "at"], name="audit_patient_at_idx"),
            models.Index(fields=["subject_type", "subject_id", "at"], name="audit_subject_at_idx"),
        ]

    def __str__(self):
        # No values and nothing about the patient: __str__ reaches logs and admin pages.
        what = f" {self.field}" if self.field else ""
        return f"{self.get_subject_type_display()} {self.subject_id}: {self.get_action_display().lower()}{what}"


# What each model is as a subject, by its model name (so this module imports no capability).
SUBJECT_OF_MODEL = {
    "referral": AuditEntry.Subject.REFERRAL,
    "appointment": AuditEntry.Subject.APPOINTMENT,
    "patient": AuditEntry.Subject.PATIENT,
    "servicesettings": AuditEntry.Subject.SERVICE_SETTINGS,
    "bookingsettings": AuditEntry.Subject.BOOKING_SETTINGS,
    "workinghours": AuditEntry.Subject.WORKING_HOURS,
    "availabilityexception": AuditEntry.Subject.AVAILABILITY_EXCEPTION,
    "contactpolicy": AuditEntry.Subject.CONTACT_POLICY,
    "smssettings": AuditEntry.Subject.SMS_SETTINGS,
    "messagetemplate": AuditEntry.Subject.MESSAGE_TEMPLATE,
    "reminderrule": AuditEntry.Subject.REMINDER_RULE,
    "offersettings": AuditEntry.Subject.OFFER_SETTINGS,
    "offeredslot": AuditEntry.Subject.OFFERED_SLOT,
    "offerinvitation": AuditEntry.Subject.OFFER_INVITATION,
}
# Bookkeeping that changes with every save; the entry's own actor and time say it.
NOT_AUDITED_FIELDS = frozenset({"id", "updated_at", "updated_by", "created_at", "created_by"})


def log_action(
    *,
    subject,
    actor,
    action: str = AuditEntry.Action.CHANGED,
    field: str = "",
    old="",
    new="",
    reason: str = "",
    data: dict | None = None,
    referral=None,
    appointment=None,
    at=None,
    via: str = "",
) -> AuditEntry:
    """Write one audit entry about `subject` (a saved model instance). `actor` is the person who made the
    change, None for the system or the patient (a STOP text). Call inside the transaction that makes the
    change, so the change and its entry commit together. An entry about a referral, an appointment or a
    patient is linked to it (and an appointment's to its referral), which puts it on the referral page."""
    subject_type = SUBJECT_OF_MODEL[subject._meta.model_name]
    if subject_type == AuditEntry.Subject.REFERRAL:
        referral = referral or subject
    elif subject_type == AuditEntry.Subject.APPOINTMENT:
        appointment = appointment or subject
    return AuditEntry.objects.create(
        subject_type=subject_type,
        subject_id=subject.pk,
        action=action,
        referral_id=referral.pk if referral is not None else getattr(appointment, "referral_id", None),
        appointment=appointment,
        patient=subject if subject_type == AuditEntry.Subject.PATIENT else None,
        field=field,
        old_value=str(old or ""),
        new_value=str(new if new is not None else ""),
        data=data or {},
        actor=actor,
        at=at or timezone.now(),
        reason=(reason or "")[:200],
        via=via,
    )


def record_change(
    *, referral, field: str, old, new, actor=None, appointment=None, reason: str = "", at=None, via: str = ""
) -> AuditEntry:
    """One field of a referral, or of one of its appointments, changed (the referral page's history). `via`
    says the patient did it themselves (AuditEntry.Via), when actor is None."""
    return log_action(
        subject=appointment or referral, actor=actor, field=field, old=old, new=new, reason=reason, at=at,
        referral=referral, appointment=appointment, via=via,
    )


def _audited_values(instance) -> dict[str, str]:
    return {
        f.name: f.value_to_string(instance)
        for f in instance._meta.concrete_fields
        if f.name not in NOT_AUDITED_FIELDS
    }


def changes_between(before: dict[str, str], after: dict[str, str]) -> dict[str, list[str]]:
    """{field: [old, new]} for each audited field whose value differs."""
    return {name: [before.get(name, ""), value] for name, value in after.items() if before.get(name, "") != value}


def save_and_log(*, instance, actor, action: str | None = None, reason: str = "", at=None) -> AuditEntry | None:
    """Save a row a manager edits (a setting, a template, a rule, working hours, an absence) and log what
    changed, in one transaction with the row locked: a new row as added with its values, a changed one with
    {field: [old, new]}. Saving it unchanged logs nothing and returns None. `action` names a change that is
    more than an edit (an absence withdrawn)."""
    model = type(instance)
    with transaction.atomic():
        stored = model.objects.select_for_update().filter(pk=instance.pk).first() if instance.pk is not None else None
        instance.save()
        if stored is None:
            return log_action(
                subject=instance, actor=actor, action=action or AuditEntry.Action.ADDED, reason=reason, at=at,
                data={"values": _audited_values(instance)},
            )
        changes = changes_between(_audited_values(stored), _audited_values(instance))
        if not changes:
            return None
        return log_action(
            subject=instance, actor=actor, action=action or AuditEntry.Action.CHANGED, reason=reason, at=at,
            data={"changes": changes},
        )


def delete_and_log(*, instance, actor, reason: str = "", at=None) -> AuditEntry:
    """Delete a configuration row a manager may remove (a block of working hours), keeping what it was."""
    with transaction.atomic():
        values = _audited_values(instance)
        pk = instance.pk
        instance.delete()
        instance.pk = pk  # the entry names what was removed
        return log_action(
            subject=instance, actor=actor, action=AuditEntry.Action.REMOVED, reason=reason, at=at,
            data={"values": values},
        )
