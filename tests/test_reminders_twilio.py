"""The send task and the reconciler with SMS_BACKEND="twilio": the real `twilio` client talks HTTP to
the fake Twilio server on loopback, with faults injected. Each test asserts on the outbox row, its
events and worklist tasks, and on what the fake actually received and created.
(The console backend: test_reminders_sending.py; the fake itself: test_fake_twilio.py.)"""

import datetime as dt
import logging
import socket
import urllib.parse

import pytest
import time_machine

from devtools.fake_twilio import FakeTwilioServer
from scheduling.booking.services import cancel_appointment
from scheduling.worklist.models import AdminTask
from scheduling.reminders import sending
from scheduling.reminders.models import MessageEvent, OutboundMessage, SmsSettings
from scheduling.reminders.sending import receive_delivery_report
from tests.booking_helpers import book
from tests.factories import london, make_referral
from tests.twilio_webhook_helpers import use_fake_twilio

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("confirmations_off")]
S = OutboundMessage.Status
PUBLIC_BASE = "https://sms.painplatform.test"
DUE = london(2026, 6, 8, 10, 0)  # when the two-day reminder of the appointment below is due
MINUTE = dt.timedelta(minutes=1)


# -- fixtures and helpers -------------------------------------------------------------------------


@pytest.fixture
def fake(settings):
    """A fake Twilio on loopback, and the app's settings pointing the real client at it. Status
    callbacks are held (callbacks="manual") so nothing but the test moves a message on."""
    lines = []
    with FakeTwilioServer(callbacks="manual", log=lines.append) as server:
        server.log_lines = lines  # one "METHOD /path status" line per request, every endpoint
        use_fake_twilio(settings, server, public_base=PUBLIC_BASE)
        settings.SMS_HTTP_TIMEOUT_SECONDS = 5
        settings.SMS_STUCK_AFTER_SECONDS = 120
        yield server


@pytest.fixture
def message(appointment):
    """The appointment's two-day reminder, due at DUE."""
    return OutboundMessage.objects.get(appointment=appointment, kind="reminder_2d")


@pytest.fixture
def patient(appointment):
    return appointment.referral.patient


def send(message, when=DUE) -> str:
    """Run the send task for `message` at `when`, as a worker would."""
    with time_machine.travel(when, tick=False):
        return sending.send_message(message_id=message.pk)


def dispatch(when) -> list[int]:
    """Run the every-minute schedule at `when`; returns the ids it enqueued (not yet run)."""
    enqueued = []
    with time_machine.travel(when, tick=False):
        sending.dispatch_due_messages(enqueue=enqueued.append)
    return enqueued


def dispatch_and_send(when) -> dict[int, str]:
    """The schedule, then each task it enqueued: {message id: status afterwards}."""
    return {message_id: send(OutboundMessage(pk=message_id), when) for message_id in dispatch(when)}


def reload(message) -> OutboundMessage:
    return OutboundMessage.objects.get(pk=message.pk)


def history(message) -> list[tuple]:
    """(source, from, to, detail) of every event after planning, oldest first."""
    return list(
        message.events.exclude(source=MessageEvent.Source.PLANNER)
        .values_list("source", "old_status", "new_status", "detail")
    )


def sends_at_twilio(fake) -> list[dict]:
    """Every send request (POST Messages.json) the fake answered itself, faults included."""
    return fake.requests


def api_calls(fake, method="POST") -> list[str]:
    """Every request the fake got for the Messages API with `method`, whatever it answered (401s too)."""
    return [line for line in fake.log_lines if line.startswith(f"{method} /2010-04-01/")]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def forms_of(number: str) -> set[str]:
    """+447700900123 as it may be written: E.164, without the plus, national, spaced, URL-encoded."""
    national = "0" + number[3:]
    return {number, number[1:], national, number[3:], f"{national[:5]} {national[5:]}", urllib.parse.quote(number)}


@pytest.fixture
def emitted_logs(caplog):
    """Every log line as the code emitted it, at DEBUG for every logger (the twilio client's and
    urllib3's included), before the app's handler redacts anything: scheduling/logs.py is the last
    line of defence, not the way patient data is kept out of the logs."""
    caplog.set_level(logging.DEBUG)
    for name in ("twilio", "twilio.http_client", "urllib3", "urllib3.connectionpool", "requests"):
        caplog.set_level(logging.DEBUG, logger=name)
    lines = []

    class Keep(logging.Handler):
        def emit(self, record):
            lines.append(f"{record.name} {record.getMessage()}")

    keep, root = Keep(logging.DEBUG), logging.getLogger()
    root.handlers.insert(0, keep)  # ahead of the redacting console handler
    yield lines
    root.removeHandler(keep)

