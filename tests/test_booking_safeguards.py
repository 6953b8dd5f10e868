"""Booking safeguards: never "move" an appointment to the time it already has, course plans count what is
already booked, typed times outside the diary need an override and a reason (audited), and the cancel
page says before confirming whether it will be a late cancellation. Services first, then the screens."""

import datetime as dt
import re

import pytest
import time_machine
from django.contrib.messages import get_messages
from django.core.exceptions import ValidationError
from django.urls import reverse

from scheduling.booking.models import Appointment, AvailabilityException, BookingSettings, Rearrangement
from scheduling.booking.selectors import next_free_slots_for_referral, plan_course, remaining_treatment_session_numbers
from scheduling.booking.services import (
    book_appointment,
    book_course,
    cancel_appointment,
    cancellation_notice,
    is_late_cancellation,
    rearrange_appointment,
    record_appointment_outcome,
)
from scheduling.audit import AuditEntry
from scheduling.caseload.models import ServiceSettings
from tests.booking_helpers import book, give_pattern
from tests.factories import LONDON, london, make_patient, make_referral

NOW = london(2026, 3, 2, 9, 0)  # a Monday


def _messages(response) -> str:
    return " ".join(str(m) for m in get_messages(response.wsgi_request))


def _state():
    """Everything a refusal must leave as it was."""
    return (
        sorted(Appointment.objects.values_list("pk", "start", "outcome", "practitioner_id")),
        Rearrangement.objects.count(),
        AuditEntry.objects.count(),
    )


# --- Rearranging to the time it already has ------------------------------------------------------


def test_rearranging_to_the_time_it_already_has_is_refused_and_changes_nothing(frozen, referral, pwp, admin_user):
    give_pattern(pwp)
    appointment = book(referral, pwp, london(2026, 3, 4, 10), actor=admin_user)
    before = _state()
    for practitioner in (None, pwp):
        with pytest.raises(ValidationError) as exc:
            rearrange_appointment(
                appointment=appointment, new_start=london(2026, 3, 4, 10), practitioner=practitioner, asked_by="patient",
                actor=admin_user, enforce_lead_time=True, enforce_availability=True,
            )
        assert exc.value.code == "same_slot"
        assert "That is the time it already has" in exc.value.messages[0]
    assert _state() == before


def test_the_same_start_with_another_practitioner_is_a_real_move(frozen, referral, pwp, other_pwp, admin_user):
    give_pattern(pwp)
    give_pattern(other_pwp)
    appointment = book(referral, pwp, london(2026, 3, 4, 10), actor=admin_user)
    moved = rearrange_appointment(
        appointment=appointment, new_start=london(2026, 3, 4, 10), practitioner=other_pwp, asked_by="service", actor=admin_user,
    )
    assert moved.replacement.practitioner == other_pwp and moved.replacement.start == london(2026, 3, 4, 10)


def test_the_slots_offered_for_a_move_leave_out_the_current_one_but_keep_overlapping_times(frozen, referral, pwp, admin_user):
    give_pattern(pwp)
    appointment = book(referral, pwp, london(2026, 3, 4, 10), actor=admin_user)
    slots = next_free_slots_for_referral(referral=referral, appointment_type="assessment", moving=appointment, limit=40)
    starts = [s.start for s in slots]
    assert london(2026, 3, 4, 10) not in starts
    assert london(2026, 3, 4, 11) in starts  # the hour after it is still offered


# --- Typed times outside the diary ----------------------------------------------------------------

OUTSIDE_THE_DIARY = [
    # (start, what the refusal says)
    (london(2026, 3, 7, 10), "not a working day (Saturday)"),
    (london(2026, 12, 25, 10), "bank holiday (Christmas Day)"),
    (london(2026, 4, 3, 10), "bank holiday (Good Friday)"),
    (london(2026, 3, 5, 19), "outside working hours"),
    (london(2026, 3, 10, 10), "annual leave"),
]


def _leave(pwp, admin_user):
    AvailabilityException.objects.create(
        practitioner=pwp, kind="leave", starts_at=london(2026, 3, 9), ends_at=london(2026, 3, 14), created_by=admin_user
    )


