"""Real headless Chromium opens every page of the site as each role (admin staff, PWP, manager) at phone width
(390 px) and desktop width (1366 px): nothing wider than the screen, nothing in the browser console (Content
Security Policy violations included), also after an htmx row update on the call list.

The pages come from the URL resolver: a named route that is neither in PAGES nor in EXCLUDED (with its reason)
fails test_every_named_route_is_visited_or_excluded_with_a_reason, so a new page cannot be forgotten. Adding a
page is one line in PAGES: its name and how to build its URL from the demo world below."""

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone

from scheduling import roles
from scheduling.booking.models import Appointment
from scheduling.booking.selectors import next_free_slots_for_referral
from scheduling.caseload.models import Referral
from scheduling.worklist.models import AdminTask
from scheduling.demo import DEMO_PASSWORD, DemoBuilder
from scheduling.reminders.models import OutboundMessage, ReminderRule
from tests.browser_helpers import wait_for
from tests.factories import make_referral, next_nhs_number

WIDTHS = (390, 1366)
ROLES = {roles.ADMIN_STAFF: "admin.sam", roles.PWP: "pwp.alex", roles.MANAGER: "manager.pat"}


@dataclass
class World:
    referral: Referral  # on pwp.alex's call list, nothing booked yet
    booked: Appointment  # a future appointment on pwp.alex's caseload
    task: AdminTask
    message: OutboundMessage
    rule: ReminderRule
    course_query: str  # a free first-session slot, as the slot finder's "book a course" sends it


# One line per page: route name -> its URL in the world. Query strings included where the page needs them.
PAGES = {
    "home": lambda w: reverse("home"),
    "worklist:index": lambda w: reverse("worklist:index"),
    "worklist:task_resolve": lambda w: reverse("worklist:task_resolve", args=[w.task.pk]),
    "booking:new_referral": lambda w: reverse("booking:new_referral"),
    "booking:find_slots": lambda w: reverse("booking:find_slots", args=[w.referral.pk]),
    "booking:course": lambda w: reverse("booking:course", args=[w.booked.referral_id]) + w.course_query,
    "booking:rearrange": lambda w: reverse("booking:rearrange", args=[w.booked.pk]),
    "booking:cancel": lambda w: reverse("booking:cancel", args=[w.booked.pk]),
    "caseload:referral_list": lambda w: reverse("caseload:referral_list"),
    "caseload:referral_detail": lambda w: reverse("caseload:referral_detail", args=[w.booked.referral_id]),
    "caseload:discharge": lambda w: reverse("caseload:discharge", args=[w.booked.referral_id]),
    "caseload:patient_details": lambda w: reverse("caseload:patient_details", args=[w.booked.referral.patient_id]),
    "calls:today": lambda w: reverse("calls:today"),
    "reports:capacity": lambda w: reverse("reports:capacity"),
    "reports:definitions": lambda w: reverse("reports:definitions"),
    "reports:rows": lambda w: reverse("reports:rows") + "?figure=booked",
    "sms:outbox": lambda w: reverse("sms:outbox"),
    "sms:message_detail": lambda w: reverse("sms:message_detail", args=[w.message.pk]),
    "sms:replies": lambda w: reverse("sms:replies"),
    "sms:settings": lambda w: reverse("sms:settings"),
    "sms:edit_template": lambda w: reverse("sms:edit_template", args=["reminder"]),
    "sms:new_rule": lambda w: reverse("sms:new_rule"),
    "sms:edit_rule": lambda w: reverse("sms:edit_rule", args=[w.rule.pk]),
    "offers:settings": lambda w: reverse("offers:settings"),
}

