"""A hostile-input sweep over every page of the site, generated from the URL patterns and the forms
the pages really render, as each role.

For every URL pattern (found by walking `get_resolver()`), with its path ids replaced by the user's
own record, another PWP's record, 0, a huge id and a missing one:
  - GET, then GET with each query parameter the page uses set to each hostile value;
  - every <form method="post"> the page renders (as any role) is posted with its own values, as this
    role; then, for the role that saw it, each field in turn is set to each hostile value while the
    others keep their rendered values.
For every request: no 5xx; a PWP never sees a patient outside their caseload (or one they cover);
a refused request (>= 400, or a POST answered with a page instead of a redirect) wrote no row; the
hostile HTML comes back escaped; a far date or a non-ASCII NHS number is never stored.

Each request runs in a savepoint that is rolled back, so every request starts from the same data.
The counts are printed at the end of the run (tests/conftest.py, "hostile-input sweep").
"""

import datetime as dt
import html
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
from django.apps import apps
from django.contrib.messages.storage.cookie import CookieStorage
from django.db import DatabaseError, connection, models, transaction
from django.db.models import Q
from django.http import HttpRequest
from django.test import Client, override_settings
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from hypothesis import HealthCheck, given, settings as hypothesis_settings, strategies as st

from scheduling import patient_links
from scheduling.booking.selectors import next_free_slots_for_referral
from scheduling.caseload.notes import write_note
from scheduling.offers.models import OfferedSlot, OfferInvitation
from scheduling.reminders.models import MessageTemplate, ReminderRule
from scheduling.reports.views import APPOINTMENT_FIGURES
from tests import sweep_stats
from tests.sweep_world import build_world

ROLES = ("pwp", "admin", "manager")
SCRIPT = "<script>alert(1)</script>"
HUGE_ID = 2**63 + 5
MISSING_ID = 987654
# Tables that change on any request (sessions, login throttling, the queue's own bookkeeping).
UNCOUNTED_APPS = {"sessions", "axes", "django_q", "contenttypes"}
# The self-service page's rate-limit counters count every request, refused or not (bookkeeping, like axes').
UNCOUNTED_TABLES = {"scheduling_ratecounter"}
# Pages swept by hand below, not from the patterns: Django's admin, and Twilio's signed webhooks.
SKIPPED_NAMESPACES = {"admin"}
SKIPPED_NAMES = {"healthz", "logout", "sms:twilio_status", "sms:twilio_inbound"}
NOT_POSTED = {"/logout/", "/login/"}


def hostile_values(world) -> list[tuple[str, str]]:
    own_pwp = world.own.pwp.pk
    return [
        ("far past date", "0001-01-01"),
        ("far future date", "9999-12-31"),
        ("old date", "1900-01-01"),
        ("far instant", "9999-12-31T23:30:00+00:00"),
        ("far slot", f"{own_pwp}|9999-12-31T23:30:00+00:00"),
        ("word", "abc"),
        ("empty", ""),
        ("100k string", "x" * 100_000),
        ("arabic-indic digits", "٩٤٣٤٧٦٥٩١٩"),
        ("full-width digits", "９４３４７６５９１９"),
        ("NUL", "a\x00b"),
        ("HTML", SCRIPT),
        ("negative", "-1"),
        ("fraction", "1.5"),
        ("bigint", "99999999999999999999"),
        ("other PWP's referral", str(world.other.booked.pk)),
        ("other PWP's appointment", str(world.other.appointment.pk)),
        ("other PWP's attempt", str(world.other.attempt.pk)),
        ("other PWP's task", str(world.other.task.pk)),
        ("other PWP", str(world.other.pwp.pk)),
    ]


FAR_VALUES = {"0001-01-01", "9999-12-31", "9999-12-31T23:30:00+00:00"}
ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
DATE_NAME = re.compile(r"(date|due|^from$|^to$)")
NON_ASCII_DIGITS = {"٩٤٣٤٧٦٥٩١٩", "９４３４７６５９１９"}


# --- URL patterns --------------------------------------------------------------------------------

