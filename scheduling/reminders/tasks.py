"""django-q2 task entry points. Thin: each calls the service that staff screens and tests call too."""

from django.db import transaction

from scheduling.reminders import sending

DISPATCH_SCHEDULE_NAME = "painplatform: send due SMS"
DISPATCH_FUNCTION = "scheduling.reminders.tasks.dispatch_due_messages"


def dispatch_due_messages() -> int:
    return sending.dispatch_due_messages()


def send_message(message_id: int) -> str:
    return sending.send_message(message_id=message_id)


def ensure_dispatch_schedule(**kwargs) -> None:
    """One schedule row, whatever the number of clusters: every cluster's scheduler reads the same
    row and claims it before running it, so the dispatch is never duplicated across hosts."""
    from django_q.models import Schedule

    with transaction.atomic():
        schedule = Schedule.objects.select_for_update().filter(name=DISPATCH_SCHEDULE_NAME).first()
        if schedule is None:
            Schedule.objects.create(
                name=DISPATCH_SCHEDULE_NAME, func=DISPATCH_FUNCTION, schedule_type=Schedule.MINUTES, minutes=1, repeats=-1,
            )
        elif schedule.func != DISPATCH_FUNCTION:
            schedule.func = DISPATCH_FUNCTION
            schedule.save(update_fields=["func"])
