#!/usr/bin/env python3
"""Start the production-mode stack on this machine, without Docker, and drive a smoke scenario over HTTP.

PostgreSQL and Redis on loopback (started if down), a throwaway database (pp_stack_smoke) and Redis
database 7, migrations, collectstatic, gunicorn with 2 workers, a qcluster on the Redis broker and
the fake Twilio server (`manage.py run_fake_twilio`). Then, over HTTP as staff would: sign in as
admin staff, register a referral and book the next free slot through the booking pages, see the
reminder reach the fake Twilio exactly once and its delivery callback mark it delivered (on the
staff message page), reply "C" (a signed inbound webhook) and see the appointment confirmed on the
call list, and /healthz answer 200 with the schedule having run. Stops everything it started and
drops the database, whatever happens. Run by .ci/run; takes about 1-2 minutes (django-q2's
scheduler first looks about 30 s after the cluster starts, then every 30 s for the 1-minute schedule).

    .venv/bin/python deploy/stack_smoke.py
"""

import contextlib
import http.client
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
# Another database and Redis database may be named, so two runs on one machine do not drop each other's.
DB_NAME = os.environ.get("STACK_SMOKE_DB", "pp_stack_smoke")
PG_URL = "postgres://postgres@127.0.0.1:5432"
REDIS_URL = os.environ.get("STACK_SMOKE_REDIS_URL", "redis://127.0.0.1:6379/7")


