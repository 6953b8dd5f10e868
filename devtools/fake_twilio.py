"""A fake Twilio Messaging API (2010-04-01) for tests, the demo and the stack smoke test.

TEST AND DEMO ONLY. It knows one account, keeps everything in memory and has unauthenticated
control endpoints under /_fake/. Bind it to loopback; production must never point at it.

It answers what the official `twilio` Python client (v9) calls for SMS:

    POST /2010-04-01/Accounts/{AccountSid}/Messages.json              send (To, From or
         MessagingServiceSid, Body, StatusCallback); Twilio's 400s for bad numbers, landlines,
         opted-out recipients and empty bodies
    GET  /2010-04-01/Accounts/{AccountSid}/Messages/{MessageSid}.json  fetch, with the current status
    GET  /2010-04-01/Accounts/{AccountSid}/Messages.json               list; To, From, DateSent,
         DateSent<, DateSent> filters and Twilio's paging

and, like Twilio, posts status callbacks (sent, then delivered / undelivered / failed) and inbound-SMS
webhooks signed with X-Twilio-Signature. Faults (500, 429, 503, with or without Retry-After, error codes,
slow answers, timeouts after the message was created, dropped connections, answers cut off halfway or not
from Twilio at all) can be queued for the next sends.

Pointing the real client at it (checked against twilio 9.x: every 2010-04-01 URL is built from
`client.api.base_url`, the `api` Domain's "https://api.twilio.com"):

    from twilio.rest import Client
    from twilio.http.http_client import TwilioHttpClient

    with FakeTwilioServer() as server:
        client = Client(server.account_sid, server.auth_token, http_client=TwilioHttpClient(timeout=5))
        client.api.base_url = server.base_url
        msg = client.messages.create(to="+447700900123", from_="+447700900999", body="Hi",
                                     status_callback="http://127.0.0.1:8000/sms/status/")

Leave the client's region and edge unset, and TWILIO_REGION / TWILIO_EDGE out of the environment
(Client reads both from it): with either set, Client.request rewrites the host to
product.edge.region.twilio.com and mangles "127.0.0.1:port".

In tests use the Python API (FakeTwilioServer, add_fault, set_delivery, send_inbound, ...). Another
process (the demo, deploy/stack_smoke.py) runs `python manage.py run_fake_twilio` or
`python -m devtools.fake_twilio` and drives it over HTTP:

    GET  /_fake/messages    created messages        GET  /_fake/callbacks   every webhook posted
    GET  /_fake/requests    every send request      POST /_fake/reset
    POST /_fake/faults      JSON: add_fault()'s keyword arguments
    POST /_fake/delivery    JSON: {"to", "status", "error_code"}
    POST /_fake/inbound     JSON: {"url", "from", "body", "to"}; answers {"status", "body"}

This module imports nothing from Django so it runs standalone.
"""

import base64
import email.utils
import json
import re
import secrets
import signal
import threading
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from twilio.request_validator import RequestValidator

API_VERSION = "2010-04-01"
DEFAULT_ACCOUNT_SID = "AC" + "fake".ljust(32, "0")
DEFAULT_AUTH_TOKEN = "fake-token"
DEFAULT_FROM = "+447700900999"

# Ofcom's fictional landline range (01632 960000-960999): the demo's landlines must be refused like
# real ones, so they are landlines here unless a test says otherwise.
FICTIONAL_LANDLINE_PREFIX = "+441632960"

# E.164: a plus and 8 to 15 digits, no leading zero.
E164 = re.compile(r"\+[1-9]\d{7,14}")

MESSAGES_PATH = re.compile(rf"/{API_VERSION}/Accounts/(?P<account>[^/]+)/Messages(?:/(?P<sid>[^/]+))?\.json")

