"""End to end: reminders through a real django-q2 cluster to the fake Twilio server and back.

Every test runs the real parts together: `qcluster` in its own processes (scheduler, pusher,
monitor, two workers) on the ORM broker in the test database, the official twilio client talking
HTTP to the fake Twilio server on loopback, and Twilio's signed webhooks answered by the running
app (live_server). One shared clock (tests/shared_clock.py) moves the test and every worker
process together, so "advance time" means the same instant everywhere.

The Redis broker is exercised end to end by deploy/stack_smoke.py (gunicorn + qcluster on Redis).
"""

import contextlib
import datetime as dt
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.urls import reverse
from django.utils import timezone
from django_q.models import OrmQ, Schedule
from django_q.tasks import async_task, fetch

from devtools.fake_twilio import FakeTwilioServer
from scheduling.booking.services import cancel_appointment, rearrange_appointment
from scheduling.worklist.models import AdminTask
from scheduling.reminders import sending
from scheduling.reminders.models import MessageEvent, OutboundMessage
from scheduling.offers.tasks import ADVANCE_SCHEDULE_NAME
from scheduling.reminders.tasks import DISPATCH_FUNCTION, DISPATCH_SCHEDULE_NAME
from tests.booking_helpers import book
from tests.factories import london, make_referral
from tests.processes import shared_test_database_url
from tests.shared_clock import CLOCK_FILE_VARIABLE, SharedClock

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("confirmations_off")]

ROOT = Path(__file__).resolve().parent.parent
WORKER_SCRIPT = ROOT / "tests" / "qcluster_on_shared_clock.py"
S = OutboundMessage.Status
UTC = dt.timezone.utc

BOOKED_AT = london(2026, 6, 1, 9)
START = london(2026, 6, 10, 14)  # a Wednesday
EARLY_DUE = london(2026, 6, 8, 10)  # two days before at 10:00 UK time


# --- the stack -----------------------------------------------------------------------------------


def wait_until(condition, *, what: str, timeout: float = 20):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


class Worker:
    """One `qcluster` process group, its output in a file."""

    def __init__(self, process: subprocess.Popen, log_path: Path):
        self.process = process
        self.log_path = log_path

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL to every process of the cluster at once: nothing gets to clean up."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            # SIGTERM to the cluster's main process only, as a service manager sends it: the
            # cluster then stops its own children in order.
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()
        # Forked workers outlive a parent that died first; none may hold the test database.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)


@pytest.fixture
def clock(tmp_path):
    shared = SharedClock(tmp_path / "clock", BOOKED_AT)
    yield shared
    shared.stop()


@pytest.fixture
def fake_twilio(request):
    """The fake Twilio; callbacks "auto" (as Twilio posts them) unless a test asks for "manual"."""
    with FakeTwilioServer(callbacks=getattr(request, "param", "auto")) as fake:
        yield fake


@pytest.fixture
def app(transactional_db, live_server, settings, fake_twilio):
    """The running app, checking webhook signatures with the fake's token against its own address."""
    settings.TWILIO_ACCOUNT_SID = fake_twilio.account_sid
    settings.TWILIO_AUTH_TOKEN = fake_twilio.auth_token
    settings.SMS_PUBLIC_BASE_URL = live_server.url
    return live_server