def url_patterns():
    """(name, route) for every named pattern of the project, minus the skipped ones."""
    found = []

    def walk(resolver, prefix, namespace):
        for entry in resolver.url_patterns:
            if isinstance(entry, URLResolver):
                if entry.namespace in SKIPPED_NAMESPACES:
                    continue
                ns = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
                walk(entry, prefix + str(entry.pattern), ns)
            elif isinstance(entry, URLPattern) and entry.name:
                name = namespace + entry.name
                if name not in SKIPPED_NAMES:
                    found.append((name, prefix + str(entry.pattern)))

    walk(get_resolver(), "", "")
    return found


PATTERNS = url_patterns()


def path_variants(name: str, route: str, world) -> list[tuple[str, str]]:
    """(label, url) for each record the sweep opens this pattern with."""
    kwargs = re.findall(r"<(?:(\w+):)?(\w+)>", route)
    if not kwargs:
        return [("", reverse(name))]
    if len(kwargs) > 1:
        return [(label, reverse(name, kwargs=values)) for label, values in MULTI_PARAMS[name](world).items()]
    (converter, kwarg), = kwargs
    if converter == "str":
        values = STR_PARAMS[name](world)
    else:
        model_records = INT_PARAMS[name](world)
        values = {**{k: v for k, v in model_records.items() if v is not None}, "zero": 0, "huge": HUGE_ID, "missing": MISSING_ID}
    return [(label, reverse(name, kwargs={kwarg: value})) for label, value in values.items()]


def _pk(obj):
    return obj.pk if obj is not None else None


INT_PARAMS = {
    **{name: (lambda w: {"own": w.own.booked.pk, "own waiting": w.own.waiting.pk, "covered": w.covered.booked.pk,
                         "other": w.other.booked.pk, "unassigned": w.unassigned.pk})
       for name in ("caseload:referral_detail", "caseload:discharge", "caseload:write_note", "booking:find_slots",
                    "booking:book", "booking:course")},
    **{name: (lambda w: {"own": w.own.appointment.pk, "other": w.other.appointment.pk})
       for name in ("booking:rearrange", "booking:cancel", "booking:wants_sooner")},
    "offers:stop": lambda w: {"open": _pk(OfferedSlot.objects.order_by("pk").first())},
    "caseload:patient_details": lambda w: {"own": w.own.booked.patient_id, "own waiting": w.own.waiting.patient_id,
                                           "covered": w.covered.booked.patient_id, "other": w.other.booked.patient_id,
                                           "unassigned": w.unassigned.patient_id},
    "worklist:task_resolve": lambda w: {"own": w.own.task.pk, "other": w.other.task.pk},
    "sms:message_detail": lambda w: {"own": _pk(w.own.message), "other": _pk(w.other.message)},
    "sms:edit_rule": lambda w: {"first": _pk(ReminderRule.objects.order_by("pk").first())},
}


def _note(caseload):
    return write_note(referral=caseload.booked, author=caseload.pwp, text="Sweep note")


# Patterns with two ids: each variant gives every keyword.
MULTI_PARAMS = {
    "caseload:amend_note": lambda w: {
        "own": {"pk": w.own.booked.pk, "note_pk": _note(w.own).pk},
        "other": {"pk": w.other.booked.pk, "note_pk": _note(w.other).pk},
        "own referral, other's note": {"pk": w.own.booked.pk, "note_pk": _note(w.other).pk},
        "missing note": {"pk": w.own.booked.pk, "note_pk": MISSING_ID},
        "huge": {"pk": HUGE_ID, "note_pk": HUGE_ID},
    },
}
def offer_link_token(world) -> str:
    """A live link to the first open offer of the world's slot on offer (the page that takes it)."""
    invitation = OfferInvitation.objects.filter(status=OfferInvitation.Status.SENT).select_related("slot").order_by("pk").first()
    assert invitation is not None, "the sweep world has no open offer to link to"
    return patient_links.issue_offer_link(invitation=invitation, token=patient_links.new_token()[0],
                                          expires_at=invitation.slot.expires_at).token


