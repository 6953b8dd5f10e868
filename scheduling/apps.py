from django.apps import AppConfig
from django.db.models.signals import post_migrate


class SchedulingConfig(AppConfig):
    name = "scheduling"
    verbose_name = "Pain Platform scheduling"

    def ready(self):
        from scheduling.roles import ensure_roles

        post_migrate.connect(ensure_roles, sender=self, dispatch_uid="scheduling.ensure_roles")

        from scheduling.booking.db import ensure_sqlite_overlap_guard

        post_migrate.connect(ensure_sqlite_overlap_guard, sender=self, dispatch_uid="scheduling.booking.overlap_guard")

        from scheduling.reminders import receivers  # noqa: F401  (connects the booking and call-list hooks)
        from scheduling.reminders.services import ensure_sms_defaults
        from scheduling.reminders.tasks import ensure_dispatch_schedule

        post_migrate.connect(ensure_sms_defaults, sender=self, dispatch_uid="scheduling.reminders.defaults")
        post_migrate.connect(ensure_dispatch_schedule, sender=self, dispatch_uid="scheduling.reminders.schedule")