@pytest.fixture
def start_worker(app, clock, fake_twilio, tmp_path):
    workers = []

    def start(**environment) -> Worker:
        # The every-minute schedules (texts, offers) stay out of the way unless a test sets it going: the tests
        # enqueue the dispatcher themselves, exactly as the schedule does, to control each step.
        Schedule.objects.filter(name__in=[DISPATCH_SCHEDULE_NAME, ADVANCE_SCHEDULE_NAME]).update(
            next_run=timezone.now() + dt.timedelta(days=365)
        )
        env = {
            key: value for key, value in os.environ.items()
            if not key.startswith(("DJANGO_", "DATABASE_", "REDIS_", "SMS_", "TWILIO_", "Q_"))
        }
        env.update({
            CLOCK_FILE_VARIABLE: str(clock.path),
            "DJANGO_SECRET_KEY": django_settings.SECRET_KEY,  # queued tasks are signed with it
            "DATABASE_URL": shared_test_database_url(),
            "SMS_BACKEND": "twilio",
            "TWILIO_ACCOUNT_SID": fake_twilio.account_sid,
            "TWILIO_AUTH_TOKEN": fake_twilio.auth_token,
            "TWILIO_API_BASE_URL": fake_twilio.base_url,
            "TWILIO_FROM_NUMBER": fake_twilio.default_from,
            "SMS_PUBLIC_BASE_URL": app.url,
            "SMS_HTTP_TIMEOUT_SECONDS": "2",
            "SMS_STUCK_AFTER_SECONDS": "120",
            "PHONE_ACCEPT_FICTIONAL_NUMBERS": "true",
            "Q_WORKERS": "2",
            "LOG_LEVEL": "INFO",
            **environment,
        })
        log_path = tmp_path / f"qcluster-{len(workers) + 1}.log"
        with open(log_path, "w") as log:
            process = subprocess.Popen(
                [sys.executable, str(WORKER_SCRIPT)], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        worker = Worker(process, log_path)
        workers.append(worker)
        try:
            wait_until(lambda: "running" in worker.output() or process.poll() is not None, what="qcluster to start")
        finally:
            if process.poll() is not None:
                raise AssertionError(f"qcluster exited at start:\n{worker.output()[-3000:]}")
        return worker

    yield start
    for worker in workers:
        worker.stop()


def run_dispatch(*, timeout: float = 20) -> int:
    """Put the dispatcher on the queue, as the every-minute schedule does, and wait for a worker to
    run it. Returns how many sends it enqueued."""
    task_id = async_task(DISPATCH_FUNCTION, save=True)  # kept, unlike the cluster's other successes
    task = wait_until(lambda: fetch(task_id), what="a worker to run the dispatcher", timeout=timeout)
    assert task.success, task.result
    return task.result


def reminder(appointment, kind="reminder_2d") -> OutboundMessage:
    return OutboundMessage.objects.get(appointment=appointment, kind=kind)


def status_of(message) -> str:
    message.refresh_from_db()
    return message.status


def wait_for_status(message, *statuses, timeout: float = 20) -> OutboundMessage:
    wait_until(lambda: status_of(message) in statuses, what=f"message {message.pk} to be {' or '.join(statuses)}",
               timeout=timeout)
    return message


def sent_to(fake, number) -> list[dict]:
    return [m for m in fake.messages if m["to"] == number]


def queue_is_empty() -> bool:
    """Every queued task has run: the ORM broker deletes a task once its result is handled."""
    return not OrmQ.objects.exists()


@pytest.fixture
def appointment(clock, pwp, admin_user):
    """Booked on 1 June for Wednesday 10 June at 2pm: reminders due 8 June 10:00 and 10 June 08:00."""
    return book(make_referral(pwp), pwp, START, actor=admin_user)


# --- the whole way ---------------------------------------------------------------------------------


def test_the_schedule_sends_a_reminder_once_at_ten_uk_time_it_is_delivered_and_a_c_reply_confirms(
    clock, start_worker, fake_twilio, app, appointment
):
    message = reminder(appointment)
    number = appointment.referral.patient.mobile_phone
    clock.move_to(EARLY_DUE - dt.timedelta(minutes=2))
    worker = start_worker()

    assert run_dispatch() == 0, "nothing is due two minutes early"
    assert fake_twilio.requests == []

    # From here the every-minute schedule, run by the cluster's own scheduler, does the work.
    clock.move_to(EARLY_DUE + dt.timedelta(seconds=5))
    Schedule.objects.filter(name=DISPATCH_SCHEDULE_NAME).update(next_run=timezone.now() - dt.timedelta(minutes=1))
    wait_until(lambda: sent_to(fake_twilio, number), what="the scheduler to send the reminder", timeout=60)
    wait_for_status(message, S.DELIVERED)

    [sent] = sent_to(fake_twilio, number)
    assert sent["body"] == message.body and "Wednesday 10 June at 2pm" in sent["body"]
    assert message.provider_sid == sent["sid"] and message.attempts == 1
    assert EARLY_DUE <= message.sent_at < EARLY_DUE + dt.timedelta(minutes=2)
    # Both of Twilio's signed callbacks reached the app and moved the row forward.
    # Both of Twilio's signed callbacks reached the app: "sent" was already known, "delivered" was news.
    assert list(message.events.filter(source=MessageEvent.Source.TWILIO).values_list("reported_status", "applied")) == [
        ("sent", False), ("delivered", True),
    ]

    # The schedule keeps running; the reminder is never sent again.
    assert run_dispatch() == 0
    assert len(sent_to(fake_twilio, number)) == 1 and len(fake_twilio.requests) == 1

    status, _ = fake_twilio.send_inbound(app.url + reverse("sms:twilio_inbound"), from_=number, body="C")
    assert status == 200
    appointment.refresh_from_db()
    assert appointment.confirmed_at is not None

    output = worker.output()
    assert "processing" in output  # the worker really logged its work...
    for secret in (number, number[3:], message.body, appointment.referral.patient.nhs_number):
        assert secret not in output  # ...and no patient data


# --- Twilio's bad days -----------------------------------------------------------------------------


@pytest.mark.parametrize("fault", [{"status": 500}, {"status": 429}])
def test_a_transient_twilio_error_is_tried_again_after_a_backoff_and_the_text_goes_once(
    fault, clock, start_worker, fake_twilio, appointment
):
    message = reminder(appointment)
    number = appointment.referral.patient.mobile_phone
    clock.move_to(EARLY_DUE + dt.timedelta(seconds=10))
    start_worker()
    fake_twilio.add_fault(**fault)

    assert run_dispatch() == 1
    wait_until(lambda: status_of(message) == S.SCHEDULED and message.attempts == 1, what="the failed try to be recorded")
    assert [r["response_status"] for r in fake_twilio.requests] == [fault["status"]]
    assert fake_twilio.messages == []
    retry_at = message.due_at
    assert retry_at >= timezone.now() + dt.timedelta(seconds=50), "backs off before the next try"

    assert run_dispatch() == 0, "not tried again before the backoff is over"
    assert len(fake_twilio.requests) == 1

    clock.move_to(retry_at + dt.timedelta(seconds=1))
    assert run_dispatch() == 1
    wait_for_status(message, S.DELIVERED)
    assert len(sent_to(fake_twilio, number)) == 1
    assert message.attempts == 2
    assert message.events.filter(detail__startswith="try 1 failed").exists()


@pytest.mark.parametrize("fault", [{"timeout": 6}, {"drop_connection": True}], ids=["timeout", "dropped_connection"])
def test_a_send_whose_answer_is_lost_is_never_sent_a_second_time(fault, clock, start_worker, fake_twilio, appointment):
    """Twilio created the message but we never heard so. Its callbacks settle the row; neither the
    dispatcher nor the reconciler sends it again."""
    message = reminder(appointment)
    number = appointment.referral.patient.mobile_phone
    clock.move_to(EARLY_DUE + dt.timedelta(seconds=10))
    start_worker(SMS_HTTP_TIMEOUT_SECONDS="1")
    fake_twilio.add_fault(**fault)

    assert run_dispatch() == 1
    wait_for_status(message, S.DELIVERED)
    assert message.provider_sid == sent_to(fake_twilio, number)[0]["sid"]

    # Later runs of the dispatcher, past the point where a stuck row would be reconciled.
    assert run_dispatch() == 0
    clock.move_to(EARLY_DUE + dt.timedelta(minutes=5))
    assert run_dispatch() == 0
    assert len(fake_twilio.requests) == 1 and len(sent_to(fake_twilio, number)) == 1
    assert status_of(message) == S.DELIVERED


@pytest.mark.parametrize(
    "error_code, task_kind", [(21211, AdminTask.Kind.WRONG_NUMBER), (21610, AdminTask.Kind.SMS_FAILED)]
)
def test_a_permanent_twilio_error_is_not_retried_and_puts_the_patient_on_the_worklist(
    error_code, task_kind, clock, start_worker, fake_twilio, appointment
):
    message = reminder(appointment)
    patient = appointment.referral.patient
    clock.move_to(EARLY_DUE + dt.timedelta(seconds=10))
    start_worker()
    fake_twilio.add_fault(error_code=error_code)

    assert run_dispatch() == 1
    wait_for_status(message, S.FAILED)
    assert message.error_code == str(error_code) and message.attempts == 1
    assert AdminTask.objects.filter(patient=patient, kind=task_kind, resolved_at__isnull=True).count() == 1

    clock.move_to(EARLY_DUE + dt.timedelta(hours=1))
    assert run_dispatch() == 0
    assert len(fake_twilio.requests) == 1 and fake_twilio.messages == []
    if error_code == 21610:
        patient.refresh_from_db()
        assert patient.sms_opted_out


def test_replayed_reversed_and_forged_callbacks_leave_a_delivered_text_delivered(
    clock, start_worker, fake_twilio, appointment
):
    message = reminder(appointment)
    clock.move_to(EARLY_DUE + dt.timedelta(seconds=10))
    start_worker()
    assert run_dispatch() == 1
    wait_for_status(message, S.DELIVERED)
    wait_until(lambda: len(fake_twilio.callbacks) == 2, what="both status callbacks")

    replayed = fake_twilio.replay_callbacks(message.provider_sid, order="same")
    reversed_ = fake_twilio.replay_callbacks(message.provider_sid, order="reversed")
    first = fake_twilio.callbacks[0]
    forged = fake_twilio.post_forged_callback(first["url"], {**first["params"], "MessageStatus": "failed",
                                                             "SmsStatus": "failed", "ErrorCode": "30005"})

    assert [r["response_status"] for r in replayed + reversed_] == [204] * 4
    assert forged["response_status"] == 403
    assert status_of(message) == S.DELIVERED and message.error_code == ""
    reports = list(message.events.filter(source=MessageEvent.Source.TWILIO).values_list("reported_status", "applied"))
    # Only the first "delivered" was news: the first "sent" came after the send's own answer, and
    # the four replays after that.
    assert len(reports) == 6 and [status for status, applied in reports if applied] == ["delivered"]
    assert ("failed", False) not in reports and ("failed", True) not in reports  # the forgery was never recorded
    assert not AdminTask.objects.filter(patient=appointment.referral.patient).exists()


@pytest.mark.parametrize("fake_twilio", ["manual"], indirect=True)
def test_a_worker_killed_mid_send_is_reconciled_with_twilio_and_nothing_is_sent_twice(
    clock, start_worker, fake_twilio, appointment
):
    message = reminder(appointment)
    number = appointment.referral.patient.mobile_phone
    clock.move_to(EARLY_DUE + dt.timedelta(seconds=10))
    worker = start_worker(SMS_HTTP_TIMEOUT_SECONDS="30")
    fake_twilio.add_fault(timeout=60)  # Twilio creates the message, then holds its answer

    assert run_dispatch() == 1
    wait_until(lambda: fake_twilio.requests, what="the send to reach Twilio")
    worker.kill()

    assert status_of(message) == S.SENDING and message.provider_sid == ""
    assert len(sent_to(fake_twilio, number)) == 1

    # The cluster comes back after the stuck-row threshold (and after the killed task's retry time,
    # so the ORM broker hands that task out again: it finds nothing to claim).
    clock.move_to(EARLY_DUE + dt.timedelta(minutes=5))
    start_worker()
    assert run_dispatch() == 0
    wait_until(lambda: status_of(message) == S.SENT, what="the reconciler to find the message at Twilio")
    [at_twilio] = sent_to(fake_twilio, number)
    assert message.provider_sid == at_twilio["sid"]
    assert message.events.filter(source=MessageEvent.Source.RECONCILER, detail__startswith="Twilio has it").exists()

    fake_twilio.deliver_callbacks(at_twilio["sid"])
    wait_for_status(message, S.DELIVERED)
    wait_until(queue_is_empty, what="the re-delivered task to finish", timeout=30)
    assert len(fake_twilio.requests) == 1 and len(sent_to(fake_twilio, number)) == 1
    assert message.attempts == 1


@pytest.mark.parametrize("fake_twilio", ["manual"], indirect=True)
def test_a_worker_killed_mid_batch_leaves_its_rows_to_the_reconciler_and_none_is_sent_twice(
    clock, start_worker, fake_twilio, appointment, pwp, admin_user
):
    appointments = [
        book(make_referral(pwp), pwp, london(2026, 6, 10, 9) + dt.timedelta(minutes=75 * n), actor=admin_user)
        for n in range(3)
    ] + [appointment]
    messages = [reminder(each) for each in appointments]
    clock.move_to(EARLY_DUE + dt.timedelta(seconds=10))
    worker = start_worker(Q_WORKERS="1", SMS_HTTP_TIMEOUT_SECONDS="30")  # one worker: the four rows are one batch
    fake_twilio.add_fault(delay=0.01, count=2)  # the first two go normally
    fake_twilio.add_fault(timeout=60)  # Twilio creates the third, then holds its answer

    assert run_dispatch() == 4
    wait_until(lambda: len(fake_twilio.requests) == 3, what="the batch's third send to reach Twilio")
    worker.kill()

    # Twilio has three; the worker recorded none of them, and never sent the fourth.
    assert len(fake_twilio.messages) == 3
    at_twilio_when_killed = {created["to"] for created in fake_twilio.messages}
    assert [status_of(m) for m in messages] == [S.SENDING] * 4 and all(m.provider_sid == "" for m in messages)

    # Back after the stuck-row threshold (and the killed task's retry time: the ORM broker hands it
    # out again, and it finds nothing left to claim or loses the claim to the new task).
    clock.move_to(EARLY_DUE + dt.timedelta(minutes=5))
    start_worker(Q_WORKERS="1")
    assert run_dispatch() == 1  # the three Twilio has are adopted; the fourth is enqueued again
    for message in messages:
        wait_for_status(message, S.SENT)
    wait_until(queue_is_empty, what="the re-delivered task to finish", timeout=30)
    assert len(fake_twilio.messages) == 4
    for message in messages:
        [at_twilio] = sent_to(fake_twilio, message.patient.mobile_phone)
        assert message.provider_sid == at_twilio["sid"]
    # Found at Twilio by the reconciler: exactly the three it had when the worker was killed.
    assert {m.patient.mobile_phone for m in messages
            if m.events.filter(source=MessageEvent.Source.RECONCILER, detail__startswith="Twilio has it").exists()
            } == at_twilio_when_killed


@pytest.mark.parametrize("change", ["cancelled", "moved"])
def test_a_reminder_cancelled_or_moved_while_its_send_waits_in_the_queue_is_not_sent(
    change, clock, start_worker, fake_twilio, appointment, admin_user
):
    message = reminder(appointment)
    clock.move_to(EARLY_DUE + dt.timedelta(seconds=10))
    # The dispatcher has queued the send, but no worker has taken it yet.
    assert sending.dispatch_due_messages() == 1
    assert OrmQ.objects.count() == 1
    if change == "cancelled":
        cancel_appointment(appointment=appointment, cancelled_by="patient", reason="On holiday", actor=admin_user)
    else:
        rearrange_appointment(appointment=appointment, new_start=START + dt.timedelta(days=7), asked_by="patient",
                              reason="Working that day", actor=admin_user)

    start_worker()
    wait_until(queue_is_empty, what="the queued send task to run")
    assert status_of(message) == S.CANCELLED and message.attempts == 0 and message.claimed_at is None
    assert fake_twilio.requests == []


# --- the clock -------------------------------------------------------------------------------------


def test_a_reminder_held_up_into_quiet_hours_goes_at_eight_the_next_morning(clock, start_worker, fake_twilio, appointment):
    """The workers were down at 10:00 and came back at 20:30, inside quiet hours (20:00-08:00)."""
    message = reminder(appointment)
    clock.move_to(london(2026, 6, 8, 20, 30))
    start_worker()
    assert run_dispatch() == 0
    assert fake_twilio.requests == []

    clock.move_to(london(2026, 6, 9, 8, 0) + dt.timedelta(seconds=20))
    assert run_dispatch() == 1
    wait_for_status(message, S.DELIVERED)
    assert timezone.localtime(message.sent_at).strftime("%H:%M") == "08:00"
    assert len(fake_twilio.messages) == 1


@pytest.mark.parametrize(
    "booked_at, start, early_due, same_day_due",
    [
        # Clocks go forward on Sunday 29 March 2026: 10:00 GMT on the 28th, 08:00 BST on the 30th.
        (london(2026, 3, 20, 9), london(2026, 3, 30, 14), dt.datetime(2026, 3, 28, 10, tzinfo=UTC),
         dt.datetime(2026, 3, 30, 7, tzinfo=UTC)),
        # Clocks go back on Sunday 25 October 2026: 10:00 BST on the 24th, 08:00 GMT on the 26th.
        (london(2026, 10, 15, 9), london(2026, 10, 26, 14), dt.datetime(2026, 10, 24, 9, tzinfo=UTC),
         dt.datetime(2026, 10, 26, 8, tzinfo=UTC)),
    ],
    ids=["spring_forward", "autumn_back"],
)
def test_reminders_go_at_ten_and_eight_uk_time_on_either_side_of_a_clock_change(
    booked_at, start, early_due, same_day_due, clock, start_worker, fake_twilio, pwp, admin_user
):
    clock.move_to(booked_at)
    appointment = book(make_referral(pwp), pwp, start, actor=admin_user)
    number = appointment.referral.patient.mobile_phone
    clock.move_to(early_due - dt.timedelta(minutes=1))
    start_worker()

    for due, kind in ((early_due, "reminder_2d"), (same_day_due, "reminder_0d")):
        message = reminder(appointment, kind)
        assert message.due_at == due
        clock.move_to(due - dt.timedelta(minutes=1))
        assert run_dispatch() == 0, f"{kind} not a minute early"
        clock.move_to(due + dt.timedelta(seconds=20))
        assert run_dispatch() == 1
        wait_for_status(message, S.DELIVERED)
        assert due <= message.sent_at < due + dt.timedelta(minutes=1)

    bodies = [m["body"] for m in sent_to(fake_twilio, number)]
    assert len(bodies) == 2 and all("Monday" in body and "2pm" in body for body in bodies)
