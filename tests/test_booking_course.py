import datetime as dt

import pytest
import time_machine
from django.core.exceptions import ValidationError

from scheduling.audit import AuditEntry
from scheduling.booking.models import Appointment, BookingSettings
from scheduling.booking.selectors import plan_course
from scheduling.booking.services import CourseConflict, add_availability_exception, book_course
from scheduling.reminders.models import OutboundMessage
from tests.booking_helpers import book, give_pattern
from tests.factories import LONDON, london, make_referral


def local_days(plan):
    return [p.start.astimezone(LONDON).date() for p in plan]


def test_a_course_is_seven_weekly_sessions_at_the_same_time_then_reviews_at_3_and_6_months(assessed, pwp, admin_user):
    booked = book_course(referral=assessed, practitioner=pwp, first_start=london(2026, 3, 4, 10), actor=admin_user)
    treatments = [a for a in booked if a.appointment_type == "treatment"]
    reviews = [a for a in booked if a.appointment_type == "review"]
    assert [a.session_number for a in treatments] == [2, 3, 4, 5, 6, 7, 8]
    assert [a.start.astimezone(LONDON).date() for a in treatments] == [
        dt.date(2026, 3, 4) + dt.timedelta(weeks=w) for w in range(7)
    ]
    assert {a.start.astimezone(LONDON).time() for a in treatments} == {dt.time(10)}
    assert all(a.duration_minutes == 45 for a in treatments)
    # Last session Wed 15 April: reviews 15 July and 15 October, 30 minutes at the same local time.
    assert [a.start for a in reviews] == [london(2026, 7, 15, 10), london(2026, 10, 15, 10)]
    assert all(a.duration_minutes == 30 for a in reviews)
    assert AuditEntry.objects.filter(referral=assessed, field="booking", actor=admin_user).count() == 1 + 9


def test_a_weekly_session_stays_at_ten_local_across_the_march_clock_change(assessed, pwp):
    plan = plan_course(referral=assessed, practitioner=pwp, first_start=london(2026, 3, 18, 10), include_reviews=False)
    assert [p.start.astimezone(LONDON).hour for p in plan] == [10] * 7
    utc_hours = [p.start.astimezone(dt.timezone.utc).hour for p in plan]
    assert utc_hours[:2] == [10, 10] and utc_hours[2:] == [9] * 5  # 18, 25 March in GMT; from 1 April in BST


def test_a_weekly_session_stays_at_ten_local_across_the_october_clock_change(pwp, referral, admin_user):
    give_pattern(pwp, weekdays=(0, 1, 2, 3, 4))
    with time_machine.travel(london(2026, 10, 1, 9), tick=False):
        plan = plan_course(referral=referral, practitioner=pwp, first_start=london(2026, 10, 14, 10), include_reviews=False)
        assert [p.start.astimezone(LONDON).hour for p in plan] == [10] * 7
        assert [p.start.astimezone(dt.timezone.utc).hour for p in plan][:3] == [9, 9, 10]  # 14, 21 Oct BST; 28 Oct GMT
        booked = book_course(referral=referral, practitioner=pwp, first_start=london(2026, 10, 14, 10), include_reviews=False)
    assert [a.start.astimezone(LONDON).hour for a in booked] == [10] * 7
    assert all(a.end - a.start == dt.timedelta(minutes=45) for a in booked)


def test_bank_holidays_and_leave_are_skipped_and_the_course_runs_on(assessed, pwp, manager):
    # Mondays at 10:00 from 30 March: 6 April is Easter Monday, 4 May the early May bank holiday; leave on 13 April.
    add_availability_exception(practitioner=pwp, kind="leave", starts_at=london(2026, 4, 13), ends_at=london(2026, 4, 14), actor=manager)
    plan = plan_course(referral=assessed, practitioner=pwp, first_start=london(2026, 3, 30, 10), include_reviews=False)
    # Skipped: 6 Apr (Easter Monday), 13 Apr (leave), 4 May and 25 May (bank holidays).
    assert local_days(plan) == [
        dt.date(2026, 3, 30), dt.date(2026, 4, 20), dt.date(2026, 4, 27), dt.date(2026, 5, 11),
        dt.date(2026, 5, 18), dt.date(2026, 6, 1), dt.date(2026, 6, 8),
    ]
    assert len(plan) == 7 and not any(p.problem for p in plan)
    skipped = [s for p in plan for s in p.skipped]
    assert any("Easter Monday" in s for s in skipped)
    assert any("annual leave" in s for s in skipped)