# -- a normal send ---------------------------------------------------------------------------------


def test_a_due_reminder_is_created_at_twilio_once_with_our_callback_url_the_number_and_the_body(fake, message, patient):
    assert send(message) == S.SENT

    assert len(fake.messages) == 1
    created = fake.messages[0]
    assert (created["to"], created["body"], created["from"]) == (patient.mobile_phone, message.body, fake.default_from)
    [request] = sends_at_twilio(fake)
    assert request["form"]["StatusCallback"] == f"{PUBLIC_BASE}/sms/twilio/status/{message.pk}/"
    assert request["form"]["To"] == patient.mobile_phone
    row = reload(message)
    assert (row.status, row.provider_sid, row.attempts, row.backend) == (S.SENT, created["sid"], 1, "twilio")
    assert row.to_number == patient.mobile_phone and row.sent_at == DUE
    assert [(source, old, new) for source, old, new, _ in history(row)] == [
        ("worker", S.SCHEDULED, S.SENDING), ("worker", S.SENDING, S.SENT),
    ]


def test_running_the_task_again_or_the_schedule_later_sends_nothing_more(fake, message):
    send(message)
    assert send(message) == S.SENT
    assert send(message, DUE + MINUTE) == S.SENT
    assert dispatch(DUE + 10 * MINUTE) == []
    assert len(fake.messages) == 1 and len(api_calls(fake)) == 1
    assert reload(message).attempts == 1


def test_with_a_messaging_service_the_text_goes_from_the_service(fake, message, settings):
    settings.TWILIO_MESSAGING_SERVICE_SID = "MG" + "1" * 32

    assert send(message) == S.SENT
    [request] = sends_at_twilio(fake)
    assert request["form"]["MessagingServiceSid"] == settings.TWILIO_MESSAGING_SERVICE_SID
    assert "From" not in request["form"]


# -- transient errors: nothing was sent, try again later --------------------------------------------


def test_a_500_is_retried_a_minute_later_and_the_text_is_created_once_overall(fake, message):
    fake.add_fault(status=500)

    assert send(message) == S.SCHEDULED
    row = reload(message)
    assert (row.status, row.attempts, row.due_at, row.error_code) == (S.SCHEDULED, 1, DUE + MINUTE, "20500")
    assert history(row)[-1] == (
        "worker", S.SENDING, S.SCHEDULED, "try 1 failed (Unable to create record: Internal Server Error); next try in 60 s",
    )
    assert fake.messages == []
    assert dispatch(DUE + dt.timedelta(seconds=59)) == []  # not due again yet

    assert dispatch_and_send(DUE + MINUTE) == {message.pk: S.SENT}
    row = reload(message)
    assert (row.attempts, row.provider_sid, row.error_code, row.error_message) == (2, fake.messages[0]["sid"], "", "")
    assert [r["response_status"] for r in sends_at_twilio(fake)] == [500, 201]
    assert len(fake.messages) == 1


def test_a_429_waits_for_the_backoff_and_sends_nothing_until_due_again(fake, message):
    fake.add_fault(status=429)

    assert send(message) == S.SCHEDULED
    row = reload(message)
    assert (row.due_at, row.error_code) == (DUE + MINUTE, "20429")
    assert "Too Many Requests" in history(row)[-1][3]
    assert dispatch_and_send(DUE + dt.timedelta(seconds=30)) == {}
    assert len(sends_at_twilio(fake)) == 1
    assert dispatch_and_send(DUE + MINUTE) == {message.pk: S.SENT}
    assert len(fake.messages) == 1


def test_a_429_asking_for_a_longer_wait_is_honoured(fake, message):
    fake.add_fault(status=429, retry_after=300)

    assert send(message) == S.SCHEDULED
    row = reload(message)
    assert row.due_at == DUE + 5 * MINUTE
    assert history(row)[-1][3].endswith("next try in 300 s, as Twilio asked")
    for minutes in (1, 2, 4):
        assert dispatch_and_send(DUE + minutes * MINUTE) == {}
    assert len(sends_at_twilio(fake)) == 1
    assert dispatch_and_send(DUE + 5 * MINUTE) == {message.pk: S.SENT}
    assert len(fake.messages) == 1


