"""Django admin for the SMS outbox: everything viewable, nothing deletable. Messages and replies
are records, so they are read-only; rules, templates and quiet hours have their own manager pages
(which validate) and are read-only here too."""

from django.contrib import admin

from scheduling.adminparts import ReadOnlyAdmin
from scheduling.reminders.models import (
    DispatchHeartbeat,
    InboundMessage,
    MessageEvent,
    MessageTemplate,
    OutboundMessage,
    ReminderRule,
    SmsSettings,
)


class MessageEventInline(admin.TabularInline):
    model = MessageEvent
    extra = 0
    can_delete = False
    fields = ["at", "source", "actor", "old_status", "new_status", "reported_status", "applied", "error_code", "detail"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(OutboundMessage)
class OutboundMessageAdmin(ReadOnlyAdmin):
    list_display = ["id", "kind", "status", "due_at", "patient", "appointment", "attempts", "provider_sid", "error_code"]
    list_filter = ["status", "kind", "backend"]
    search_fields = ["provider_sid", "patient__nhs_number"]
    date_hierarchy = "due_at"
    list_select_related = ["patient", "appointment"]
    inlines = [MessageEventInline]


@admin.register(InboundMessage)
class InboundMessageAdmin(ReadOnlyAdmin):
    list_display = ["id", "received_at", "meaning", "handling", "patient", "appointment"]
    list_filter = ["meaning", "handling"]
    search_fields = ["provider_sid", "patient__nhs_number"]
    list_select_related = ["patient", "appointment"]


@admin.register(MessageTemplate)
class MessageTemplateAdmin(ReadOnlyAdmin):
    list_display = ["key", "updated_at", "updated_by"]


@admin.register(ReminderRule)
class ReminderRuleAdmin(ReadOnlyAdmin):
    list_display = ["appointment_type", "days_before", "send_at", "active", "updated_at"]


@admin.register(SmsSettings)
class SmsSettingsAdmin(ReadOnlyAdmin):
    list_display = ["quiet_hours_start", "quiet_hours_end", "minimum_notice_minutes", "max_send_attempts", "send_confirmations"]


@admin.register(DispatchHeartbeat)
class DispatchHeartbeatAdmin(ReadOnlyAdmin):
    """Which worker host ran the dispatcher last: here, not on the public /healthz."""

    list_display = ["last_run_at", "enqueued", "reconciled", "in_quiet_hours", "ran_on", "last_failed_at", "last_error"]
