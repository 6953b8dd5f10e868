"""Django admin for every model. Records that must never change (call attempts, audit, appointments'
outcomes) are read-only here: changes go through the service functions so they are audited."""

from django.contrib import admin

from scheduling.adminparts import NoDeleteAdmin, ReadOnlyAdmin, SingletonSettingsAdmin
from scheduling.audit import AuditEntry
from scheduling.booking.models import Appointment, Rearrangement
from scheduling.calls.models import ContactAttempt, ContactAttemptUndo
from scheduling.caseload.models import (
    CaseloadCover,
    ClinicalNote,
    Patient,
    PractitionerProfile,
    Referral,
    ServiceSettings,
    Team,
)
from scheduling.caseload.services import save_service_settings
from scheduling.worklist.models import AdminTask, WorklistClaim


@admin.register(Team)
class TeamAdmin(NoDeleteAdmin):
    search_fields = ["name"]


@admin.register(PractitionerProfile)
class PractitionerProfileAdmin(NoDeleteAdmin):
    list_display = ["__str__", "team", "job_title", "tries_before_dna", "is_active_clinician"]
    list_filter = ["team", "is_active_clinician"]
    search_fields = ["user__first_name", "user__last_name", "user__username"]


@admin.register(CaseloadCover)
class CaseloadCoverAdmin(NoDeleteAdmin):
    list_display = ["covering", "covered", "starts_on", "ends_on"]
    list_filter = ["starts_on"]
    readonly_fields = ["created_by", "created_at"]

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)


@admin.register(Patient)
class PatientAdmin(ReadOnlyAdmin):
    list_display = ["nhs_number", "family_name", "given_name", "date_of_birth", "sms_consent", "sms_opted_out"]
    search_fields = ["nhs_number", "family_name", "given_name"]
    list_filter = ["sms_consent", "sms_opted_out", "voicemail_allowed"]


@admin.register(Referral)
class ReferralAdmin(ReadOnlyAdmin):
    list_display = ["id", "patient", "source", "received_on", "assigned_practitioner", "status", "end_code"]
    list_filter = ["status", "source", "assigned_practitioner", "received_on", "step"]
    search_fields = ["patient__nhs_number", "patient__family_name", "patient__given_name", "external_id"]
    date_hierarchy = "received_on"
    list_select_related = ["patient", "assigned_practitioner"]


@admin.register(Appointment)
class AppointmentAdmin(ReadOnlyAdmin):
    list_display = ["id", "referral", "practitioner", "appointment_type", "start", "duration_minutes", "outcome"]
    list_filter = ["outcome", "appointment_type", "practitioner", "start"]
    search_fields = ["referral__patient__nhs_number", "referral__patient__family_name"]
    date_hierarchy = "start"
    list_select_related = ["referral__patient", "practitioner"]


@admin.register(Rearrangement)
class RearrangementAdmin(ReadOnlyAdmin):
    list_display = ["original", "replacement", "asked_by", "asked_at", "recorded_by"]
    list_filter = ["asked_by", "asked_at"]


@admin.register(ContactAttempt)
class ContactAttemptAdmin(ReadOnlyAdmin):
    list_display = ["attempted_at", "referral", "practitioner", "outcome", "minutes_spent"]
    list_filter = ["outcome", "practitioner", "attempted_at"]
    search_fields = ["referral__patient__nhs_number", "referral__patient__family_name"]
    date_hierarchy = "attempted_at"
    list_select_related = ["referral__patient", "practitioner"]


@admin.register(ContactAttemptUndo)
class ContactAttemptUndoAdmin(ReadOnlyAdmin):
    list_display = ["attempt", "undone_by", "undone_at", "reason"]


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin):
    """Every audited change, settings, templates and rules included. A patient's details (names, phone
    numbers) are never shown here, in the list or on an entry: they stay on the patient's own pages."""

    list_display = ["at", "subject_type", "subject_id", "action", "field", "change", "actor", "referral", "appointment"]
    list_filter = ["subject_type", "action", "field", "at"]
    search_fields = ["referral__patient__nhs_number", "patient__nhs_number"]
    date_hierarchy = "at"
    list_select_related = ["actor", "referral__patient", "appointment"]

    @admin.display(description="from → to")
    def change(self, entry):
        if entry.subject_type == AuditEntry.Subject.PATIENT:
            return "(on the patient's details page)"
        if entry.field:
            return f"{entry.old_value or '-'} → {entry.new_value or '-'}"
        changes = entry.data.get("changes") or entry.data.get("values") or {}
        return "; ".join(
            f"{name}: {' → '.join(value) if isinstance(value, list) else value}" for name, value in changes.items()
        )

    def get_fields(self, request, obj=None):
        fields = super().get_fields(request, obj)
        if obj is not None and obj.subject_type == AuditEntry.Subject.PATIENT:
            return [f for f in fields if f not in ("old_value", "new_value", "data")]
        return fields


@admin.register(WorklistClaim)
class WorklistClaimAdmin(ReadOnlyAdmin):
    list_display = ["taken_at", "item_key", "taken_by", "released_at", "released_by", "release"]
    list_filter = ["release", "taken_at"]


@admin.register(ClinicalNote)
class ClinicalNoteAdmin(ReadOnlyAdmin):
    list_display = ["referral", "author", "written_at"]


@admin.register(AdminTask)
class AdminTaskAdmin(ReadOnlyAdmin):
    list_display = ["raised_at", "kind", "source", "patient", "resolved_at"]
    list_filter = ["kind", "source", "resolved_at"]


@admin.register(ServiceSettings)
class ServiceSettingsAdmin(SingletonSettingsAdmin):
    def save_model(self, request, obj, form, change):
        save_service_settings(service_settings=obj, actor=request.user)  # audited
import scheduling.booking.admin  # noqa: E402,F401  (booking configuration)

from scheduling.calls import admin as calls_admin  # noqa: E402,F401  (contact policy, opt-in invitations)
from scheduling.reports import admin as reports_admin  # noqa: E402,F401
from scheduling.reminders import admin as reminders_admin  # noqa: E402,F401
