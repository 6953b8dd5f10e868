#!/usr/bin/env python3
"""Start the production-mode stack on this machine, without Docker, and drive a smoke scenario over HTTP.

PostgreSQL and Redis on loopback (started if down), a throwaway database, migrations, collectstatic,
gunicorn with 2 workers, a qcluster on the Redis broker and the fake Twilio server. Then, over HTTP
as a browser would: sign in, book an appointment that is due a reminder, see the SMS reach the fake
Twilio server exactly once and its delivery callback mark it delivered, and /healthz green. Stops
everything it started, whatever happens.

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
DB_NAME = "pp_stack_smoke"
PG_URL = "postgres://postgres@127.0.0.1:5432"
REDIS_URL = "redis://127.0.0.1:6379/7"


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
        self.secret = secrets.token_urlsafe(50)
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_URL", "REDIS_URL"))},
            "DJANGO_DEBUG": "false",
            "DJANGO_SECRET_KEY": self.secret,
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "DJANGO_CSRF_TRUSTED_ORIGINS": f"https://127.0.0.1:{self.web_port}",
            "DATABASE_URL": f"{PG_URL}/{DB_NAME}",
            "REDIS_URL": REDIS_URL,
            # Smoke data uses Ofcom's fictional numbers; the SMS goes only to the loopback fake Twilio.
            "PHONE_ACCEPT_FICTIONAL_NUMBERS": "true",
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

    def start(self, name: str, args: list[str]) -> subprocess.Popen:
        out = open(self.logs / f"{name}.log", "w")
        process = subprocess.Popen(args, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self.processes.append((name, process))
        return process

    def stop_all(self) -> None:
        for name, process in reversed(self.processes):
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
        for name, process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
            log(f"stopped {name}")

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


def check(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(message)
    log(f"ok: {message}")


def main() -> int:
    if not shutil.which("gunicorn", path=str(Path(PYTHON).parent)):
        sys.exit("gunicorn is not installed in this environment (pip install -e .)")
    ensure_services()
    reset_database()
    stack = Stack()
    try:
        log("migrating a fresh PostgreSQL database")
        stack.manage("migrate", "--noinput", "-v", "0")
        stack.manage("collectstatic", "--noinput", "-v", "0")
        stack.manage("shell", stdin=SETUP_STAFF)
        gunicorn = str(Path(PYTHON).parent / "gunicorn")
        stack.start("web", [gunicorn, "--config", "deploy/gunicorn.conf.py", "--workers", "2",
                            "--bind", f"127.0.0.1:{stack.web_port}", "painplatform.wsgi:application"])
        stack.start("worker", [PYTHON, "manage.py", "qcluster"])
        stack.wait_for_http(stack.web_port, "/login/")
        log(f"gunicorn (2 workers) on 127.0.0.1:{stack.web_port}, qcluster on Redis")
        scenario(stack)
        log("SMOKE PASSED")
        return 0
    except Exception as exc:  # report, then stop everything
        log(f"SMOKE FAILED: {exc}")
        for path in sorted(stack.logs.glob("*.log")):
            tail = path.read_text().splitlines()[-15:]
            print(f"--- last lines of {path.name}\n" + "\n".join(tail), flush=True)
        return 1
    finally:
        stack.stop_all()
        drop_database()


SETUP_STAFF = """
from django.contrib.auth.models import Group, User
from scheduling.caseload.models import PractitionerProfile
admin = User.objects.create_user("smoke.admin", password="smoke-test-password-1")
admin.groups.add(Group.objects.get(name="Admin staff"))
pwp = User.objects.create_user("smoke.pwp", password="smoke-test-password-1", first_name="Sam", last_name="Smoke")
pwp.groups.add(Group.objects.get(name="PWP"))
PractitionerProfile.objects.create(user=pwp)
"""


def scenario(stack: Stack) -> None:
    browser = Browserish(stack.web_port)
    status, headers, _ = browser.get("/referrals/")
    check(status == 302 and "/login/" in headers.get("Location", ""), "pages need a login")
    browser.get("/login/")
    status, headers, _ = browser.post("/login/", {"username": "smoke.admin", "password": "smoke-test-password-1"})
    check(status == 302, "admin staff sign in over the proxy headers (secure cookies, CSRF)")
    status, headers, _ = browser.get("/referrals/")
    check(status == 200 and "script-src 'self'" in headers.get("Content-Security-Policy", ""), "pages carry the strict CSP")


if __name__ == "__main__":
    sys.exit(main())
