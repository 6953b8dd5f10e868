"""Twenty identical posts at once to each write endpoint (a double-clicking user, a retrying proxy)
leave exactly the rows one post leaves, and none is answered with a 5xx.

For each endpoint the same action is first posted once on one fresh record (the control), then 20
times at once on another fresh record; the change in every table's row count must be the same.
Real threads, each with its own PostgreSQL connection, released together by a barrier."""

import threading
from urllib.parse import urlencode

import pytest
from django.apps import apps
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from scheduling import roles
from scheduling.booking.models import BookingSettings
from scheduling.booking.selectors import next_free_slots_for_referral
from scheduling.calls.models import ContactPolicy
from scheduling.calls.services import CallButton, record_call_outcome
from scheduling.caseload.models import Referral, ServiceSettings
from scheduling.worklist.models import AdminTask
from scheduling.worklist.services import raise_admin_task
from scheduling.reminders.models import SmsSettings
from tests.booking_helpers import book, give_pattern
from tests.factories import make_referral, make_user, next_nhs_number

pytestmark = [pytest.mark.postgres_only, pytest.mark.django_db(transaction=True)]

PARALLEL = 20
UNCOUNTED_APPS = {"sessions", "axes", "django_q", "contenttypes"}


@pytest.fixture(autouse=True)
def postgres_only():
    if connection.vendor != "postgresql":
        pytest.skip("Real concurrent connections are tested on PostgreSQL")


@pytest.fixture
def staff(db):
    pwp = make_user("pack.pwp", roles.PWP)
    give_pattern(pwp, weekdays=range(7))
    # The settings rows are made on first use; make them now, so they are not counted as a post's rows.
    for settings_model in (BookingSettings, ContactPolicy, ServiceSettings, SmsSettings):
        settings_model.current()
    return {"pwp": pwp, "admin": make_user("pack.admin", roles.ADMIN_STAFF)}


def row_counts() -> dict[str, int]:
    return {
        m._meta.db_table: m._base_manager.count()
        for m in apps.get_models(include_auto_created=True)
        if m._meta.app_label not in UNCOUNTED_APPS and m._meta.managed and not m._meta.proxy
    }


def changes(before, after) -> dict[str, int]:
    return {table: after[table] - before[table] for table in after if after[table] != before[table]}


def logged_in(user) -> Client:
    client = Client(raise_request_exception=False)
    client.force_login(user)
    return client


