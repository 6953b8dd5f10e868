"""What /healthz reports: is anything wrong that a person must fix? No patient data: counts and
times only.

    database   reachable (SELECT 1)
    schedule   when the django-q2 cluster last ran the SMS dispatcher (its heartbeat row), and
               whether that run failed
    messages   texts overdue (due, not claimed by a worker) and texts stuck in "sending"
    sms        the SMS backend is set up (console, or twilio with credentials and a sender)
    queue      the broker answers; on Redis, how many qclusters are running and tasks waiting

Thresholds (chosen for a schedule that runs every minute and a scheduler that looks every 30 s,
so a healthy dispatcher is at most about 90 s old):

    SCHEDULE_STALE_AFTER   3 minutes without a completed dispatcher run is unhealthy
    OVERDUE_AFTER          10 minutes past due and not claimed is overdue; counted only when
                           those 10 minutes were all outside quiet hours, so the backlog that
                           quiet hours hold back is not an alarm the moment they end
    STUCK_GRACE            a text "sending" for SMS_STUCK_AFTER_SECONDS is the reconciler's to
                           settle at its next run; still "sending" 3 minutes after that is stuck
"""

import datetime

from django.conf import settings
from django.db import DatabaseError, connection
from django.utils import timezone

from scheduling.reminders import gateway, heartbeat
from scheduling.reminders.models import OutboundMessage, SmsSettings
from scheduling.reminders.services import in_quiet_hours
from scheduling.reminders.tasks import DISPATCH_SCHEDULE_NAME

SCHEDULE_STALE_AFTER = datetime.timedelta(minutes=3)
OVERDUE_AFTER = datetime.timedelta(minutes=10)
STUCK_GRACE = datetime.timedelta(minutes=3)
# A broken broker must not hang the health check (nor the web worker answering it).
BROKER_TIMEOUT_SECONDS = 3


def _iso(moment):
    return moment.isoformat() if moment else None