# Twilio's own wording, so the app's logs and tests read like production.
ERRORS = {
    20001: (400, "Invalid parameter {param}"),
    20003: (401, "Authenticate"),
    20404: (404, "The requested resource {path} was not found"),
    20429: (429, "Too Many Requests"),
    20500: (500, "Internal Server Error"),
    20503: (503, "Service Unavailable"),
    21211: (400, "The 'To' number {to} is not a valid phone number."),
    21408: (400, "Permission to send an SMS has not been enabled for the region indicated by the 'To' number: {to}."),
    21602: (400, "Message body is required."),
    21603: (400, "A 'From' phone number is required."),
    21610: (400, "Attempt to send to unsubscribed recipient"),
    21611: (400, "This 'From' number has exceeded the maximum number of queued messages"),
    21612: (
        400,
        "The 'To' phone number: {to}, is not currently reachable using the 'From' phone number: {from_} via SMS.",
    ),
    21614: (400, "'To' number is not a valid mobile number"),
    30007: (400, "Message filtered"),
}
ERROR_CODE_FOR_STATUS = {401: 20003, 404: 20404, 429: 20429, 500: 20500, 503: 20503}
FINAL_STATUSES = ("delivered", "undelivered", "failed")

# GSM 03.38: the basic set costs one septet a character, the extension set two (escape + char).
GSM7_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = set("\f^{}\\[~]|€")