def self_service_tokens(world) -> dict:
    """A live link to pwp_one's booked appointment and one to an open offer (new ones each time: each test's rows
    are rolled back), and links that must be refused."""
    token = patient_links.issue_appointment_link(appointment=world.own.appointment).token
    return {
        "own": token, "offer": offer_link_token(world), "tampered": token[:-1] + ("A" if token[-1] != "A" else "B"),
        "unknown": patient_links.new_token()[0], "script": "%3Cscript%3E", "long": "x" * 300, "dots": "..",
    }


STR_PARAMS = {
    **{name: self_service_tokens
       for name in ("selfservice:start", "selfservice:confirm", "selfservice:cancel", "selfservice:move", "selfservice:take")},
    "sms:edit_template": lambda w: {"first": MessageTemplate.Key.values[0], "unknown": "nope", "dots": "..", "script": "%3Cscript%3E"},
    "reports:export": lambda w: {"csv": "csv", "json": "json", "unknown": "exe", "script": "%3Cscript%3E"},
}


def test_every_url_pattern_with_a_path_id_has_records_to_open():
    """The sweep is generated: a new pattern with an id must say which records to open it with."""
    for name, route in PATTERNS:
        kwargs = re.findall(r"<(?:(\w+):)?(\w+)>", route)
        if len(kwargs) > 1:
            assert name in MULTI_PARAMS, f"{name} ({route}) is not swept"
            continue
        for converter, _ in kwargs:
            assert name in (STR_PARAMS if converter == "str" else INT_PARAMS), f"{name} ({route}) is not swept"
    assert len(PATTERNS) >= 20


# --- Forms ---------------------------------------------------------------------------------------

# Valid values for fields a page renders empty, so that one hostile field is the only thing wrong.
FILL = {
    "nhs_number": "9434765919", "given_name": "Filled", "family_name": "Infield", "date_of_birth": "1970-05-17",
    "mobile_phone": "07700 900123", "reason": "Chronic widespread pain", "resolution": "Rang back",
    "received_on": dt.date.today().isoformat(), "cancelled_by": "patient", "asked_by": "patient",
}


@dataclass
class Form:
    method: str
    action: str
    fields: list = field(default_factory=list)  # (name, default value)
    buttons: list = field(default_factory=list)  # (name, value) of named submit buttons

    def data(self, **override) -> list[tuple[str, str]]:
        pairs = [(n, v) for n, v in self.fields]
        if self.buttons:
            pairs.append(self.buttons[0])
        return [(n, override[n] if n in override else (v or FILL.get(n, ""))) for n, v in pairs]

    def names(self) -> list[str]:
        seen = []
        for name, _ in self.fields + self.buttons[:1]:
            if name not in seen and name != "csrfmiddlewaretoken":
                seen.append(name)
        return seen

    def key(self):
        return (self.method, self.action, tuple(sorted(self.names())))


class FormParser(HTMLParser):
    """Forms with their inputs, selects, textareas and named buttons, plus links' query strings."""

    def __init__(self, page_url):
        super().__init__(convert_charrefs=True)
        self.page_url = page_url
        self.forms: list[Form] = []
        self.link_params: dict[str, set[str]] = {}
        self._form = None
        self._select = None
        self._select_first = None
        self._textarea = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "a" and a.get("href"):
            parts = urlsplit(a["href"])
            if not parts.netloc:
                self.link_params.setdefault(parts.path or self.page_url, set()).update(k for k, _ in parse_qsl(parts.query))
        elif tag == "form":
            action = a.get("action") or self.page_url
            self._form = Form(method=(a.get("method") or "get").lower(), action=urlsplit(action).path or self.page_url)
            self.forms.append(self._form)
        elif self._form is None:
            return
        elif tag == "input" and a.get("name"):
            kind = (a.get("type") or "text").lower()
            if kind in ("submit", "button", "image"):
                self._form.buttons.append((a["name"], a.get("value") or ""))
            elif kind in ("checkbox", "radio"):
                if "checked" in a:
                    self._form.fields.append((a["name"], a.get("value") or "on"))
                elif kind == "radio" and not any(n == a["name"] for n, _ in self._form.fields):
                    self._form.fields.append((a["name"], a.get("value") or "on"))
            else:
                self._form.fields.append((a["name"], a.get("value") or ""))
        elif tag == "button" and a.get("name"):
            self._form.buttons.append((a["name"], a.get("value") or ""))
        elif tag == "select" and a.get("name"):
            self._select, self._select_first = a["name"], None
            self._select_chosen = None
        elif tag == "option" and self._select:
            value = a.get("value", "")
            if self._select_first is None and value:
                self._select_first = value
            if "selected" in a:
                self._select_chosen = value
        elif tag == "textarea" and a.get("name"):
            self._textarea = [a["name"], ""]

    def handle_data(self, data):
        if self._textarea is not None:
            self._textarea[1] += data

    def handle_endtag(self, tag):
        if tag == "form":
            self._form = None
        elif tag == "select" and self._select and self._form is not None:
            chosen = self._select_chosen if self._select_chosen is not None else (self._select_first or "")
            self._form.fields.append((self._select, chosen))
            self._select = None
        elif tag == "textarea" and self._textarea is not None and self._form is not None:
            self._form.fields.append(tuple(self._textarea))
            self._textarea = None