def test_a_503_with_retry_after_as_a_date_waits_until_then(fake, message):
    fake.add_fault(status=503, retry_after="Mon, 08 Jun 2026 09:10:00 GMT")  # DUE is 09:00 UTC

    assert send(message) == S.SCHEDULED
    assert reload(message).due_at == DUE + 10 * MINUTE
    assert dispatch_and_send(DUE + 9 * MINUTE) == {}
    assert dispatch_and_send(DUE + 10 * MINUTE) == {message.pk: S.SENT}


def test_a_retry_after_of_hours_is_capped_at_an_hour(fake, message):
    fake.add_fault(status=429, retry_after=86400)

    assert send(message) == S.SCHEDULED
    assert reload(message).due_at == DUE + 60 * MINUTE


def test_a_503_backs_off_twice_as_long_each_time(fake, message):
    fake.add_fault(status=503, count=2)

    assert send(message) == S.SCHEDULED
    assert reload(message).due_at == DUE + MINUTE
    assert dispatch_and_send(DUE + MINUTE) == {message.pk: S.SCHEDULED}
    assert reload(message).due_at == DUE + 3 * MINUTE
    assert dispatch_and_send(DUE + 2 * MINUTE) == {}
    assert dispatch_and_send(DUE + 3 * MINUTE) == {message.pk: S.SENT}
    assert [r["response_status"] for r in sends_at_twilio(fake)] == [503, 503, 201]
    assert (reload(message).attempts, len(fake.messages)) == (3, 1)


def test_a_full_queue_at_twilio_is_retried_and_puts_nobody_on_the_worklist(fake, message, patient):
    fake.add_fault(error_code=21611)  # a 400, but our sender's queue, not the patient's number

    assert send(message) == S.SCHEDULED
    row = reload(message)
    assert (row.error_code, row.due_at) == ("21611", DUE + MINUTE)
    assert "exceeded the maximum number of queued messages" in history(row)[-1][3]
    assert not AdminTask.objects.filter(patient=patient).exists()
    assert dispatch_and_send(DUE + MINUTE) == {message.pk: S.SENT}
    assert len(fake.messages) == 1


def test_a_refused_connection_is_retried_and_nothing_is_duplicated(fake, message, settings):
    settings.TWILIO_API_BASE_URL = f"http://127.0.0.1:{free_port()}"  # nothing listens there

    assert send(message) == S.SCHEDULED
    row = reload(message)
    assert (row.attempts, row.due_at) == (1, DUE + MINUTE)
    assert history(row)[-1][3] == "try 1 failed (Could not connect to Twilio.); next try in 60 s"

    settings.TWILIO_API_BASE_URL = fake.base_url
    assert dispatch_and_send(DUE + MINUTE) == {message.pk: S.SENT}
    assert len(fake.messages) == 1 and len(sends_at_twilio(fake)) == 1


def test_transient_errors_every_time_fail_the_text_after_the_configured_tries(fake, message):
    settings_row = SmsSettings.current()
    settings_row.max_send_attempts = 3
    settings_row.save()
    fake.add_fault(status=503, count=10)

    when = DUE
    assert send(message, when) == S.SCHEDULED
    for _ in range(2):
        when = reload(message).due_at
        dispatch_and_send(when)
    row = reload(message)
    assert (row.status, row.attempts, row.status_reason) == (S.FAILED, 3, "Twilio unavailable")
    assert history(row)[-1][:3] == ("worker", S.SENDING, S.FAILED)
    assert history(row)[-1][3].startswith("gave up after 3 tries: ")
    assert len(sends_at_twilio(fake)) == 3 and fake.messages == []
    assert dispatch_and_send(when + dt.timedelta(hours=1)) == {}
    assert len(sends_at_twilio(fake)) == 3


# -- lost answers: Twilio may have it ---------------------------------------------------------------


