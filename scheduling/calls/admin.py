"""Django admin for the call list: managers edit the contact policy; invitations and effects are read-only."""

from django.contrib import admin

from scheduling.adminparts import ReadOnlyAdmin, SingletonSettingsAdmin
from scheduling.calls.models import CallOutcomeEffect, ContactPolicy, OptInInvitation
from scheduling.calls.services import save_contact_policy


@admin.register(ContactPolicy)
class ContactPolicyAdmin(SingletonSettingsAdmin):
    list_display = [
        "__str__",
        "max_attempts",
        "min_working_days_between",
        "vary_time_of_day",
        "opt_in_days",
        "undo_minutes",
    ]

    def has_add_permission(self, request):
        # Added by hand only with the add permission (no role has it): the changelist creates the row.
        return super().has_add_permission(request) and request.user.has_perm("scheduling.add_contactpolicy")

    def changelist_view(self, request, extra_context=None):
        ContactPolicy.current()  # the single row exists before anyone looks for it
        return super().changelist_view(request, extra_context)

    def save_model(self, request, obj, form, change):
        save_contact_policy(policy=obj, actor=request.user)  # audited


@admin.register(OptInInvitation)
class OptInInvitationAdmin(ReadOnlyAdmin):
    list_display = ["referral", "due_at", "deadline", "sms_possible", "sent_at", "withdrawn_at"]
    list_filter = ["sms_possible", "deadline"]


@admin.register(CallOutcomeEffect)
class CallOutcomeEffectAdmin(ReadOnlyAdmin):
    list_display = [
        "attempt",
        "button",
        "appointment_outcome_before",
        "appointment_outcome_after",
        "referral_status_before",
        "referral_status_after",
    ]
