"""Django admin for the booking configuration managers change: slot lengths, working hours, absences.
Every save (and removing working hours) goes through the booking services, which audit it."""

from django.contrib import admin

from scheduling.adminparts import SingletonSettingsAdmin
from scheduling.booking.models import AvailabilityException, BookingSettings, WorkingHours
from scheduling.booking.services import (
    remove_working_hours,
    save_availability_exception,
    save_booking_settings,
    save_working_hours,
)


@admin.register(BookingSettings)
class BookingSettingsAdmin(SingletonSettingsAdmin):
    def save_model(self, request, obj, form, change):
        save_booking_settings(booking_settings=obj, actor=request.user)


@admin.register(WorkingHours)
class WorkingHoursAdmin(admin.ModelAdmin):
    list_display = ["practitioner", "weekday", "starts", "ends"]
    list_filter = ["practitioner", "weekday"]

    def save_model(self, request, obj, form, change):
        save_working_hours(working_hours=obj, actor=request.user)

    def delete_model(self, request, obj):
        remove_working_hours(working_hours=obj, actor=request.user)

    def delete_queryset(self, request, queryset):
        for working_hours in queryset:
            remove_working_hours(working_hours=working_hours, actor=request.user)


@admin.register(AvailabilityException)
class AvailabilityExceptionAdmin(admin.ModelAdmin):
    list_display = ["practitioner", "kind", "starts_at", "ends_at", "withdrawn_at"]
    list_filter = ["kind", "practitioner", "starts_at"]
    readonly_fields = ["created_by", "created_at"]

    def has_delete_permission(self, request, obj=None):
        return False  # withdraw instead (set "withdrawn at"), so the record stays

    def save_model(self, request, obj, form, change):
        save_availability_exception(exception=obj, actor=request.user)
