"""GET /healthz: no login, no patient data; 200 when all is well, 503 saying what a person must fix."""

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import time_machine
from django.urls import reverse
from django_q.conf import Conf

from scheduling import health
from scheduling.reminders import gateway, heartbeat, sending, tasks
from scheduling.reminders.models import DispatchHeartbeat, OutboundMessage
from tests.booking_helpers import book
from tests.factories import london, make_patient, make_referral
from tests.processes import shared_test_database_url

# Lateness here is the reminders': no booking confirmation due beside them.
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("confirmations_off")]
S = OutboundMessage.Status
ROOT = Path(__file__).resolve().parent.parent
# A Tuesday afternoon in June, well outside the default quiet hours (20:00-08:00).
AFTERNOON = london(2026, 6, 9, 14, 0)


@pytest.fixture(autouse=True)
def database_broker(monkeypatch):
    """The database broker unless a test says otherwise, whatever REDIS_URL the shell has."""
    monkeypatch.setattr(Conf, "ORM", "default")


@pytest.fixture
def redis_broker(monkeypatch, settings):
    def use(url):
        monkeypatch.setattr(Conf, "ORM", None)
        monkeypatch.setattr(Conf, "REDIS", url)
        settings.REDIS_URL = url

    return use


def redis_available() -> bool:
    import redis

    try:
        return bool(redis.from_url("redis://127.0.0.1:6379/7", socket_connect_timeout=1).ping())
    except redis.RedisError:
        if os.environ.get("REQUIRE_SYSTEM_TOOLS"):
            pytest.fail("Redis on 127.0.0.1:6379 is needed for the queue checks")
        return False


@pytest.fixture
def appointment(new_booking):
    return new_booking(start=london(2026, 6, 12, 14), booked_at=london(2026, 6, 1, 9))


def reminder(appointment) -> OutboundMessage:
    return OutboundMessage.objects.get(appointment=appointment, kind="reminder_2d")


def get_health(client, **query):
    response = client.get(reverse("healthz"), query)
    assert response["Content-Type"] == "application/json"
    assert response["Cache-Control"] == "no-store"
    return response, response.json()


def test_it_is_green_when_the_schedule_has_just_run_and_nothing_is_late(client, appointment):
    with time_machine.travel(AFTERNOON, tick=False):
        assert sending.dispatch_due_messages() == 0  # the real dispatcher, as the schedule runs it
        response, report = get_health(client)
    assert response.status_code == 200, report["problems"]
    assert report["healthy"] is True and report["problems"] == []
    assert report["database"] == {"ok": True}
    assert dt.datetime.fromisoformat(report["schedule"]["last_run_at"]) == AFTERNOON
    assert report["schedule"]["age_seconds"] == 0 and report["schedule"]["exists"] is True
    assert report["messages"]["overdue"] == 0 and report["messages"]["stuck_sending"] == 0
    assert report["queue"]["broker"] == "database" and report["queue"]["reachable"] is True


def test_it_needs_no_login_while_every_page_does(client):
    assert client.get(reverse("caseload:referral_list")).status_code == 302
    response = client.get(reverse("healthz"))
    assert response.status_code in (200, 503)
    assert "_auth_user_id" not in client.session


def test_the_dispatcher_records_what_each_run_did(appointment):
    at = london(2026, 6, 10, 10, 0)  # the two-day reminder is due
    assert sending.dispatch_due_messages(now=at, enqueue=lambda message_id: None) == 1
    beat = DispatchHeartbeat.objects.get()
    assert (beat.last_run_at, beat.enqueued, beat.reconciled, beat.in_quiet_hours) == (at, 1, 0, False)
    assert beat.ran_on.endswith(f":{os.getpid()}")
    sending.dispatch_due_messages(now=london(2026, 6, 10, 21, 0))
    beat.refresh_from_db()
    assert (beat.enqueued, beat.in_quiet_hours) == (0, True)
    assert DispatchHeartbeat.objects.count() == 1


def test_a_schedule_that_has_never_run_is_a_problem(client, db):
    response, report = get_health(client)
    assert response.status_code == 503
    assert report["healthy"] is False
    assert any("never run" in p and "qcluster" in p for p in report["problems"])


