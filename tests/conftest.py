import os
import shutil
from contextlib import ExitStack

import pytest
import time_machine

from scheduling import roles
from scheduling.reminders.models import SmsSettings
from scheduling.booking.services import record_appointment_outcome
from tests.booking_helpers import book, give_pattern
from tests.factories import london, make_referral, make_user
from tests.twilio_webhook_helpers import PUBLIC_BASE, TOKEN


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    # Real PBKDF2 costs ~0.3 s per user; tests create many users.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def pwp(db):
    return make_user("pwp.one", roles.PWP)


@pytest.fixture
def other_pwp(db):
    return make_user("pwp.two", roles.PWP)


@pytest.fixture
def admin_user(db):
    return make_user("admin.one", roles.ADMIN_STAFF)


@pytest.fixture
def manager(db):
    return make_user("manager.one", roles.MANAGER, is_staff=True)


@pytest.fixture
def referral(pwp, admin_user):
    return make_referral(pwp, actor=admin_user)


@pytest.fixture
def assessed(pwp, referral, admin_user, freeze):
    """`referral`, its assessment held on Mon 2 Feb 2026 with `pwp` (who works Mon-Fri); the clock then
    stopped at Mon 2 Mar 2026 09:00, ready to plan the course."""
    give_pattern(pwp, weekdays=(0, 1, 2, 3, 4))
    with time_machine.travel(london(2026, 2, 2, 11), tick=False):
        assessment = book(referral, pwp, london(2026, 2, 2, 10), actor=admin_user)
        record_appointment_outcome(appointment=assessment, outcome="5", actor=pwp)
    freeze(london(2026, 3, 2, 9))
    return referral


@pytest.fixture
def admin_client(client, admin_user):
    """The test client signed in as admin staff. (It replaces pytest-django's admin_client, a superuser:
    no role here is one.)"""
    client.force_login(admin_user)
    return client


@pytest.fixture
def freeze():
    """`freeze(at)` stops the clock at `at` for the rest of the test and returns the time_machine
    traveller, so the test can move it on."""
    with ExitStack() as stack:
        yield lambda at: stack.enter_context(time_machine.travel(at, tick=False))


@pytest.fixture
def frozen(request, freeze):
    """The clock stopped at the test module's NOW, each module saying its own moment."""
    return freeze(request.module.NOW)


@pytest.fixture
def new_booking(pwp, admin_user):
    """`new_booking(start=..., booked_at=...)`: a new referral's assessment with `pwp` at `start`, booked by
    `admin_user` with the clock at `booked_at`, its texts planned as a real booking plans them."""

    def booked(*, start, booked_at):
        with time_machine.travel(booked_at, tick=False):
            return book(make_referral(pwp), pwp, start, actor=admin_user)

    return booked


@pytest.fixture
def appointment(new_booking):
    """Wednesday 10 June 2026 at 14:00, booked on Monday 1 June at 09:00: its two-day reminder is due
    Monday 8 June at 10:00."""
    return new_booking(start=london(2026, 6, 10, 14), booked_at=london(2026, 6, 1, 9))


@pytest.fixture
def twilio_settings(settings):
    """Webhooks signed with the test token (TOKEN) and addressed to the test public URL (PUBLIC_BASE)."""
    settings.TWILIO_AUTH_TOKEN = TOKEN
    settings.SMS_PUBLIC_BASE_URL = PUBLIC_BASE


def chromium_paths():
    """Debian's chromium and chromedriver, or skip (fail in CI, where REQUIRE_SYSTEM_TOOLS=1)."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not (browser and driver):
        message = "Browser tests need Debian's chromium and chromium-driver packages"
        if os.environ.get("REQUIRE_SYSTEM_TOOLS"):
            pytest.fail(message)
        pytest.skip(message)
    return browser, driver


@pytest.fixture
def chrome_options_factory():
    """Build Selenium options for real headless Chromium; javascript=False disables scripts."""
    from selenium.webdriver.chrome.options import Options

    def build(*, javascript: bool = True):
        browser, _ = chromium_paths()
        options = Options()
        options.binary_location = browser
        for flag in (
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-quic",
            "--no-first-run", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
            "--window-size=1280,1000",
        ):
            options.add_argument(flag)
        if not javascript:
            options.add_experimental_option("prefs", {"profile.managed_default_content_settings.javascript": 2})
        return options

    return build


@pytest.fixture
def browser(chrome_options_factory):
    """A real headless Chromium driven by Selenium (JavaScript on)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    _, driver_path = chromium_paths()
    driver = webdriver.Chrome(service=Service(driver_path), options=chrome_options_factory())
    driver.implicitly_wait(0)
    yield driver
    driver.quit()


@pytest.fixture
def browser_without_js(chrome_options_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    _, driver_path = chromium_paths()
    driver = webdriver.Chrome(service=Service(driver_path), options=chrome_options_factory(javascript=False))
    yield driver
    driver.quit()


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix, tmp_path_factory):
    """SQLite tests use a file, not memory, so real worker and server processes started by the
    end-to-end tests share the test database, as they share it on PostgreSQL."""
    from django.conf import settings

    db = settings.DATABASES["default"]
    if db["ENGINE"] == "django.db.backends.sqlite3":
        db.setdefault("TEST", {})["NAME"] = str(tmp_path_factory.mktemp("db") / "test.sqlite3")


def pytest_terminal_summary(terminalreporter):
    """The hostile-input sweep's counts (tests/test_hostile_input_sweep.py), for quoting."""
    from tests import sweep_stats

    lines = sweep_stats.summary_lines()
    if lines:
        terminalreporter.section("hostile-input sweep")
        for line in lines:
            terminalreporter.write_line(line)


@pytest.fixture
def confirmations_off(db):
    """For tests that follow reminders alone: no booking confirmation in the outbox beside them
    (confirmations have their own tests, tests/test_confirmation_texts.py)."""
    SmsSettings.objects.update_or_create(pk=1, defaults={"send_confirmations": False})
