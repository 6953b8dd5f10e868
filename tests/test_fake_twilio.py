"""The fake Twilio server, driven by the real `twilio` client over loopback HTTP. No database."""

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from devtools.fake_twilio import FakeTwilioServer, count_segments

MOBILE = "+447700900123"
SENDER = "+447700900999"


def wait_for(condition, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.01)
    raise AssertionError("timed out waiting")


class Receiver:
    """A stand-in for the app's webhooks: records every post and answers `status`."""

    def __init__(self):
        self.posts = []
        self.status = 204
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers["Content-Length"])
                # keep_blank_values, as Django's QueryDict does: blank fields are part of the signature.
                params = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode(), keep_blank_values=True))
                url = f"http://127.0.0.1:{self.server.server_address[1]}{self.path}"
                signature = self.headers.get("X-Twilio-Signature")
                receiver.posts.append({"url": url, "params": params, "signature": signature})
                self.send_response(receiver.status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/sms/status/"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def signed_by(token, post):
    return RequestValidator(token).validate(post["url"], post["params"], post["signature"])


@pytest.fixture
def server():
    with FakeTwilioServer(callback_delay=0.01) as fake:
        yield fake


@pytest.fixture
def manual_server():
    with FakeTwilioServer(callbacks="manual") as fake:
        yield fake


def client_for(fake, timeout=5):
    client = Client(fake.account_sid, fake.auth_token, http_client=TwilioHttpClient(timeout=timeout))
    client.api.base_url = fake.base_url
    return client


@pytest.fixture
def client(server):
    return client_for(server)


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.stop()


def send(client, to=MOBILE, body="Your appointment is on Monday at 10:00.", **kwargs):
    return client.messages.create(to=to, from_=SENDER, body=body, **kwargs)


def control(fake, method, path, data=None):
    body = json.dumps(data).encode() if data is not None else None
    request = urllib.request.Request(fake.base_url + path, data=body, method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


# -- sending and reading back --------------------------------------------------------------------


def test_a_message_sent_with_the_real_client_can_be_fetched(server, client):
    message = send(client)

    assert re.fullmatch(r"SM[0-9a-f]{32}", message.sid)
    assert (message.to, message.from_, message.status) == (MOBILE, SENDER, "queued")
    assert message.account_sid == server.account_sid
    assert message.num_segments == "1"
    assert message.direction == "outbound-api"
    assert message.price is None and message.error_code is None and message.error_message is None
    assert message.api_version == "2010-04-01"
    assert message.uri == f"/2010-04-01/Accounts/{server.account_sid}/Messages/{message.sid}.json"
    assert abs(message.date_created - datetime.now(timezone.utc)) < timedelta(seconds=5)

    fetched = client.messages(message.sid).fetch()
    assert fetched.sid == message.sid and fetched.body == message.body
    assert [m["sid"] for m in server.messages] == [message.sid]
    assert server.requests[0]["form"]["To"] == MOBILE and server.requests[0]["response_status"] == 201


def test_the_status_moves_to_delivered_without_a_callback_url(server, client):
    message = send(client)
    wait_for(lambda: client.messages(message.sid).fetch().status == "delivered")
    assert client.messages(message.sid).fetch().date_sent is not None
    assert server.callbacks == []


def test_a_messaging_service_can_send_instead_of_a_from_number(server, client):
    message = client.messages.create(to=MOBILE, messaging_service_sid="MG" + "0" * 32, body="Hi")
    assert message.messaging_service_sid == "MG" + "0" * 32
    assert message.from_ == server.default_from


def test_it_counts_segments_like_twilio():
    assert count_segments("a" * 160) == 1
    assert count_segments("a" * 161) == 2
    assert count_segments("a" * 306) == 2 and count_segments("a" * 307) == 3
    assert count_segments("€" * 80) == 1  # extension characters cost two septets
    assert count_segments("€" * 81) == 2
    assert count_segments("ć" * 70) == 1  # not GSM-7: UCS-2
    assert count_segments("ć" * 71) == 2
    assert count_segments("😀" * 35) == 1 and count_segments("😀" * 36) == 2


def test_an_unknown_message_is_a_20404(client):
    with pytest.raises(TwilioRestException) as raised:
        client.messages("SM" + "0" * 32).fetch()
    assert (raised.value.status, raised.value.code) == (404, 20404)


def test_wrong_credentials_are_a_20003(server):
    client = Client(server.account_sid, "wrong-token")
    client.api.base_url = server.base_url
    with pytest.raises(TwilioRestException) as raised:
        send(client)
    assert (raised.value.status, raised.value.code) == (401, 20003)
    assert server.messages == []
    # Listing reports any error as a bare TwilioException ("Unable to fetch page"): no status, no code.
    with pytest.raises(TwilioException) as raised:
        client.messages.list(to=MOBILE)
    assert not isinstance(raised.value, TwilioRestException)


# -- Twilio's refusals ---------------------------------------------------------------------------


@pytest.mark.parametrize("to", ["07700900123", "+44", "+4477009001234567", "+44 7700 900123", ""])
def test_it_returns_21211_for_an_invalid_number(server, client, to):
    with pytest.raises(TwilioRestException) as raised:
        send(client, to=to)
    assert (raised.value.status, raised.value.code) == (400, 21211)
    assert "is not a valid phone number" in raised.value.msg
    assert server.messages == []


@pytest.mark.parametrize("to", ["+441632960123", "+442079460000"])
def test_it_returns_21614_for_a_landline(server, client, to):
    server.set_landline("+442079460000")
    with pytest.raises(TwilioRestException) as raised:
        send(client, to=to)
    assert (raised.value.status, raised.value.code) == (400, 21614)
    assert "not a valid mobile number" in raised.value.msg


def test_it_returns_21610_for_an_opted_out_number(server, client):
    server.set_opted_out(MOBILE)
    with pytest.raises(TwilioRestException) as raised:
        send(client)
    assert (raised.value.status, raised.value.code) == (400, 21610)
    assert "unsubscribed recipient" in raised.value.msg


def test_it_returns_21602_for_an_empty_body(client):
    with pytest.raises(TwilioRestException) as raised:
        send(client, body="")
    assert (raised.value.status, raised.value.code) == (400, 21602)


# -- faults --------------------------------------------------------------------------------------


def test_a_500_fault_fails_one_send_and_creates_nothing(server, client):
    server.add_fault(status=500)
    with pytest.raises(TwilioRestException) as raised:
        send(client)
    assert (raised.value.status, raised.value.code) == (500, 20500)
    assert server.messages == []
    send(client)  # the fault is used up
    assert len(server.messages) == 1
    assert [r["response_status"] for r in server.requests] == [500, 201]
    assert server.requests[0]["fault"] == {"status": 500}


def test_a_429_fault_says_when_to_retry(server, client):
    server.add_fault(status=429, count=2)
    for _ in range(2):
        with pytest.raises(TwilioRestException) as raised:
            send(client)
        assert (raised.value.status, raised.value.code) == (429, 20429)
    # TwilioRestException does not carry headers; the last raw response does.
    assert client.http_client._test_only_last_response.headers["Retry-After"] == "1"
    send(client)


def test_a_fault_can_ask_for_a_longer_wait_in_seconds_or_as_a_date(server, client):
    server.add_fault(status=429, retry_after=300)
    server.add_fault(status=503, retry_after="Mon, 08 Jun 2026 09:10:00 GMT")
    server.add_fault(status=503)
    answers = []
    for _ in range(3):
        with pytest.raises(TwilioRestException):
            send(client)
        answers.append(client.http_client._test_only_last_response.headers.get("Retry-After"))
    assert answers == ["300", "Mon, 08 Jun 2026 09:10:00 GMT", None]
    assert server.requests[0]["fault"] == {"status": 429, "retry_after": 300}


def test_faults_are_used_in_the_order_they_were_added(server, client):
    server.add_fault(status=503)
    server.add_fault(error_code=21408)
    with pytest.raises(TwilioRestException) as first:
        send(client)
    with pytest.raises(TwilioRestException) as second:
        send(client)
    assert (first.value.status, first.value.code) == (503, 20503)
    assert (second.value.status, second.value.code) == (400, 21408)
    assert MOBILE in second.value.msg


def test_a_delay_fault_answers_slowly_then_normally(server, client):
    server.add_fault(delay=0.3)
    started = time.monotonic()
    send(client)
    assert time.monotonic() - started >= 0.3
    assert len(server.messages) == 1


def test_after_a_timeout_fault_the_message_exists_and_can_be_found(server):
    client = client_for(server, timeout=0.3)
    server.add_fault(timeout=3)
    started = datetime.now(timezone.utc)
    # The client does not wrap transport errors: a timeout is requests' ReadTimeout, not a TwilioException.
    with pytest.raises(requests.exceptions.ReadTimeout) as raised:
        send(client)
    assert not isinstance(raised.value, TwilioException)

    [created] = server.messages
    found = client.messages.list(to=MOBILE, date_sent_after=started)
    assert [m.sid for m in found] == [created["sid"]]
    assert client.messages.list(to=MOBILE, date_sent_after=started + timedelta(minutes=1)) == []
    assert client.messages.list(to="+447700900456") == []


def test_a_dropped_connection_still_creates_the_message(server, client):
    server.add_fault(drop_connection=True)
    with pytest.raises(requests.exceptions.ConnectionError):
        send(client)
    assert len(server.messages) == 1
    assert server.requests[0]["response_status"] is None


def test_an_answer_cut_off_halfway_still_creates_the_message(server, client):
    server.add_fault(cut_off=True)
    # A transport error that is neither a ConnectionError nor a Timeout, and not a TwilioException.
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        send(client)
    assert len(server.messages) == 1
    assert server.requests[0]["sid"] == server.messages[0]["sid"]


def test_a_garbled_answer_is_not_json_and_creates_nothing(server, client):
    server.add_fault(garbled=True)
    with pytest.raises(ValueError):  # the client's json.loads of an HTML page
        send(client)
    assert server.messages == []
    assert server.requests[0]["fault"] == {"garbled": True}


def test_list_filters_and_pages_like_twilio(server, client):
    first = send(client, to="+447700900001")
    second = send(client, to="+447700900002")
    third = send(client, to="+447700900001")
    # Newest first; page_size=1 makes the client follow next_page_uri.
    assert [m.sid for m in client.messages.list(page_size=1)] == [third.sid, second.sid, first.sid]
    assert [m.sid for m in client.messages.list(to="+447700900001")] == [third.sid, first.sid]
    assert len(client.messages.list(from_=SENDER, date_sent=datetime.now(timezone.utc).date())) == 3
    assert client.messages.list(date_sent_before=datetime(2000, 1, 1)) == []


# -- callbacks -----------------------------------------------------------------------------------


def test_status_callbacks_are_signed_and_arrive_sent_then_delivered(server, client, receiver):
    message = send(client, status_callback=receiver.url)
    wait_for(lambda: len(receiver.posts) == 2)

    assert [p["params"]["MessageStatus"] for p in receiver.posts] == ["sent", "delivered"]
    for post in receiver.posts:
        assert signed_by(server.auth_token, post)
        assert not signed_by("another-token", post)
        params = post["params"]
        assert params["MessageSid"] == params["SmsSid"] == message.sid
        assert params["SmsStatus"] == params["MessageStatus"]
        assert (params["To"], params["From"], params["AccountSid"]) == (MOBILE, SENDER, server.account_sid)
        assert params["ApiVersion"] == "2010-04-01"
        assert "ErrorCode" not in params
    assert client.messages(message.sid).fetch().status == "delivered"
    assert [(c["kind"], c["response_status"]) for c in server.callbacks] == [("status", 204), ("status", 204)]


def test_an_undelivered_message_reports_its_error_code(server, client, receiver):
    server.set_delivery(MOBILE, status="undelivered", error_code=30005)
    message = send(client, status_callback=receiver.url)
    wait_for(lambda: len(receiver.posts) == 2)

    assert [p["params"]["MessageStatus"] for p in receiver.posts] == ["sent", "undelivered"]
    assert receiver.posts[1]["params"]["ErrorCode"] == "30005"
    fetched = client.messages(message.sid).fetch()
    assert (fetched.status, fetched.error_code) == ("undelivered", 30005)


def test_a_failed_message_is_never_sent(server, client, receiver):
    server.set_delivery(MOBILE, status="failed", error_code=30008)
    send(client, status_callback=receiver.url)
    wait_for(lambda: len(receiver.posts) == 1)
    time.sleep(0.05)
    assert [(p["params"]["MessageStatus"], p["params"]["ErrorCode"]) for p in receiver.posts] == [("failed", "30008")]


def test_a_webhook_error_is_recorded_not_raised(server, client, receiver):
    receiver.status = 500
    send(client, status_callback=receiver.url)
    wait_for(lambda: len(server.callbacks) == 2)
    assert [c["response_status"] for c in server.callbacks] == [500, 500]


def test_manual_callbacks_wait_for_the_test_and_can_be_replayed_reversed(manual_server, receiver):
    client = client_for(manual_server)
    message = send(client, status_callback=receiver.url)
    time.sleep(0.1)
    assert receiver.posts == []
    assert client.messages(message.sid).fetch().status == "queued"

    records = manual_server.deliver_callbacks()
    assert [r["params"]["MessageStatus"] for r in records] == ["sent", "delivered"]
    assert client.messages(message.sid).fetch().status == "delivered"

    replayed = manual_server.replay_callbacks(message.sid, order="reversed")
    assert [r["params"]["MessageStatus"] for r in replayed] == ["delivered", "sent"]
    assert [p["params"]["MessageStatus"] for p in receiver.posts] == ["sent", "delivered", "delivered", "sent"]
    assert all(signed_by(manual_server.auth_token, p) for p in receiver.posts)
    assert manual_server.deliver_callbacks() == []


def test_a_forged_callback_fails_validation(server, receiver):
    params = {"MessageSid": "SM" + "1" * 32, "MessageStatus": "delivered", "AccountSid": server.account_sid}
    record = server.post_forged_callback(receiver.url, params)
    assert record["response_status"] == 204
    [post] = receiver.posts
    assert post["params"] == params
    assert not signed_by(server.auth_token, post)


def test_an_inbound_reply_is_signed_like_twilio(server, receiver):
    receiver.status = 200
    status, body = server.send_inbound(receiver.url, from_=MOBILE, body="STOP")
    assert (status, body) == (200, "ok")
    [post] = receiver.posts
    params = post["params"]
    assert signed_by(server.auth_token, post)
    assert (params["From"], params["To"], params["Body"]) == (MOBILE, server.default_from, "STOP")
    assert re.fullmatch(r"SM[0-9a-f]{32}", params["MessageSid"]) and params["SmsSid"] == params["MessageSid"]
    assert (params["SmsStatus"], params["NumMedia"], params["NumSegments"]) == ("received", "0", "1")
    assert params["AccountSid"] == server.account_sid and params["FromCity"] == ""


def test_an_inbound_reply_to_a_failing_webhook_returns_the_status(server, receiver):
    receiver.status = 403
    assert server.send_inbound(receiver.url, from_=MOBILE, body="Yes", to="+447700900888") == (403, "ok")
    assert server.send_inbound("http://127.0.0.1:9/nothing-here", from_=MOBILE, body="Yes") == (None, "")


# -- control over HTTP ---------------------------------------------------------------------------


def test_the_http_control_endpoints_drive_the_server(server, client, receiver):
    assert control(server, "POST", "/_fake/faults", {"status": 500}) == (
        201,
        {"status": 500, "error_code": None, "delay": 0, "timeout": 0, "drop_connection": False, "cut_off": False,
         "garbled": False, "retry_after": None, "count": 1},
    )
    with pytest.raises(TwilioRestException):
        send(client)

    assert control(server, "POST", "/_fake/delivery", {"to": MOBILE, "status": "failed", "error_code": 30003})[0] == 200
    message = send(client, status_callback=receiver.url)
    wait_for(lambda: len(receiver.posts) == 1)
    assert receiver.posts[0]["params"]["ErrorCode"] == "30003"

    status, messages = control(server, "GET", "/_fake/messages")
    assert status == 200 and [m["sid"] for m in messages] == [message.sid]
    assert control(server, "GET", "/_fake/callbacks")[1][0]["params"]["MessageStatus"] == "failed"
    assert [r["response_status"] for r in control(server, "GET", "/_fake/requests")[1]] == [500, 201]

    receiver.status = 200
    inbound = {"url": receiver.url, "from": MOBILE, "body": "Yes", "to": SENDER}
    assert control(server, "POST", "/_fake/inbound", inbound) == (200, {"status": 200, "body": "ok"})
    assert signed_by(server.auth_token, receiver.posts[-1])

    assert control(server, "POST", "/_fake/faults", {"nonsense": 1})[0] == 400
    assert control(server, "POST", "/_fake/reset") == (200, {"ok": True})
    assert server.messages == server.callbacks == server.requests == []


# -- the management command ----------------------------------------------------------------------


def test_the_management_command_serves_and_logs_no_patient_data():
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "TWILIO_ACCOUNT_SID": "AC" + "1" * 32, "TWILIO_AUTH_TOKEN": "cmd-token"}
    process = subprocess.Popen(
        [sys.executable, "manage.py", "run_fake_twilio", "--port", "0"],
        cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        # Django's apps may log a line or two first.
        for _ in range(20):
            found = re.search(r"listening on (http://127\.0\.0\.1:\d+)", process.stdout.readline())
            if found:
                break
        base_url = found.group(1)
        client = Client("AC" + "1" * 32, "cmd-token")
        client.api.base_url = base_url
        message = send(client, body="Secret appointment text")
        client.messages.list(to=MOBILE)
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=10)
    assert process.returncode == 0
    lines = output.splitlines()
    assert f"POST /2010-04-01/Accounts/{'AC' + '1' * 32}/Messages.json 201" in lines
    assert f"GET /2010-04-01/Accounts/{'AC' + '1' * 32}/Messages.json 200" in lines
    assert message.sid
    assert "7700" not in output and "Secret" not in output