@pytest.mark.parametrize("start,why", OUTSIDE_THE_DIARY)
def test_a_booking_outside_the_diary_is_refused_saying_why_and_changes_nothing(frozen, referral, pwp, admin_user, start, why):
    _leave(pwp, admin_user)
    before = _state()
    with pytest.raises(ValidationError) as exc:
        book(referral, pwp, start, actor=admin_user, enforce_lead_time=True, enforce_availability=True)
    assert exc.value.code == "unavailable"
    assert why in exc.value.messages[0] and "tick the override and say why" in exc.value.messages[0]
    assert _state() == before


@pytest.mark.parametrize("start,why", OUTSIDE_THE_DIARY)
def test_a_booking_outside_the_diary_with_a_reason_is_booked_and_audited(frozen, referral, pwp, admin_user, start, why):
    _leave(pwp, admin_user)
    appointment = book(
        referral, pwp, start, actor=admin_user, enforce_lead_time=True, enforce_availability=True,
        override_reason="Patient can only do this day",
    )
    entry = AuditEntry.objects.get(appointment=appointment, field="availability_override")
    assert entry.actor == admin_user and entry.reason == "Override: Patient can only do this day"
    assert entry.old_value == why[:40]


@pytest.mark.parametrize("start,why", OUTSIDE_THE_DIARY)
def test_a_move_outside_the_diary_is_refused_without_a_reason_and_audited_with_one(frozen, referral, pwp, admin_user, start, why):
    _leave(pwp, admin_user)
    appointment = book(referral, pwp, london(2026, 3, 4, 10), actor=admin_user)
    before = _state()
    with pytest.raises(ValidationError) as exc:
        rearrange_appointment(
            appointment=appointment, new_start=start, asked_by="patient", actor=admin_user, enforce_lead_time=True,
            enforce_availability=True,
        )
    assert why in exc.value.messages[0]
    assert _state() == before
    moved = rearrange_appointment(
        appointment=appointment, new_start=start, asked_by="patient", actor=admin_user, enforce_lead_time=True,
        enforce_availability=True, override_reason="Agreed with the PWP",
    )
    assert moved.replacement.start == start
    entry = AuditEntry.objects.get(appointment=moved.replacement, field="availability_override")
    assert entry.actor == admin_user and entry.reason == "Override: Agreed with the PWP" and entry.old_value == why[:40]


def test_an_override_with_only_spaces_for_a_reason_is_no_override(frozen, referral, pwp, admin_user):
    with pytest.raises(ValidationError):
        book(referral, pwp, london(2026, 3, 7, 10), actor=admin_user, enforce_availability=True, override_reason="   ")
    assert not Appointment.objects.exists()


# --- Courses count what is already booked -------------------------------------------------------


def test_a_course_after_two_reviews_were_booked_books_no_more_reviews(assessed, pwp, admin_user):
    book(assessed, pwp, london(2026, 7, 1, 10), actor=admin_user, kind="review")
    book(assessed, pwp, london(2026, 10, 1, 10), actor=admin_user, kind="review")
    booked = book_course(referral=assessed, practitioner=pwp, first_start=london(2026, 3, 4, 10), actor=admin_user)
    assert [a.appointment_type for a in booked] == ["treatment"] * 7
    assert Appointment.objects.filter(referral=assessed, appointment_type="review").count() == 2


def test_a_course_after_one_review_books_only_the_second(assessed, pwp, admin_user):
    book(assessed, pwp, london(2026, 7, 1, 10), actor=admin_user, kind="review")
    plan = plan_course(referral=assessed, practitioner=pwp, first_start=london(2026, 3, 4, 10))
    assert [p.appointment_type for p in plan] == ["treatment"] * 7 + ["review"]
    assert plan[-1].start == london(2026, 10, 15, 10)  # six months after the last session, 15 April