def parse_page(url, response):
    if "text/html" not in response.get("Content-Type", ""):
        return FormParser(url)
    parser = FormParser(url)
    parser.feed(response.content.decode(errors="replace"))
    return parser


# --- One request, checked ------------------------------------------------------------------------

def counted_tables():
    return sorted(
        m._meta.db_table for m in apps.get_models(include_auto_created=True)
        if m._meta.app_label not in UNCOUNTED_APPS and m._meta.managed and not m._meta.proxy
        and m._meta.db_table not in UNCOUNTED_TABLES
    )


def far_dates_stored() -> list[str]:
    """Columns holding a date before 1800 or after 2200 (the sweep's data has none)."""
    found = []
    for model in apps.get_models():
        if model._meta.app_label in UNCOUNTED_APPS:
            continue
        for f in model._meta.concrete_fields:
            if isinstance(f, models.DateTimeField):
                low, high = dt.datetime(1800, 1, 1, tzinfo=dt.UTC), dt.datetime(2200, 1, 1, tzinfo=dt.UTC)
            elif isinstance(f, models.DateField):
                low, high = dt.date(1800, 1, 1), dt.date(2200, 1, 1)
            else:
                continue
            if model._base_manager.filter(Q(**{f"{f.name}__lt": low}) | Q(**{f"{f.name}__gt": high})).exists():
                found.append(f"{model._meta.db_table}.{f.column}")
    return found


def flashed_messages(response) -> list[str]:
    """The messages a redirect leaves for the next page (the cookie storage)."""
    cookie = response.cookies.get("messages")
    if cookie is None or not cookie.value:
        return []
    decoded = CookieStorage(HttpRequest())._decode(cookie.value) or []
    return [str(m) for m in decoded]