# Routes that are not pages a role opens with GET, each with the reason.
EXCLUDED = {
    "healthz": "a health check for the proxy, not a page",
    "login": "visited by every journey (signing in)",
    "logout": "POST only (the Sign out button)",
    "admin:*": "Django's admin site (managers' settings), Django's own pages",
    "booking:book": "POST only (a slot's button on the slot finder)",
    "worklist:take": "POST only (the worklist's Take / Take over buttons)",
    "worklist:release": "POST only (the worklist's Release button)",
    "offers:stop": "POST only (the offers panel's Stop offering this slot button)",
    "booking:wants_sooner": "POST only (the booking page's Wants an earlier time button)",
    "caseload:write_note": "POST only (the note form on the record page)",
    "caseload:amend_note": "POST only (the amend form on the record page)",
    "calls:log": "POST only (the call list's outcome buttons; exercised by the htmx row update)",
    "calls:undo": "POST only (the call list's Undo button)",
    "calls:invite": "POST only (the call list's text-invitation button)",
    "reports:export": "a CSV/JSON download, not a page",
    "sms:twilio_status": "Twilio's signed webhook, not a page",
    "sms:twilio_inbound": "Twilio's signed webhook, not a page",
    # No role opens these: the patient does, with no login, from a text (tests/test_self_service_browser.py
    # opens each at 390 px; tests/test_permissions.py checks they are the only anonymous pages).
    "selfservice:start": "the patient's self-service page (no login; its own browser tests)",
    "selfservice:confirm": "POST only (the patient's Confirm button; its own browser tests)",
    "selfservice:cancel": "the patient's self-service page (no login; its own browser tests)",
    "selfservice:move": "the patient's self-service page (no login; its own browser tests)",
    "selfservice:take": "POST only (the patient's Take this time button on an offer; its own browser tests)",
}

# Records every Content-Security-Policy violation, before the page's own scripts run (the console has them too).
CSP_WATCH = """
window.__cspViolations = [];
document.addEventListener('securitypolicyviolation', function (e) {
  window.__cspViolations.push(e.violatedDirective + ' ' + e.blockedURI + ' ' + (e.sourceFile || '') + ':' + e.lineNumber);
});
"""


def named_routes(patterns=None, namespace="") -> set[str]:
    names = set()
    for entry in get_resolver().url_patterns if patterns is None else patterns:
        if isinstance(entry, URLResolver):
            inner = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
            names |= named_routes(entry.url_patterns, inner)
        elif isinstance(entry, URLPattern) and entry.name:
            names.add(f"{namespace}{entry.name}")
    return names


def is_excluded(name: str) -> bool:
    return name in EXCLUDED or any(key.endswith(":*") and name.startswith(key[:-1]) for key in EXCLUDED)


def test_every_named_route_is_visited_or_excluded_with_a_reason():
    routes = named_routes()
    forgotten = sorted(name for name in routes if name not in PAGES and not is_excluded(name))
    assert not forgotten, f"Add these to PAGES (or to EXCLUDED with a reason): {forgotten}"
    stale = sorted(name for name in [*PAGES, *EXCLUDED] if not name.endswith(":*") and name not in routes)
    assert not stale, f"No such routes any more: {stale}"
    assert not set(PAGES) & set(EXCLUDED)
    assert all(reason.strip() for reason in EXCLUDED.values())


@pytest.fixture
def world(db) -> World:
    """The demo service (realistic names, long referral-source labels, texts) plus one person to call."""
    builder = DemoBuilder(seed=11, referrals=12, now=timezone.now())
    staff = builder.build()
    alex = next(u for u in staff[roles.PWP] if u.username == ROLES[roles.PWP])
    referral = make_referral(alex, actor=builder.admin)
    booked = (
        Appointment.objects.filter(practitioner=alex, cancelled_at__isnull=True, start__gt=timezone.now())
        .order_by("start").first()
    )
    task = AdminTask.objects.filter(resolved_at__isnull=True).first() or AdminTask.objects.create(
        kind=AdminTask.Kind.REARRANGE_REQUEST, source=AdminTask.Source.STAFF, referral=referral,
        detail="Asked to move the assessment",
    )
    assert booked is not None, "the demo gives pwp.alex a future appointment"
    slot = next_free_slots_for_referral(referral=booked.referral, appointment_type="treatment", limit=1)[0]
    course_query = "?" + urlencode({"practitioner": slot.practitioner_id, "start": slot.start.isoformat()})
    return World(referral=referral, booked=booked, task=task, message=OutboundMessage.objects.first(),
                 rule=ReminderRule.objects.first(), course_query=course_query)