def test_a_schedule_that_last_ran_more_than_three_minutes_ago_is_a_problem(client, db):
    heartbeat.record_dispatch_run(at=AFTERNOON - dt.timedelta(minutes=2, seconds=50), enqueued=0, reconciled=0)
    with time_machine.travel(AFTERNOON, tick=False):
        assert get_health(client)[0].status_code == 200
    heartbeat.record_dispatch_run(at=AFTERNOON - dt.timedelta(minutes=7), enqueued=0, reconciled=0)
    with time_machine.travel(AFTERNOON, tick=False):
        response, report = get_health(client)
    assert response.status_code == 503
    assert report["schedule"]["age_seconds"] == 7 * 60
    assert report["problems"] == [
        "The reminder schedule last ran 7 minutes ago (more than 3 minutes): check a queue worker (qcluster) is "
        "running and can reach Redis and the database. Texts due meanwhile are sent when it runs again, if still in time."
    ]


def test_a_missing_schedule_row_is_a_problem_and_migrate_puts_it_back(client, db):
    from django_q.models import Schedule

    heartbeat.record_dispatch_run(at=timezone_now(), enqueued=0, reconciled=0)
    Schedule.objects.filter(name=tasks.DISPATCH_SCHEDULE_NAME).delete()
    response, report = get_health(client)
    assert response.status_code == 503 and report["schedule"]["exists"] is False
    assert any("is missing or switched off" in p for p in report["problems"])
    tasks.ensure_dispatch_schedule()
    assert get_health(client)[0].status_code == 200


def timezone_now():
    from django.utils import timezone

    return timezone.now()


def test_a_dispatcher_that_fails_is_a_problem_until_a_run_completes(client, appointment, monkeypatch):
    def broken_reconciler(**kwargs):
        raise RuntimeError("the outbox could not be read")  # its words stay in the worker's log

    heartbeat.record_dispatch_run(at=AFTERNOON - dt.timedelta(minutes=1), enqueued=0, reconciled=0)
    with time_machine.travel(AFTERNOON, tick=False), monkeypatch.context() as patch:
        patch.setattr(sending, "reconcile_stuck_messages", broken_reconciler)
        with pytest.raises(RuntimeError):
            tasks.dispatch_due_messages()
        response, report = get_health(client)
    assert response.status_code == 503
    assert report["schedule"]["last_error"] == "RuntimeError"
    assert report["problems"] == [
        "The reminder dispatcher failed at its last run (RuntimeError at 14:00 UK time): see the queue worker's log."
    ]
    with time_machine.travel(AFTERNOON + dt.timedelta(minutes=1), tick=False):
        tasks.dispatch_due_messages()
        response, report = get_health(client)
    assert response.status_code == 200, report["problems"]


def test_an_sms_setup_that_cannot_send_is_a_problem_and_texts_wait_unclaimed(client, appointment, settings):
    settings.SMS_BACKEND, settings.TWILIO_ACCOUNT_SID, settings.TWILIO_AUTH_TOKEN = "twilio", "", ""
    message = reminder(appointment)
    with time_machine.travel(message.due_at + dt.timedelta(minutes=1), tick=False):
        assert sending.dispatch_due_messages(enqueue=lambda message_id: pytest.fail("nothing may be enqueued")) == 0
        response, report = get_health(client)
    assert response.status_code == 503
    assert report["sms"] == {"ok": False, "backend": "twilio"}
    assert report["problems"] == [
        "Texts cannot be sent: TWILIO_ACCOUNT_SID or TWILIO_AUTH_TOKEN is not set. Fix the environment of the web "
        "and worker processes (deploy/.env.example) and restart them; texts wait meanwhile."
    ]
    message.refresh_from_db()
    assert (message.status, message.attempts, message.enqueued_at) == (S.SCHEDULED, 0, None)


def overdue_by(appointment, minutes, *, at):
    OutboundMessage.objects.filter(pk=reminder(appointment).pk).update(due_at=at - dt.timedelta(minutes=minutes))