def test_a_read_timeout_after_twilio_created_the_text_is_reconciled_not_resent(fake, message, settings):
    settings.SMS_HTTP_TIMEOUT_SECONDS = 0.5
    fake.add_fault(timeout=5)

    assert send(message) == S.SENDING
    settings.SMS_HTTP_TIMEOUT_SECONDS = 5  # the reconciler's own requests need no hurry
    row = reload(message)
    assert row.provider_sid == "" and row.attempts == 1
    assert history(row)[-1] == (
        "worker", S.SENDING, S.SENDING, "Twilio did not answer in time. Will check with Twilio before any retry.",
    )
    assert len(fake.messages) == 1
    assert send(message, DUE + MINUTE) == S.SENDING  # the queue running the task again: nothing to claim
    assert dispatch_and_send(DUE + MINUTE) == {}  # within the task's own time: left alone
    assert reload(message).status == S.SENDING

    assert dispatch_and_send(DUE + 3 * MINUTE) == {}
    row = reload(message)
    assert (row.status, row.provider_sid) == (S.SENT, fake.messages[0]["sid"])
    assert ("reconciler", S.SENDING, S.SENDING, f"Twilio has it as {row.provider_sid}") in history(row)
    # The fake logs the held request only once it answers, so count what it received instead.
    assert len(fake.messages) == 1 and len(sends_at_twilio(fake)) == 1


def test_a_dropped_connection_after_twilio_created_the_text_is_reconciled_not_resent(fake, message):
    fake.add_fault(drop_connection=True)

    assert send(message) == S.SENDING
    assert history(reload(message))[-1][3].startswith("The connection to Twilio was lost before it answered.")
    assert dispatch_and_send(DUE + MINUTE) == {}
    assert dispatch_and_send(DUE + 3 * MINUTE) == {}
    row = reload(message)
    assert (row.status, row.provider_sid, row.attempts) == (S.SENT, fake.messages[0]["sid"], 1)
    assert len(fake.messages) == 1 and len(api_calls(fake)) == 1


def test_an_answer_cut_off_halfway_is_reconciled_not_resent(fake, message):
    fake.add_fault(cut_off=True)

    assert send(message) == S.SENDING
    assert history(reload(message))[-1][3].startswith("The answer from Twilio was cut off or unreadable.")
    assert dispatch_and_send(DUE + 3 * MINUTE) == {}
    row = reload(message)
    assert (row.status, row.provider_sid) == (S.SENT, fake.messages[0]["sid"])
    assert len(fake.messages) == 1 and len(sends_at_twilio(fake)) == 1


def test_an_answer_that_is_not_twilios_is_checked_then_sent_once(fake, message):
    fake.add_fault(garbled=True)  # a proxy's page: Twilio never got the request

    assert send(message) == S.SENDING
    assert reload(message).error_message == "The answer from Twilio was cut off or unreadable."
    assert dispatch_and_send(DUE + 3 * MINUTE) == {message.pk: S.SENT}
    row = reload(message)
    assert (row.attempts, row.provider_sid) == (2, fake.messages[0]["sid"])
    assert len(fake.messages) == 1 and len(sends_at_twilio(fake)) == 2


def test_the_reconciler_adopts_the_status_twilio_has_reached(fake, message):
    fake.add_fault(drop_connection=True)
    send(message)
    fake.deliver_callbacks()  # Twilio delivered it meanwhile; our callback URL is not reachable here

    dispatch_and_send(DUE + 3 * MINUTE)
    row = reload(message)
    assert (row.status, row.provider_sid, row.delivered_at) == (S.DELIVERED, fake.messages[0]["sid"], DUE + 3 * MINUTE)
    reported = row.events.filter(source=MessageEvent.Source.RECONCILER).exclude(reported_status="")
    assert list(reported.values_list("reported_status", flat=True)) == ["delivered", "delivered"]


def test_a_text_the_reconciler_finds_undelivered_keeps_its_error_and_goes_on_the_worklist(fake, message, patient):
    fake.set_delivery(patient.mobile_phone, "undelivered", 30005)
    fake.add_fault(drop_connection=True)
    send(message)
    fake.deliver_callbacks()  # Twilio tried, and the carrier said the number is unknown

    dispatch_and_send(DUE + 3 * MINUTE)
    row = reload(message)
    assert (row.status, row.error_code, row.provider_sid) == (S.UNDELIVERED, "30005", fake.messages[0]["sid"])
    assert row.error_message == "the number is unknown or no longer in use (error 30005)"
    [task] = AdminTask.objects.filter(patient=patient)
    assert task.kind == AdminTask.Kind.WRONG_NUMBER and "30005" in task.detail
    assert len(fake.messages) == 1


