"""Django admin for the booking configuration managers change: slot lengths, working hours, absences."""

from django.contrib import admin

from scheduling.adminparts import SingletonSettingsAdmin
from scheduling.booking.models import AvailabilityException, BookingSettings, WorkingHours


admin.site.register(BookingSettings, SingletonSettingsAdmin)


@admin.register(WorkingHours)
class WorkingHoursAdmin(admin.ModelAdmin):
    list_display = ["practitioner", "weekday", "starts", "ends"]
    list_filter = ["practitioner", "weekday"]


@admin.register(AvailabilityException)
class AvailabilityExceptionAdmin(admin.ModelAdmin):
    list_display = ["practitioner", "kind", "starts_at", "ends_at", "withdrawn_at"]
    list_filter = ["kind", "practitioner", "starts_at"]
    readonly_fields = ["created_by", "created_at"]

    def has_delete_permission(self, request, obj=None):
        return False  # withdraw instead (set "withdrawn at"), so the record stays

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)
