import datetime as dt

import pytest
import time_machine
from django.core.exceptions import ValidationError

from scheduling.booking.availability import is_bank_holiday
from scheduling.booking.models import BookingSettings
from scheduling.booking.selectors import find_free_slots, next_free_slots_for_referral
from scheduling.booking.services import add_availability_exception, withdraw_availability_exception
from scheduling.caseload.models import ServiceSettings
from scheduling.uktime import local_datetime
from tests.booking_helpers import book, give_pattern
from tests.factories import london, make_patient, make_referral

# Monday 2 March 2026, 09:00: with the default 24-hour lead time the first bookable instant is Tue 3 Mar 09:00.
NOW = london(2026, 3, 2, 9, 0)


@pytest.fixture
def patterned_pwp(pwp):
    give_pattern(pwp)
    return pwp


def starts(slots):
    return [s.start for s in slots]


def test_the_first_slots_are_back_to_back_in_working_hours_after_the_lead_time(frozen, patterned_pwp, referral):
    slots = next_free_slots_for_referral(referral=referral, appointment_type="assessment", limit=4)
    assert starts(slots) == [london(2026, 3, 3, 9), london(2026, 3, 3, 10), london(2026, 3, 3, 11), london(2026, 3, 3, 13, 30)]
    assert all(s.end - s.start == dt.timedelta(minutes=60) for s in slots)
    assert {s.practitioner_id for s in slots} == {patterned_pwp.pk}


def test_slot_lengths_come_from_the_managers_settings(frozen, patterned_pwp, referral):
    BookingSettings.objects.update_or_create(pk=1, defaults={"treatment_minutes": 50})
    slots = next_free_slots_for_referral(referral=referral, appointment_type="treatment", limit=2)
    assert starts(slots) == [london(2026, 3, 3, 9), london(2026, 3, 3, 9, 50)]


def test_the_lead_time_is_configurable_and_slots_start_on_the_quarter_hour(frozen, patterned_pwp, referral):
    ServiceSettings.objects.update_or_create(pk=1, defaults={"booking_lead_time_hours": 2})
    with time_machine.travel(london(2026, 3, 3, 8, 50), tick=False):
        slots = next_free_slots_for_referral(referral=referral, appointment_type="review", limit=2)
    assert starts(slots) == [london(2026, 3, 3, 11), london(2026, 3, 3, 11, 30)]


def test_slots_never_overlap_existing_appointments(frozen, patterned_pwp, referral, admin_user):
    other = make_referral(patterned_pwp, actor=admin_user)
    book(other, patterned_pwp, london(2026, 3, 3, 9, 30), kind="treatment")  # 09:30-10:15
    slots = next_free_slots_for_referral(referral=referral, appointment_type="assessment", limit=3)
    # 09:00-09:30 is too short; the next hour starts on the quarter hour after 10:15.
    assert starts(slots) == [london(2026, 3, 3, 10, 15), london(2026, 3, 3, 11, 15), london(2026, 3, 3, 13, 30)]


def test_a_cancelled_appointment_does_not_block_its_slot(frozen, patterned_pwp, referral, admin_user):
    from scheduling.booking.services import cancel_appointment

    other = make_referral(patterned_pwp, actor=admin_user)
    appt = book(other, patterned_pwp, london(2026, 3, 3, 9))
    cancel_appointment(appointment=appt, cancelled_by="patient", reason="Away", actor=admin_user)
    assert starts(next_free_slots_for_referral(referral=referral, appointment_type="assessment", limit=1)) == [london(2026, 3, 3, 9)]