def test_a_reconciler_that_cannot_reach_twilio_leaves_the_row_sending_and_sends_nothing(
    fake, message, settings, caplog
):
    fake.add_fault(drop_connection=True)
    send(message)
    settings.TWILIO_API_BASE_URL = f"http://127.0.0.1:{free_port()}"

    assert dispatch_and_send(DUE + 3 * MINUTE) == {}
    assert reload(message).status == S.SENDING
    assert f"sms.reconcile_unreachable message_id={message.pk}" in caplog.messages

    settings.TWILIO_API_BASE_URL = fake.base_url
    assert dispatch_and_send(DUE + 4 * MINUTE) == {}
    assert (reload(message).status, len(fake.messages), len(sends_at_twilio(fake))) == (S.SENT, 1, 1)


def test_a_twilio_that_hangs_holds_up_reconciling_for_a_bounded_time_and_due_texts_still_go(
    fake, appointment, settings, monkeypatch, caplog
):
    """Five rows a dead worker left "sending", and a Twilio that accepts connections but never answers."""
    stuck = []
    for _ in range(5):
        with time_machine.travel(london(2026, 6, 1, 9), tick=False):
            other = book(make_referral(appointment.practitioner), appointment.practitioner,
                         appointment.start - dt.timedelta(hours=len(stuck) + 1))
        row = OutboundMessage.objects.get(appointment=other, kind="reminder_2d")
        OutboundMessage.objects.filter(pk=row.pk).update(status=S.SENDING, claimed_at=DUE, attempts=1,
                                                         to_number=other.referral.patient.mobile_phone)
        stuck.append(row)
    due = OutboundMessage.objects.get(appointment=appointment, kind="reminder_2d")
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)  # connections complete in the kernel's backlog; nothing ever answers
        settings.TWILIO_API_BASE_URL = f"http://127.0.0.1:{silent.getsockname()[1]}"
        settings.SMS_HTTP_TIMEOUT_SECONDS = 0.3
        monkeypatch.setattr(sending, "RECONCILE_BUDGET_SECONDS", 0.5)

        assert dispatch(DUE + 5 * MINUTE) == [due.pk]

    assert all(reload(row).status == S.SENDING for row in stuck)
    [deferred] = [m for m in caplog.messages if m.startswith("sms.reconcile_deferred")]
    tried = int(deferred.split("tried=")[1].split()[0])
    assert 1 <= tried < 5 and deferred.endswith(f"left={5 - tried}")


def test_a_row_left_sending_with_a_sid_is_settled_by_fetching_that_sid(fake, message):
    fake.add_fault(drop_connection=True)
    send(message)
    sid = fake.messages[0]["sid"]
    # A report with a status word we do not act on records the SID only; the row is still "sending".
    with time_machine.travel(DUE + MINUTE, tick=False):
        receive_delivery_report(message_id=message.pk, reported_status="partially_delivered", provider_sid=sid)
    assert (reload(message).status, reload(message).provider_sid) == (S.SENDING, sid)

    assert dispatch_and_send(DUE + 3 * MINUTE) == {}
    assert (reload(message).status, reload(message).provider_sid) == (S.SENT, sid)
    assert api_calls(fake, "GET") == [f"GET /2010-04-01/Accounts/{fake.account_sid}/Messages/{sid}.json 200"]
    assert len(api_calls(fake, "POST")) == 1 and len(fake.messages) == 1


def test_a_row_twilio_never_got_is_tried_again_once(fake, message, patient):
    # A worker claimed the row and died before its request left the machine.
    OutboundMessage.objects.filter(pk=message.pk).update(
        status=S.SENDING, claimed_at=DUE, attempts=1, to_number=patient.mobile_phone
    )

    assert dispatch_and_send(DUE + 3 * MINUTE) == {message.pk: S.SENT}
    row = reload(message)
    assert (row.attempts, row.provider_sid) == (2, fake.messages[0]["sid"])
    assert ("reconciler", S.SENDING, S.SCHEDULED, "not found at Twilio after the worker stopped; will try again") in (
        history(row)
    )
    assert len(fake.messages) == 1 and len(api_calls(fake)) == 1


def test_a_row_twilio_never_got_with_no_tries_left_is_failed_not_sent(fake, message, patient):
    OutboundMessage.objects.filter(pk=message.pk).update(
        status=S.SENDING, claimed_at=DUE, attempts=SmsSettings.current().max_send_attempts, to_number=patient.mobile_phone
    )

    assert dispatch_and_send(DUE + 3 * MINUTE) == {}
    row = reload(message)
    assert (row.status, row.status_reason) == (S.FAILED, "not sent")
    assert history(row)[-1] == ("reconciler", S.SENDING, S.FAILED, "not found at Twilio and no tries left")
    assert api_calls(fake) == [] and fake.messages == []


