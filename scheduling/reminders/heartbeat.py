"""The SMS dispatcher's heartbeat: what /healthz reads to say when the django-q2 cluster last ran
the reminder schedule. One row, overwritten each minute (a history of 1,440 rows a day would tell
nobody anything the worker's logs do not)."""

import os
import socket

from django.utils import timezone

from scheduling.reminders.models import DispatchHeartbeat

HEARTBEAT_PK = 1


def _write(**fields) -> None:
    # update_or_create locks the row, and copes with two workers creating it at the same moment.
    DispatchHeartbeat.objects.update_or_create(pk=HEARTBEAT_PK, defaults=fields)


def _worker() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"[:100]


def record_dispatch_run(*, at, enqueued: int, reconciled: int, in_quiet_hours: bool = False) -> None:
    """A dispatcher run that completed: `at` is when it started."""
    _write(last_run_at=at, enqueued=enqueued, reconciled=reconciled, in_quiet_hours=in_quiet_hours, ran_on=_worker())


def record_dispatch_failure(*, error: BaseException, at=None) -> None:
    _write(last_failed_at=at or timezone.now(), last_error=type(error).__name__[:100], ran_on=_worker())


def current() -> DispatchHeartbeat | None:
    return DispatchHeartbeat.objects.filter(pk=HEARTBEAT_PK).first()