def test_leave_and_training_remove_time_and_withdrawn_leave_gives_it_back(frozen, patterned_pwp, referral, manager):
    leave = add_availability_exception(
        practitioner=patterned_pwp, kind="leave", starts_at=london(2026, 3, 3), ends_at=london(2026, 3, 4), actor=manager
    )
    add_availability_exception(
        practitioner=patterned_pwp, kind="training", starts_at=london(2026, 3, 4, 9), ends_at=london(2026, 3, 4, 11), actor=manager
    )
    slots = next_free_slots_for_referral(referral=referral, appointment_type="assessment", limit=1)
    assert starts(slots) == [london(2026, 3, 4, 11)]
    withdraw_availability_exception(exception=leave, actor=manager)
    assert starts(next_free_slots_for_referral(referral=referral, appointment_type="assessment", limit=1)) == [london(2026, 3, 3, 9)]


def test_an_absence_must_end_after_it_starts(patterned_pwp, manager):
    with pytest.raises(ValidationError) as exc:
        add_availability_exception(practitioner=patterned_pwp, kind="leave", starts_at=london(2026, 3, 3), ends_at=london(2026, 3, 3))
    assert "ends_at" in exc.value.message_dict


def test_bank_holidays_in_england_and_wales_are_known_without_typing_them_in():
    assert is_bank_holiday(dt.date(2026, 4, 6))  # Easter Monday
    assert is_bank_holiday(dt.date(2027, 5, 31))  # Spring bank holiday, a year nobody entered
    assert not is_bank_holiday(dt.date(2026, 3, 17))  # St Patrick's Day is Northern Ireland only


def test_no_slot_is_offered_on_a_bank_holiday(patterned_pwp, referral):
    # Thursday 2 April 2026 09:00; Good Friday 3 Apr (not worked anyway), Easter Monday 6 Apr is a bank holiday.
    with time_machine.travel(london(2026, 4, 2, 9), tick=False):
        slots = next_free_slots_for_referral(referral=referral, appointment_type="assessment", limit=6)
    assert {s.start.astimezone(london(2026, 1, 1).tzinfo).date() for s in slots} == {dt.date(2026, 4, 7)}


def test_slots_fall_in_the_patients_preferred_days_and_times(frozen, patterned_pwp, admin_user):
    patient = make_patient(preferred_days=[2], preferred_times=["afternoon"])
    referral = make_referral(patterned_pwp, patient=patient, actor=admin_user)
    slots = next_free_slots_for_referral(referral=referral, appointment_type="assessment", limit=4)
    assert starts(slots) == [london(2026, 3, 4, 13, 30), london(2026, 3, 4, 14, 30), london(2026, 3, 4, 15, 30), london(2026, 3, 11, 13, 30)]
    # The admin can look outside the preferred windows.
    anytime = next_free_slots_for_referral(referral=referral, appointment_type="assessment", limit=1, respect_preferences=False)
    assert starts(anytime) == [london(2026, 3, 3, 9)]


def test_a_morning_preference_excludes_a_slot_running_past_midday(frozen, patterned_pwp, admin_user):
    patient = make_patient(preferred_times=["morning"])
    referral = make_referral(patterned_pwp, patient=patient, actor=admin_user)
    slots = next_free_slots_for_referral(referral=referral, appointment_type="assessment", limit=4)
    assert all(s.end <= london(2026, 3, s.start.astimezone(NOW.tzinfo).day, 12) for s in slots)
    assert starts(slots)[:3] == [london(2026, 3, 3, 9), london(2026, 3, 3, 10), london(2026, 3, 3, 11)]


def test_the_whole_team_search_offers_the_earliest_slots_of_any_practitioner(frozen, patterned_pwp, other_pwp, referral, admin_user):
    give_pattern(other_pwp, weekdays=(0, 1, 2, 3, 4))
    add_availability_exception(practitioner=patterned_pwp, kind="leave", starts_at=london(2026, 3, 3), ends_at=london(2026, 3, 5))
    own = next_free_slots_for_referral(referral=referral, appointment_type="assessment", limit=1)
    team = next_free_slots_for_referral(referral=referral, appointment_type="assessment", limit=1, whole_team=True)
    assert (own[0].start, own[0].practitioner_id) == (london(2026, 3, 5, 9), patterned_pwp.pk)
    assert (team[0].start, team[0].practitioner_id) == (london(2026, 3, 3, 9), other_pwp.pk)