def pages_for(role: str, world: World) -> dict[str, str]:
    """The pages this role may open (the server says 200), by route name."""
    client = Client()
    client.force_login(get_user_model().objects.get(username=ROLES[role]))
    opened = {}
    for name, url_for in PAGES.items():
        url = url_for(world)
        status = client.get(url, follow=True).status_code  # home sends each role on to its start page
        assert status in (200, 403), (role, name, status)
        if status == 200:
            opened[name] = url
    return opened


@pytest.mark.django_db(transaction=True)
def test_every_page_opens_for_at_least_one_role(world):
    by_role = {role: pages_for(role, world) for role in ROLES}
    unopened = [name for name in PAGES if not any(name in opened for opened in by_role.values())]
    assert not unopened, f"No role may open: {unopened}"
    # The roles' split, as README's role table has it.
    assert "booking:new_referral" in by_role[roles.ADMIN_STAFF] and "booking:new_referral" not in by_role[roles.PWP]
    assert "reports:definitions" in by_role[roles.MANAGER] and "reports:definitions" not in by_role[roles.ADMIN_STAFF]


INLINE = [
    (re.compile(r"<style", re.I), "a <style> element"),
    (re.compile(r"\sstyle=", re.I), "a style= attribute"),
    (re.compile(r"<script(?![^>]*\ssrc=)[^>]*>", re.I), "an inline <script>"),
    (re.compile(r"\son[a-z]+=", re.I), "an on...= handler attribute"),
]


def test_no_page_has_inline_script_or_style_and_htmx_never_injects_its_own(world):
    """The CSP refuses all of these; htmx's indicator <style> is switched off on every page and its rules
    are in the stylesheet instead."""
    found = []
    for role in ROLES:
        client = Client()
        client.force_login(get_user_model().objects.get(username=ROLES[role]))
        for name, url in pages_for(role, world).items():
            html = client.get(url, follow=True).content.decode()
            found += [f"{role} {name}: {what}" for pattern, what in INLINE if pattern.search(html)]
            if "htmx" in html and '"includeIndicatorStyles":false' not in html:
                found.append(f"{role} {name}: htmx without includeIndicatorStyles:false")
    assert not found, found
    css = (Path(settings.BASE_DIR) / "static" / "css" / "app.css").read_text()
    assert ".htmx-request .htmx-indicator" in css and ".htmx-indicator {" in css