def test_replanning_after_a_cancelled_session_books_that_session_and_no_second_pair_of_reviews(assessed, pwp, admin_user):
    book_course(referral=assessed, practitioner=pwp, first_start=london(2026, 3, 4, 10), actor=admin_user)
    third = Appointment.objects.get(referral=assessed, session_number=3)
    cancel_appointment(appointment=third, cancelled_by="service", reason="PWP unwell", actor=admin_user)
    booked = book_course(referral=assessed, practitioner=pwp, first_start=london(2026, 3, 5, 14), actor=admin_user)
    assert [(a.appointment_type, a.session_number) for a in booked] == [("treatment", 3)]
    assert Appointment.objects.not_cancelled().filter(referral=assessed, appointment_type="review").count() == 2


def test_a_treatment_booked_on_its_own_counts_towards_the_course(assessed, pwp, admin_user):
    book(assessed, pwp, london(2026, 3, 3, 10), actor=admin_user, kind="treatment")  # "Book this one only": no number
    assert remaining_treatment_session_numbers(assessed) == [3, 4, 5, 6, 7, 8]
    booked = book_course(referral=assessed, practitioner=pwp, first_start=london(2026, 3, 10, 10), actor=admin_user)
    assert [a.session_number for a in booked if a.appointment_type == "treatment"] == [3, 4, 5, 6, 7, 8]
    assert Appointment.objects.not_cancelled().filter(referral=assessed, appointment_type="treatment").count() == 7


def test_the_course_length_and_session_length_follow_the_booking_settings(assessed, pwp, admin_user):
    settings = BookingSettings.current()
    settings.course_treatment_sessions, settings.treatment_minutes = 4, 50
    settings.save()
    plan = plan_course(referral=assessed, practitioner=pwp, first_start=london(2026, 3, 4, 10), include_reviews=False)
    assert [p.session_number for p in plan] == [2, 3, 4, 5]
    assert {p.duration_minutes for p in plan} == {50}


def test_a_course_with_everything_booked_is_refused_and_changes_nothing(assessed, pwp, admin_user):
    book_course(referral=assessed, practitioner=pwp, first_start=london(2026, 3, 4, 10), actor=admin_user)
    before = _state()
    with pytest.raises(ValidationError) as exc:
        book_course(referral=assessed, practitioner=pwp, first_start=london(2026, 3, 5, 10), actor=admin_user)
    assert exc.value.code == "nothing_to_book"
    assert _state() == before


# --- Late cancellations, said before they are recorded ------------------------------------------


def test_the_notice_before_cancelling_uses_the_same_rule_as_the_recorded_cancellation(frozen, referral, pwp, admin_user):
    appointment = book(referral, pwp, london(2026, 3, 3, 8), actor=admin_user)  # 23 hours away
    notice = cancellation_notice(appointment=appointment)
    assert notice.short and notice.threshold_hours == 24 and round(notice.notice_hours) == 23
    assert notice.not_late_if_asked_before == london(2026, 3, 2, 8)
    earlier = cancellation_notice(appointment=appointment, asked_at=london(2026, 3, 2, 7, 59))
    assert not earlier.short
    cancelled = cancel_appointment(appointment=appointment, cancelled_by="patient", reason="Unwell", actor=admin_user)
    assert is_late_cancellation(cancelled) == notice.short


def test_the_notice_threshold_follows_the_service_settings(frozen, referral, pwp, admin_user):
    appointment = book(referral, pwp, london(2026, 3, 5, 9), actor=admin_user)  # three days away
    assert not cancellation_notice(appointment=appointment).short
    service = ServiceSettings.current()
    service.late_cancellation_notice_hours = 96
    service.save()
    assert cancellation_notice(appointment=appointment).short


# --- The screens ---------------------------------------------------------------------------------


def test_the_rearrange_page_does_not_offer_the_current_slot_and_refuses_it_if_posted(frozen, admin_client, referral, pwp, admin_user):
    give_pattern(pwp)
    appointment = book(referral, pwp, london(2026, 3, 4, 10), actor=admin_user)
    url = reverse("booking:rearrange", args=[appointment.pk])
    page = admin_client.get(url).content.decode()
    assert f'value="{pwp.pk}|{london(2026, 3, 4, 10).isoformat()}"' not in page
    assert f'value="{pwp.pk}|{london(2026, 3, 4, 11).isoformat()}"' in page
    before = _state()
    response = admin_client.post(url, {"asked_by": "patient", "slot": f"{pwp.pk}|{london(2026, 3, 4, 10).isoformat()}"})
    assert response.status_code == 400 and "That is the time it already has" in response.content.decode()
    assert _state() == before