def _minutes(delta: datetime.timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


def check_database() -> tuple[dict, list[str]]:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError as exc:
        return {"ok": False, "error": type(exc).__name__}, [
            f"The database cannot be reached ({type(exc).__name__}): check PostgreSQL is running and "
            "DATABASE_URL is right. Nothing can be booked or logged, and no texts are sent."
        ]
    return {"ok": True}, []


def check_schedule(*, now) -> tuple[dict, list[str]]:
    from django_q.models import Schedule

    beat = heartbeat.current()
    schedule_exists = Schedule.objects.filter(name=DISPATCH_SCHEDULE_NAME).exclude(repeats=0).exists()
    last_run = beat.last_run_at if beat else None
    age = (now - last_run) if last_run else None
    report = {
        "ok": True,
        "name": DISPATCH_SCHEDULE_NAME,
        "exists": schedule_exists,
        "last_run_at": _iso(last_run),
        "age_seconds": int(age.total_seconds()) if age is not None else None,
        "stale_after_seconds": int(SCHEDULE_STALE_AFTER.total_seconds()),
        "last_run_enqueued": beat.enqueued if beat else None,
        "last_run_reconciled": beat.reconciled if beat else None,
        "last_run_in_quiet_hours": beat.in_quiet_hours if beat else None,
        "last_failed_at": _iso(beat.last_failed_at) if beat else None,
        "last_error": beat.last_error if beat else "",
    }
    problems = []
    if not schedule_exists:
        problems.append(
            f'The schedule "{DISPATCH_SCHEDULE_NAME}" is missing or switched off: run "python manage.py migrate", '
            "which re-creates it. Until then no texts are sent."
        )
    if last_run is None:
        problems.append(
            "The reminder schedule has never run: start a queue worker (python manage.py qcluster). "
            "Its scheduler runs it about 30 seconds after starting."
        )
    elif age > SCHEDULE_STALE_AFTER:
        problems.append(
            f"The reminder schedule last ran {_minutes(age)} ago (more than {_minutes(SCHEDULE_STALE_AFTER)}): "
            "check a queue worker (qcluster) is running and can reach Redis and the database. "
            "Texts due meanwhile are sent when it runs again, if still in time."
        )
    if beat and beat.last_failed_at and (last_run is None or beat.last_failed_at > last_run):
        problems.append(
            f"The reminder dispatcher failed at its last run ({beat.last_error or 'error'} at "
            f"{timezone.localtime(beat.last_failed_at):%H:%M} UK time): see the queue worker's log."
        )
    report["ok"] = not problems
    return report, problems


def check_messages(*, now) -> tuple[dict, list[str]]:
    Status = OutboundMessage.Status
    sms_settings = SmsSettings.current()
    quiet_now = in_quiet_hours(now, sms_settings)
    cutoff = now - OVERDUE_AFTER
    # Overdue counts only when the whole window was sendable (outside quiet hours at both ends).
    overdue_counted = not quiet_now and not in_quiet_hours(cutoff, sms_settings)
    overdue = OutboundMessage.objects.filter(status=Status.SCHEDULED, due_at__lt=cutoff)
    overdue_count = overdue.count() if overdue_counted else 0
    oldest = overdue.order_by("due_at").values_list("due_at", flat=True).first() if overdue_count else None
    stuck_after = datetime.timedelta(seconds=settings.SMS_STUCK_AFTER_SECONDS) + STUCK_GRACE
    stuck_count = OutboundMessage.objects.filter(status=Status.SENDING, claimed_at__lt=now - stuck_after).count()
    report = {
        "ok": True,
        "in_quiet_hours": quiet_now,
        "overdue": overdue_count,
        "overdue_checked": overdue_counted,
        "overdue_after_seconds": int(OVERDUE_AFTER.total_seconds()),
        "oldest_overdue_seconds": int((now - oldest).total_seconds()) if oldest else None,
        "stuck_sending": stuck_count,
        "stuck_after_seconds": int(stuck_after.total_seconds()),
    }
    problems = []
    if overdue_count:
        problems.append(
            f"{overdue_count} text{'s are' if overdue_count != 1 else ' is'} more than {_minutes(OVERDUE_AFTER)} overdue "
            "and not picked up by a worker: check the queue workers are running, or add workers if this "
            "happens when many texts fall due at once."
        )
    if stuck_count:
        problems.append(
            f"{stuck_count} text{'s have' if stuck_count != 1 else ' has'} been \"sending\" for more than "
            f"{_minutes(stuck_after)}: the reconciler cannot settle {'them' if stuck_count != 1 else 'it'} with "
            "Twilio. Check Twilio is reachable and TWILIO_ACCOUNT_SID / TWILIO_AUTH_TOKEN are right; "
            "see the SMS outbox, status Sending."
        )
    report["ok"] = not problems
    return report, problems


def _broker():
    from django_q.brokers import get_broker
    from django_q.brokers.redis_broker import Redis

    broker = get_broker()
    if isinstance(broker, Redis):
        import redis

        # The broker's own connection has no timeouts; this one fails fast when Redis hangs.
        broker.connection = redis.from_url(
            settings.REDIS_URL, socket_timeout=BROKER_TIMEOUT_SECONDS, socket_connect_timeout=BROKER_TIMEOUT_SECONDS
        )
        return broker, "redis"
    return broker, "database"


def check_queue(*, database_ok: bool) -> tuple[dict, list[str]]:
    from django_q.status import Stat

    broker, kind = _broker()
    report = {"ok": True, "broker": kind, "reachable": None, "waiting": None, "clusters": None}
    if kind == "database" and not database_ok:
        report.update(ok=False, reachable=False)
        return report, []  # the database problem already says it
    try:
        broker.ping()
        report["reachable"] = True
        report["waiting"] = broker.queue_size()
        if kind == "redis":
            # Each running qcluster keeps a stat key alive in Redis (it expires 3 s after it stops).
            report["clusters"] = len(Stat.get_all(broker=broker))
    except Exception as exc:  # redis.ConnectionError, TimeoutError, ...
        report.update(ok=False, reachable=False, error=type(exc).__name__)
        return report, [
            f"The queue broker (Redis) cannot be reached ({type(exc).__name__}): check Redis is running and "
            "REDIS_URL is right. No texts are sent meanwhile."
        ]
    if report["clusters"] == 0:
        report["ok"] = False
        return report, ["No queue worker (qcluster) is running: start one. No texts are sent meanwhile."]
    return report, []


def check_sms_setup() -> tuple[dict, list[str]]:
    """Whether texts can leave at all with this process's settings (workers share them)."""
    problem = gateway.configuration_problem()
    report = {"ok": not problem, "backend": settings.SMS_BACKEND}
    if problem:
        return report, [f"Texts cannot be sent: {problem}. Fix the environment of the web and worker processes "
                        "(deploy/.env.example) and restart them; texts wait meanwhile."]
    return report, []


def check_health(*, now=None) -> dict:
    """The whole report; `healthy` is False when a person must fix something (`problems` says what)."""
    now = now or timezone.now()
    problems = []
    database, found = check_database()
    problems += found
    report = {"healthy": True, "checked_at": _iso(now), "problems": problems, "database": database}
    for name, check in (("schedule", check_schedule), ("messages", check_messages)):
        if not database["ok"]:
            report[name] = {"ok": False, "checked": False}
            continue
        try:
            report[name], found = check(now=now)
        except DatabaseError as exc:
            report[name], found = {"ok": False, "error": type(exc).__name__}, [
                f"The {name} check could not read the database ({type(exc).__name__}): has "
                "\"python manage.py migrate\" been run for this version?"
            ]
        problems += found
    report["sms"], found = check_sms_setup()
    problems += found
    report["queue"], found = check_queue(database_ok=database["ok"])
    problems += found
    report["healthy"] = not problems
    return report
