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