def test_a_move_lands_on_the_record_naming_the_new_time_the_practitioner_and_the_text(frozen, admin_client, referral, pwp, admin_user):
    give_pattern(pwp)
    appointment = book(referral, pwp, london(2026, 3, 4, 10), actor=admin_user)
    response = admin_client.post(reverse("booking:rearrange", args=[appointment.pk]), {
        "asked_by": "patient", "slot": f"{pwp.pk}|{london(2026, 3, 11, 14).isoformat()}",
    })
    assert response.status_code == 302 and response["Location"] == reverse("caseload:referral_detail", args=[referral.pk])
    message = _messages(response)
    assert f"Rearranged for {referral.patient.full_name}: now Initial assessment Wed 11 Mar 2026 14:00" in message
    assert f"with {pwp.get_full_name()}" in message and "(was Wed 04 Mar 2026 10:00)" in message
    assert "a confirmation text will be sent" in message
    assert "late cancellation" not in message  # two days' notice


def test_a_late_move_asked_by_the_patient_says_it_counts_as_a_late_cancellation(frozen, admin_client, referral, pwp, admin_user):
    give_pattern(pwp)
    appointment = book(referral, pwp, london(2026, 3, 2, 15), actor=admin_user, patient_on_phone=True)
    response = admin_client.post(reverse("booking:rearrange", args=[appointment.pk]), {
        "asked_by": "patient", "slot": f"{pwp.pk}|{london(2026, 3, 11, 14).isoformat()}",
    })
    assert response.status_code == 302 and "It counts as a late cancellation." in _messages(response)


def test_the_messages_say_no_text_and_why_when_the_patient_cannot_get_one(frozen, admin_client, pwp, admin_user):
    give_pattern(pwp)
    referral = make_referral(pwp, patient=make_patient(sms_consent=False), actor=admin_user)
    booked = admin_client.post(reverse("booking:book", args=[referral.pk]), {
        "practitioner": pwp.pk, "appointment_type": "assessment", "start": london(2026, 3, 4, 10).isoformat(),
    })
    assert booked.status_code == 302
    message = _messages(booked)
    assert f"Booked for {referral.patient.full_name}: Initial assessment Wed 04 Mar 2026 10:00 with {pwp.get_full_name()}" in message
    assert "no confirmation text: no SMS consent recorded" in message
    appointment = Appointment.objects.get(referral=referral)
    cancelled = admin_client.post(reverse("booking:cancel", args=[appointment.pk]), {"cancelled_by": "patient", "reason": "Better"})
    assert cancelled.status_code == 302
    message = _messages(cancelled)
    assert f"Cancelled for {referral.patient.full_name}: Initial assessment Wed 04 Mar 2026 10:00 with {pwp.get_full_name()}" in message
    assert "the patient is not texted about it, and texts still to go for it are cancelled" in message
    assert "2 days' notice: not a late cancellation, and not counted as lost capacity." in message


def test_the_cancel_page_warns_of_a_late_cancellation_before_confirming(frozen, admin_client, referral, pwp, admin_user):
    appointment = book(referral, pwp, london(2026, 3, 3, 8), actor=admin_user, patient_on_phone=True)
    page = admin_client.get(reverse("booking:cancel", args=[appointment.pk])).content.decode()
    warning = re.search(r'<div class="message message-warning cancel-notice"[^>]*>(.*?)</div>', page, re.S).group(1)
    assert "Late cancellation:" in warning and "23 hours notice, less than the service's 24 hours" in warning
    assert "counts as lost capacity" in warning and "If they asked before 08:00 on Mon 2 Mar 2026" in warning
    assert appointment.outcome == "0" and not Appointment.objects.filter(outcome="2").exists()
    response = admin_client.post(reverse("booking:cancel", args=[appointment.pk]), {"cancelled_by": "patient", "reason": "Unwell"})
    assert response.status_code == 302 and response["Location"] == reverse("caseload:referral_detail", args=[referral.pk])
    assert "A late cancellation (23 hours' notice, under 24 hours): it counts as lost capacity." in _messages(response)


