"""Reminders sent in batches: one task claims several due rows at once, sends each through the one
Twilio client of its process (the real `twilio` client against the fake Twilio server on loopback)
and records the results together. What must hold for one text holds for each text of a batch:
claimed once, re-checked just before its request, never sent twice, a failure of one row is that
row's alone, and a worker stopped mid-batch leaves rows the reconciler settles with Twilio.
(A cluster killed with SIGKILL mid-batch: test_reminders_e2e.py.)"""

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest
import time_machine
from django_q.exceptions import TimeoutException

from devtools.fake_twilio import FakeTwilioServer
from scheduling.booking.services import cancel_appointment
from scheduling.reminders import gateway, sending
from scheduling.reminders.models import MessageEvent, OutboundMessage
from scheduling.reminders.services import opt_out_patient
from tests.booking_helpers import book
from tests.factories import london, make_referral
from tests.twilio_webhook_helpers import use_fake_twilio

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("confirmations_off")]
S = OutboundMessage.Status
ROOT = Path(__file__).resolve().parent.parent
DUE = london(2026, 6, 8, 10, 0)  # the two-day reminders of the appointments below
ROWS = 5


@pytest.fixture
def fake(settings):
    """The fake Twilio, callbacks held so only the test moves a message on; the app pointed at it."""
    with FakeTwilioServer(callbacks="manual") as server:
        use_fake_twilio(settings, server, public_base="https://sms.painplatform.test")
        settings.SMS_HTTP_TIMEOUT_SECONDS = 5
        settings.SMS_STUCK_AFTER_SECONDS = 120
        yield server


@pytest.fixture
def appointments(pwp, admin_user):
    """Five patients' appointments on Wednesday 10 June from 9am, each with a two-day reminder due DUE."""
    with time_machine.travel(london(2026, 6, 1, 9), tick=False):
        return [
            book(make_referral(pwp), pwp, london(2026, 6, 10, 9) + dt.timedelta(minutes=75 * n), actor=admin_user)
            for n in range(ROWS)
        ]


@pytest.fixture
def messages(appointments):
    return [OutboundMessage.objects.get(appointment=appointment, kind="reminder_2d") for appointment in appointments]


def ids(messages) -> list[int]:
    return [message.pk for message in messages]


def reload(messages) -> list[OutboundMessage]:
    return [OutboundMessage.objects.get(pk=message.pk) for message in messages]


def created_for(fake, message) -> list[dict]:
    return [created for created in fake.messages if created["to"] == message.patient.mobile_phone]


def worker_events(message, new_status) -> int:
    return message.events.filter(source=MessageEvent.Source.WORKER, new_status=new_status).count()


class StopsAfter:
    """The real backend, but the worker is stopped (django-q's task timeout raises TimeoutException,
    a SystemExit, in the worker) right after Twilio took the `stop_at`-th text, before its answer is used."""

    def __init__(self, backend, stop_at: int):
        self.backend, self.stop_at, self.sent = backend, stop_at, 0
        self.name = backend.name

    def send(self, **kwargs):
        remote = self.backend.send(**kwargs)
        self.sent += 1
        if self.sent == self.stop_at:
            raise TimeoutException("Task exceeded maximum timeout value (60 seconds)")
        return remote


def test_a_batch_claims_its_rows_once_sends_each_once_and_records_them_together(fake, messages, django_assert_max_num_queries):
    with time_machine.travel(DUE, tick=False):
        # Far fewer queries than a dozen a text: one claim, a re-check a text, results in bulk.
        with django_assert_max_num_queries(2 * ROWS + 16):
            statuses = sending.send_messages(message_ids=ids(messages))
        assert statuses == {message.pk: S.SENT for message in messages}
        # The same task delivered again, or a second worker with the same rows: nothing to claim.
        assert sending.send_messages(message_ids=ids(messages)) == statuses
    assert len(fake.messages) == ROWS
    sids = set()
    for message in reload(messages):
        [created] = created_for(fake, message)
        assert message.provider_sid == created["sid"] and created["body"] == message.body
        assert message.attempts == 1 and message.to_number == message.patient.mobile_phone
        assert worker_events(message, S.SENDING) == 1 and worker_events(message, S.SENT) == 1
        sids.add(message.provider_sid)
    assert len(sids) == ROWS


