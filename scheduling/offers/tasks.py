"""django-q2 task entry points for offers. Thin: each calls the service tests call too."""

from django.db import connection, transaction

from scheduling.offers import services

ADVANCE_SCHEDULE_NAME = "painplatform: advance slot offers"
ADVANCE_FUNCTION = services.ADVANCE_TASK
_SCHEDULE_LOCK_KEY = 0x4F46_4652  # any constant: serialises ensure_offer_schedule across processes


def advance_offers(slot_id: int | None = None) -> dict:
    return services.advance_offers(slot_id=slot_id)


def ensure_offer_schedule(**kwargs) -> None:
    """One every-minute schedule row for the waves and expiries (as reminders.tasks.ensure_dispatch_schedule)."""
    from django_q.models import Schedule

    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_SCHEDULE_LOCK_KEY])
        rows = list(Schedule.objects.select_for_update().filter(name=ADVANCE_SCHEDULE_NAME).order_by("pk"))
        if not rows:
            Schedule.objects.create(name=ADVANCE_SCHEDULE_NAME, func=ADVANCE_FUNCTION, schedule_type=Schedule.MINUTES,
                                    minutes=1, repeats=-1)
            return
        if rows[1:]:
            Schedule.objects.filter(pk__in=[r.pk for r in rows[1:]]).delete()