def test_the_cancel_page_says_when_a_cancellation_is_not_late(frozen, admin_client, referral, pwp, admin_user):
    appointment = book(referral, pwp, london(2026, 3, 10, 10), actor=admin_user)
    page = admin_client.get(reverse("booking:cancel", args=[appointment.pk])).content.decode()
    assert "message-warning" not in page
    assert "not a late cancellation, and not counted as lost capacity" in page
    assert "Asked after 10:00 on Mon 9 Mar 2026 it would be." in page


def test_a_late_cancellation_asked_earlier_is_not_late(frozen, admin_client, referral, pwp, admin_user):
    appointment = book(referral, pwp, london(2026, 3, 3, 8), actor=admin_user, booked_at=london(2026, 2, 20, 9),
                       patient_on_phone=True)
    response = admin_client.post(reverse("booking:cancel", args=[appointment.pk]), {
        "cancelled_by": "patient", "reason": "Unwell", "asked_at": "2026-03-02T07:00",
    })
    assert response.status_code == 302 and "not a late cancellation" in _messages(response)
    appointment.refresh_from_db()
    assert not is_late_cancellation(appointment)


def test_a_service_cancellation_at_short_notice_counts_as_lost_capacity(frozen, admin_client, referral, pwp, admin_user):
    appointment = book(referral, pwp, london(2026, 3, 3, 8), actor=admin_user, patient_on_phone=True)
    response = admin_client.post(reverse("booking:cancel", args=[appointment.pk]), {"cancelled_by": "service", "reason": "PWP unwell"})
    assert "Cancelled by the service at short notice (23 hours', under 24 hours): it counts as lost capacity." in _messages(response)


def _typed(client, referral, pwp, day, at, **extra):
    return client.post(reverse("booking:book", args=[referral.pk]), {
        "practitioner": pwp.pk, "appointment_type": "assessment", "day": day, "at": at, **extra,
    })


def test_a_saturday_typed_by_hand_is_refused_then_booked_with_an_override_and_a_reason(frozen, admin_client, referral, pwp, admin_user):
    refused = _typed(admin_client, referral, pwp, "2026-03-07", "10:00")
    assert refused.status_code == 400
    assert "not available at 10:00 on Sat 07 Mar 2026: not a working day (Saturday)" in refused.content.decode()
    no_reason = _typed(admin_client, referral, pwp, "2026-03-07", "10:00", override="on")
    assert no_reason.status_code == 400 and "Say why this time is booked outside" in no_reason.content.decode()
    assert not Appointment.objects.exists()
    booked = _typed(admin_client, referral, pwp, "2026-03-07", "10:00", override="on", override_reason="Works weekdays")
    assert booked.status_code == 302 and booked["Location"] == reverse("caseload:referral_detail", args=[referral.pk])
    appointment = Appointment.objects.get(referral=referral)
    assert appointment.start == london(2026, 3, 7, 10)
    assert AuditEntry.objects.get(appointment=appointment, field="availability_override").reason == "Override: Works weekdays"
    assert "Initial assessment Sat 07 Mar 2026 10:00" in _messages(booked)


def test_christmas_day_typed_by_hand_is_refused_naming_the_holiday(frozen, admin_client, referral, pwp):
    refused = _typed(admin_client, referral, pwp, "2026-12-25", "10:00")
    assert refused.status_code == 400 and "bank holiday (Christmas Day)" in refused.content.decode()
    assert not Appointment.objects.exists()


