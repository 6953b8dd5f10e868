"""django-q2 task entry points. Thin: each calls the service that staff screens and tests call too."""

from django.db import connection, transaction

from scheduling.reminders import heartbeat, sending

DISPATCH_SCHEDULE_NAME = "painplatform: send due SMS"
DISPATCH_FUNCTION = "scheduling.reminders.tasks.dispatch_due_messages"
# Any constant: serialises ensure_dispatch_schedule across processes that migrate at the same time.
_SCHEDULE_LOCK_KEY = 0x5350_4D53


def dispatch_due_messages() -> int:
    try:
        return sending.dispatch_due_messages()
    except Exception as exc:
        # /healthz reports a dispatcher that fails every minute; the worker's log has the traceback.
        heartbeat.record_dispatch_failure(error=exc)
        raise


def send_messages(message_ids: list[int]) -> dict[str, int]:
    """A batch of due rows; returns how many ended in each status (the outbox has the details)."""
    counts = {}
    for status in sending.send_messages(message_ids=message_ids).values():
        counts[status] = counts.get(status, 0) + 1
    return counts


def send_message(message_id: int) -> str:
    """One row: tasks enqueued by an earlier version, still waiting in the queue after an upgrade."""
    return sending.send_message(message_id=message_id)


def ensure_dispatch_schedule(**kwargs) -> None:
    """One schedule row, whatever the number of clusters: every cluster's scheduler reads the same
    row and claims it (select_for_update) before running it, so the dispatch is never duplicated
    across hosts. Two hosts migrating at once must not create two rows either: on PostgreSQL an
    advisory lock serialises them (select_for_update cannot lock a row that does not exist yet),
    and any duplicate left by an older version is removed."""
    from django_q.models import Schedule

    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_SCHEDULE_LOCK_KEY])
        rows = list(Schedule.objects.select_for_update().filter(name=DISPATCH_SCHEDULE_NAME).order_by("pk"))
        if not rows:
            Schedule.objects.create(
                name=DISPATCH_SCHEDULE_NAME, func=DISPATCH_FUNCTION, schedule_type=Schedule.MINUTES, minutes=1, repeats=-1,
            )
            return
        schedule, duplicates = rows[0], rows[1:]
        if duplicates:
            Schedule.objects.filter(pk__in=[d.pk for d in duplicates]).delete()
        if schedule.func != DISPATCH_FUNCTION:
            schedule.func = DISPATCH_FUNCTION
            schedule.save(update_fields=["func"])
