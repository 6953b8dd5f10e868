from django.contrib import admin

from scheduling.reports.models import ImportedEvent


@admin.register(ImportedEvent)
class ImportedEventAdmin(admin.ModelAdmin):
    list_display = ["event", "source_referral_id", "file_name", "line_number", "imported_at"]
    list_filter = ["event"]
    search_fields = ["source_referral_id", "file_name"]
    readonly_fields = [f.name for f in ImportedEvent._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