def post_at_once(user, url, data, n=PARALLEL) -> list[int]:
    """n clients of one signed-in browser post the same form at the same moment."""
    first = logged_in(user)
    gate = threading.Barrier(n, timeout=30)
    statuses: list = [None] * n
    body = urlencode(data, doseq=True)

    def worker(i):
        client = Client(raise_request_exception=False)
        client.cookies = first.cookies
        try:
            gate.wait()
            statuses[i] = client.post(url, body, content_type="application/x-www-form-urlencoded").status_code
        except Exception as exc:  # reported as the thread's outcome, not lost in the thread
            statuses[i] = repr(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    return statuses


def post_once(user, url, data) -> int:
    return logged_in(user).post(url, urlencode(data, doseq=True), content_type="application/x-www-form-urlencoded").status_code


def assert_parallel_matches_one(action, staff):
    """`action(staff)` makes a fresh record and returns (user, url, data) for posting on it."""
    user, url, data = action(staff)
    before = row_counts()
    single = post_once(user, url, data)
    one_post = changes(before, row_counts())
    assert single in (200, 302), f"the control post was refused ({single}): the test's data is wrong"

    user, url, data = action(staff)
    before = row_counts()
    statuses = post_at_once(user, url, data)
    twenty_posts = changes(before, row_counts())
    server_errors = [s for s in statuses if not isinstance(s, int) or s >= 500]
    assert not server_errors, f"POST {url} x{PARALLEL}: {sorted(map(str, statuses))}"
    assert twenty_posts == one_post, f"POST {url} x{PARALLEL} ({sorted(statuses)}): one post changed {one_post}, twenty changed {twenty_posts}"
    return statuses


def _free_start(referral, pwp, *, skip=0):
    slots = [s for s in next_free_slots_for_referral(referral=referral, appointment_type="assessment", respect_preferences=False)
             if s.practitioner_id == pwp.pk]
    return slots[skip].start


_serial = iter(range(10_000))


def _fresh_referral(staff):
    return make_referral(staff["pwp"], actor=staff["admin"])


def _booked(staff):
    referral = _fresh_referral(staff)
    pwp = staff["pwp"]
    return book(referral, pwp, _free_start(referral, pwp), actor=staff["admin"])


# --- The endpoints ---------------------------------------------------------------------------------

def book_action(staff):
    referral, pwp = _fresh_referral(staff), staff["pwp"]
    start = _free_start(referral, pwp)
    return staff["admin"], reverse("booking:book", args=[referral.pk]), {
        "practitioner": pwp.pk, "appointment_type": "assessment", "start": start.isoformat(),
    }


def rearrange_action(staff):
    appointment, pwp = _booked(staff), staff["pwp"]
    new_start = _free_start(appointment.referral, pwp, skip=3)
    return staff["admin"], reverse("booking:rearrange", args=[appointment.pk]), {
        "slot": f"{pwp.pk}|{new_start.isoformat()}", "asked_by": "patient", "reason": "Working that day",
    }


def cancel_action(staff):
    appointment = _booked(staff)
    return staff["admin"], reverse("booking:cancel", args=[appointment.pk]), {
        "cancelled_by": "patient", "reason": "Feeling unwell",
    }


def log_outcome_action(staff):
    referral = _fresh_referral(staff)
    return staff["pwp"], reverse("calls:log"), {"referral": referral.pk, "button": CallButton.NO_ANSWER}


def undo_action(staff):
    referral = _fresh_referral(staff)
    record_call_outcome(referral=referral, button=CallButton.NO_ANSWER, actor=staff["pwp"])
    attempt = referral.contact_attempts.order_by("-id").first()
    return staff["pwp"], reverse("calls:undo"), {"attempt": attempt.pk}


def resolve_task_action(staff):
    referral = _fresh_referral(staff)
    task = raise_admin_task(kind=AdminTask.Kind.SMS_REPLY, source=AdminTask.Source.SMS, referral=referral, detail="Reply")
    return staff["admin"], reverse("worklist:task_resolve", args=[task.pk]), {"resolution": "Rang back"}


def new_referral_action(staff):
    n = next(_serial)
    return staff["admin"], reverse("booking:new_referral"), {
        "nhs_number": next_nhs_number(), "given_name": "Pack", "family_name": f"Parallel{n}",
        "date_of_birth": "1970-05-17", "mobile_phone": f"07700 900{n % 1000:03d}", "sms_consent": "on",
        "source": "A1", "received_on": timezone.localdate().isoformat(), "reason": "Chronic widespread pain",
        "assigned_practitioner": staff["pwp"].pk,
    }


def discharge_action(staff):
    referral = _fresh_referral(staff)
    book(referral, staff["pwp"], _free_start(referral, staff["pwp"]), actor=staff["admin"])
    return staff["admin"], reverse("caseload:discharge", args=[referral.pk]), {"end_code": "50", "reason": "Moved away"}


ACTIONS = {
    "book": book_action,
    "rearrange": rearrange_action,
    "cancel": cancel_action,
    "log outcome": log_outcome_action,
    "undo": undo_action,
    "resolve worklist task": resolve_task_action,
    "new referral": new_referral_action,
    "discharge": discharge_action,
}


@pytest.mark.parametrize("endpoint", ACTIONS)
def test_twenty_identical_posts_at_once_leave_the_rows_of_one(staff, endpoint):
    statuses = assert_parallel_matches_one(ACTIONS[endpoint], staff)
    # Exactly one post did the work; the others were told it was already done, not given a 5xx.
    assert len(statuses) == PARALLEL


def test_twenty_identical_bookings_leave_one_appointment_and_one_set_of_reminders(staff):
    from scheduling.booking.models import Appointment
    from scheduling.reminders.models import OutboundMessage

    user, url, data = book_action(staff)
    statuses = post_at_once(user, url, data)
    assert all(isinstance(s, int) and s < 500 for s in statuses), statuses
    referral = Referral.objects.get(pk=int(url.rstrip("/").split("/")[-2]))
    appointments = list(Appointment.objects.filter(referral=referral))
    assert len(appointments) == 1
    reminders = OutboundMessage.objects.filter(appointment=appointments[0])
    assert reminders.count() == reminders.values("due_at").distinct().count()
    # One post booked; the others were answered "Already booked" (the same redirect) or lost the race (409).
    assert 302 in statuses and set(statuses) <= {302, 409}, sorted(statuses)