# -- permanent errors: never retried, a person is told ---------------------------------------------


@pytest.mark.parametrize(
    ("code", "kind", "words"),
    [
        (21211, AdminTask.Kind.WRONG_NUMBER, "the mobile number is not a valid phone number (error 21211)"),
        (21610, AdminTask.Kind.SMS_FAILED, "the patient has opted out of texts (replied STOP) (error 21610)"),
        (21614, AdminTask.Kind.WRONG_NUMBER, "the number is not a mobile (error 21614)"),
        (21408, AdminTask.Kind.SMS_FAILED, "texts to this country are not enabled (error 21408)"),
        (21612, AdminTask.Kind.WRONG_NUMBER, "the number cannot receive texts from us (error 21612)"),
    ],
)
def test_a_permanent_error_is_not_retried_and_goes_on_the_worklist(fake, message, patient, code, kind, words):
    fake.add_fault(error_code=code)

    assert send(message) == S.FAILED
    row = reload(message)
    assert (row.status, row.error_code, row.status_reason, row.attempts) == (S.FAILED, str(code), "refused by Twilio", 1)
    assert row.error_message.startswith("Unable to create record: ")
    assert history(row)[-1][:3] == ("worker", S.SENDING, S.FAILED)
    assert history(row)[-1][3].startswith(f"Twilio refused it: {code} ")
    [task] = AdminTask.objects.filter(patient=patient)
    assert (task.kind, task.source, task.appointment_id, task.resolved_at) == (kind, "sms", message.appointment_id, None)
    assert task.detail == f"Reminder 2 days before could not be sent: {words}"

    assert dispatch_and_send(DUE + dt.timedelta(hours=1)) == {}
    assert len(sends_at_twilio(fake)) == 1 and fake.messages == []
    patient.refresh_from_db()
    assert patient.sms_opted_out is (code == 21610)


def test_a_number_twilio_knows_as_a_landline_is_a_wrong_number(fake, message, patient):
    fake.set_landline(patient.mobile_phone)

    assert send(message) == S.FAILED
    assert reload(message).error_code == "21614"
    assert AdminTask.objects.get(patient=patient).kind == AdminTask.Kind.WRONG_NUMBER
    assert len(sends_at_twilio(fake)) == 1


def test_an_opted_out_number_records_the_opt_out_and_cancels_the_patients_other_texts(fake, message, patient):
    fake.set_opted_out(patient.mobile_phone)

    assert send(message) == S.FAILED
    patient.refresh_from_db()
    assert (patient.sms_opted_out, patient.sms_opted_out_at) == (True, DUE)
    same_day = OutboundMessage.objects.get(appointment=message.appointment, kind="reminder_0d")
    assert (same_day.status, same_day.status_reason) == (S.CANCELLED, "Twilio: the number has opted out (error 21610)")
    assert dispatch_and_send(same_day.due_at) == {}
    assert len(sends_at_twilio(fake)) == 1


# -- our side wrong ----------------------------------------------------------------------------------


def test_wrong_credentials_are_retried_like_an_outage_logged_and_never_blamed_on_the_patient(
    fake, message, patient, settings, caplog
):
    settings.TWILIO_AUTH_TOKEN = "not-the-token"

    assert send(message) == S.SCHEDULED
    row = reload(message)
    assert (row.error_code, row.due_at) == ("20003", DUE + MINUTE)
    errors = [record.getMessage() for record in caplog.records if record.levelno == logging.ERROR]
    assert "sms.twilio_auth_failed status=401 code=20003" in errors
    for _ in range(SmsSettings.current().max_send_attempts - 1):
        dispatch_and_send(reload(message).due_at)
    row = reload(message)
    assert (row.status, row.attempts, row.status_reason) == (S.FAILED, 4, "Twilio unavailable")
    assert len(api_calls(fake)) == 4 and all(line.endswith(" 401") for line in api_calls(fake))
    assert fake.messages == [] and not AdminTask.objects.filter(patient=patient).exists()