def test_a_text_more_than_ten_minutes_overdue_is_a_problem(client, appointment):
    heartbeat.record_dispatch_run(at=AFTERNOON, enqueued=0, reconciled=0)
    overdue_by(appointment, 9, at=AFTERNOON)
    with time_machine.travel(AFTERNOON, tick=False):
        assert get_health(client)[0].status_code == 200
    overdue_by(appointment, 25, at=AFTERNOON)
    with time_machine.travel(AFTERNOON, tick=False):
        response, report = get_health(client)
    assert response.status_code == 503
    assert report["messages"]["overdue"] == 1 and report["messages"]["oldest_overdue_seconds"] == 25 * 60
    assert report["problems"] == [
        "1 text is more than 10 minutes overdue and not picked up by a worker: check the queue workers are running, "
        "or add workers if this happens when many texts fall due at once."
    ]


def test_texts_held_back_by_quiet_hours_are_not_overdue_until_ten_minutes_after_they_end(client, appointment):
    evening = london(2026, 6, 9, 21, 0)
    overdue_by(appointment, 45, at=evening)  # due at 20:15, in quiet hours
    for at, status in [(evening, 200), (london(2026, 6, 10, 8, 5), 200), (london(2026, 6, 10, 8, 11), 503)]:
        heartbeat.record_dispatch_run(at=at, enqueued=0, reconciled=0)
        with time_machine.travel(at, tick=False):
            response, report = get_health(client)
        assert response.status_code == status, (at, report)
    assert report["messages"]["overdue"] == 1


def test_a_text_still_sending_after_the_reconciler_had_its_chance_is_a_problem(client, appointment, settings):
    settings.SMS_STUCK_AFTER_SECONDS = 120
    heartbeat.record_dispatch_run(at=AFTERNOON, enqueued=0, reconciled=0)
    message = reminder(appointment)
    OutboundMessage.objects.filter(pk=message.pk).update(status=S.SENDING, claimed_at=AFTERNOON - dt.timedelta(minutes=4))
    with time_machine.travel(AFTERNOON, tick=False):
        assert get_health(client)[0].status_code == 200  # the reconciler's next run settles it
    OutboundMessage.objects.filter(pk=message.pk).update(claimed_at=AFTERNOON - dt.timedelta(minutes=6))
    with time_machine.travel(AFTERNOON, tick=False):
        response, report = get_health(client)
    assert response.status_code == 503
    assert report["messages"]["stuck_sending"] == 1 and report["messages"]["stuck_after_seconds"] == 300
    assert any('"sending" for more than 5 minutes' in p and "Twilio" in p for p in report["problems"])


def test_it_reveals_no_patient_data(client, pwp, admin_user):
    patient = make_patient(given_name="Philippa", family_name="Quarrington", mobile_phone="07700 900457")
    with time_machine.travel(london(2026, 6, 1, 9), tick=False):
        appointment = book(make_referral(pwp, patient=patient), pwp, london(2026, 6, 12, 14), actor=admin_user)
    overdue_by(appointment, 30, at=AFTERNOON)
    OutboundMessage.objects.filter(appointment=appointment, kind="reminder_0d").update(
        status=S.SENDING, claimed_at=AFTERNOON - dt.timedelta(hours=1), to_number="+447700900457"
    )
    with time_machine.travel(AFTERNOON, tick=False):
        response, report = get_health(client)
    assert report["messages"]["overdue"] == 1 and report["messages"]["stuck_sending"] == 1
    text = response.content.decode()
    bodies = OutboundMessage.objects.filter(appointment=appointment).values_list("body", flat=True)
    for secret in [patient.nhs_number, "900457", "Philippa", "Quarrington", *bodies]:
        assert secret not in text
    assert "ran_on" not in report["schedule"]  # nor internal host names


def test_the_load_balancer_check_looks_at_the_database_only(client, db):
    response, report = get_health(client, only="database")
    assert response.status_code == 200  # the schedule never ran, but this web process can serve
    assert report == {"healthy": True, "problems": [], "database": {"ok": True}}


def test_it_answers_get_and_head_only(client, db):
    assert client.post(reverse("healthz")).status_code == 405
    assert client.head(reverse("healthz")).status_code == 503


