"""Django admin for the call list: managers edit the contact policy; invitations and effects are read-only."""

from django.contrib import admin

from scheduling.calls.models import CallOutcomeEffect, ContactPolicy, OptInInvitation
from scheduling.calls.services import save_contact_policy


@admin.register(ContactPolicy)
class ContactPolicyAdmin(admin.ModelAdmin):
    list_display = [
        "__str__",
        "max_attempts",
        "min_working_days_between",
        "vary_time_of_day",
        "opt_in_days",
        "undo_minutes",
    ]

    def has_add_permission(self, request):
        return not ContactPolicy.objects.exists() and super().has_add_permission(request)

    def has_delete_permission(self, request, obj=None):
        return False

    def changelist_view(self, request, extra_context=None):
        ContactPolicy.current()  # the single row exists before anyone looks for it
        return super().changelist_view(request, extra_context)

    def save_model(self, request, obj, form, change):
        save_contact_policy(policy=obj, actor=request.user)  # audited


class _ReadOnly(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(OptInInvitation)
class OptInInvitationAdmin(_ReadOnly):
    list_display = ["referral", "due_at", "deadline", "sms_possible", "sent_at", "withdrawn_at"]
    list_filter = ["sms_possible", "deadline"]


@admin.register(CallOutcomeEffect)
class CallOutcomeEffectAdmin(_ReadOnly):
    list_display = [
        "attempt",
        "button",
        "appointment_outcome_before",
        "appointment_outcome_after",
        "referral_status_before",
        "referral_status_after",
    ]
