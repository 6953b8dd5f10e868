"""Django admin bases shared by the capabilities' admin modules."""

from django.contrib import admin


class ReadOnlyAdmin(admin.ModelAdmin):
    """Viewable and searchable by whoever has the model's view permission; never added, changed or
    deleted here. Records change only through the service functions, which audit them."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class NoDeleteAdmin(admin.ModelAdmin):
    def has_delete_permission(self, request, obj=None):
        return False


class SingletonSettingsAdmin(NoDeleteAdmin):
    """A scheduling.singletons.SingletonSettings model: its single row may be added while it does not
    exist yet, and is never deleted."""

    def has_add_permission(self, request):
        return not self.model.objects.exists()