class Sweeper:
    def __init__(self, world, role):
        self.world = world
        self.role = role
        self.clients = {}
        for name, user in world.users.items():
            client = Client(raise_request_exception=False)
            client.force_login(user)
            self.clients[name] = client
        tables = counted_tables()
        quote = connection.ops.quote_name
        self.count_sql = "SELECT " + ", ".join(f"(SELECT COUNT(*) FROM {quote(t)})" for t in tables)
        self.tables = tables
        self.forbidden = world.other.markers() + [world.unassigned.patient.family_name, world.unassigned.patient.nhs_number]
        self.problems: list[str] = []

    def counts(self):
        with connection.cursor() as cursor:
            cursor.execute(self.count_sql)
            return cursor.fetchone()

    def request(self, method, url, data=None, *, role=None, field=None, value_label=None, value=None):
        """Send one request in a savepoint that is rolled back, and check the response."""
        role = role or self.role
        client = self.clients[role]
        described = self.describe(method, url, data, role, field, value_label)
        sweep_stats.COUNTS["tried"] += 1
        with transaction.atomic():
            before = self.counts()
            if method == "GET":
                response = client.get(url, data or {})
            else:
                pairs = list(data.items()) if isinstance(data, dict) else list(data or [])
                response = client.post(url, urlencode(pairs), content_type="application/x-www-form-urlencoded")
            far_stored = []
            try:
                after = self.counts()
                if value in FAR_VALUES:
                    far_stored = far_dates_stored()
            except DatabaseError as exc:  # a view left the transaction broken
                after = None
                self.problem("server_error", f"{described} -> left the database transaction broken ({type(exc).__name__})")
            transaction.set_rollback(True)
        self.check(method, response, before, after, described, role=role, field=field, value=value, far_stored=far_stored)
        client.cookies.pop("messages", None)  # checked here; must not show up on the next page
        return response

    @staticmethod
    def describe(method, url, data, role, field, value_label):
        if field is not None:
            return f"{method} {url} as {role}: {field}={value_label}"
        if data:
            pairs = [(k, str(v)) for k, v in (data.items() if isinstance(data, dict) else data)]
            shown = urlencode([(k, v if len(v) < 60 else v[:20] + "...") for k, v in pairs])
            return f"{method} {url}?{shown} as {role}" if method == "GET" else f"{method} {url} as {role} [{shown}]"
        return f"{method} {url} as {role}"

    def problem(self, kind, text):
        sweep_stats.COUNTS[kind] += 1
        sweep_stats.FAILURES.append(text)
        self.problems.append(text)

    def check(self, method, response, before, after, described, *, role, field, value, far_stored=()):
        status = response.status_code
        if status >= 500:
            self.problem("server_error", f"{described} -> {status}")
            return
        refused = status >= 400 or (method == "POST" and not 300 <= status < 400)
        sweep_stats.COUNTS["refused" if refused else "accepted"] += 1
        wrote = after is not None and before != after
        if refused and wrote:
            changed = [t for t, b, a in zip(self.tables, before, after) if b != a]
            self.problem("wrote_on_refusal", f"{described} -> {status} but wrote rows in {', '.join(changed)}")
        if far_stored:
            self.problem("accepted_hostile", f"{described} -> {status}: stored a far date in {', '.join(far_stored)}")
        if wrote and value in NON_ASCII_DIGITS and field and "nhs" in field:
            self.problem("accepted_hostile", f"{described} -> {status}: a non-ASCII NHS number was stored")
        body = response.content.decode(errors="replace") if response.get("Content-Type", "").startswith("text/") else ""
        if role == "pwp":
            # A redirect's Location and any message put in the session count as well.
            seen = body + response.get("Location", "") + " ".join(flashed_messages(response))
            for marker in self.forbidden:
                if marker in seen:
                    self.problem("leak", f"{described} -> {status} shows another caseload's patient")
                    break
        if SCRIPT in body and "text/html" in response.get("Content-Type", ""):
            self.problem("unescaped", f"{described} -> {status} echoes <script> unescaped")


# --- The sweep -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def world(django_db_setup, django_db_blocker):
    """One set of data for the whole module, in a transaction rolled back at the end."""
    with django_db_blocker.unblock(), override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"]):
        atomic = transaction.atomic()
        atomic.__enter__()
        try:
            yield build_world()
        finally:
            transaction.set_rollback(True)
            atomic.__exit__(None, None, None)


FIRST_VARIANTS = ("", "own", "first", "csv")
ID_ONLY = {"negative", "fraction", "bigint"}


def values_for(field_name: str, default: str, hostile):
    """All hostile values for a field holding an id (digits, or named like one); for free text and
    dates, all but the other records' ids and the number shapes, which only an id field could take."""
    if default.isdigit() or field_name in ("referral", "appointment", "attempt", "practitioner", "task", "assigned_practitioner"):
        return hostile
    return [(label, value) for label, value in hostile if label not in ID_ONLY and not label.startswith("other PWP")]


def seed_query(name, world) -> dict:
    """Query strings a page needs to show its form at all (the course page needs a chosen slot)."""
    if name == "booking:course":
        slots = next_free_slots_for_referral(referral=world.own.booked, appointment_type="treatment", respect_preferences=False)
        start = [s for s in slots if s.practitioner_id == world.own.pwp.pk][-1].start
        return {"practitioner": str(world.own.pwp.pk), "start": start.isoformat()}
    if name in ("reports:rows", "reports:export"):
        today = dt.date.today()
        period = {"date_from": (today - dt.timedelta(weeks=4)).isoformat(), "date_to": today.isoformat()}
        return {"figure": sorted(APPOINTMENT_FIGURES)[0], **period} if name == "reports:rows" else period
    return {}


