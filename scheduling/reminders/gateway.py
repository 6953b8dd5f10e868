"""The one module that talks to Twilio (or pretends to, for the demo).

Backends, chosen by settings.SMS_BACKEND:
  console  the default for the demo and development: nothing leaves the machine; the message is
           recorded in the outbox (visible in the SMS pages and the Django admin) as delivered.
  twilio   the official `twilio` client, with credentials from the environment. TWILIO_API_BASE_URL
           points it at the fake Twilio server (devtools/fake_twilio.py) in tests.

Errors are split the way the sender must treat them:
  PermanentSmsError   Twilio refused this message for good (bad or landline number, opted out...):
                      never retried; the patient goes on the admin worklist.
  TransientSmsError   429, 5xx, a refused connection: nothing was sent; try again later (no sooner
                      than Twilio's Retry-After, when it sends one).
  UncertainSmsError   the request may have reached Twilio but no usable answer came back (read
                      timeout, connection dropped, answer cut off or not JSON): the sender must ask
                      Twilio before ever trying again.
"""

import email.utils
import logging
import math
import os
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.utils import timezone
from twilio.http.http_client import TwilioHttpClient

from scheduling.caseload.phones import is_fictional_number

logger = logging.getLogger(__name__)

# Twilio error codes that will not change on a retry.
PERMANENT_ERROR_CODES = frozenset({21211, 21408, 21602, 21606, 21608, 21610, 21612, 21614, 21617, 30004, 30005, 30006, 30007})
# Of those, the ones that mean the number itself is wrong (not just this message).
WRONG_NUMBER_CODES = frozenset({21211, 21612, 21614, 30005, 30006})
OPTED_OUT_CODES = frozenset({21610})
# 400s that clear by themselves: 21611, our sender's queue at Twilio is full (a burst, say catching up
# after downtime). Retried like a 429; nothing about the patient's number.
TRANSIENT_ERROR_CODES = frozenset({21611})
# Permanent errors that say our own account or message setup is wrong, not the patient's number
# (sender not SMS-capable, trial account, no sender, empty or over-long body): the text fails, as a
# retry would fail the same way, but no patient is put on the worklist for it; it is logged as an error.
SERVICE_SETUP_ERROR_CODES = frozenset({21602, 21603, 21606, 21608, 21617})
# Twilio's Retry-After is honoured up to this; a reminder held longer than an hour is rarely still useful.
MAX_RETRY_AFTER_SECONDS = 3600


class SmsError(Exception):
    def __init__(self, message: str, *, code: int | None = None, retry_after: float | None = None):
        super().__init__(message)
        self.message = message
        self.code = code
        self.retry_after = retry_after


class PermanentSmsError(SmsError):
    pass


class TransientSmsError(SmsError):
    pass


class UncertainSmsError(TransientSmsError):
    pass


@dataclass(frozen=True)
class RemoteMessage:
    sid: str
    status: str  # Twilio's word: queued, sending, sent, delivered, undelivered, failed, ...
    error_code: str = ""
    error_message: str = ""


class ConsoleBackend:
    name = "console"

    def send(self, *, to: str, body: str, status_callback: str | None) -> RemoteMessage:
        sid = f"CONSOLE{uuid.uuid4().hex}"
        # Only the SID and length: bodies and numbers never go to logs.
        logger.info("sms.console sid=%s segments_chars=%d", sid, len(body))
        return RemoteMessage(sid=sid, status="delivered")

    def fetch(self, sid: str) -> RemoteMessage | None:
        return None

    def find_sent(self, *, to: str, body: str, since: datetime) -> RemoteMessage | None:
        return None


class _HttpClient(TwilioHttpClient):
    """The twilio client's own HTTP client, keeping the last answer's headers (TwilioRestException
    carries none, and Retry-After is one; a backend, and so this client, serves one thread at a time)
    and logging requests without their query strings, which carry phone numbers when the reconciler
    lists a number's messages. The stock client logs whole URLs and query parameters at INFO."""

    last_headers = None

    def request(self, *args, **kwargs):
        self.last_headers = None
        response = super().request(*args, **kwargs)
        self.last_headers = response.headers
        return response

    def log_request(self, kwargs) -> None:
        self.logger.debug("twilio.request method=%s path=%s", kwargs["method"], urlsplit(kwargs["url"]).path)

    def log_response(self, status_code, response) -> None:
        self.logger.debug("twilio.response status=%s", status_code)