def count_segments(body: str) -> int:
    """SMS segments as Twilio counts them: GSM-7 160 (153 when split), else UCS-2 70 (67)."""
    if all(ch in GSM7_BASIC or ch in GSM7_EXTENSION for ch in body):
        units = sum(2 if ch in GSM7_EXTENSION else 1 for ch in body)
        single, part = 160, 153
    else:
        units = len(body.encode("utf-16-le")) // 2  # UCS-2 counts UTF-16 code units: an emoji is two
        single, part = 70, 67
    return 1 if units <= single else -(-units // part)


def error_payload(code: int, status: int | None = None, **details) -> tuple[int, dict]:
    """(HTTP status, body) in Twilio's legacy error shape, which the client turns into TwilioRestException."""
    default_status, template = ERRORS.get(code, (400, "Twilio error {code}"))
    status = status or default_status
    message = template.format(code=code, **{"to": "", "from_": "", "path": "", "param": "", **details})
    more_info = f"https://www.twilio.com/docs/errors/{code}"
    return status, {"code": code, "message": message, "more_info": more_info, "status": status}


def _now() -> datetime:
    # Whole seconds: Twilio's dates and the client's DateSent filters have no finer resolution.
    return datetime.now(timezone.utc).replace(microsecond=0)


def _rfc2822(moment: datetime | None) -> str | None:
    return email.utils.format_datetime(moment) if moment else None


def _new_sid(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


@dataclass
class Fault:
    """What the next `count` send requests get instead of (or on top of) normal service."""

    status: int | None = None  # 500, 429, 503...: Twilio-shaped error, nothing created
    error_code: int | None = None  # 21211, 21610, 21614, 21408, 21612, 30007...: a 400 with that code
    delay: float = 0  # answer slowly, then normally
    timeout: float = 0  # create the message, then hold the answer this long (the client times out)
    drop_connection: bool = False  # create the message, then close the socket without answering
    cut_off: bool = False  # create the message, then close the socket halfway through the answer
    garbled: bool = False  # create nothing; answer 200 with an HTML page, as a proxy in between might
    # With a status: the Retry-After header, seconds or an HTTP date (real Twilio may send one on a
    # 429 or 503). A 429 without it says "1", as this fake always has.
    retry_after: int | str | None = None
    count: int = 1

    def __post_init__(self):
        if self.count < 1:
            raise ValueError("count must be at least 1")
        if not (
            self.status or self.error_code or self.delay or self.timeout or self.drop_connection or self.cut_off
            or self.garbled
        ):
            raise ValueError("a fault needs status, error_code, delay, timeout, drop_connection, cut_off or garbled")

    def describe(self) -> dict:
        """The fields that were set, e.g. {"status": 500}, for the request log."""
        return {key: value for key, value in asdict(self).items() if value and key != "count"}


@dataclass
class _Message:
    resource: dict  # exactly what the API returns
    created_at: datetime
    status_callback: str | None
    pending: list  # (status, error_code) still to happen, in order
    sent_at: datetime | None = None
    posted: list = field(default_factory=list)  # (url, params) of status callbacks, for replays


# Callbacks go straight to the URL: no proxy from the environment, and no following redirects, so a
# webhook that answers 302 (say, to a login page) shows up as 302 instead of a misleading 200.
class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect)


class FakeTwilioServer:
    """The fake API on a background thread. Use as a context manager, or start() and stop()."""

    def __init__(
        self,
        account_sid: str = DEFAULT_ACCOUNT_SID,
        auth_token: str = DEFAULT_AUTH_TOKEN,
        host: str = "127.0.0.1",
        port: int = 0,
        default_from: str = DEFAULT_FROM,
        callbacks: str = "auto",
        callback_delay: float = 0.05,
        log=None,
    ):
        if callbacks not in ("auto", "manual"):
            raise ValueError("callbacks must be 'auto' or 'manual'")
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.host = host
        self.port = port
        self.default_from = default_from
        self.callback_mode = callbacks
        self.callback_delay = callback_delay
        # log(line) gets one line per request: method, path, status. Never numbers or bodies.
        self.log = log
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd = None
        self._thread = None
        self._clear()

    def _clear(self):
        self._messages: dict[str, _Message] = {}
        self._requests: list[dict] = []
        self._callbacks: list[dict] = []
        self._faults: list[Fault] = []
        self._landlines: set[str] = set()
        self._opted_out: set[str] = set()
        self._deliveries: dict[str, tuple[str, int | None]] = {}

    # -- running -------------------------------------------------------------------------------

    def start(self) -> "FakeTwilioServer":
        self._stopping.clear()
        self._httpd = ThreadingHTTPServer((self.host, self.port), _Handler)
        self._httpd.fake = self
        self.port = self._httpd.server_address[1]
        # A short poll interval keeps stop() quick; tests start and stop a server each.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-twilio", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        # Wakes sleeping faults and callback threads so nothing outlives the server for long.
        self._stopping.set()
        if self._httpd:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join()
            self._httpd = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # -- configuring -----------------------------------------------------------------------------

    def add_fault(self, **kwargs) -> Fault:
        """Queue a fault for the next send request(s); faults are used in the order added."""
        fault = Fault(**kwargs)
        with self._lock:
            self._faults.append(fault)
        return fault

    def set_landline(self, number: str) -> None:
        with self._lock:
            self._landlines.add(number)

    def set_opted_out(self, number: str) -> None:
        with self._lock:
            self._opted_out.add(number)

    def set_delivery(self, number: str, status: str = "undelivered", error_code: int | None = 30005) -> None:
        """How messages to `number` end: delivered, undelivered or failed (with a 30xxx ErrorCode)."""
        if status not in FINAL_STATUSES:
            raise ValueError(f"status must be one of {FINAL_STATUSES}")
        with self._lock:
            self._deliveries[number] = (status, None if status == "delivered" else error_code)

    def reset(self) -> None:
        """Forget messages, requests, callbacks, faults and number settings; pending callbacks are dropped."""
        with self._lock:
            self._clear()

    # -- inspecting (copies, safe to read while the server works) --------------------------------

    @property
    def messages(self) -> list[dict]:
        with self._lock:
            return [dict(message.resource) for message in self._messages.values()]

    @property
    def requests(self) -> list[dict]:
        with self._lock:
            return [dict(request) for request in self._requests]

    @property
    def callbacks(self) -> list[dict]:
        with self._lock:
            return [dict(callback) for callback in self._callbacks]

    # -- the API ---------------------------------------------------------------------------------

    def create_message(self, form: dict) -> tuple[int, dict]:
        """Validate and store a send like Twilio does; (HTTP status, JSON body)."""
        to = form.get("To", "")
        from_ = form.get("From") or None
        service_sid = form.get("MessagingServiceSid") or None
        body = form.get("Body", "")
        with self._lock:
            if not E164.fullmatch(to):
                return error_payload(21211, to=to)
            if not (from_ or service_sid):
                return error_payload(21603)
            if not body:
                return error_payload(21602)
            if to in self._landlines or to.startswith(FICTIONAL_LANDLINE_PREFIX):
                return error_payload(21614)
            if to in self._opted_out:
                return error_payload(21610)
            sid, now = _new_sid("SM"), _now()
            uri = f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{sid}.json"
            resource = {
                "account_sid": self.account_sid,
                "api_version": API_VERSION,
                "body": body,
                "date_created": _rfc2822(now),
                "date_sent": None,
                "date_updated": _rfc2822(now),
                "direction": "outbound-api",
                "error_code": None,
                "error_message": None,
                # A messaging service picks a sender from its pool; here it is always the default one.
                "from": from_ or self.default_from,
                "messaging_service_sid": service_sid,
                "num_media": "0",
                "num_segments": str(count_segments(body)),
                "price": None,
                "price_unit": "USD",
                "sid": sid,
                "status": "queued",
                "subresource_uris": {"media": uri.replace(".json", "/Media.json")},
                "to": to,
                "uri": uri,
            }
            final_status, error_code = self._deliveries.get(to, ("delivered", None))
            # A failed message never left Twilio, so it gets no 'sent' first.
            steps = [("sent", None)] if final_status != "failed" else []
            steps.append((final_status, error_code))
            self._messages[sid] = _Message(resource, now, form.get("StatusCallback") or None, steps)
            return 201, dict(resource)

    def fetch_message(self, sid: str) -> dict | None:
        with self._lock:
            message = self._messages.get(sid)
            return dict(message.resource) if message else None

    def list_messages(
        self, to=None, from_=None, date_sent=None, date_sent_before=None, date_sent_after=None
    ) -> list[dict]:
        """Newest first, like Twilio. Bounds are datetimes (to the second) or dates (whole days), inclusive.

        Twilio filters on date_sent, which stays null until the message leaves Twilio. This fake falls back
        to date_created so a still-queued message is found; against the real API a reconciliation
        that filters on DateSent> may not see a message that is still queued.
        """

        def matches(when: datetime, bound, compare) -> bool:
            if bound is None:
                return True
            if isinstance(bound, datetime):
                return compare(when, bound)
            return compare(when.date(), bound)

        # DateSent alone means a day (the client sends a date as YYYY-MM-DDT00:00:00Z); with < or >
        # the bound is to the second.
        if isinstance(date_sent, datetime):
            date_sent = date_sent.date()

        with self._lock:
            found = []
            for message in reversed(self._messages.values()):
                when = message.sent_at or message.created_at
                if to and message.resource["to"] != to:
                    continue
                if from_ and message.resource["from"] != from_:
                    continue
                if not (
                    matches(when, date_sent, lambda a, b: a == b)
                    and matches(when, date_sent_before, lambda a, b: a <= b)
                    and matches(when, date_sent_after, lambda a, b: a >= b)
                ):
                    continue
                found.append(dict(message.resource))
            return found

    def _take_fault(self) -> Fault | None:
        with self._lock:
            if not self._faults:
                return None
            fault = self._faults[0]
            fault.count -= 1
            if fault.count == 0:
                self._faults.pop(0)
            return fault

    def _record_request(self, form: dict, status, fault: Fault | None, sid: str | None) -> None:
        with self._lock:
            fault = fault.describe() if fault else None
            self._requests.append({"form": dict(form), "response_status": status, "sid": sid, "fault": fault})

    def _sleep(self, seconds: float) -> None:
        self._stopping.wait(seconds)

    # -- callbacks -------------------------------------------------------------------------------

    def _schedule_callbacks(self, sid: str) -> None:
        if self.callback_mode == "auto":
            # One thread per message keeps its callbacks in order without holding up requests.
            threading.Thread(target=self._run_callbacks, args=(sid,), name="fake-twilio-callbacks", daemon=True).start()

    def _run_callbacks(self, sid: str) -> None:
        while not self._stopping.wait(self.callback_delay):
            if not self._advance(sid):
                return

    def _advance(self, sid: str) -> bool:
        """Move a message to its next status and post the callback, if it has one. False when done."""
        with self._lock:
            message = self._messages.get(sid)
            if not message or not message.pending:  # done, or forgotten by reset()
                return False
            status, error_code = message.pending.pop(0)
            now = _now()
            message.resource.update(status=status, date_updated=_rfc2822(now))
            if status == "sent":
                message.sent_at = now
                message.resource["date_sent"] = _rfc2822(now)
            if error_code:
                message.resource["error_code"] = error_code
            url, params = message.status_callback, self._status_params(message.resource, status, error_code)
        if url:
            self._post(url, params, kind="status", sid=sid)
            with self._lock:
                message.posted.append((url, params))
        return True

    def _status_params(self, resource: dict, status: str, error_code: int | None) -> dict:
        params = {
            "MessageSid": resource["sid"],
            "SmsSid": resource["sid"],
            "AccountSid": self.account_sid,
            "From": resource["from"],
            "To": resource["to"],
            "MessageStatus": status,
            "SmsStatus": status,
            "ApiVersion": API_VERSION,
        }
        if resource["messaging_service_sid"]:
            params["MessagingServiceSid"] = resource["messaging_service_sid"]
        if error_code:
            params["ErrorCode"] = str(error_code)
        return params

    def deliver_callbacks(self, sid: str | None = None) -> list[dict]:
        """Manual mode: play every pending status change (of one message, or all) now, in order.

        Returns the callback records posted.
        """
        with self._lock:
            sids = [sid] if sid else [s for s, message in self._messages.items() if message.pending]
            already = len(self._callbacks)
        for each in sids:
            while self._advance(each):
                pass
        with self._lock:
            return [dict(record) for record in self._callbacks[already:]]

    def replay_callbacks(self, sid: str, order: str = "same") -> list[dict]:
        """Post a message's status callbacks again, as Twilio's retries and reordering can."""
        if order not in ("same", "reversed"):
            raise ValueError("order must be 'same' or 'reversed'")
        with self._lock:
            posted = list(self._messages[sid].posted)
        if order == "reversed":
            posted.reverse()
        return [self._post(url, params, kind="replay", sid=sid) for url, params in posted]

    def post_forged_callback(self, url: str, params: dict) -> dict:
        """Post `params` with a signature made with the wrong token: the app must refuse it."""
        forged = RequestValidator("not-" + self.auth_token).compute_signature(url, params)
        return self._post(url, params, kind="forged", signature=forged)

    def send_inbound(self, url: str, from_: str, body: str, to: str | None = None) -> tuple[int | None, str]:
        """Post a signed inbound-SMS webhook, as Twilio does for a reply. Returns (status, response body).

        The status is None when nothing answered at `url`.
        """
        to = to or self.default_from
        sid = _new_sid("SM")

        def country(number):
            return "GB" if number.startswith("+44") else ""

        # Twilio sends the geographic fields even when it has nothing for them (empty strings); they
        # are part of the signature, so a webhook that drops blank values fails validation.
        params = {
            "ToCountry": country(to),
            "ToState": "",
            "SmsMessageSid": sid,
            "NumMedia": "0",
            "ToCity": "",
            "FromZip": "",
            "SmsSid": sid,
            "FromState": "",
            "SmsStatus": "received",
            "FromCity": "",
            "Body": body,
            "FromCountry": country(from_),
            "To": to,
            "ToZip": "",
            "NumSegments": str(count_segments(body)),
            "MessageSid": sid,
            "AccountSid": self.account_sid,
            "From": from_,
            "ApiVersion": API_VERSION,
        }
        record = self._post(url, params, kind="inbound", sid=sid)
        return record["response_status"], record["response_body"]

    def _post(self, url: str, params: dict, kind: str, sid: str | None = None, signature: str | None = None) -> dict:
        signature = signature or RequestValidator(self.auth_token).compute_signature(url, params)
        request = urllib.request.Request(
            url,
            data=urllib.parse.urlencode(params).encode(),
            method="POST",
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "User-Agent": "TwilioProxy/1.1",
                "X-Twilio-Signature": signature,
            },
        )
        status, body, error = None, "", None
        try:
            with _OPENER.open(request, timeout=10) as response:
                status, body = response.status, response.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as exc:  # 4xx/5xx are an answer, not a failure to post
            status, body = exc.code, exc.read().decode("utf-8", "replace")
        except OSError as exc:  # refused, reset, timed out
            error = str(exc)
        record = {
            "kind": kind,  # status, replay, forged or inbound
            "sid": sid,
            "url": url,
            "params": dict(params),
            "signature": signature,
            "response_status": status,
            "response_body": body,
            "error": error,
        }
        with self._lock:
            self._callbacks.append(record)
        return record


