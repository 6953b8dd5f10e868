from django.apps import AppConfig
from django.db.models.signals import post_migrate


class SchedulingConfig(AppConfig):
    name = "scheduling"
    verbose_name = "Pain Platform scheduling"

    def ready(self):
        # Imported here, not at the top: Django loads this module before any model exists. This is the
        # one place the capabilities' hooks are wired (README: "The stack and its hooks").
        from scheduling.booking import receivers as booking_receivers  # noqa: F401
        from scheduling.booking.db import ensure_sqlite_overlap_guard
        from scheduling.reminders import receivers as reminders_receivers  # noqa: F401
        from scheduling.offers import receivers as offers_receivers  # noqa: F401
        from scheduling.offers.tasks import ensure_offer_schedule
        from scheduling.reminders.services import ensure_sms_defaults
        from scheduling.reminders.tasks import ensure_dispatch_schedule
        from scheduling.roles import ADMIN_STAFF, MANAGER, ensure_roles, extend_role
        from scheduling.worklist import receivers as worklist_receivers  # noqa: F401  (after reminders: its words come second)

        # Offers: managers change their settings; admin staff and managers see and stop them (book_appointments).
        extend_role(MANAGER, ["view_offersettings", "change_offersettings", "view_offeredslot", "view_offerinvitation"])
        extend_role(ADMIN_STAFF, ["view_offeredslot", "view_offerinvitation"])
        post_migrate.connect(ensure_roles, sender=self, dispatch_uid="scheduling.ensure_roles")
        post_migrate.connect(ensure_sqlite_overlap_guard, sender=self, dispatch_uid="scheduling.booking.overlap_guard")
        post_migrate.connect(ensure_sms_defaults, sender=self, dispatch_uid="scheduling.reminders.defaults")
        post_migrate.connect(ensure_dispatch_schedule, sender=self, dispatch_uid="scheduling.reminders.schedule")
        post_migrate.connect(ensure_offer_schedule, sender=self, dispatch_uid="scheduling.offers.schedule")
