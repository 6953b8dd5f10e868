"""Issue 12, booking: one open assessment per referral, lost races never a 500, typed times checked
against the diary, bounded dates and parameters, and double submits answered with the first result."""

import datetime as dt
import threading
import time
from datetime import timedelta

import pytest
import time_machine
from django.contrib.messages import get_messages
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, connections, transaction
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from scheduling import roles
from scheduling.booking import services
from scheduling.booking.models import Appointment, AvailabilityException, Rearrangement
from scheduling.booking.services import (
    AlreadyBooked,
    AlreadyCancelled,
    AlreadyRearranged,
    SlotTaken,
    book_appointment,
    cancel_appointment,
    rearrange_appointment,
    record_appointment_outcome,
)
from scheduling.audit import AuditEntry
from tests.booking_helpers import book, give_pattern
from tests.factories import london, make_referral, make_user

NOW = london(2026, 3, 2, 9, 0)  # a Monday


def _messages(response) -> str:
    return " ".join(str(m) for m in get_messages(response.wsgi_request))


def _post_slot(client, referral, practitioner, start, **extra):
    return client.post(reverse("booking:book", args=[referral.pk]), {
        "practitioner": practitioner.pk, "appointment_type": "assessment", "start": start.isoformat(), **extra,
    })


# --- 6. One assessment still to happen per referral ------------------------------------------------


def test_it_refuses_a_second_open_assessment_for_a_referral_and_says_when_the_first_is(frozen, referral, pwp, other_pwp):
    book(referral, pwp, london(2026, 3, 3, 10))
    with pytest.raises(ValidationError) as exc:
        book(referral, other_pwp, london(2026, 3, 5, 14))
    assert "This referral already has an assessment booked for 10:00 on Tue 03 Mar 2026; rearrange it instead" in exc.value.messages[0]
    assert Appointment.objects.filter(referral=referral).count() == 1


def test_a_referral_can_book_a_new_assessment_once_the_first_is_cancelled_or_missed(frozen, referral, pwp, admin_user):
    first = book(referral, pwp, london(2026, 3, 3, 10))
    cancel_appointment(appointment=first, cancelled_by="patient", reason="Unwell", actor=admin_user)
    second = book(referral, pwp, london(2026, 3, 4, 10))
    with time_machine.travel(london(2026, 3, 4, 11), tick=False):
        record_appointment_outcome(appointment=second, outcome="3", actor=pwp)
        book(referral, pwp, london(2026, 3, 9, 10))
    assert Appointment.objects.filter(referral=referral, outcome="0").count() == 1


def test_the_database_refuses_a_second_open_assessment_that_skipped_the_python_check(frozen, referral, pwp, other_pwp):
    book(referral, pwp, london(2026, 3, 3, 10))
    with pytest.raises(IntegrityError), transaction.atomic():
        Appointment.objects.create(
            referral=referral, practitioner=other_pwp, appointment_type="assessment", start=london(2026, 3, 5, 10), duration_minutes=60
        )
    # Treatments are not limited, and another referral's assessment is its own.
    book(referral, other_pwp, london(2026, 3, 5, 10), kind="treatment")
    book(make_referral(pwp), other_pwp, london(2026, 3, 6, 10))


def test_a_second_assessment_that_raced_past_the_check_is_refused_with_the_same_message(frozen, referral, pwp, other_pwp, monkeypatch):
    book(referral, pwp, london(2026, 3, 3, 10))
    monkeypatch.setattr(services, "_check_bookable", lambda **kwargs: None)  # as if the check raced another booking
    with pytest.raises(SlotTaken) as exc:
        book(referral, other_pwp, london(2026, 3, 5, 14))
    assert "already has an assessment booked for 10:00 on Tue 03 Mar 2026" in exc.value.messages[0]
    assert Appointment.objects.filter(referral=referral).count() == 1


def test_the_slot_finder_refuses_a_second_assessment_with_a_409_inside_the_layout(frozen, admin_client, referral, pwp):
    give_pattern(pwp)
    assert _post_slot(admin_client, referral, pwp, london(2026, 3, 3, 9)).status_code == 302
    response = _post_slot(admin_client, referral, pwp, london(2026, 3, 3, 14))
    assert response.status_code == 409
    page = response.content.decode()
    assert "already has an assessment booked for 09:00 on Tue 03 Mar 2026; rearrange it instead" in page
    assert "</nav>" in page or "<main" in page  # the site's layout, not a bare error
    assert Appointment.objects.filter(referral=referral).count() == 1


