"""Production hardening: settings from the environment, deploy files, login lockout, CSP, logs."""

import io
import logging
import logging.config
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.urls import reverse

from scheduling.logs import redact
from tests.factories import make_referral

ROOT = Path(__file__).resolve().parent.parent
PRODUCTION_ENV = {
    "DJANGO_DEBUG": "false",
    "DJANGO_SECRET_KEY": "x" * 60 + "-a-long-random-secret-for-tests-only-9f8e7d6c5b4a",
    "DJANGO_ALLOWED_HOSTS": "painplatform.example.nhs.uk",
    "PHONE_ACCEPT_FICTIONAL_NUMBERS": "false",
}


def run_manage(*args, env_overrides):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_URL"))}
    env.update(env_overrides)
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True)


def test_check_deploy_reports_nothing_with_the_production_environment():
    result = run_manage("check", "--deploy", "--fail-level", "WARNING", env_overrides=PRODUCTION_ENV)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_refuses_to_start_without_a_secret_key():
    env = dict(PRODUCTION_ENV, DJANGO_SECRET_KEY="")
    result = run_manage("check", env_overrides=env)
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY must be set" in result.stderr


def settings_variables() -> set[str]:
    names = set()
    for path in [ROOT / "painplatform" / "settings.py", ROOT / "deploy" / "gunicorn.conf.py"]:
        text = path.read_text()
        names |= set(re.findall(r"""(?:os\.environ\.get|os\.environ\[|env_bool|env_list|os\.getenv)\(?\s*["']([A-Z][A-Z0-9_]+)["']""", text))
    return names


def test_every_variable_the_settings_read_is_documented_in_env_example():
    documented = set(re.findall(r"^([A-Z][A-Z0-9_]+)=", (ROOT / "deploy" / ".env.example").read_text(), re.M))
    read = settings_variables()
    assert {"DJANGO_SECRET_KEY", "DATABASE_URL", "REDIS_URL"} <= read  # the scan itself works
    assert read - documented == set()


def test_the_compose_file_validates():
    compose = shutil.which("docker-compose")
    if not compose:
        if os.environ.get("REQUIRE_SYSTEM_TOOLS"):
            pytest.fail("docker-compose (Debian package) is needed to validate deploy/docker-compose.yml")
        pytest.skip("docker-compose is not installed")
    env = dict(os.environ, PAINPLATFORM_ENV_FILE=".env.example")
    result = subprocess.run(
        [compose, "--env-file", "deploy/.env.example", "-f", "deploy/docker-compose.yml", "config", "--services"],
        cwd=ROOT, env=env, capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr
    assert {"db", "redis", "web", "worker", "proxy", "migrate"} <= set(result.stdout.split())


def test_pages_carry_a_strict_content_security_policy(client, pwp):
    client.force_login(pwp)
    response = client.get(reverse("caseload:referral_list"))
    policy = response["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "style-src 'self'" in policy
    assert "unsafe-inline" not in policy and "http" not in policy


def test_sessions_end_after_inactivity_and_cookies_are_http_only():
    assert django_settings.SESSION_COOKIE_AGE <= 30 * 60
    assert django_settings.SESSION_SAVE_EVERY_REQUEST and django_settings.SESSION_COOKIE_HTTPONLY


def test_repeated_failed_logins_lock_the_account_out(client, pwp):
    for _ in range(django_settings.AXES_FAILURE_LIMIT - 1):
        response = client.post(reverse("login"), {"username": pwp.username, "password": "wrong"})
        assert response.status_code == 200
    # The last allowed failure locks the account; now even the right password is refused.
    assert client.post(reverse("login"), {"username": pwp.username, "password": "wrong"}).status_code == 429
    response = client.post(reverse("login"), {"username": pwp.username, "password": "test-pass-123"})
    assert response.status_code == 429
    assert "Sign-in paused" in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_a_correct_login_works_before_any_lockout(client, pwp):
    response = client.post(reverse("login"), {"username": pwp.username, "password": "test-pass-123"})
    assert response.status_code == 302
    assert client.session["_auth_user_id"] == str(pwp.pk)


@pytest.mark.parametrize(
    "text",
    ["nhs 9990000018 seen", "nhs 999 000 0018", "+447700900123 replied", "call 07700 900123", "q=07700900123",
     "To=%2B447700900123", "landline 01632 960001"],
)
def test_patient_identifiers_are_scrubbed_from_log_lines(text):
    assert not re.search(r"\d{6,}|\d{3} \d{3}", redact(text)), redact(text)


def test_times_ids_and_status_codes_survive_scrubbing():
    line = "ts=2026-11-22T10:00:00+0000 appointment=1234 status=200 duration_us=15320 Process-7108de6417329081b0b2 stopped"
    assert redact(line) == line


def test_a_working_day_logs_no_patient_data(client, pwp, admin_user):
    """Drive real requests and services with every logger at DEBUG through the configured handler."""
    stream = io.StringIO()
    config = {**django_settings.LOGGING}
    config["handlers"] = {"console": {**config["handlers"]["console"], "class": "logging.StreamHandler", "stream": stream}}
    config["root"] = {"handlers": ["console"], "level": "DEBUG"}
    config["loggers"] = {}
    logging.config.dictConfig(config)
    try:
        referral = make_referral(pwp, actor=admin_user)
        patient = referral.patient
        client.force_login(admin_user)
        client.get(reverse("caseload:referral_list"), {"q": patient.nhs_number})
        client.get(reverse("caseload:referral_detail", args=[referral.pk]))
        client.get("/referrals/999999999/")  # a 404 logs its path
        logging.getLogger("scheduling.test").warning("Patient %s on %s", patient.nhs_number, patient.mobile_phone)
    finally:
        logging.config.dictConfig(django_settings.LOGGING)
    output = stream.getvalue()
    assert "logger=scheduling.test" in output  # the handler really captured
    assert patient.nhs_number not in output
    assert patient.mobile_phone not in output and patient.mobile_phone[3:] not in output