class _WithoutQueryStrings(logging.Filter):
    """urllib3 logs each request line at DEBUG, query string included: cut every argument at its '?'."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(arg.split("?", 1)[0] if isinstance(arg, str) else arg for arg in record.args)
        return True


# On the logger itself, so it holds whatever handlers are configured (the redacting one in settings
# is the last line of defence, not the first).
_urllib3_logger = logging.getLogger("urllib3.connectionpool")
if not any(isinstance(each, _WithoutQueryStrings) for each in _urllib3_logger.filters):
    _urllib3_logger.addFilter(_WithoutQueryStrings())


class TwilioBackend:
    name = "twilio"

    def __init__(self):
        from twilio.rest import Client

        if not (settings.TWILIO_ACCOUNT_SID and settings.TWILIO_AUTH_TOKEN):
            raise PermanentSmsError("SMS_BACKEND is twilio but TWILIO_ACCOUNT_SID or TWILIO_AUTH_TOKEN is not set.")
        # The HTTP timeout stays well below the queue's task timeout, so a hung request ends as an
        # UncertainSmsError we handle, not as a killed task.
        self.client = Client(
            settings.TWILIO_ACCOUNT_SID,
            settings.TWILIO_AUTH_TOKEN,
            http_client=_HttpClient(timeout=settings.SMS_HTTP_TIMEOUT_SECONDS),
        )
        if settings.TWILIO_API_BASE_URL:
            self.client.api.base_url = settings.TWILIO_API_BASE_URL

    def _sender(self) -> dict:
        if settings.TWILIO_MESSAGING_SERVICE_SID:
            return {"messaging_service_sid": settings.TWILIO_MESSAGING_SERVICE_SID}
        return {"from_": settings.TWILIO_FROM_NUMBER}

    def send(self, *, to: str, body: str, status_callback: str | None) -> RemoteMessage:
        if not settings.TWILIO_API_BASE_URL and is_fictional_number(to):
            # Demo or test data must never reach the real Twilio (and a patient's record with such
            # a number is wrong): refused here, before any request, whatever PHONE_ACCEPT_FICTIONAL_NUMBERS says.
            raise PermanentSmsError("The number on record is a fictional (Ofcom drama range) number; "
                                    "it is never sent to the real Twilio.")
        kwargs = {"to": to, "body": body, **self._sender()}
        if status_callback:
            kwargs["status_callback"] = status_callback
        message = self._call(lambda: self.client.messages.create(**kwargs))
        return _remote(message)

    def fetch(self, sid: str) -> RemoteMessage | None:
        from twilio.base.exceptions import TwilioRestException

        try:
            return _remote(self.client.messages(sid).fetch())
        except TwilioRestException as exc:
            if exc.status == 404:
                return None
            raise _classify(exc) from exc
        except Exception as exc:  # network trouble: the caller tries again later
            raise TransientSmsError(f"Could not reach Twilio: {type(exc).__name__}") from exc

    def find_sent(self, *, to: str, body: str, since: datetime) -> RemoteMessage | None:
        """The message we may have created after `since`, if Twilio has it (matched by number and body)."""
        from twilio.base.exceptions import TwilioRestException

        try:
            # Newest first. No date filter: Twilio's DateSent stays empty while a message is queued,
            # so filtering on it could miss exactly the message we are looking for.
            candidates = self.client.messages.list(to=to, limit=50)
        except TwilioRestException as exc:
            raise _classify(exc) from exc
        except Exception as exc:
            raise TransientSmsError(f"Could not reach Twilio: {type(exc).__name__}") from exc
        for message in candidates:
            created = message.date_created
            if message.body == body and (created is None or created >= since - timedelta(minutes=1)):
                return _remote(message)
        return None

    def _call(self, request):
        import requests
        from twilio.base.exceptions import TwilioException, TwilioRestException

        try:
            return request()
        except TwilioRestException as exc:
            raise _classify(exc, headers=self.client.http_client.last_headers) from exc
        except (requests.exceptions.ConnectTimeout,) as exc:
            raise TransientSmsError("Could not connect to Twilio (timeout).") from exc
        except requests.exceptions.ConnectionError as exc:
            if _never_connected(exc):
                raise TransientSmsError("Could not connect to Twilio.") from exc
            raise UncertainSmsError("The connection to Twilio was lost before it answered.") from exc
        except requests.exceptions.Timeout as exc:
            raise UncertainSmsError("Twilio did not answer in time.") from exc
        except TwilioException as exc:
            raise UncertainSmsError(f"Unexpected answer from Twilio: {type(exc).__name__}") from exc
        except (requests.exceptions.RequestException, ValueError) as exc:
            # An answer broken off halfway (ChunkedEncodingError) or not JSON (something in between
            # answered): the request may have been acted on, so it is checked before any retry.
            raise UncertainSmsError("The answer from Twilio was cut off or unreadable.") from exc


def _never_connected(exc) -> bool:
    from urllib3.exceptions import NewConnectionError

    seen = exc
    while seen is not None:
        if isinstance(seen, NewConnectionError):
            return True
        reason = getattr(seen, "reason", None)
        if isinstance(reason, NewConnectionError):
            return True
        seen = seen.args[0] if seen.args and isinstance(seen.args[0], BaseException) else seen.__cause__
    return False


def _classify(exc, *, headers=None) -> SmsError:
    code = exc.code
    message = (exc.msg or "")[:300]
    if exc.status == 429 or (exc.status or 0) >= 500 or code in TRANSIENT_ERROR_CODES:
        return TransientSmsError(
            message or f"Twilio answered HTTP {exc.status}", code=code, retry_after=_retry_after(headers)
        )
    if code in PERMANENT_ERROR_CODES:
        return PermanentSmsError(message, code=code)
    if exc.status in (401, 403):
        # Wrong credentials are ours to fix, not the patient's: retried (bounded), loudly logged.
        logger.error("sms.twilio_auth_failed status=%s code=%s", exc.status, code)
        return TransientSmsError(message or "Twilio refused our credentials.", code=code)
    # Any other 4xx: the request itself is wrong and will be wrong again.
    return PermanentSmsError(message or f"Twilio refused the message (HTTP {exc.status}).", code=code)


def _retry_after(headers) -> float | None:
    """Seconds Twilio asked us to wait (Retry-After: seconds or an HTTP date), at most an hour."""
    value = (headers or {}).get("Retry-After")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:  # "-0000": UTC, with no claim about the local zone
            when = when.replace(tzinfo=UTC)
        seconds = (when - timezone.now()).total_seconds()
    if not math.isfinite(seconds):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


def _remote(message) -> RemoteMessage:
    return RemoteMessage(
        sid=message.sid,
        status=str(message.status or ""),
        error_code=str(message.error_code or ""),
        error_message=str(message.error_message or "")[:300],
    )


_BACKENDS = {"console": ConsoleBackend, "twilio": TwilioBackend}


def configuration_problem() -> str:
    """What stops any text from going with these settings, or "". A setup mistake is ours to fix:
    texts wait for it (and are skipped if it is fixed too late), they are never failed or put on
    the worklist as if the patients' numbers were wrong."""
    if settings.SMS_BACKEND not in _BACKENDS:
        return f"SMS_BACKEND is {settings.SMS_BACKEND!r}; use console or twilio"
    if settings.SMS_BACKEND == "twilio":
        if not (settings.TWILIO_ACCOUNT_SID and settings.TWILIO_AUTH_TOKEN):
            return "TWILIO_ACCOUNT_SID or TWILIO_AUTH_TOKEN is not set"
        if not (settings.TWILIO_MESSAGING_SERVICE_SID or settings.TWILIO_FROM_NUMBER):
            return "neither TWILIO_MESSAGING_SERVICE_SID nor TWILIO_FROM_NUMBER is set"
    return ""