def test_an_unreachable_redis_is_a_problem(client, db, redis_broker):
    heartbeat.record_dispatch_run(at=timezone_now(), enqueued=0, reconciled=0)
    redis_broker("redis://127.0.0.1:1/0")  # nothing listens on port 1
    response, report = get_health(client)
    assert response.status_code == 503
    assert report["queue"]["broker"] == "redis" and report["queue"]["reachable"] is False
    assert any("The queue broker (Redis) cannot be reached" in p for p in report["problems"])


@pytest.mark.e2e
def test_redis_without_a_running_qcluster_is_a_problem_and_a_real_one_clears_it(client, db, redis_broker):
    if not redis_available():
        pytest.skip("Redis is not running on 127.0.0.1:6379")
    url = "redis://127.0.0.1:6379/7"
    redis_broker(url)
    heartbeat.record_dispatch_run(at=timezone_now(), enqueued=0, reconciled=0)
    if health.check_queue(database_ok=True)[0]["clusters"]:
        pytest.skip("another qcluster is using Redis database 7 (the stack smoke?)")
    response, report = get_health(client)
    assert response.status_code == 503
    assert report["problems"] == ["No queue worker (qcluster) is running: start one. No texts are sent meanwhile."]

    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "REDIS_URL"))}
    # The test database, never the development one, on either engine.
    env.update(REDIS_URL=url, Q_WORKERS="1", DATABASE_URL=shared_test_database_url())
    cluster = subprocess.Popen([sys.executable, "manage.py", "qcluster"], cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not health.check_queue(database_ok=True)[0]["clusters"]:
            time.sleep(0.5)
        response, report = get_health(client)
    finally:
        # SIGTERM to the main process only: qcluster then stops its sentinel and workers in about a
        # second (a signal to the whole group deadlocks django-q2's shutdown).
        os.kill(cluster.pid, signal.SIGTERM)
        try:
            cluster.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(cluster.pid, signal.SIGKILL)
            cluster.wait()
    assert report["queue"]["clusters"] == 1, report
    assert response.status_code == 200, report["problems"]


def test_with_the_database_down_it_answers_503_over_plain_http_without_a_redirect():
    """A real production-mode process whose PostgreSQL and Redis do not answer (nothing on port 1)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_URL", "REDIS_URL"))}
    env.update(
        DJANGO_DEBUG="false", DJANGO_SECRET_KEY="x" * 50, DJANGO_ALLOWED_HOSTS="testserver",
        DATABASE_URL="postgres://postgres@127.0.0.1:1/painplatform", REDIS_URL="redis://127.0.0.1:1/0",
    )
    script = (
        "from django.test import Client\n"
        "c = Client()\n"
        "r = c.get('/healthz')\n"
        "print('HEALTHZ', r.status_code, r.content.decode().replace(chr(10), ' '))\n"
        "print('LOGIN', c.get('/login/').status_code)\n"
    )
    result = subprocess.run([sys.executable, "manage.py", "shell", "-c", script], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    lines = {line.split(" ", 1)[0]: line for line in result.stdout.splitlines() if line.startswith(("HEALTHZ", "LOGIN"))}
    assert "HEALTHZ" in lines, result.stdout + result.stderr
    assert lines["HEALTHZ"].startswith("HEALTHZ 503 "), lines["HEALTHZ"]
    assert "The database cannot be reached (OperationalError)" in lines["HEALTHZ"]
    assert "The queue broker (Redis) cannot be reached" in lines["HEALTHZ"]
    assert lines["LOGIN"] == "LOGIN 301"  # every other page is redirected to https


def test_the_thresholds_the_readme_documents_are_the_ones_used():
    readme = (ROOT / "README.md").read_text()
    assert health.SCHEDULE_STALE_AFTER == dt.timedelta(minutes=3)
    assert health.OVERDUE_AFTER == dt.timedelta(minutes=10)
    assert health.STUCK_GRACE == dt.timedelta(minutes=3)
    assert "not run for more than 3 minutes" in readme and "more than 10 minutes overdue" in readme