def sweep_pattern(sweeper: Sweeper, name: str, route: str):
    world = sweeper.world
    hostile = hostile_values(world)
    for label, url in path_variants(name, route, world):
        seed = seed_query(name, world)
        response = sweeper.request("GET", url, seed)
        pages = {sweeper.role: parse_page(url, response)}
        for other_role in ROLES:
            if other_role != sweeper.role:
                other_response = sweeper.clients[other_role].get(url, seed)
                pages[other_role] = parse_page(url, other_response)
        # GET with each query parameter the page uses (its GET forms, its links to itself, the seed).
        own_page = pages[sweeper.role]
        names = set(seed) | own_page.link_params.get(url, set()) | {"page"}
        for form in own_page.forms:
            if form.method == "get" and form.action == url:
                names |= set(form.names())
        if label in FIRST_VARIANTS:  # hostile values once per pattern; the other records get the plain requests
            for param in sorted(names):
                for value_label, value in values_for(param, str(seed.get(param, "")), hostile):
                    sweeper.request("GET", url, {**seed, param: value}, field=param, value_label=value_label, value=value)
            # And every date parameter at once (a period from 9999-12-31 to 9999-12-31 passes a "from before to" check).
            dates = {n for f in own_page.forms if f.method == "get" for n, v in f.fields if ISO_DATE.fullmatch(v)}
            dates |= {n for n in names if DATE_NAME.search(n)}
            if len(dates) >= 2:
                for value_label, value in hostile:
                    together = {**seed, **{param: value for param in dates}}
                    sweeper.request("GET", url, together, field="+".join(sorted(dates)), value_label=value_label, value=value)
        # POST every form any role sees on this page, as this role, with the values it was rendered with.
        seen = set()
        for form_role, page in pages.items():
            for form in page.forms:
                if form.method != "post" or form.action in NOT_POSTED or form.key() in seen:
                    continue
                seen.add(form.key())
                sweeper.request("POST", form.action, form.data())
                if form_role != sweeper.role or label not in FIRST_VARIANTS:
                    continue
                defaults = dict(form.data())
                for field_name in form.names():
                    for value_label, value in values_for(field_name, defaults.get(field_name, ""), hostile):
                        sweeper.request(
                            "POST", form.action, form.data(**{field_name: value}), field=field_name, value_label=value_label,
                            value=value,
                        )
        # And a bare POST (no fields at all), which every page must refuse or ignore without a 5xx.
        sweeper.request("POST", url, {})


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("name,route", PATTERNS, ids=[name for name, _ in PATTERNS])
def test_hostile_input_never_gives_a_5xx_a_leak_or_a_write_on_refusal(world, db, role, name, route):
    sweeper = Sweeper(world, role)
    sweep_pattern(sweeper, name, route)
    assert not sweeper.problems, f"{len(sweeper.problems)} problems:\n" + "\n".join(sweeper.problems[:80])


@pytest.mark.parametrize("role", ROLES)
def test_admin_pages_and_their_search_survive_hostile_input(world, db, role):
    """Django's admin is not swept in full: its index and each of our models' lists, with hostile
    search and ordering parameters."""
    from django.contrib import admin

    sweeper = Sweeper(world, role)
    sweeper.request("GET", reverse("admin:index"))
    for model in admin.site._registry:
        if model._meta.app_label != "scheduling":
            continue
        url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
        for param, value in (("q", SCRIPT), ("o", "abc"), ("p", "99999999999999999999")):
            sweeper.request("GET", url, {param: value}, field=param, value_label=value[:10], value=value)
    assert not sweeper.problems, "\n".join(sweeper.problems)