def test_a_practitioner_with_no_pattern_works_the_service_default_week(frozen, pwp, referral):
    slots = next_free_slots_for_referral(referral=referral, appointment_type="assessment", limit=12)
    days = {s.start.astimezone(NOW.tzinfo).weekday() for s in slots}
    assert days <= {0, 1, 2, 3, 4}
    assert london(2026, 3, 3, 12, 30) not in starts(slots)  # lunch


# --- Clock changes ------------------------------------------------------------------------------


def test_working_hours_stay_at_nine_local_across_the_march_clock_change(pwp):
    give_pattern(pwp, weekdays=(4, 0))  # Friday 27 March (GMT) and Monday 30 March (BST)
    with time_machine.travel(london(2026, 3, 26, 9), tick=False):
        slots = find_free_slots(practitioner_ids=[pwp.pk], duration_minutes=60, earliest=london(2026, 3, 27), limit=8)
    friday = [s for s in slots if s.local_start.date() == dt.date(2026, 3, 27)]
    monday = [s for s in slots if s.local_start.date() == dt.date(2026, 3, 30)]
    assert friday[0].start.astimezone(dt.timezone.utc).hour == 9  # GMT: 09:00 local is 09:00 UTC
    assert monday[0].start.astimezone(dt.timezone.utc).hour == 8  # BST: 09:00 local is 08:00 UTC
    assert friday[0].local_start.hour == monday[0].local_start.hour == 9


def test_working_hours_stay_at_nine_local_across_the_october_clock_change(pwp):
    give_pattern(pwp, weekdays=(4, 0))  # Friday 23 Oct (BST) and Monday 26 Oct (GMT)
    slots = find_free_slots(practitioner_ids=[pwp.pk], duration_minutes=60, earliest=london(2026, 10, 23), limit=8)
    assert [s.local_start.hour for s in slots if s.local_start.date() == dt.date(2026, 10, 23)][0] == 9
    assert [s.local_start.hour for s in slots if s.local_start.date() == dt.date(2026, 10, 26)][0] == 9
    assert [s.start.astimezone(dt.timezone.utc).hour for s in slots][:1] == [8]


def test_a_weekend_night_shift_pattern_spans_the_missing_hour_without_inventing_slots(pwp):
    # A (hypothetical) Sunday 00:00-04:00 pattern: on 29 March 2026 01:00-02:00 does not exist, so only 3 real hours.
    give_pattern(pwp, weekdays=(6,), blocks=((dt.time(0), dt.time(4)),))
    slots = find_free_slots(practitioner_ids=[pwp.pk], duration_minutes=60, earliest=london(2026, 3, 29), weeks=0, limit=10)
    assert len(slots) == 3
    assert [s.local_start.hour for s in slots] == [0, 2, 3]


def test_a_time_in_the_spring_gap_is_refused_with_a_reason():
    with pytest.raises(ValidationError) as exc:
        local_datetime(dt.date(2026, 3, 29), dt.time(1, 30))
    assert exc.value.code == "nonexistent_time"
    assert "does not exist" in exc.value.messages[0]


def test_a_time_that_happens_twice_in_october_is_refused_with_a_reason():
    with pytest.raises(ValidationError) as exc:
        local_datetime(dt.date(2026, 10, 25), dt.time(1, 30))
    assert exc.value.code == "ambiguous_time"
    # Either side of the repeated hour is unambiguous (returned in UTC).
    assert local_datetime(dt.date(2026, 10, 25), dt.time(2, 30)) == dt.datetime(2026, 10, 25, 2, 30, tzinfo=dt.timezone.utc)
    assert local_datetime(dt.date(2026, 10, 24), dt.time(1, 30)) == dt.datetime(2026, 10, 24, 0, 30, tzinfo=dt.timezone.utc)