def test_a_row_already_claimed_by_another_worker_is_left_to_it(fake, messages):
    with time_machine.travel(DUE, tick=False):
        first = sending.claim_batch(message_ids=ids(messages[:2]))
        second = sending.claim_batch(message_ids=ids(messages))  # overlaps the first batch
        assert [m.pk for m in first.to_send] == ids(messages[:2])
        assert [m.pk for m in second.to_send] == ids(messages[2:])
        sending.send_claimed(second)
        sending.send_claimed(first)
    assert len(fake.messages) == ROWS
    assert all(message.status == S.SENT and message.attempts == 1 for message in reload(messages))


def test_the_worker_keeps_one_twilio_client_until_a_setting_it_was_built_from_changes(fake, settings):
    first = gateway.get_backend()
    assert gateway.get_backend() is first
    # A rotated token (the Runbook): the next send uses a client built with the new one.
    settings.TWILIO_AUTH_TOKEN = "new-secondary-token-111111111111111"
    rotated = gateway.get_backend()
    assert rotated is not first and rotated.client.password == "new-secondary-token-111111111111111"
    assert gateway.get_backend() is rotated


def test_a_transient_error_on_one_row_of_a_batch_loses_none_of_the_others(fake, messages):
    fake.add_fault(delay=0.01)  # the first text goes normally
    fake.add_fault(status=500)  # the second: Twilio has an outage for one request
    fake.add_fault(drop_connection=True)  # the third: Twilio took it but the answer was lost
    fake.add_fault(error_code=21211)  # the fourth: a number Twilio refuses for good
    with time_machine.travel(DUE, tick=False):
        statuses = sending.send_messages(message_ids=ids(messages))
    first, outage, lost, refused, last = reload(messages)
    assert statuses == {first.pk: S.SENT, outage.pk: S.SCHEDULED, lost.pk: S.SENDING, refused.pk: S.FAILED,
                        last.pk: S.SENT}
    assert first.provider_sid and last.provider_sid
    assert outage.due_at == DUE + dt.timedelta(minutes=1) and outage.enqueued_at is None
    assert lost.provider_sid == "" and "check with Twilio" in lost.events.last().detail
    assert refused.error_code == "21211"
    assert [len(created_for(fake, m)) for m in (first, outage, lost, refused, last)] == [1, 0, 1, 0, 1]

    # A minute on the outage row goes; three minutes on the lost one is found at Twilio, not resent.
    with time_machine.travel(DUE + dt.timedelta(minutes=3), tick=False):
        assert sending.send_messages(message_ids=[outage.pk]) == {outage.pk: S.SENT}
        assert sending.reconcile_message(message_id=lost.pk) == S.SENT
    assert len(fake.messages) == 4
    assert all(len(created_for(fake, m)) == 1 for m in reload([first, outage, lost, last]))


def test_a_worker_stopped_mid_batch_leaves_rows_the_reconciler_settles_and_none_is_sent_twice(fake, messages):
    with time_machine.travel(DUE, tick=False):
        batch = sending.claim_batch(message_ids=ids(messages))
        batch.backend = StopsAfter(batch.backend, stop_at=3)
        with pytest.raises(TimeoutException):
            sending.send_claimed(batch)
    # Twilio has the first three; nothing of them was recorded, but each row holds the number and
    # body the reconciler asks Twilio about, committed with the claim.
    assert len(fake.messages) == 3
    for message in reload(messages):
        assert message.status == S.SENDING and message.provider_sid == ""
        assert message.to_number == message.patient.mobile_phone

    # The next dispatch once they count as stuck: the three Twilio has are adopted, the two it never
    # got are tried again (as a second try) and go once.
    later = DUE + dt.timedelta(minutes=3)
    with time_machine.travel(later, tick=False):
        enqueued = []
        sending.dispatch_due_messages(enqueue_batch=enqueued.append)
        assert sum(enqueued, []) == ids(messages[3:])
        for batch in list(enqueued):
            sending.send_messages(message_ids=batch)
        assert sending.dispatch_due_messages(enqueue_batch=enqueued.append) == 0
    assert len(fake.messages) == ROWS
    settled = reload(messages)
    assert all(message.status == S.SENT for message in settled)
    assert len({message.provider_sid for message in settled}) == ROWS
    for message in settled:
        assert created_for(fake, message)[0]["sid"] == message.provider_sid and len(created_for(fake, message)) == 1
    assert [m.events.filter(source=MessageEvent.Source.RECONCILER, detail__startswith="Twilio has it").exists()
            for m in settled] == [True, True, True, False, False]
    assert [m.attempts for m in settled] == [1, 1, 1, 2, 2]