_built = threading.local()


def get_backend():
    """The backend for the current settings, built once per process and thread and then reused (one
    Twilio client, one HTTP connection pool, for every text a worker sends). Built again whenever a
    setting it was made from differs (a new token after a rotation, a test's settings), and in a
    forked child, which must not share its parent's sockets. Per thread because the client keeps
    the last answer's headers."""
    key = (os.getpid(), settings.SMS_BACKEND, settings.TWILIO_ACCOUNT_SID, settings.TWILIO_AUTH_TOKEN,
           settings.TWILIO_API_BASE_URL, settings.SMS_HTTP_TIMEOUT_SECONDS)
    cached = getattr(_built, "backend", None)
    if cached is not None and cached[0] == key:
        return cached[1]
    try:
        backend = _BACKENDS[settings.SMS_BACKEND]()
    except KeyError:
        raise PermanentSmsError(f"Unknown SMS_BACKEND {settings.SMS_BACKEND!r}; use console or twilio.") from None
    _built.backend = (key, backend)
    return backend


def status_callback_url(message_id: int) -> str | None:
    """Per-message delivery report URL (healthchecks style), or None when no public URL is set."""
    base = settings.SMS_PUBLIC_BASE_URL.rstrip("/")
    if not base:
        return None
    return f"{base}/sms/twilio/status/{message_id}/"