class _Handler(BaseHTTPRequestHandler):
    def version_string(self):
        return "FakeTwilio/1.0"

    @property
    def fake(self) -> FakeTwilioServer:
        return self.server.fake

    # Logging: one line per answer through fake.log, with the path but never the query string (the
    # list filters carry phone numbers). http.server's own lines include it, so they are dropped.
    def log_request(self, code="-", size="-"):
        self._log(getattr(code, "value", code))

    def log_message(self, format, *args):
        pass

    def _log(self, outcome) -> None:
        if self.fake.log:
            path = urllib.parse.urlsplit(getattr(self, "path", "")).path
            self.fake.log(f"{getattr(self, 'command', None) or '-'} {path} {outcome}")

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        if url.path.startswith("/_fake/"):
            return self._control_get(url.path)
        match = MESSAGES_PATH.fullmatch(url.path)
        if not self._authorised(match, url.path):
            return
        if match["sid"]:
            resource = self.fake.fetch_message(match["sid"])
            if resource is None:
                return self._send_json(*error_payload(20404, path=url.path))
            return self._send_json(200, resource)
        return self._list(url)

    def do_POST(self):
        url = urllib.parse.urlsplit(self.path)
        if url.path.startswith("/_fake/"):
            return self._control_post(url.path)
        form = self._read_form()
        match = MESSAGES_PATH.fullmatch(url.path)
        if not self._authorised(match, url.path):
            return
        if match["sid"]:  # updating (redacting, cancelling) a message is not faked
            return self._send_json(*error_payload(20404, path=url.path))
        self._create(form)

    def _create(self, form: dict) -> None:
        fake = self.fake
        fault = fake._take_fault()
        if fault and fault.delay:
            fake._sleep(fault.delay)
        if fault and (fault.status or fault.error_code):
            code = fault.error_code or ERROR_CODE_FOR_STATUS.get(fault.status, fault.status)
            status, payload = error_payload(code, fault.status, to=form.get("To", ""), from_=form.get("From", ""))
            fake._record_request(form, status, fault, None)
            if fault.retry_after is not None:
                headers = {"Retry-After": str(fault.retry_after)}
            else:
                headers = {"Retry-After": "1"} if status == 429 else {}
            return self._send_json(status, payload, headers)
        if fault and fault.garbled:
            fake._record_request(form, 200, fault, None)
            page = b"<html><body><h1>Service temporarily unavailable</h1></body></html>"
            return self._send_body(200, page, "text/html")

        status, payload = fake.create_message(form)
        sid = payload.get("sid")
        if status != 201:
            fake._record_request(form, status, fault, None)
            return self._send_json(status, payload)
        if fault and fault.drop_connection:
            # Twilio has the message but the app never hears so: it must not simply send again.
            fake._record_request(form, None, fault, sid)
            fake._schedule_callbacks(sid)
            self.close_connection = True
            return self._log("dropped")
        if fault and fault.cut_off:
            # Created, and the answer starts, but the connection breaks before its end.
            fake._record_request(form, status, fault, sid)
            fake._schedule_callbacks(sid)
            body = json.dumps(payload).encode()
            self._send_body(status, body[: len(body) // 2], "application/json; charset=utf-8", length=len(body))
            self.close_connection = True
            return
        fake._record_request(form, status, fault, sid)
        if fault and fault.timeout:
            # Created and on its way (callbacks too); only the answer is late, so the client times out.
            fake._schedule_callbacks(sid)
            fake._sleep(fault.timeout)
            try:
                return self._send_json(status, payload)
            except OSError:  # the client gave up and closed the socket
                return
        self._send_json(status, payload)
        # After answering, so the app has the sid before its first callback, as with the real service.
        fake._schedule_callbacks(sid)

    def _list(self, url) -> None:
        query = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
        filters = {key: query[key] for key in ("To", "From", "DateSent", "DateSent<", "DateSent>") if query.get(key)}
        try:
            dates = {key: _parse_filter_date(value) for key, value in filters.items() if key.startswith("DateSent")}
            page_size = int(query.get("PageSize") or 50)
            page = int(query.get("Page") or 0)
        except ValueError:
            return self._send_json(*error_payload(20001, param="DateSent, Page or PageSize"))
        found = self.fake.list_messages(
            to=filters.get("To"),
            from_=filters.get("From"),
            date_sent=dates.get("DateSent"),
            date_sent_before=dates.get("DateSent<"),
            date_sent_after=dates.get("DateSent>"),
        )
        start = page * page_size
        chunk = found[start : start + page_size]

        def page_uri(number):
            return f"{url.path}?{urllib.parse.urlencode({**filters, 'PageSize': page_size, 'Page': number})}"

        self._send_json(
            200,
            {
                "messages": chunk,
                "end": start + max(len(chunk) - 1, 0),
                "first_page_uri": page_uri(0),
                "next_page_uri": page_uri(page + 1) if start + page_size < len(found) else None,
                "page": page,
                "page_size": page_size,
                "previous_page_uri": page_uri(page - 1) if page > 0 else None,
                "start": start,
                "uri": page_uri(page),
            },
        )

    # -- test-only control endpoints -------------------------------------------------------------

    def _control_get(self, path: str) -> None:
        views = {"/_fake/messages": "messages", "/_fake/callbacks": "callbacks", "/_fake/requests": "requests"}
        if path not in views:
            return self._send_json(404, {"error": f"no such control endpoint: {path}"})
        self._send_json(200, getattr(self.fake, views[path]))

    def _control_post(self, path: str) -> None:
        fake = self.fake
        try:
            data = json.loads(self._read_body() or b"{}")
            if path == "/_fake/reset":
                fake.reset()
                return self._send_json(200, {"ok": True})
            if path == "/_fake/faults":
                return self._send_json(201, asdict(fake.add_fault(**data)))
            if path == "/_fake/delivery":
                fake.set_delivery(data["to"], data.get("status", "undelivered"), data.get("error_code", 30005))
                return self._send_json(200, {"ok": True})
            if path == "/_fake/inbound":
                status, body = fake.send_inbound(data["url"], data["from"], data["body"], data.get("to"))
                return self._send_json(200, {"status": status, "body": body})
        except (ValueError, TypeError, KeyError) as exc:
            return self._send_json(400, {"error": f"{type(exc).__name__}: {exc}"})
        self._send_json(404, {"error": f"no such control endpoint: {path}"})

    # -- plumbing --------------------------------------------------------------------------------

    def _authorised(self, match, path: str) -> bool:
        """HTTP Basic with the one account; answers 401/404 itself when not."""
        scheme, _, encoded = self.headers.get("Authorization", "").partition(" ")
        try:
            user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except ValueError:
            user = password = None
        if scheme.lower() != "basic" or (user, password) != (self.fake.account_sid, self.fake.auth_token):
            status, payload = error_payload(20003)
            payload["detail"] = "Your AccountSid or AuthToken was incorrect."
            self._send_json(status, payload, {"WWW-Authenticate": 'Basic realm="Twilio API"'})
            return False
        if not match or match["account"] != self.fake.account_sid:
            self._send_json(*error_payload(20404, path=path))
            return False
        return True

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _read_form(self) -> dict:
        # Twilio takes the first value of a repeated field (only MediaUrl may repeat).
        pairs = urllib.parse.parse_qsl(self._read_body().decode(), keep_blank_values=True)
        form = {}
        for key, value in pairs:
            form.setdefault(key, value)
        return form

    def _send_json(self, status: int, payload, headers: dict | None = None) -> None:
        self._send_body(status, json.dumps(payload).encode(), "application/json; charset=utf-8", headers=headers)

    def _send_body(self, status: int, body: bytes, content_type: str, *, headers=None, length=None) -> None:
        """`length` other than len(body) announces more than is sent (the cut_off fault)."""
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.send_header("Twilio-Request-Id", _new_sid("RQ"))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


def _parse_filter_date(value: str) -> date | datetime:
    """DateSent filters: YYYY-MM-DD (whole days) or YYYY-MM-DDTHH:MM:SSZ (what the client sends)."""
    if len(value) == 10:
        return date.fromisoformat(value)
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)


def run_until_signalled(server: FakeTwilioServer) -> None:
    """Block (main thread) until SIGINT or SIGTERM, then stop the server."""
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


if __name__ == "__main__":
    import argparse
    import os

    parser = argparse.ArgumentParser(description="Fake Twilio SMS API (test and demo only).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--account-sid", default=os.environ.get("TWILIO_ACCOUNT_SID") or DEFAULT_ACCOUNT_SID)
    parser.add_argument("--auth-token", default=os.environ.get("TWILIO_AUTH_TOKEN") or DEFAULT_AUTH_TOKEN)
    args = parser.parse_args()
    fake = FakeTwilioServer(
        args.account_sid, args.auth_token, args.host, args.port, log=lambda line: print(line, flush=True)
    )
    fake.start()
    print(f"Fake Twilio (test only) listening on {fake.base_url}", flush=True)
    run_until_signalled(fake)