def test_unsigned_twilio_webhooks_are_refused_and_write_nothing(world, db, settings):
    settings.TWILIO_AUTH_TOKEN = "sweep-token"
    client = Client(raise_request_exception=False)
    sweeper = Sweeper(world, "admin")
    sweeper.clients["anonymous"] = client
    message_id = _pk(world.own.message) or 1
    for url in (reverse("sms:twilio_status", args=[message_id]), reverse("sms:twilio_inbound")):
        for data in ({}, {"MessageStatus": "delivered", "Body": SCRIPT, "From": "+447700900123"}):
            response = sweeper.request("POST", url, data, role="anonymous")
            assert response.status_code == 403, (url, response.status_code)
        response = client.post(url, {"Body": "C"}, HTTP_X_TWILIO_SIGNATURE="forged")
        assert response.status_code == 403
    assert not sweeper.problems, "\n".join(sweeper.problems)


LIST_PAGES = ["caseload:referral_list", "calls:today", "worklist:index", "sms:outbox", "reports:capacity", "reports:rows"]


@pytest.mark.parametrize("name", LIST_PAGES)
def test_any_text_in_a_list_page_query_string_gets_an_answer_not_a_5xx(world, db, name):
    """Hypothesis writes the query strings (derandomised, so every run tries the same ones)."""
    sweeper = Sweeper(world, "manager")
    url = reverse(name)
    page = parse_page(url, sweeper.clients["manager"].get(url))
    names = sorted({"page"} | page.link_params.get(url, set()) | {n for f in page.forms if f.method == "get" for n in f.names()})
    text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30)

    @hypothesis_settings(max_examples=25, derandomize=True, deadline=None, database=None,
                         suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(params=st.dictionaries(st.sampled_from(names), text | st.dates().map(str), max_size=3))
    def run(params):
        sweeper.request("GET", url, params)

    run()
    assert not sweeper.problems, "\n".join(sorted(set(sweeper.problems))[:80])


def test_escaping_is_checked_on_what_the_page_shows(world, db):
    """A guard for the guard: the sweep's escaping check would see a raw <script> if one came back."""
    assert html.escape(SCRIPT) != SCRIPT


def _sweep_self_service_after_date_of_birth(world, token: str, dob, names) -> list[str]:
    patient = Client(raise_request_exception=False)
    answer = patient.post(reverse("selfservice:start", args=[token]), {"day": dob.day, "month": dob.month, "year": dob.year})
    assert answer.status_code == 302, answer.status_code
    sweeper = Sweeper(world, "admin")
    sweeper.clients["patient"] = patient
    hostile = hostile_values(world)
    for name in names:
        url = reverse(name, args=[token])
        page = parse_page(url, sweeper.request("GET", url, role="patient"))
        for form in page.forms:
            if form.method != "post":
                continue
            sweeper.request("POST", form.action, form.data(), role="patient")
            for field_name in form.names():
                for value_label, value in hostile:
                    sweeper.request("POST", form.action, form.data(**{field_name: value}), role="patient", field=field_name,
                                    value_label=value_label, value=value)
        sweeper.request("POST", url, {}, role="patient")
    return sweeper.problems


def test_the_self_service_pages_after_the_date_of_birth_survive_hostile_input(world, db):
    """The sweep above opens the self-service routes as staff would (the date-of-birth form); here the patient,
    signed in by nothing but the link and their date of birth, posts every form of the pages behind it with
    each hostile value in each field."""
    token = self_service_tokens(world)["own"]
    dob = world.own.appointment.referral.patient.date_of_birth
    problems = _sweep_self_service_after_date_of_birth(world, token, dob, ("selfservice:start", "selfservice:cancel",
                                                                            "selfservice:move", "selfservice:take"))
    assert problems == [], "\n".join(problems[:80])


def test_the_offer_page_after_the_date_of_birth_survives_hostile_input(world, db):
    """The same for an offer's link: its page ("Take this time") and every other action's route with it."""
    token = offer_link_token(world)
    dob = patient_links.resolve_token(token).patient.date_of_birth
    problems = _sweep_self_service_after_date_of_birth(world, token, dob, ("selfservice:start", "selfservice:take",
                                                                            "selfservice:confirm", "selfservice:cancel",
                                                                            "selfservice:move"))
    assert problems == [], "\n".join(problems[:80])