@pytest.fixture
def logging_browser(chrome_options_factory):
    """Headless Chromium that keeps every console message (levels are checked below)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    from tests.conftest import chromium_paths

    _, driver_path = chromium_paths()
    options = chrome_options_factory()
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.implicitly_wait(0)
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": CSP_WATCH})
    yield driver
    driver.quit()


def sign_in(driver, live_server, username):
    from selenium.webdriver.common.by import By

    driver.delete_all_cookies()
    driver.get(live_server.url + reverse("login"))
    driver.find_element(By.ID, "id_username").send_keys(username)
    driver.find_element(By.ID, "id_password").send_keys(DEMO_PASSWORD)
    driver.find_element(By.CSS_SELECTOR, "form.stack button[type=submit]").click()
    wait_for(driver, lambda d: reverse("login") not in d.current_url)


def problems_here(driver, width: int, *, refused_url: str = "") -> list[str]:
    """What is wrong with the page now shown: overflow (and what overflows), console errors, CSP violations.
    refused_url: a form refused on purpose answers 400, which Chromium logs; only that one line is expected."""
    found = []
    inner = driver.execute_script("return window.innerWidth;")
    if width == 390:
        assert inner <= 390, inner
    wide = driver.execute_script("return document.documentElement.scrollWidth;")
    if wide > inner:
        culprits = driver.execute_script(
            "return [...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > "
            "window.innerWidth).map(e => e.tagName + (e.id ? '#' + e.id : '') + '.' + e.className).slice(0, 6);"
        )
        found.append(f"{wide}px wide in a {inner}px window: {culprits}")
    expected = f"{refused_url} - Failed to load resource: the server responded with a status of 400"
    found += [
        f"console: {e['message']}" for e in driver.get_log("browser")
        if e["level"] == "SEVERE" and not (refused_url and e["message"].startswith(expected))
    ]
    found += [f"CSP: {v}" for v in driver.execute_script("return window.__cspViolations || [];")]
    return found


def visit(driver, live_server, url: str, width: int) -> list[str]:
    driver.get(live_server.url + url)
    wait_for(driver, lambda d: d.execute_script("return document.readyState") == "complete")
    return problems_here(driver, width)


def htmx_row_update(driver, live_server, world: World, width: int) -> list[str]:
    """A PWP records "No answer" on the call list: htmx swaps the row in place."""
    from selenium.webdriver.common.by import By

    row_id = f"referral-{world.referral.pk}"
    problems = visit(driver, live_server, reverse("calls:today"), width)
    wait_for(driver, lambda d: d.execute_script("return !!window.htmx;"))
    driver.execute_script("window.__sameDocument = true;")
    button = driver.find_element(By.ID, row_id).find_element(By.CSS_SELECTOR, "button[value=no_answer]")
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", button)
    button.click()
    # Read through the DOM each time: the row element is replaced by the swap.
    wait_for(driver, lambda d: "Recorded: No answer." in d.execute_script(
        "var row = document.getElementById(arguments[0]); return row ? row.innerText : '';", row_id))
    assert driver.execute_script("return window.__sameDocument === true;"), "the row was swapped, not the page reloaded"
    return problems + problems_here(driver, width)


def new_referral_with_every_error(driver, live_server, width: int) -> list[str]:
    """Admin staff submit a new referral with a child's date of birth and no surname or reason: the page
    with every error listed still fits and logs nothing."""
    from selenium.webdriver.common.by import By

    problems = visit(driver, live_server, reverse("booking:new_referral"), width)
    driver.find_element(By.ID, "id_nhs_number").send_keys(next_nhs_number())
    driver.find_element(By.ID, "id_given_name").send_keys("Rowan")
    child = timezone.localdate().replace(year=timezone.localdate().year - 10, day=1)
    driver.execute_script("arguments[0].value = arguments[1];", driver.find_element(By.ID, "id_date_of_birth"), child.isoformat())
    driver.find_element(By.CSS_SELECTOR, "form.stack button.primary").click()
    summary = wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, ".error-summary"))[0].text
    for named in ("Last name:", "Date of birth:", "Reason for referral:"):
        assert named in summary, summary
    return problems + problems_here(driver, width, refused_url=live_server.url + reverse("booking:new_referral"))


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("role", list(ROLES))
def test_every_page_fits_the_screen_and_logs_no_errors(logging_browser, live_server, world, role):
    driver = logging_browser
    pages = pages_for(role, world)
    assert pages, role
    sign_in(driver, live_server, ROLES[role])
    driver.get_log("browser")  # what signing in logged is checked by the login page's own visit below
    problems = {}
    for width in WIDTHS:
        driver.set_window_size(width, 900)
        for name, url in {"login (signed in: redirected)": reverse("login"), **pages}.items():
            found = visit(driver, live_server, url, width)
            if found:
                problems[f"{name} at {width}px"] = found
        if role == roles.ADMIN_STAFF:
            found = new_referral_with_every_error(driver, live_server, width)
            if found:
                problems[f"new referral with its errors at {width}px"] = found
        if role == roles.PWP:
            found = htmx_row_update(driver, live_server, world, width)
            if found:
                problems[f"call list after an htmx row update at {width}px"] = found
            # A fresh person for the next width's update (the first is now recorded).
            world.referral = make_referral(world.referral.assigned_practitioner)
    assert not problems, "\n".join(f"{where}: {what}" for where, what in problems.items())
