"""No double-booking, ever: the database refuses it even when the Python check is bypassed or raced."""

import threading
from datetime import timedelta

import pytest
from django.db import IntegrityError, connection, transaction
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from scheduling import roles
from scheduling.booking import services
from scheduling.booking.models import Appointment
from scheduling.booking.services import SlotTaken, book_appointment
from tests.booking_helpers import book, give_pattern
from tests.factories import make_referral, make_user


def test_the_database_refuses_an_overlapping_row_that_skipped_the_python_check(referral, pwp, admin_user):
    start = timezone.now() + timedelta(days=3)
    first = book(referral, pwp, start)
    with pytest.raises(IntegrityError), transaction.atomic():
        Appointment.objects.create(
            referral=referral, practitioner=pwp, appointment_type="treatment", start=start + timedelta(minutes=15), duration_minutes=45
        )
    # Moving another appointment onto it by an update is refused as well.
    second = book(referral, pwp, start + timedelta(hours=2), kind="treatment")
    with pytest.raises(IntegrityError), transaction.atomic():
        Appointment.objects.filter(pk=second.pk).update(start=first.start, end=first.end)
    # Back to back, another practitioner, or a cancelled row are all allowed.
    Appointment.objects.create(referral=referral, practitioner=pwp, appointment_type="review", start=first.end, duration_minutes=30)
    other = make_user("pwp.three", roles.PWP)
    Appointment.objects.create(referral=referral, practitioner=other, appointment_type="review", start=start, duration_minutes=30)


def test_a_cancelled_appointment_does_not_hold_its_slot_in_the_database(referral, pwp, admin_user):
    start = timezone.now() + timedelta(days=3)
    first = book(referral, pwp, start)
    services.cancel_appointment(appointment=first, cancelled_by="service", reason="Clinic closed", actor=admin_user)
    Appointment.objects.create(referral=referral, practitioner=pwp, appointment_type="treatment", start=start, duration_minutes=45)


def test_a_refused_insert_surfaces_as_slot_taken_with_a_clear_message(referral, pwp, admin_user, monkeypatch):
    start = timezone.now() + timedelta(days=3)
    book(referral, pwp, start)
    monkeypatch.setattr(services, "_check_bookable", lambda **kwargs: None)  # as if the check raced another booking
    other = make_referral(pwp, actor=admin_user)
    with pytest.raises(SlotTaken) as exc:
        book(other, pwp, start)
    assert "Someone else has just booked" in exc.value.messages[0]
    assert Appointment.objects.count() == 1


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_two_admins_booking_the_same_slot_at_once_one_wins_and_the_other_sees_the_next_free_slots(monkeypatch):
    if connection.vendor != "postgresql":
        pytest.skip("Real concurrent connections are tested on PostgreSQL")
    pwp = make_user("pwp.race", roles.PWP)
    give_pattern(pwp, weekdays=range(7))
    admins = [make_user(f"admin.race{i}", roles.ADMIN_STAFF) for i in range(2)]
    referrals = [make_referral(pwp, actor=admins[0]) for _ in range(2)]
    start = (timezone.now() + timedelta(days=3)).astimezone(timezone.get_current_timezone()).replace(
        hour=10, minute=0, second=0, microsecond=0
    )

    # Both requests pass the Python overlap check before either inserts, so only the database can decide.
    real_check = services._check_bookable
    both_checked = threading.Barrier(2, timeout=20)

    def check_then_wait(**kwargs):
        real_check(**kwargs)
        both_checked.wait()

    monkeypatch.setattr(services, "_check_bookable", check_then_wait)
    responses = [None, None]

    def post(i):
        try:
            client = Client()
            client.force_login(admins[i])
            responses[i] = client.post(
                reverse("booking:book", args=[referrals[i].pk]),
                {"practitioner": pwp.pk, "appointment_type": "assessment", "start": start.isoformat()},
            )
        finally:
            connection.close()

    threads = [threading.Thread(target=post, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [302, 409]
    loser = next(r for r in responses if r.status_code == 409).content.decode()
    assert "Someone else has just booked" in loser
    assert "The next free slots are listed below." in loser
    assert loser.count('class="slot"') >= 3
    assert Appointment.objects.filter(practitioner=pwp).count() == 1


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_many_simultaneous_bookings_of_one_slot_through_the_service_leave_exactly_one(monkeypatch):
    if connection.vendor != "postgresql":
        pytest.skip("Real concurrent connections are tested on PostgreSQL")
    pwp = make_user("pwp.race2", roles.PWP)
    admin = make_user("admin.race2", roles.ADMIN_STAFF)
    referrals = [make_referral(pwp, actor=admin) for _ in range(4)]
    start = timezone.now() + timedelta(days=4)
    gate = threading.Barrier(len(referrals), timeout=20)
    outcomes = []

    def attempt(referral):
        try:
            gate.wait()
            book_appointment(referral=referral, practitioner=pwp, appointment_type="assessment", start=start, actor=admin)
            outcomes.append("booked")
        except SlotTaken:
            outcomes.append("taken")
        finally:
            connection.close()

    threads = [threading.Thread(target=attempt, args=(r,)) for r in referrals]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(outcomes) == ["booked", "taken", "taken", "taken"]
    assert Appointment.objects.filter(practitioner=pwp).count() == 1


def test_the_sqlite_guard_is_put_back_after_a_table_rebuild_drops_it(referral, pwp):
    if connection.vendor != "sqlite":
        pytest.skip("SQLite triggers only")
    from scheduling.booking.db import SQLITE_REVERSE, ensure_sqlite_overlap_guard

    with connection.cursor() as cursor:
        for sql in SQLITE_REVERSE:  # what Django's table rebuild does to triggers
            cursor.execute(sql)
    ensure_sqlite_overlap_guard(using="default")
    start = timezone.now() + timedelta(days=3)
    book(referral, pwp, start)
    with pytest.raises(IntegrityError), transaction.atomic():
        Appointment.objects.create(referral=referral, practitioner=pwp, appointment_type="review", start=start, duration_minutes=30)