@pytest.mark.parametrize(
    "setting, value, problem",
    [
        ("TWILIO_AUTH_TOKEN", "", "TWILIO_ACCOUNT_SID or TWILIO_AUTH_TOKEN is not set"),
        ("TWILIO_FROM_NUMBER", "", "neither TWILIO_MESSAGING_SERVICE_SID nor TWILIO_FROM_NUMBER is set"),
        ("SMS_BACKEND", "carrier-pigeon", "SMS_BACKEND is 'carrier-pigeon'; use console or twilio"),
    ],
)
def test_a_missing_sms_setup_holds_texts_unclaimed_until_it_is_fixed_and_blames_no_patient(
    fake, message, patient, settings, caplog, setting, value, problem
):
    setattr(settings, setting, value)

    assert send(message) == S.SCHEDULED
    row = reload(message)
    assert (row.attempts, row.claimed_at, row.due_at) == (0, None, DUE)
    assert f"problem={problem!r}" in " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.ERROR)
    assert fake.log_lines == [] and not AdminTask.objects.filter(patient=patient).exists()

    setattr(settings, setting, {"TWILIO_AUTH_TOKEN": fake.auth_token, "TWILIO_FROM_NUMBER": fake.default_from,
                                "SMS_BACKEND": "twilio"}[setting])
    assert send(message, DUE + 5 * MINUTE) == S.SENT
    assert len(fake.messages) == 1


@pytest.mark.parametrize("error_code", [21606, 21608, 21617])
def test_a_refusal_that_is_about_our_twilio_setup_fails_the_text_without_a_worklist_task(
    fake, message, patient, error_code, caplog
):
    fake.add_fault(error_code=error_code)

    assert send(message) == S.FAILED
    row = reload(message)
    assert (row.error_code, row.status_reason) == (str(error_code), "our SMS account or message setup")
    assert not AdminTask.objects.filter(patient=patient).exists()
    assert f"sms.send_refused_setup message_id={message.pk} code={error_code}" in [
        r.getMessage() for r in caplog.records if r.levelno == logging.ERROR
    ]
    assert len(sends_at_twilio(fake)) == 1


def test_a_fictional_number_is_never_sent_to_the_real_twilio(fake, message, patient, settings, emitted_logs):
    settings.TWILIO_API_BASE_URL = ""  # the real api.twilio.com: refused before any request is made

    assert send(message) == S.FAILED
    row = reload(message)
    assert row.error_message.startswith("The number on record is a fictional (Ofcom drama range) number")
    assert AdminTask.objects.get(patient=patient).kind == AdminTask.Kind.SMS_FAILED
    assert fake.log_lines == []
    assert not any("api.twilio.com" in line for line in emitted_logs)


# -- cancelled in the queue -------------------------------------------------------------------------


def test_a_cancellation_while_the_send_is_queued_means_nothing_reaches_twilio(fake, message, admin_user):
    assert dispatch(DUE) == [message.pk]
    with time_machine.travel(DUE, tick=False):
        cancel_appointment(appointment=message.appointment, cancelled_by="patient", reason="Away", actor=admin_user)
    assert send(message) == S.CANCELLED
    assert fake.log_lines == [] and fake.messages == []
    assert reload(message).attempts == 0


# -- logs ------------------------------------------------------------------------------------------


def test_no_log_line_carries_the_patients_number_or_the_text_at_any_level(
    fake, message, patient, settings, emitted_logs
):
    settings.SMS_HTTP_TIMEOUT_SECONDS = 0.5
    fake.add_fault(status=500)
    fake.add_fault(timeout=3)
    send(message)  # 500, retried
    dispatch_and_send(DUE + MINUTE)  # times out after Twilio created it
    settings.SMS_HTTP_TIMEOUT_SECONDS = 5
    dispatch_and_send(DUE + 5 * MINUTE)  # reconciled by listing the number's messages
    assert reload(message).status == S.SENT
    same_day = OutboundMessage.objects.get(appointment=message.appointment, kind="reminder_0d")
    fake.add_fault(error_code=21612)  # Twilio's words for this one name the number
    assert send(same_day, same_day.due_at) == S.FAILED

    assert any(line.startswith("urllib3") for line in emitted_logs), "urllib3's debug lines should be seen"
    assert any(line.startswith("twilio.http_client") for line in emitted_logs)
    forbidden = forms_of(patient.mobile_phone) | {message.body, same_day.body, urllib.parse.quote_plus(message.body)}
    for line in emitted_logs:
        for secret in forbidden:
            assert secret not in line, f"log line leaks patient data: {line!r}"
