"""Several hosts, one reminder schedule: created once however many hosts migrate, run once however
many qclusters look at it (django-q2's scheduler claims the row with select_for_update)."""

import datetime as dt
import threading

import pytest
from django.db import connection, connections
from django.utils import timezone
from django_q.brokers import get_broker
from django_q.conf import Conf
from django_q.models import OrmQ, Schedule
from django_q.scheduler import scheduler

from scheduling.reminders.tasks import DISPATCH_FUNCTION, DISPATCH_SCHEDULE_NAME, ensure_dispatch_schedule


def dispatch_schedules():
    return Schedule.objects.filter(name=DISPATCH_SCHEDULE_NAME)


@pytest.mark.django_db
def test_migrating_again_keeps_one_dispatch_schedule():
    ensure_dispatch_schedule()
    ensure_dispatch_schedule()
    assert dispatch_schedules().count() == 1
    assert dispatch_schedules().get().func == DISPATCH_FUNCTION


@pytest.mark.django_db
def test_a_duplicate_dispatch_schedule_is_removed_and_the_first_kept():
    first = dispatch_schedules().get()
    Schedule.objects.create(name=DISPATCH_SCHEDULE_NAME, func=DISPATCH_FUNCTION, schedule_type=Schedule.MINUTES, minutes=1)
    ensure_dispatch_schedule()
    assert list(dispatch_schedules().values_list("pk", flat=True)) == [first.pk]


def in_threads(count: int, target) -> list[BaseException]:
    """Run `target` in `count` threads released together; each thread uses its own connection."""
    start = threading.Barrier(count, timeout=20)
    errors = []

    def run():
        try:
            start.wait()
            target()
        except BaseException as exc:  # reported by the test
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return errors


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_hosts_migrating_at_the_same_moment_create_one_dispatch_schedule():
    if connection.vendor != "postgresql":
        pytest.skip("Real concurrent connections are tested on PostgreSQL")
    for _ in range(5):
        dispatch_schedules().delete()
        assert in_threads(3, ensure_dispatch_schedule) == []
        assert dispatch_schedules().count() == 1


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_two_clusters_scheduling_at_the_same_moment_enqueue_the_dispatch_once(monkeypatch):
    if connection.vendor != "postgresql":
        pytest.skip("Real concurrent connections are tested on PostgreSQL")
    monkeypatch.setattr(Conf, "ORM", "default")  # tasks land in the database broker, where we can count them
    ensure_dispatch_schedule()
    # Only the dispatch is counted: the offers' own every-minute schedule waits.
    Schedule.objects.exclude(name=DISPATCH_SCHEDULE_NAME).update(next_run=timezone.now() + dt.timedelta(days=365))
    for round_ in range(3):
        OrmQ.objects.all().delete()
        dispatch_schedules().update(next_run=timezone.now() - dt.timedelta(seconds=1))
        assert in_threads(2, lambda: scheduler(broker=get_broker())) == []
        assert OrmQ.objects.count() == 1, f"round {round_}: the dispatch was enqueued {OrmQ.objects.count()} times"
        assert dispatch_schedules().get().next_run > timezone.now()