def test_an_assessment_is_still_moved_by_rearranging_it(frozen, referral, pwp, other_pwp, admin_user):
    first = book(referral, pwp, london(2026, 3, 3, 10))
    moved = rearrange_appointment(
        appointment=first, new_start=london(2026, 3, 5, 10), practitioner=other_pwp, asked_by="patient", actor=admin_user
    )
    assert moved.replacement.appointment_type == "assessment" and moved.replacement.outcome == "0"
    assert list(Appointment.objects.filter(referral=referral, outcome="0")) == [moved.replacement]


# --- 7. A lost race is a 409, never a 500 ----------------------------------------------------------


def _pg_only():
    if connection.vendor != "postgresql":
        pytest.skip("Real concurrent connections are tested on PostgreSQL")


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_a_booking_that_postgresql_aborts_in_a_deadlock_is_told_someone_has_just_booked_the_slot():
    _pg_only()
    pwp = make_user("pwp.deadlock", roles.PWP)
    admin = make_user("admin.deadlock", roles.ADMIN_STAFF)
    mine, theirs = make_referral(pwp, actor=admin), make_referral(pwp, actor=admin)
    start = timezone.now() + timedelta(days=4)
    other = connections.create_connection("default")  # a second session, as another request would have
    outcome = {}

    def book_mine():
        try:
            with connection.cursor() as cursor:
                cursor.execute("SET deadlock_timeout = '500ms'")  # ours looks for the deadlock first, so it is aborted
            book_appointment(referral=mine, practitioner=pwp, appointment_type="assessment", start=start, actor=admin)
            outcome["mine"] = "booked"
        except SlotTaken as exc:
            outcome["mine"] = exc.messages[0]
        except Exception as exc:  # noqa: BLE001 - the point is that nothing else escapes
            outcome["mine"] = repr(exc)
        finally:
            connection.close()

    try:
        with other.cursor() as cursor:
            cursor.execute("SET deadlock_timeout = '20s'")
            cursor.execute("SHOW deadlock_timeout")
            assert cursor.fetchone()[0] == "20s"
            cursor.execute("BEGIN")
            cursor.execute(
                'INSERT INTO scheduling_appointment (referral_id, practitioner_id, appointment_type, "start", duration_minutes, "end",'
                " mechanism, outcome, cancelled_by, cancellation_reason, booked_at, is_demo)"
                " VALUES (%s, %s, 'assessment', %s, 60, %s, '02', '0', '', '', now(), false)",
                [theirs.pk, pwp.pk, start, start + timedelta(minutes=60)],
            )
            thread = threading.Thread(target=book_mine)
            thread.start()
            for _ in range(200):  # until our booking holds its referral and waits for the uncommitted row
                cursor.execute("SELECT pg_stat_clear_snapshot()")  # else the view is read once per transaction
                cursor.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
                if cursor.fetchone()[0]:
                    break
                time.sleep(0.05)
            # Ours holds its referral's lock and waits for this uncommitted row; now this session waits for
            # ours: a deadlock. After deadlock_timeout (1 s) PostgreSQL aborts ours.
            cursor.execute("SELECT 1 FROM scheduling_referral WHERE id = %s FOR UPDATE", [mine.pk])
            cursor.execute("COMMIT")
            thread.join(30)
    finally:
        other.close()
    assert outcome["mine"].startswith("Someone else has just booked"), outcome["mine"]
    assert Appointment.objects.filter(practitioner=pwp).count() == 1


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_many_admins_booking_one_slot_at_once_get_one_booking_and_409s_never_a_500(monkeypatch):
    _pg_only()
    pwp = make_user("pwp.crowd", roles.PWP)
    give_pattern(pwp, weekdays=range(7))
    count = 8
    admins = [make_user(f"admin.crowd{i}", roles.ADMIN_STAFF) for i in range(count)]
    referrals = [make_referral(pwp, actor=admins[0]) for _ in range(count)]
    start = (timezone.now() + timedelta(days=3)).astimezone(timezone.get_current_timezone()).replace(
        hour=10, minute=0, second=0, microsecond=0
    )
    # Everyone passes the Python check before anyone inserts: the inserts meet in the exclusion constraint.
    real_check = services._check_bookable
    all_checked = threading.Barrier(count, timeout=20)

    def check_then_wait(**kwargs):
        real_check(**kwargs)
        all_checked.wait()

    monkeypatch.setattr(services, "_check_bookable", check_then_wait)
    answers = [None] * count

    def post(i):
        try:
            client = Client(raise_request_exception=False)
            client.force_login(admins[i])
            answers[i] = _post_slot(client, referrals[i], pwp, start)
        finally:
            connection.close()

    threads = [threading.Thread(target=post, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [302] + [409] * (count - 1), statuses
    for answer in answers:
        if answer.status_code == 409:
            assert "Someone else has just booked" in answer.content.decode()
    assert Appointment.objects.filter(practitioner=pwp).count() == 1


# --- 11. Typed times outside the diary, far dates, odd cancellation times ---------------------------


def _type_time(client, referral, practitioner, day, at, **extra):
    return client.post(reverse("booking:book", args=[referral.pk]), {
        "practitioner": practitioner.pk, "appointment_type": "assessment", "day": day, "at": at, **extra,
    })


@pytest.mark.parametrize("day,at,why", [
    ("2026-03-08", "03:00", "not a working day (Sunday)"),
    ("2026-03-10", "07:00", "outside working hours"),
    ("2026-03-10", "12:45", "outside working hours"),  # lunch
    ("2026-04-06", "10:00", "bank holiday (Easter Monday)"),
])
def test_a_typed_time_outside_the_practitioners_availability_is_refused_saying_why(frozen, admin_client, referral, pwp, day, at, why):
    give_pattern(pwp)
    response = _type_time(admin_client, referral, pwp, day, at)
    assert response.status_code == 400
    page = response.content.decode()
    assert why in page and "tick the override and say why" in page
    assert not Appointment.objects.exists()


def test_a_typed_time_on_the_practitioners_leave_is_refused(frozen, admin_client, referral, pwp, admin_user):
    give_pattern(pwp)
    AvailabilityException.objects.create(
        practitioner=pwp, kind="leave", starts_at=london(2026, 3, 9, 0), ends_at=london(2026, 3, 14, 0), created_by=admin_user
    )
    response = _type_time(admin_client, referral, pwp, "2026-03-10", "10:00")
    assert response.status_code == 400 and "annual leave" in response.content.decode()
    assert not Appointment.objects.exists()


def test_an_override_needs_a_reason_and_books_outside_availability_with_an_audit_entry(frozen, admin_client, referral, pwp):
    give_pattern(pwp)
    response = _type_time(admin_client, referral, pwp, "2026-03-08", "10:00", override="on")
    assert response.status_code == 400 and "Say why this time is booked outside" in response.content.decode()
    assert not Appointment.objects.exists()
    response = _type_time(admin_client, referral, pwp, "2026-03-08", "10:00", override="on", override_reason="Agreed Sunday clinic")
    assert response.status_code == 302
    appointment = Appointment.objects.get()
    assert appointment.start == london(2026, 3, 8, 10)
    entry = AuditEntry.objects.get(appointment=appointment, field="availability_override")
    assert entry.old_value == "not a working day (Sunday)" and entry.reason == "Override: Agreed Sunday clinic"
    assert entry.actor.username == "admin.one"


def test_a_time_inside_availability_books_without_an_override_entry(frozen, admin_client, referral, pwp):
    give_pattern(pwp)
    assert _type_time(admin_client, referral, pwp, "2026-03-03", "10:00").status_code == 302
    assert not AuditEntry.objects.filter(field="availability_override").exists()


@pytest.mark.parametrize("day", ["2027-09-06", "2099-03-02"])
def test_a_booking_more_than_eighteen_months_ahead_is_refused(frozen, admin_client, referral, pwp, day):
    response = _type_time(admin_client, referral, pwp, day, "10:00", override="on", override_reason="Far ahead")
    assert response.status_code == 400
    assert "at most 18 months ahead" in response.content.decode()
    assert not Appointment.objects.exists()


def test_a_year_2999_slot_is_refused_as_outside_the_services_dates(frozen, admin_client, referral, pwp):
    response = _post_slot(admin_client, referral, pwp, dt.datetime(2999, 3, 3, 10, tzinfo=dt.timezone.utc))
    assert response.status_code == 400 and "outside the dates this service works with" in response.content.decode()
    assert not Appointment.objects.exists()


@pytest.mark.parametrize("asked_at,message", [
    ("0001-01-01T00:00", "outside the dates this service works with"),
    ("2026-02-20T10:00", "cannot be before the appointment was booked"),
    ("2026-03-03T10:00", "cannot be in the future"),
])
def test_a_cancellation_asked_at_an_impossible_time_is_refused(frozen, admin_client, referral, pwp, admin_user, asked_at, message):
    appointment = book(referral, pwp, london(2026, 3, 4, 10), actor=admin_user, booked_at=london(2026, 2, 27, 12))
    response = admin_client.post(reverse("booking:cancel", args=[appointment.pk]), {
        "cancelled_by": "patient", "reason": "Unwell", "asked_at": asked_at,
    })
    assert response.status_code == 400
    assert message in response.content.decode()
    appointment.refresh_from_db()
    assert appointment.outcome == "0"


def test_a_rearrangement_asked_before_the_booking_is_refused(frozen, admin_client, referral, pwp, admin_user):
    give_pattern(pwp)
    appointment = book(referral, pwp, london(2026, 3, 4, 10), actor=admin_user)
    response = admin_client.post(reverse("booking:rearrange", args=[appointment.pk]), {
        "asked_by": "patient", "asked_at": "2026-03-01T18:00", "slot": f"{pwp.pk}|{london(2026, 3, 5, 14, 30).isoformat()}",
    })
    assert response.status_code == 400 and "cannot be before the appointment was booked" in response.content.decode()
    assert not Rearrangement.objects.exists()


# --- 10. Out-of-range dates and odd parameters are 400s ---------------------------------------------


@pytest.mark.parametrize("data", [
    {"start": "9999-12-31T23:30:00+00:00"},
    {"start": "garbage"},
    {"start": "2026-03-03T10:00:00"},
    {"day": "9999-12-31", "at": "23:59"},
    {"day": "0001-01-01", "at": "10:00"},
    {"day": "31/12/2026", "at": "25:00"},
])
def test_booking_with_an_out_of_range_or_unreadable_time_is_a_400_inside_the_layout(frozen, admin_client, referral, pwp, data):
    response = admin_client.post(reverse("booking:book", args=[referral.pk]), {
        "practitioner": pwp.pk, "appointment_type": "assessment", **data,
    })
    assert response.status_code == 400
    assert not Appointment.objects.exists()


@pytest.mark.parametrize("slot", [
    "{pwp}|9999-12-31T23:30:00+00:00", "abc|2026-03-05T14:30:00+00:00", "|", "99999999999999999999|2026-03-05T14:30:00+00:00", None,
])
def test_rearranging_to_an_unreadable_slot_is_a_400_and_changes_nothing(frozen, admin_client, referral, pwp, admin_user, slot):
    appointment = book(referral, pwp, london(2026, 3, 4, 10), actor=admin_user)
    data = {"asked_by": "patient"}
    if slot is not None:
        data["slot"] = slot.format(pwp=pwp.pk)
    response = admin_client.post(reverse("booking:rearrange", args=[appointment.pk]), data)
    assert response.status_code == 400 and "choose a new time" in response.content.decode()
    appointment.refresh_from_db()
    assert appointment.outcome == "0" and not Rearrangement.objects.exists()


@pytest.mark.parametrize("method", ["get", "post"])
@pytest.mark.parametrize("start", ["9999-12-31T23:30:00+00:00", "0001-01-01T00:00:00+00:00", "nonsense"])
def test_the_course_page_with_an_out_of_range_start_is_a_400(frozen, admin_client, referral, pwp, method, start):
    response = getattr(admin_client, method)(reverse("booking:course", args=[referral.pk]), {"practitioner": pwp.pk, "start": start})
    assert response.status_code == 400
    assert not Appointment.objects.filter(appointment_type="treatment").exists()


@pytest.mark.parametrize("expected", ["garbage", "9999-12-31T23:30:00+00:00"])
def test_a_course_post_with_an_unreadable_expected_start_is_a_400_naming_it(frozen, admin_client, referral, pwp, expected):
    give_pattern(pwp, weekdays=range(5))
    response = admin_client.post(reverse("booking:course", args=[referral.pk]), {
        "practitioner": pwp.pk, "start": london(2026, 3, 10, 10).isoformat(), "expected": [expected],
    })
    assert response.status_code == 400
    assert "expected" in response.content.decode()
    assert not Appointment.objects.exists()


@pytest.mark.parametrize("query", [
    "type=nonsense", "type=", "team=abc&any_time=%00", "practitioner=99999999999999999999&start=9999-12-31T23:30:00%2B00:00",
    "day=9999-12-31&after=0001-01-01", "type=treatment&team=1&any_time=1",
])
def test_the_slot_finder_never_answers_odd_query_parameters_with_a_500(frozen, admin_client, referral, pwp, query):
    response = admin_client.get(reverse("booking:find_slots", args=[referral.pk]) + "?" + query)
    # A NUL in any parameter is refused at the boundary (scheduling.params.RefuseNulMiddleware).
    assert response.status_code == (400 if "%00" in query else 200)


# --- Double submits answer with the first result -----------------------------------------------------


def test_posting_the_same_booking_twice_answers_already_booked_with_the_same_appointment(frozen, admin_client, referral, pwp):
    give_pattern(pwp)
    first = _post_slot(admin_client, referral, pwp, london(2026, 3, 3, 9))
    second = _post_slot(admin_client, referral, pwp, london(2026, 3, 3, 9))
    assert first.status_code == second.status_code == 302
    assert second["Location"] == first["Location"] == reverse("caseload:referral_detail", args=[referral.pk])
    assert "Already booked: Initial assessment Tue 03 Mar 2026 09:00" in _messages(second)
    assert Appointment.objects.count() == 1
    assert AuditEntry.objects.filter(field="booking").count() == 1


def test_the_service_answers_a_repeated_booking_with_the_first_appointment(frozen, referral, pwp):
    first = book(referral, pwp, london(2026, 3, 3, 9))
    with pytest.raises(AlreadyBooked) as exc:
        book(referral, pwp, london(2026, 3, 3, 9))
    assert exc.value.appointment == first


def test_cancelling_twice_is_a_no_op_saying_already_cancelled(frozen, admin_client, referral, pwp, admin_user):
    appointment = book(referral, pwp, london(2026, 3, 4, 10), actor=admin_user)
    url = reverse("booking:cancel", args=[appointment.pk])
    assert admin_client.post(url, {"cancelled_by": "service", "reason": "PWP unwell"}).status_code == 302
    again = admin_client.post(url, {"cancelled_by": "patient", "reason": "Something else"})
    assert again.status_code == 302 and again["Location"] == reverse("caseload:referral_detail", args=[referral.pk])
    assert "Already cancelled" in _messages(again)
    appointment.refresh_from_db()
    assert appointment.outcome == "4" and appointment.cancellation_reason == "PWP unwell"
    assert AuditEntry.objects.filter(appointment=appointment, field="outcome").count() == 1
    with pytest.raises(AlreadyCancelled):
        cancel_appointment(appointment=appointment, cancelled_by="service", reason="Again", actor=admin_user)


def test_rearranging_twice_to_the_same_slot_is_a_no_op(frozen, admin_client, referral, pwp, admin_user):
    give_pattern(pwp)
    appointment = book(referral, pwp, london(2026, 3, 4, 10), actor=admin_user)
    data = {"asked_by": "patient", "reason": "Work", "slot": f"{pwp.pk}|{london(2026, 3, 5, 14, 30).isoformat()}"}
    url = reverse("booking:rearrange", args=[appointment.pk])
    assert admin_client.post(url, data).status_code == 302
    again = admin_client.post(url, data)
    assert again.status_code == 302 and "Already rearranged to Initial assessment Thu 05 Mar 2026 14:30" in _messages(again)
    assert Rearrangement.objects.count() == 1 and Appointment.objects.count() == 2
    with pytest.raises(AlreadyRearranged):
        rearrange_appointment(appointment=appointment, new_start=london(2026, 3, 5, 14, 30), asked_by="patient", actor=admin_user)
    page = admin_client.get(url)
    assert page.status_code == 302 and "Already rearranged to Initial assessment Thu 05 Mar 2026 14:30" in _messages(page)
    # Moving the old one somewhere else is refused: the replacement is the one to move.
    elsewhere = admin_client.post(url, {**data, "slot": f"{pwp.pk}|{london(2026, 3, 9, 10).isoformat()}"})
    assert elsewhere.status_code == 400 and "rearrange that one instead" in elsewhere.content.decode()
    assert Rearrangement.objects.count() == 1


def test_confirming_the_same_course_twice_answers_already_booked(admin_client, referral, pwp, admin_user):
    give_pattern(pwp, weekdays=range(5))
    with time_machine.travel(london(2026, 2, 2, 11), tick=False):
        record_appointment_outcome(appointment=book(referral, pwp, london(2026, 2, 2, 10), actor=admin_user), outcome="5", actor=pwp)
    with time_machine.travel(NOW, tick=False):
        query = {"practitioner": pwp.pk, "start": london(2026, 3, 30, 10).isoformat(), "reviews": "1"}
        preview = admin_client.get(reverse("booking:course", args=[referral.pk]), query)
        data = {**query, "expected": [p.start.isoformat() for p in preview.context["plan"]]}
        first = admin_client.post(reverse("booking:course", args=[referral.pk]), data)
        again = admin_client.post(reverse("booking:course", args=[referral.pk]), data)
    assert first.status_code == again.status_code == 302
    assert "Already booked" in _messages(again)
    assert Appointment.objects.filter(referral=referral, appointment_type="treatment").count() == 7