def log(message: str) -> None:
    print(f"[stack] {message}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ensure_services() -> None:
    if subprocess.run(["pg_isready", "-q", "-h", "127.0.0.1", "-p", "5432"]).returncode != 0:
        version = sorted(os.listdir("/etc/postgresql"))[0]
        subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"], check=True)
    if subprocess.run(["redis-cli", "-h", "127.0.0.1", "ping"], capture_output=True).returncode != 0:
        subprocess.run(
            ["redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "--port", "6379", "--save", "", "--appendonly", "no"],
            check=True,
        )


def reset_database() -> None:
    import psycopg
    import redis

    with psycopg.connect(f"{PG_URL}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DB_NAME}"')
    redis.Redis.from_url(REDIS_URL).flushdb()


def drop_database() -> None:
    import psycopg

    with psycopg.connect(f"{PG_URL}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')


class Browserish:
    """A tiny HTTP client that keeps cookies (Secure ones too: TLS is the proxy's job) and CSRF tokens."""

    def __init__(self, port: int):
        self.port = port
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, form: dict | None = None, headers: dict | None = None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        all_headers = {
            # What the TLS-terminating proxy adds; Django trusts it via SECURE_PROXY_SSL_HEADER.
            "X-Forwarded-Proto": "https",
            "Host": f"127.0.0.1:{self.port}",
            "Origin": f"https://127.0.0.1:{self.port}",
            "Referer": f"https://127.0.0.1:{self.port}{path}",
        }
        if self.cookies:
            all_headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body = None
        if form is not None:
            if "csrftoken" in self.cookies:
                form = {"csrfmiddlewaretoken": self.cookies["csrftoken"], **form}
            body = urllib.parse.urlencode(form, doseq=True)
            all_headers["Content-Type"] = "application/x-www-form-urlencoded"
        all_headers.update(headers or {})
        conn.request(method, path, body=body, headers=all_headers)
        response = conn.getresponse()
        text = response.read().decode()
        for header, value in response.getheaders():
            if header.lower() == "set-cookie":
                name, _, rest = value.partition("=")
                self.cookies[name.strip()] = rest.split(";", 1)[0]
        conn.close()
        return response.status, dict(response.getheaders()), text

    def get(self, path: str):
        return self.request("GET", path)

    def post(self, path: str, form: dict):
        return self.request("POST", path, form=form)


class Stack:
    def __init__(self):
        self.processes: list[tuple[str, subprocess.Popen]] = []
        self.web_port = free_port()
        self.twilio_port = free_port()
        self.secret = secrets.token_urlsafe(50)
        self.twilio_sid = "AC" + secrets.token_hex(16)
        self.twilio_token = secrets.token_hex(16)
        self.env = {
            **{k: v for k, v in os.environ.items()
               if not k.startswith(("DJANGO_", "DATABASE_URL", "REDIS_URL", "TWILIO_", "SMS_", "PAINPLATFORM_DEVTOOLS"))},
            "DJANGO_DEBUG": "false",
            "DJANGO_SECRET_KEY": self.secret,
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "DJANGO_CSRF_TRUSTED_ORIGINS": f"https://127.0.0.1:{self.web_port}",
            # There is no TLS proxy in this stack: the browser side sends X-Forwarded-Proto itself, but
            # the fake Twilio posts its signed callbacks over plain http as a proxy would pass them on.
            # In production the proxy redirects to https; here Django must not, or every callback
            # would get a 301 instead of reaching the webhook.
            "DJANGO_SECURE_SSL_REDIRECT": "false",
            "DATABASE_URL": f"{PG_URL}/{DB_NAME}",
            "REDIS_URL": REDIS_URL,
            # Smoke data uses Ofcom's fictional numbers; the SMS goes only to the loopback fake Twilio.
            "PHONE_ACCEPT_FICTIONAL_NUMBERS": "true",
            "SMS_BACKEND": "twilio",
            "TWILIO_ACCOUNT_SID": self.twilio_sid,
            "TWILIO_AUTH_TOKEN": self.twilio_token,
            "TWILIO_FROM_NUMBER": "+447700900999",
            "TWILIO_API_BASE_URL": f"http://127.0.0.1:{self.twilio_port}",
            # Callbacks are built from, and their signatures checked against, this address.
            "SMS_PUBLIC_BASE_URL": f"http://127.0.0.1:{self.web_port}",
            "LOG_LEVEL": "WARNING",
            "Q_WORKERS": "2",
        }
        self.logs = ROOT / "var" / "stack-smoke"
        self.logs.mkdir(parents=True, exist_ok=True)

    def manage(self, *args: str, stdin: str | None = None) -> str:
        result = subprocess.run(
            [PYTHON, "manage.py", *args], cwd=ROOT, env=self.env, input=stdin, capture_output=True, text=True
        )
        if result.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout

    def start(self, name: str, args: list[str], *, extra_env: dict[str, str] | None = None) -> subprocess.Popen:
        out = open(self.logs / f"{name}.log", "w")
        env = {**self.env, **(extra_env or {})}
        process = subprocess.Popen(args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self.processes.append((name, process))
        return process

    def stop_all(self) -> None:
        # SIGTERM to each main process only, as systemd's KillMode=mixed and `docker stop` do:
        # gunicorn's master and qcluster then stop their own children (qcluster deadlocks when its
        # whole process group gets the signal at once). Whatever is left after 20 s is killed.
        for name, process in reversed(self.processes):
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGTERM)
        for name, process in self.processes:
            try:
                process.wait(timeout=20)
                log(f"stopped {name}")
            except subprocess.TimeoutExpired:
                log(f"{name} did not stop within 20 s: killed")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)  # any child left behind
            process.wait()

    def start_web_and_workers(self, *, workers: int = 2) -> None:
        """gunicorn (2 workers unless told) and one qcluster on the Redis broker, as in production."""
        gunicorn = str(Path(PYTHON).parent / "gunicorn")
        self.start("web", [gunicorn, "--config", "deploy/gunicorn.conf.py", "--workers", str(workers),
                           "--bind", f"127.0.0.1:{self.web_port}", "painplatform.wsgi:application"])
        self.start("worker", [PYTHON, "manage.py", "qcluster"])
        self.wait_for_http(self.web_port, "/login/")
        log(f"gunicorn ({workers} workers) on 127.0.0.1:{self.web_port}, qcluster on Redis")

    def start_fake_twilio(self) -> "FakeTwilio":
        # run_fake_twilio belongs to the development-only devtools app, which production settings leave out;
        # only this process gets it, the web and worker processes stay as in production.
        self.start("fake-twilio", [PYTHON, "manage.py", "run_fake_twilio", "--port", str(self.twilio_port),
                                   "--account-sid", self.twilio_sid, "--auth-token", self.twilio_token],
                   extra_env={"PAINPLATFORM_DEVTOOLS": "1"})
        self.wait_for_http(self.twilio_port, "/_fake/messages")
        log(f"fake Twilio on 127.0.0.1:{self.twilio_port}")
        return FakeTwilio(self.twilio_port)

    def wait_for_http(self, port: int, path: str, *, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                conn.request("GET", path, headers={"X-Forwarded-Proto": "https"})
                conn.getresponse().read()
                return
            for name, process in self.processes:
                if process.poll() is not None:
                    raise RuntimeError(f"{name} exited early; see {self.logs / (name + '.log')}")
            time.sleep(0.3)
        raise RuntimeError(f"nothing answered on port {port} within {timeout} s")


class FakeTwilio:
    """The fake Twilio's test-only control endpoints (/_fake/...)."""

    def __init__(self, port: int):
        self.port = port

    def call(self, method: str, path: str, payload: dict | None = None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        body = json.dumps(payload) if payload is not None else None
        conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        data = json.loads(response.read() or b"null")
        conn.close()
        return data

    def messages_to(self, number: str) -> list[dict]:
        return [m for m in self.call("GET", "/_fake/messages") if m["to"] == number]

    def callbacks(self) -> list[dict]:
        return self.call("GET", "/_fake/callbacks")


def wait_until(what: str, probe, *, timeout: float, every: float = 1.0):
    """Poll `probe` until it returns something truthy; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    started = time.monotonic()
    while True:
        result = probe()
        if result:
            log(f"{what}: after {time.monotonic() - started:.0f} s")
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for: {what}")
        time.sleep(every)


CHECKS = {"passed": 0}


def check(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(message)
    CHECKS["passed"] += 1
    log(f"ok: {message}")


def main() -> int:
    if not shutil.which("gunicorn", path=str(Path(PYTHON).parent)):
        sys.exit("gunicorn is not installed in this environment (pip install -e .)")
    ensure_services()
    reset_database()
    stack = Stack()
    failed = 1
    try:
        log("migrating a fresh PostgreSQL database")
        stack.manage("migrate", "--noinput", "-v", "0")
        stack.manage("collectstatic", "--noinput", "-v", "0")
        ids = json.loads(stack.manage("shell", stdin=SETUP).strip().splitlines()[-1])
        fake = stack.start_fake_twilio()
        stack.start_web_and_workers()
        scenario(stack, fake, pwp_id=ids["pwp"])
        log("SMOKE PASSED")
        failed = 0
    except Exception as exc:  # report, then stop everything
        log(f"SMOKE FAILED: {exc}")
        for path in sorted(stack.logs.glob("*.log")):
            if path.name.startswith("load"):
                continue
            tail = path.read_text().splitlines()[-15:]
            print(f"--- last lines of {path.name}\n" + "\n".join(tail), flush=True)
    finally:
        stack.stop_all()
        drop_database()
    # The closing line, in the form CI summaries read.
    print(f"smoke: {CHECKS['passed']} passed, {failed} failed", flush=True)
    return failed


SETUP = """
import datetime, json
from django.contrib.auth.models import Group, User
from scheduling.caseload.models import PractitionerProfile
from scheduling.codes import AppointmentType
from scheduling.reminders.models import MessageTemplate, ReminderRule, SmsSettings
admin = User.objects.create_user("smoke.admin", password="smoke-test-password-1")
admin.groups.add(Group.objects.get(name="Admin staff"))
pwp = User.objects.create_user("smoke.pwp", password="smoke-test-password-1", first_name="Sam", last_name="Smoke")
pwp.groups.add(Group.objects.get(name="PWP"))
PractitionerProfile.objects.create(user=pwp)
# So that the booking is due a reminder straight away, whatever the time of day CI runs: one rule,
# 14 days before at midnight (always past for the next free slot, so it goes now: no later rule),
# and no quiet hours. The booking itself is the real one, with the default 24-hour lead time.
ReminderRule.objects.update(active=False)
for appointment_type in AppointmentType.values:
    ReminderRule.objects.update_or_create(appointment_type=appointment_type, days_before=14,
        defaults={"send_at": datetime.time(0, 0), "template": MessageTemplate.Key.REMINDER, "active": True})
sms = SmsSettings.current()
sms.quiet_hours_start = sms.quiet_hours_end = datetime.time(0, 0)
sms.save()
print(json.dumps({"pwp": pwp.pk}))
"""

PATIENT_MOBILE, PATIENT_E164 = "07700 900123", "+447700900123"
NHS_NUMBER = "9990000018"  # the NHS's test range (999...), valid check digit


def hidden_fields(form_html: str) -> dict:
    return dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', form_html))


def scenario(stack: Stack, fake: FakeTwilio, *, pwp_id: int) -> None:
    from datetime import datetime
    from zoneinfo import ZoneInfo

    browser = Browserish(stack.web_port)
    status, headers, _ = browser.get("/referrals/")
    check(status == 302 and "/login/" in headers.get("Location", ""), "pages need a login")
    browser.get("/login/")
    status, headers, _ = browser.post("/login/", {"username": "smoke.admin", "password": "smoke-test-password-1"})
    check(status == 302, "admin staff sign in over the proxy headers (secure cookies, CSRF)")
    status, headers, _ = browser.get("/referrals/")
    check(status == 200 and "script-src 'self'" in headers.get("Content-Security-Policy", ""), "pages carry the strict CSP")

    # Register the referral and book the next free slot, through the admin booking pages.
    browser.get("/booking/referrals/new/")
    today = datetime.now(ZoneInfo("Europe/London")).date().isoformat()
    status, headers, page = browser.post("/booking/referrals/new/", {
        "nhs_number": NHS_NUMBER, "given_name": "Smoke", "family_name": "Test", "date_of_birth": "1970-01-01",
        "mobile_phone": PATIENT_MOBILE, "sms_consent": "on", "source": "A1", "received_on": today,
        "reason": "Chronic widespread pain", "assigned_practitioner": str(pwp_id),
    })
    match = re.search(r"/booking/referrals/(\d+)/slots/", headers.get("Location", ""))
    check(status == 302 and bool(match), "a new referral is registered through the referral page")
    referral_id = match.group(1)
    status, _, page = browser.get(f"/booking/referrals/{referral_id}/slots/")
    slot_forms = re.findall(r'<li class="slot">\s*<form method="post" action="([^"]+)">(.*?)</form>', page, re.S)
    check(status == 200 and bool(slot_forms), "the slot finder offers free slots")
    action, form_html = slot_forms[0]
    slot = hidden_fields(form_html)
    status, headers, _ = browser.post(action, {k: v for k, v in slot.items() if k != "csrfmiddlewaretoken"})
    check(status == 302 and f"/referrals/{referral_id}/" in headers.get("Location", ""), f"booked the next free slot ({slot['start']})")

    # The reminder is due now: the schedule's dispatcher enqueues it, a worker sends it to "Twilio".
    sent = wait_until("the reminder reached the fake Twilio", lambda: fake.messages_to(PATIENT_E164), timeout=150)
    check(len(sent) == 1, "exactly one SMS reached the fake Twilio for the patient")
    callbacks = wait_until(
        "the delivery callback was accepted",
        lambda: [c for c in fake.callbacks() if c["kind"] == "status" and c["params"]["MessageStatus"] == "delivered"
                 and c["params"]["MessageSid"] == sent[0]["sid"] and c["response_status"] is not None],
        timeout=30, every=0.5,
    )
    check(callbacks[0]["response_status"] == 204, "the signed delivery callback was accepted by the webhook (204)")
    message_id = re.search(r"/sms/twilio/status/(\d+)/", callbacks[0]["url"]).group(1)
    status, _, page = browser.get(f"/sms/messages/{message_id}/")
    check(status == 200 and "status-delivered" in page and sent[0]["sid"] in page,
          "the staff message page shows the text delivered, with its Twilio SID")

    # The patient replies C: a signed inbound webhook from the fake, acted on by the reply handler.
    answer = fake.call("POST", "/_fake/inbound", {
        "url": f"http://127.0.0.1:{stack.web_port}/sms/twilio/inbound/", "from": PATIENT_E164, "body": "C",
    })
    check(answer["status"] == 200, "the signed reply webhook was accepted")
    day = datetime.fromisoformat(slot["start"]).astimezone(ZoneInfo("Europe/London")).date().isoformat()
    status, _, page = browser.get(f"/calls/?practitioner={pwp_id}&date={day}")
    check(status == 200 and "Confirmed by SMS" in page, "the call list shows the appointment confirmed by SMS")

    status, _, body = browser.get("/healthz")
    health = json.loads(body)
    check(status == 200 and health["healthy"], f"/healthz is green: {health.get('problems')}")
    check(health["schedule"]["last_run_at"] is not None and health["schedule"]["age_seconds"] < 180,
          f"/healthz says the schedule ran {health['schedule']['age_seconds']} s ago")
    check(health["queue"]["broker"] == "redis" and health["queue"]["clusters"] >= 1, "/healthz sees the qcluster on Redis")
    for secret in (NHS_NUMBER, "900123", "Smoke"):
        check(secret not in body, f"/healthz shows no patient data ({secret!r} absent)")
    sends = [r for r in fake.call("GET", "/_fake/requests") if r["form"].get("To") == PATIENT_E164]
    check(len(sends) == 1 and len(fake.messages_to(PATIENT_E164)) == 1, "still exactly one send request and one SMS")


if __name__ == "__main__":
    sys.exit(main())