def test_a_cancellation_or_opt_out_between_the_claim_and_the_send_is_respected(fake, messages, appointments, admin_user):
    with time_machine.travel(DUE, tick=False):
        batch = sending.claim_batch(message_ids=ids(messages))
        assert len(batch.to_send) == ROWS
        # After the claim committed, while the worker is still sending the batch's first texts:
        cancel_appointment(appointment=appointments[1], cancelled_by="patient", reason="Away", actor=admin_user)
        opt_out_patient(patient=messages[2].patient, reason="STOP")
        statuses = sending.send_claimed(batch)
    first, cancelled, opted_out, fourth, fifth = reload(messages)
    assert statuses[cancelled.pk] == S.CANCELLED and cancelled.status_reason == "the appointment was cancelled or moved"
    assert statuses[opted_out.pk] == S.SKIPPED and "STOP" in opted_out.status_reason
    assert cancelled.provider_sid == opted_out.provider_sid == ""
    assert created_for(fake, cancelled) == [] and created_for(fake, opted_out) == []
    assert [m.status for m in (first, fourth, fifth)] == [S.SENT] * 3 and len(fake.messages) == 3


def test_a_slow_twilio_hands_the_rest_of_a_batch_back_to_the_dispatcher(fake, messages, monkeypatch):
    monkeypatch.setattr(sending, "BATCH_BUDGET_SECONDS", 0.3)
    fake.add_fault(delay=0.5)  # the first request takes longer than the whole batch may
    with time_machine.travel(DUE, tick=False):
        statuses = sending.send_messages(message_ids=ids(messages))
        first, *rest = reload(messages)
        assert statuses == {first.pk: S.SENT, **{m.pk: S.SCHEDULED for m in rest}}
        assert len(fake.messages) == 1
        for message in rest:
            assert message.attempts == 0 and message.enqueued_at is None
            assert message.events.last().detail == "not sent within this batch's time; queued again"
        # The next dispatch enqueues them again, and they go once.
        enqueued = []
        sending.dispatch_due_messages(enqueue_batch=enqueued.append)
        assert sorted(sum(enqueued, [])) == ids(rest)
        for batch in enqueued:
            sending.send_messages(message_ids=batch)
    assert len(fake.messages) == ROWS
    assert all(message.status == S.SENT and message.attempts == 1 for message in reload(messages))


def test_the_dispatcher_enqueues_batches_of_up_to_fifty_shared_among_the_workers(settings):
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "workers": 2}
    assert [len(batch) for batch in sending._batches(list(range(120)))] == [50, 50, 20]
    assert [len(batch) for batch in sending._batches(list(range(5)))] == [3, 2]
    assert sum(sending._batches(list(range(120))), []) == list(range(120))


def test_the_dispatcher_enqueues_each_due_row_once_in_a_batch(messages, settings):
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "workers": 2}
    enqueued = []
    with time_machine.travel(DUE, tick=False):
        assert sending.dispatch_due_messages(enqueue_batch=enqueued.append) == ROWS
        assert sending.dispatch_due_messages(enqueue_batch=enqueued.append) == 0
    assert enqueued == [ids(messages[:3]), ids(messages[3:])]


def _database_settings(*argv) -> str:
    """CONN_MAX_AGE and CONN_HEALTH_CHECKS as a process started with `argv` sees them."""
    code = (
        "import django; django.setup(); "
        "from django.conf import settings; d = settings.DATABASES['default']; "
        "print(d['CONN_MAX_AGE'], d['CONN_HEALTH_CHECKS'], settings.Q_CLUSTER['recycle'])"
    )
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_CONN_MAX_AGE"}
    env["DJANGO_SETTINGS_MODULE"] = "painplatform.settings"
    result = subprocess.run([sys.executable, "-c", code, *argv], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=60, check=True)
    return result.stdout.strip()


def test_a_queue_worker_keeps_its_database_connection_between_tasks_and_a_web_process_does_not():
    assert _database_settings("qcluster") == "600 True 5000"
    assert _database_settings("runserver") == "0 True 5000"