def test_a_clash_with_an_existing_appointment_is_shown_and_nothing_is_booked(assessed, pwp, admin_user):
    other = make_referral(pwp, actor=admin_user)
    clash = book(other, pwp, london(2026, 3, 18, 10, 30), kind="treatment")
    plan = plan_course(referral=assessed, practitioner=pwp, first_start=london(2026, 3, 4, 10))
    problems = [p for p in plan if p.problem]
    assert [p.start for p in problems] == [london(2026, 3, 18, 10)]
    with pytest.raises(CourseConflict) as exc:
        book_course(referral=assessed, practitioner=pwp, first_start=london(2026, 3, 4, 10), actor=admin_user)
    assert "nothing was booked" in exc.value.messages[0]
    assert list(Appointment.objects.filter(start__gte=london(2026, 3, 3))) == [clash]


def test_a_course_is_all_or_nothing_when_the_database_refuses_one_session(assessed, pwp, admin_user, monkeypatch):
    """Another booking lands between the planner's check and the inserts: the guard refuses it and every
    session already inserted in the course is rolled back."""
    from scheduling.booking import selectors

    other = make_referral(pwp, actor=admin_user)
    real_plan = selectors.plan_course

    def plan_then_someone_books(**kwargs):
        plan = real_plan(**kwargs)
        book(other, pwp, london(2026, 4, 1, 10), kind="treatment")  # week 5, after the plan was checked
        return plan

    monkeypatch.setattr(selectors, "plan_course", plan_then_someone_books)
    with pytest.raises(ValidationError) as exc:
        book_course(referral=assessed, practitioner=pwp, first_start=london(2026, 3, 4, 10), actor=admin_user)
    assert exc.value.code == "slot_taken"
    assert not Appointment.objects.filter(referral=assessed, appointment_type="treatment").exists()


def test_a_course_is_refused_when_the_diary_changed_since_the_preview(assessed, pwp, admin_user):
    plan = plan_course(referral=assessed, practitioner=pwp, first_start=london(2026, 3, 4, 10))
    BookingSettings.objects.update_or_create(pk=1, defaults={"second_review_months": 0})
    with pytest.raises(CourseConflict):
        book_course(referral=assessed, practitioner=pwp, first_start=london(2026, 3, 4, 10), expected_starts=[p.start for p in plan])
    assert not Appointment.objects.filter(referral=assessed, appointment_type__in=["treatment", "review"]).exists()


def test_only_the_remaining_sessions_are_planned(assessed, pwp, admin_user):
    book(assessed, pwp, london(2026, 3, 4, 10), kind="treatment", session_number=2)
    plan = plan_course(referral=assessed, practitioner=pwp, first_start=london(2026, 3, 11, 10), include_reviews=False)
    assert [p.session_number for p in plan] == [3, 4, 5, 6, 7, 8]


def test_a_course_must_respect_the_booking_lead_time(assessed, pwp):
    with pytest.raises(ValidationError) as exc:
        book_course(referral=assessed, practitioner=pwp, first_start=london(2026, 3, 2, 15))
    assert exc.value.code == "too_soon"


def test_a_course_booked_in_one_go_texts_one_confirmation_not_one_per_session(assessed, pwp, admin_user):
    assessed.patient.sms_consent = True
    assessed.patient.save()
    booked = book_course(referral=assessed, practitioner=pwp, first_start=london(2026, 3, 4, 10), actor=admin_user)
    confirmations = {
        m.appointment_id: m for m in OutboundMessage.objects.filter(appointment__in=booked, kind="confirmation")
    }
    assert set(confirmations) == {a.pk for a in booked}
    first, *rest = booked
    assert confirmations[first.pk].status_reason != "booked together with an earlier call, whose confirmation covers it"
    assert [confirmations[a.pk].status for a in rest] == [OutboundMessage.Status.SKIPPED] * len(rest)
    assert {confirmations[a.pk].status_reason for a in rest} == {"booked together with an earlier call, whose confirmation covers it"}