def test_a_time_typed_on_the_rearrange_page_goes_through_the_same_check(frozen, admin_client, referral, pwp, admin_user):
    give_pattern(pwp)
    appointment = book(referral, pwp, london(2026, 3, 4, 10), actor=admin_user)
    url = reverse("booking:rearrange", args=[appointment.pk])
    page = admin_client.get(url).content.decode()
    # The page's own button for a typed time, inside the form that posts back to this page.
    assert '<button type="submit" name="typed" value="1">Move to this time</button>' in page
    assert f'<form method="post" action="{url}"' in page and 'id="id_override_reason"' in page
    typed = {"asked_by": "patient", "typed": "1", "practitioner": pwp.pk, "day": "2026-03-07", "at": "11:00"}
    before = _state()
    refused = admin_client.post(url, typed)
    assert refused.status_code == 400 and "not a working day (Saturday)" in refused.content.decode()
    assert _state() == before
    same = admin_client.post(url, {**typed, "day": "2026-03-04", "at": "10:00"})
    assert same.status_code == 400 and "That is the time it already has" in same.content.decode()
    assert _state() == before
    moved = admin_client.post(url, {**typed, "override": "on", "override_reason": "Patient works all week"})
    assert moved.status_code == 302 and moved["Location"] == reverse("caseload:referral_detail", args=[referral.pk])
    replacement = Appointment.objects.not_cancelled().get(referral=referral)
    assert replacement.start == london(2026, 3, 7, 11)
    assert AuditEntry.objects.get(appointment=replacement, field="availability_override").reason == "Override: Patient works all week"
    assert "now Initial assessment Sat 07 Mar 2026 11:00" in _messages(moved)


def test_the_course_page_says_what_is_already_booked_and_books_only_the_rest(assessed, client, admin_user, pwp):
    client.force_login(admin_user)
    book(assessed, pwp, london(2026, 7, 1, 10), actor=admin_user, kind="review")
    book(assessed, pwp, london(2026, 10, 1, 10), actor=admin_user, kind="review")
    book(assessed, pwp, london(2026, 3, 3, 10), actor=admin_user, kind="treatment")
    url = reverse("booking:course", args=[assessed.pk]) + f"?practitioner={pwp.pk}&start={london(2026, 3, 10, 10).isoformat()}"
    page = client.get(url.replace("+", "%2B")).content.decode()
    assert "Already booked or held: 1 of 7 treatment sessions and 2 reviews. This plan books only the rest." in page
    assert "Book all 6 sessions" in page and "<td>Review</td>" not in page
    expected = re.findall(r'name="expected" value="([^"]+)"', page)
    response = client.post(reverse("booking:course", args=[assessed.pk]), {
        "practitioner": pwp.pk, "start": london(2026, 3, 10, 10).isoformat(), "reviews": "1", "expected": expected,
    })
    assert response.status_code == 302 and response["Location"] == reverse("caseload:referral_detail", args=[assessed.pk])
    assert "Booked 6 sessions" in _messages(response)
    assert Appointment.objects.filter(referral=assessed, appointment_type="review").count() == 2
    assert Appointment.objects.filter(referral=assessed, appointment_type="treatment").count() == 7


# --- Course length and session length come from Booking settings elsewhere too ------------------


def test_the_call_lists_session_label_counts_the_course_from_the_booking_settings(frozen, referral, pwp, admin_user):
    from scheduling.calls.selectors import booked_calls

    settings = BookingSettings.current()
    settings.course_treatment_sessions = 5
    settings.save()
    book(referral, pwp, NOW + dt.timedelta(hours=1), actor=admin_user, kind="treatment", session_number=3)
    [row] = booked_calls(practitioner=pwp, day=NOW.date(), viewer=pwp)
    assert row.session_label == "Session 3 of 6"  # the assessment and five treatment sessions


def test_the_reports_equivalent_sessions_lost_divide_by_the_set_treatment_length(referral, pwp, admin_user):
    from scheduling.reports.selectors import ReportParams, build_report

    with time_machine.travel(london(2026, 3, 3, 8), tick=False):
        appointment = book(referral, pwp, london(2026, 3, 3, 10), actor=admin_user)  # 60 minutes
    with time_machine.travel(london(2026, 3, 3, 11), tick=False):
        record_appointment_outcome(appointment=appointment, outcome="3", actor=pwp)  # did not attend
    settings = BookingSettings.current()
    settings.treatment_minutes = 30
    settings.save()
    with time_machine.travel(london(2026, 3, 10, 9), tick=False):
        report = build_report(ReportParams(date_from=dt.date(2026, 3, 2), date_to=dt.date(2026, 3, 8)))
    assert report["lost_minutes"]["dna"] == 60
    assert report["equivalent_sessions_lost"] == round(report["lost_minutes"]["total"] / 30, 1)
