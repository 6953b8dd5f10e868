"""The call list's outcome buttons, the contact policy end to end, undo and the discharge suggestion."""

from datetime import timedelta

import pytest
import time_machine
from django.core.exceptions import ValidationError
from django.utils import timezone

from scheduling.booking.services import book_appointment
from scheduling.calls.models import (
    CallOutcomeEffect,
    ContactAttempt,
    ContactAttemptUndo,
    ContactPolicy,
    OptInInvitation,
)
from scheduling.calls.selectors import booked_calls, people_to_reach, referrals_suggested_for_discharge
from scheduling.calls.services import CallButton, record_call_outcome, undo_call_outcome
from scheduling.calls.signals import opt_in_invitation_due
from scheduling.audit import AuditEntry
from scheduling.caseload.models import PractitionerProfile, Referral
from scheduling.worklist.models import AdminTask
from scheduling.worklist.services import raise_admin_task
from scheduling.codes import AttendanceOutcome as O
from tests.factories import london, make_patient, make_referral

S = Referral.Status
Outcome = ContactAttempt.Outcome
pytestmark = pytest.mark.django_db

# Tuesday 10 March 2026, 10:00 in London (GMT).
NOW = london(2026, 3, 10, 10, 0)


def book(referral, pwp, actor, start, kind="assessment", **kw):
    return book_appointment(referral=referral, practitioner=pwp, appointment_type=kind, start=start, actor=actor, **kw)


@pytest.fixture
def assessment(frozen, referral, pwp, admin_user):
    return book(referral, pwp, admin_user, NOW)


def click(referral, button, actor, **kw):
    return record_call_outcome(referral=referral, button=button, actor=actor, **kw)


# --- every button on a booked session --------------------------------------------------------


def test_spoke_session_held_marks_the_appointment_attended_and_the_referral_assessed(assessment, referral, pwp):
    attempt = click(referral, CallButton.SPOKE, pwp, appointment=assessment)
    assessment.refresh_from_db()
    referral.refresh_from_db()
    assert (attempt.outcome, attempt.practitioner, attempt.recorded_by, attempt.attempted_at) == (
        Outcome.ANSWERED,
        pwp,
        pwp,
        NOW,
    )
    assert assessment.outcome == O.ATTENDED
    assert referral.status == S.ASSESSED
    assert AuditEntry.objects.filter(appointment=assessment, field="outcome", new_value="5", actor=pwp).exists()


def test_one_no_answer_at_the_session_is_not_yet_a_did_not_attend(assessment, referral, pwp):
    click(referral, CallButton.NO_ANSWER, pwp, appointment=assessment)
    assessment.refresh_from_db()
    assert assessment.outcome == O.NOT_APPLICABLE
    assert ContactAttempt.objects.filter(appointment=assessment, outcome=Outcome.NO_ANSWER).count() == 1


def test_no_answer_after_the_practitioners_configured_tries_marks_did_not_attend(assessment, referral, pwp, frozen):
    PractitionerProfile.objects.filter(user=pwp).update(tries_before_dna=3)
    click(referral, CallButton.NO_ANSWER, pwp, appointment=assessment)
    frozen.shift(timedelta(minutes=5))
    click(referral, CallButton.VOICEMAIL, pwp, appointment=assessment)
    assessment.refresh_from_db()
    assert assessment.outcome == O.NOT_APPLICABLE
    frozen.shift(timedelta(minutes=5))
    click(referral, CallButton.ENGAGED, pwp, appointment=assessment)
    assessment.refresh_from_db()
    referral.refresh_from_db()
    assert assessment.outcome == O.DID_NOT_ATTEND
    # A missed assessment must be rebooked: the foundation steps the referral back to contacted.
    assert referral.status == S.CONTACTED


def test_no_answer_well_before_the_session_never_counts_towards_a_did_not_attend(frozen, referral, pwp, admin_user):
    appt = book(referral, pwp, admin_user, NOW + timedelta(hours=3))
    for _ in range(3):
        click(referral, CallButton.NO_ANSWER, pwp, appointment=appt)
        frozen.shift(timedelta(minutes=3))  # separate calls, not one click sent again
    appt.refresh_from_db()
    assert appt.outcome == O.NOT_APPLICABLE
    assert ContactAttempt.objects.filter(appointment=appt).count() == 3


def test_wrong_number_raises_a_task_for_admin_to_fix_the_number(assessment, referral, pwp):
    attempt = click(referral, CallButton.WRONG_NUMBER, pwp, appointment=assessment)
    task = AdminTask.objects.get()
    assert attempt.outcome == Outcome.WRONG_NUMBER
    assert (task.kind, task.source, task.appointment, task.referral, task.raised_by) == (
        AdminTask.Kind.WRONG_NUMBER,
        AdminTask.Source.CALL_LIST,
        assessment,
        referral,
        pwp,
    )
    assessment.refresh_from_db()
    assert assessment.outcome == O.NOT_APPLICABLE


def test_patient_wants_to_rearrange_hands_it_to_admin_and_shows_on_the_row(assessment, referral, pwp):
    click(referral, CallButton.REARRANGE, pwp, appointment=assessment)
    task = AdminTask.objects.get()
    assert (task.kind, task.source, task.appointment) == (
        AdminTask.Kind.REARRANGE_REQUEST,
        AdminTask.Source.CALL_LIST,
        assessment,
    )
    assessment.refresh_from_db()
    assert assessment.outcome == O.NOT_APPLICABLE
    [row] = booked_calls(practitioner=pwp, day=NOW.date(), viewer=pwp)
    assert row.rearrange_requested is True


def test_rearranging_needs_a_booked_appointment(frozen, referral, pwp):
    with pytest.raises(ValidationError, match="booked appointment"):
        click(referral, CallButton.REARRANGE, pwp)
    assert not ContactAttempt.objects.exists()


def test_call_back_requested_needs_a_time_and_records_it(assessment, referral, pwp):
    with pytest.raises(ValidationError, match="called back"):
        click(referral, CallButton.CALLBACK, pwp, appointment=assessment)
    attempt = click(referral, CallButton.CALLBACK, pwp, appointment=assessment, callback_at=NOW + timedelta(minutes=20))
    assert (attempt.outcome, attempt.callback_at) == (Outcome.CALLBACK_REQUESTED, NOW + timedelta(minutes=20))


def test_patient_declined_is_recorded_without_touching_the_appointment(assessment, referral, pwp):
    attempt = click(referral, CallButton.DECLINED, pwp, appointment=assessment)
    assessment.refresh_from_db()
    assert attempt.outcome == Outcome.DECLINED
    assert assessment.outcome == O.NOT_APPLICABLE


def test_a_session_cannot_be_recorded_as_held_before_it_starts(frozen, referral, pwp, admin_user):
    appt = book(referral, pwp, admin_user, NOW + timedelta(hours=2))
    with pytest.raises(ValidationError, match="before it starts"):
        click(referral, CallButton.SPOKE, pwp, appointment=appt)
    assert not ContactAttempt.objects.exists()


def test_the_row_shows_confirmation_by_sms_and_counts_attempts(assessment, referral, pwp, frozen):
    type(assessment).objects.filter(pk=assessment.pk).update(confirmed_at=NOW - timedelta(days=1))
    click(referral, CallButton.NO_ANSWER, pwp)  # a to-reach attempt earlier counts for the referral only
    click(referral, CallButton.NO_ANSWER, pwp, appointment=assessment)
    [row] = booked_calls(practitioner=pwp, day=NOW.date(), viewer=pwp)
    assert row.confirmed_by_sms and not row.rearrange_requested
    assert (row.attempts_for_appointment, row.attempts_for_referral, row.unanswered_tries, row.tries_before_dna) == (
        1,
        2,
        1,
        2,
    )
    assert row.session_label == "Initial assessment"
    assert row.state == "now"


# --- the to-reach rows -----------------------------------------------------------------------


def test_spoke_on_a_to_reach_row_moves_the_referral_to_contacted(frozen, referral, pwp):
    click(referral, CallButton.SPOKE, pwp)
    referral.refresh_from_db()
    assert referral.status == S.CONTACTED
    # The one who got through keeps the row (undo, "book the assessment") while undo is possible.
    [row] = people_to_reach(practitioner=pwp, viewer=pwp)
    assert row.spoken_to and row.offers_booking and row.next_step == "Book the initial assessment."
    assert row.undo is not None
    frozen.shift(timedelta(minutes=6))
    assert people_to_reach(practitioner=pwp, viewer=pwp) == []


@pytest.mark.parametrize(
    "button", [CallButton.NO_ANSWER, CallButton.VOICEMAIL, CallButton.ENGAGED, CallButton.WRONG_NUMBER]
)
def test_a_failed_first_contact_attempt_keeps_the_referral_awaiting_contact(frozen, referral, pwp, button):
    click(referral, button, pwp)
    referral.refresh_from_db()
    assert referral.status == S.AWAITING_CONTACT
    [row] = people_to_reach(practitioner=pwp, viewer=pwp)
    assert row.failed_attempts == 1


def test_declined_on_a_to_reach_row_counts_as_contact(frozen, referral, pwp):
    click(referral, CallButton.DECLINED, pwp)
    referral.refresh_from_db()
    assert referral.status == S.CONTACTED


def test_people_to_reach_are_ordered_by_when_the_next_attempt_is_due(frozen, pwp, admin_user):
    tried = make_referral(pwp, actor=admin_user, received_on=NOW.date() - timedelta(days=20))
    fresh = make_referral(pwp, actor=admin_user, received_on=NOW.date() - timedelta(days=2))
    older = make_referral(pwp, actor=admin_user, received_on=NOW.date() - timedelta(days=9))
    click(tried, CallButton.NO_ANSWER, pwp)  # tried this morning: next due tomorrow
    rows = people_to_reach(practitioner=pwp, viewer=pwp)
    assert [r.referral for r in rows] == [older, fresh, tried]
    assert rows[2].due_at.date() == NOW.date() + timedelta(days=1)
    assert rows[2].suggested_part in ("afternoon", "evening")


def test_the_suggestion_avoids_failed_times_of_day_and_respects_preferred_windows(frozen, pwp, admin_user):
    patient = make_patient(preferred_days=[3, 4], preferred_times=["morning", "evening"])  # Thu, Fri
    referral = make_referral(pwp, patient=patient, actor=admin_user)
    click(referral, CallButton.NO_ANSWER, pwp)  # Tuesday morning failed
    [row] = people_to_reach(practitioner=pwp, viewer=pwp)
    local = timezone.localtime(row.due_at)
    assert (local.date().isoformat(), local.hour, row.suggested_part) == ("2026-03-12", 17, "evening")


def test_a_call_back_request_is_due_at_the_time_asked_for(frozen, pwp, admin_user):
    referral = make_referral(pwp, actor=admin_user)
    click(referral, CallButton.CALLBACK, pwp, callback_at=NOW + timedelta(hours=5))
    [row] = people_to_reach(practitioner=pwp, viewer=pwp)
    assert row.due_at == NOW + timedelta(hours=5)
    assert "Call back requested for Tue 10 Mar 15:00" in row.reason


# --- the contact policy, end to end ----------------------------------------------------------


def _policy_sequence(referral, pwp, *, received):
    """Three failed attempts on different days and times of day, as the policy suggests them."""
    times = []
    with time_machine.travel(london(2026, 3, 10, 9, 30), tick=False):  # Tue morning
        [row] = people_to_reach(practitioner=pwp, viewer=pwp)
        assert row.failed_attempts == 0 and "Attempt 1 of 3" in row.next_step
        click(referral, CallButton.NO_ANSWER, pwp)
        [row] = people_to_reach(practitioner=pwp, viewer=pwp)
        times.append(row.due_at)
    with time_machine.travel(row.due_at, tick=False):  # Wed afternoon (suggested)
        click(referral, CallButton.VOICEMAIL, pwp)
        [row] = people_to_reach(practitioner=pwp, viewer=pwp)
        times.append(row.due_at)
    with time_machine.travel(row.due_at, tick=False):  # Thu early evening (suggested)
        click(referral, CallButton.NO_ANSWER, pwp)
    return times


def test_three_failed_attempts_on_different_days_and_times_make_an_opt_in_invitation_due(pwp, admin_user):
    with time_machine.travel(london(2026, 3, 9, 12, 0), tick=False):
        referral = make_referral(pwp, actor=admin_user)
    sent = []

    def receiver(sender, referral, actor, **kw):
        sent.append((sender, referral.pk, actor, OptInInvitation.objects.filter(referral=referral).exists()))

    opt_in_invitation_due.connect(receiver)
    try:
        times = _policy_sequence(referral, pwp, received=referral.received_on)
    finally:
        opt_in_invitation_due.disconnect(receiver)
    local = [timezone.localtime(t) for t in times]
    assert [(t.date().isoformat(), t.hour) for t in local] == [("2026-03-11", 12), ("2026-03-12", 17)]
    attempts = ContactAttempt.objects.filter(referral=referral).order_by("attempted_at")
    assert len({a.attempted_at.date() for a in attempts}) == 3
    assert len({timezone.localtime(a.attempted_at).hour // 4 for a in attempts}) == 3
    invitation = OptInInvitation.objects.get(referral=referral)
    assert invitation.attempt == attempts.last()
    assert invitation.deadline.isoformat() == "2026-03-26"  # 14 days after Thursday 12 March
    assert invitation.sms_possible is True and invitation.recorded_by == pwp
    assert sent == [(Referral, referral.pk, pwp, True)]  # sent once, inside the transaction that recorded it
    assert AuditEntry.objects.filter(referral=referral, field="opt_in_invitation", new_value="due").exists()


def test_without_sms_consent_the_invitation_is_still_recorded_and_the_row_says_no_sms(pwp, admin_user):
    with time_machine.travel(london(2026, 3, 9, 12, 0), tick=False):
        patient = make_patient(sms_consent=False)
        referral = make_referral(pwp, patient=patient, actor=admin_user)
    sent = []
    receiver = lambda sender, referral, actor, **kw: sent.append(referral.patient.can_receive_sms)  # noqa: E731
    opt_in_invitation_due.connect(receiver)
    try:
        _policy_sequence(referral, pwp, received=referral.received_on)
    finally:
        opt_in_invitation_due.disconnect(receiver)
    invitation = OptInInvitation.objects.get(referral=referral)
    assert invitation.sms_possible is False
    assert sent == [False]  # the signal still goes: the reminders receiver decides (and sends nothing)
    with time_machine.travel(london(2026, 3, 13, 9, 0), tick=False):
        [row] = people_to_reach(practitioner=pwp, viewer=pwp)
    assert row.invitation == invitation and row.sms_possible is False
    assert "no SMS can be sent" in row.reason


def test_after_fourteen_days_without_contact_discharge_is_suggested_with_code_50(pwp, admin_user):
    with time_machine.travel(london(2026, 3, 9, 12, 0), tick=False):
        referral = make_referral(pwp, actor=admin_user)
    _policy_sequence(referral, pwp, received=referral.received_on)
    with time_machine.travel(london(2026, 3, 26, 17, 0), tick=False):  # the deadline day itself
        assert referrals_suggested_for_discharge() == []
        [row] = people_to_reach(practitioner=pwp, viewer=pwp)
        assert not row.suggest_discharge and "get in touch by" in row.next_step
    with time_machine.travel(london(2026, 3, 27, 9, 0), tick=False):
        [suggested] = referrals_suggested_for_discharge()
        [row] = people_to_reach(practitioner=pwp, viewer=pwp)
    assert suggested == referral
    assert (suggested.suggested_end_code, suggested.discharge_reason) == ("50", "Unable to contact")
    assert row.suggest_discharge and row.suggested_end_code == "50"
    assert "unable to contact (NHS end code 50)" in row.next_step


def test_contact_after_the_invitation_cancels_the_discharge_suggestion(pwp, admin_user):
    with time_machine.travel(london(2026, 3, 9, 12, 0), tick=False):
        referral = make_referral(pwp, actor=admin_user)
    _policy_sequence(referral, pwp, received=referral.received_on)
    with time_machine.travel(london(2026, 3, 20, 11, 0), tick=False):
        click(referral, CallButton.CALLBACK, pwp, callback_at=london(2026, 3, 20, 15, 0))
    with time_machine.travel(london(2026, 3, 30, 9, 0), tick=False):
        assert referrals_suggested_for_discharge() == []


def test_discharge_suggestion_uses_code_16_when_the_assessment_was_started(pwp, admin_user):
    with time_machine.travel(london(2026, 3, 2, 9, 0), tick=False):
        referral = make_referral(pwp, actor=admin_user)
        appt = book(referral, pwp, admin_user, london(2026, 3, 2, 9, 0))
        from scheduling.booking.services import record_appointment_outcome

        record_appointment_outcome(appointment=appt, outcome=O.LATE_NOT_SEEN, actor=pwp)  # started, not completed
    referral.refresh_from_db()
    assert referral.status == S.CONTACTED
    _policy_sequence(referral, pwp, received=referral.received_on)
    with time_machine.travel(london(2026, 3, 27, 9, 0), tick=False):
        [suggested] = referrals_suggested_for_discharge()
    assert suggested.suggested_end_code == "16"


def test_the_policy_is_read_from_the_database_and_a_manager_can_change_it(frozen, referral, pwp):
    policy = ContactPolicy.current()
    assert (policy.max_attempts, policy.min_working_days_between, policy.opt_in_days, policy.undo_minutes) == (
        3,
        1,
        14,
        5,
    )
    policy.max_attempts = 1
    policy.opt_in_days = 7
    policy.save()
    click(referral, CallButton.NO_ANSWER, pwp)
    invitation = OptInInvitation.objects.get(referral=referral)
    assert invitation.deadline == NOW.date() + timedelta(days=7)


def test_the_next_attempt_skips_weekends_and_bank_holidays(pwp, admin_user):
    # Thursday 2 April 2026: Good Friday (3rd) and the weekend follow; next working day is Tuesday 7th after Easter Monday.
    with time_machine.travel(london(2026, 4, 2, 10, 0), tick=False):
        referral = make_referral(pwp, actor=admin_user)
        click(referral, CallButton.NO_ANSWER, pwp)
        [row] = people_to_reach(practitioner=pwp, viewer=pwp)
    assert timezone.localdate(row.due_at).isoformat() == "2026-04-07"


@pytest.mark.parametrize(
    "moment, expected",
    [
        # Last Sunday of March 2026 (29th): clocks go forward. A Friday 27th morning failure -> Monday 30th in BST.
        (london(2026, 3, 27, 9, 0), ("2026-03-30", 12, "+0100")),
        # Last Sunday of October 2026 (25th): clocks go back. Friday 23rd -> Monday 26th in GMT.
        (london(2026, 10, 23, 9, 0), ("2026-10-26", 12, "+0000")),
    ],
)
def test_suggested_times_are_local_across_the_clock_changes(pwp, admin_user, moment, expected):
    with time_machine.travel(moment, tick=False):
        referral = make_referral(pwp, actor=admin_user)
        click(referral, CallButton.NO_ANSWER, pwp)
        [row] = people_to_reach(practitioner=pwp, viewer=pwp)
    local = timezone.localtime(row.due_at)
    assert (local.date().isoformat(), local.hour, local.strftime("%z")) == expected


# --- undo -------------------------------------------------------------------------------------


def test_undo_of_spoke_session_held_puts_outcome_and_status_back_with_audited_changes(
    assessment, referral, pwp, frozen
):
    attempt = click(referral, CallButton.SPOKE, pwp, appointment=assessment)
    frozen.shift(timedelta(minutes=2))
    undo = undo_call_outcome(attempt=attempt, actor=pwp)
    assessment.refresh_from_db()
    referral.refresh_from_db()
    assert undo.undone_by == pwp and ContactAttempt.objects.filter(pk=attempt.pk, outcome=Outcome.ANSWERED).exists()
    assert assessment.outcome == O.NOT_APPLICABLE
    assert referral.status == S.ASSESSMENT_BOOKED
    assert AuditEntry.objects.filter(appointment=assessment, field="outcome", old_value="5", new_value="0").exists()
    assert AuditEntry.objects.filter(
        referral=referral,
        field="status",
        old_value=S.ASSESSED,
        new_value=S.ASSESSMENT_BOOKED,
        reason__startswith="Undo",
    ).exists()
    assert ContactAttempt.objects.effective().count() == 0


def test_undo_of_a_did_not_attend_restores_the_booking(assessment, referral, pwp, frozen):
    click(referral, CallButton.NO_ANSWER, pwp, appointment=assessment)
    frozen.shift(timedelta(minutes=3))
    second = click(referral, CallButton.NO_ANSWER, pwp, appointment=assessment)
    assessment.refresh_from_db()
    assert assessment.outcome == O.DID_NOT_ATTEND
    undo_call_outcome(attempt=second, actor=pwp)
    assessment.refresh_from_db()
    referral.refresh_from_db()
    assert (assessment.outcome, referral.status) == (O.NOT_APPLICABLE, S.ASSESSMENT_BOOKED)


def test_undo_of_spoke_on_a_to_reach_row_puts_the_referral_back_to_awaiting_contact(frozen, referral, pwp):
    attempt = click(referral, CallButton.SPOKE, pwp)
    undo_call_outcome(attempt=attempt, actor=pwp)
    referral.refresh_from_db()
    assert referral.status == S.AWAITING_CONTACT
    [row] = people_to_reach(practitioner=pwp, viewer=pwp)
    assert row.failed_attempts == 0 and row.attempts_for_referral == 0


def test_undo_withdraws_the_admin_task_and_the_opt_in_invitation(frozen, referral, pwp):
    policy = ContactPolicy.current()
    policy.max_attempts = 1
    policy.save()
    attempt = click(referral, CallButton.WRONG_NUMBER, pwp)
    assert OptInInvitation.objects.active().count() == 1
    undo_call_outcome(attempt=attempt, actor=pwp)
    task = AdminTask.objects.get()
    assert task.resolved_by == pwp and "undone" in task.resolution
    invitation = OptInInvitation.objects.get()
    assert (invitation.withdrawn_by, invitation.withdrawn_at) == (pwp, NOW)
    assert AuditEntry.objects.filter(referral=referral, field="opt_in_invitation", new_value="withdrawn").exists()


def test_only_the_person_who_clicked_can_undo(frozen, referral, pwp, manager):
    attempt = click(referral, CallButton.NO_ANSWER, pwp)
    with pytest.raises(ValidationError, match="Only the person"):
        undo_call_outcome(attempt=attempt, actor=manager)
    assert not ContactAttemptUndo.objects.exists()


def test_undo_is_refused_after_the_window(frozen, referral, pwp):
    attempt = click(referral, CallButton.NO_ANSWER, pwp)
    frozen.shift(timedelta(minutes=5, seconds=1))
    with pytest.raises(ValidationError, match="within 5 minutes"):
        undo_call_outcome(attempt=attempt, actor=pwp)
    assert not ContactAttemptUndo.objects.exists()


def test_undo_is_refused_for_an_earlier_attempt_and_undoing_twice_changes_nothing(frozen, referral, pwp, manager):
    first = click(referral, CallButton.NO_ANSWER, pwp)
    frozen.shift(timedelta(minutes=1))
    second = click(referral, CallButton.ENGAGED, pwp)
    with pytest.raises(ValidationError, match="later call"):
        undo_call_outcome(attempt=first, actor=pwp)
    undo = undo_call_outcome(attempt=second, actor=pwp)
    frozen.shift(timedelta(minutes=1))
    assert undo_call_outcome(attempt=second, actor=pwp) == undo  # the same undo sent again: a no-op
    with pytest.raises(ValidationError, match="already been undone"):
        undo_call_outcome(attempt=second, actor=manager)
    assert ContactAttemptUndo.objects.count() == 1


def test_every_click_records_what_it_changed(assessment, referral, pwp):
    attempt = click(referral, CallButton.SPOKE, pwp, appointment=assessment)
    effect = CallOutcomeEffect.objects.get(attempt=attempt)
    assert (effect.button, effect.appointment_outcome_before, effect.appointment_outcome_after) == ("spoke", "0", "5")
    assert (effect.referral_status_before, effect.referral_status_after) == (S.ASSESSMENT_BOOKED, S.ASSESSED)


def test_a_rearrange_request_resolved_by_admin_no_longer_shows(assessment, referral, pwp, admin_user):
    task = raise_admin_task(kind=AdminTask.Kind.REARRANGE_REQUEST, source=AdminTask.Source.SMS, appointment=assessment)
    [row] = booked_calls(practitioner=pwp, day=NOW.date(), viewer=pwp)
    assert row.rearrange_requested
    from scheduling.worklist.services import resolve_admin_task

    resolve_admin_task(task=task, actor=admin_user)
    [row] = booked_calls(practitioner=pwp, day=NOW.date(), viewer=pwp)
    assert not row.rearrange_requested


# --- the booked list by local day, session labels, the policy in Django admin -------------------


@pytest.mark.parametrize(
    "day, inside, outside",
    [
        # Sunday 29 March 2026: the day is 23 hours long (clocks go forward at 01:00 GMT).
        ("2026-03-29", london(2026, 3, 29, 23, 30), london(2026, 3, 30, 0, 30)),
        # Sunday 25 October 2026: the day is 25 hours long (clocks go back at 02:00 BST).
        ("2026-10-25", london(2026, 10, 25, 23, 15), london(2026, 10, 26, 0, 15)),
    ],
)
def test_booked_calls_belong_to_their_local_day_across_clock_changes(pwp, admin_user, day, inside, outside):
    from datetime import date

    with time_machine.travel(london(2026, 3, 1, 9, 0), tick=False):
        first = make_referral(pwp, actor=admin_user)
        second = make_referral(pwp, actor=admin_user)
        early = book(first, pwp, admin_user, london(*map(int, day.split("-")), 0, 30))
        late = book(second, pwp, admin_user, inside)
        book(make_referral(pwp, actor=admin_user), pwp, admin_user, outside)
    rows = booked_calls(practitioner=pwp, day=date.fromisoformat(day), viewer=pwp, now=london(2026, 3, 1, 9, 0))
    assert [r.appointment for r in rows] == [early, late]


def test_treatment_sessions_are_labelled_with_their_place_in_the_course(frozen, referral, pwp, admin_user):
    book(referral, pwp, admin_user, NOW + timedelta(hours=1), kind="treatment", session_number=3)
    [row] = booked_calls(practitioner=pwp, day=NOW.date(), viewer=pwp)
    assert row.session_label == "Session 3 of 8"
    assert row.state == "upcoming" and row.age == 55


def test_a_manager_edits_the_contact_policy_in_django_admin(frozen, client, manager):
    client.force_login(manager)
    assert client.get("/admin/scheduling/contactpolicy/").status_code == 200
    assert ContactPolicy.objects.count() == 1
    response = client.post(
        "/admin/scheduling/contactpolicy/1/change/",
        {
            "max_attempts": 2,
            "min_working_days_between": 2,
            "vary_time_of_day": "on",
            "opt_in_days": 10,
            "undo_minutes": 3,
        },
    )
    assert response.status_code == 302
    policy = ContactPolicy.current()
    assert (policy.max_attempts, policy.min_working_days_between, policy.opt_in_days, policy.undo_minutes) == (
        2,
        2,
        10,
        3,
    )


def test_a_pwp_cannot_change_the_contact_policy(frozen, client, pwp):
    client.force_login(pwp)
    assert client.get("/admin/scheduling/contactpolicy/").status_code == 302  # not staff: sent to the admin login


def test_declined_referrals_are_suggested_for_discharge_only_when_asked_for(frozen, pwp, admin_user):
    before = make_referral(pwp, actor=admin_user)
    click(before, CallButton.DECLINED, pwp)
    treated = make_referral(pwp, actor=admin_user)
    click(treated, CallButton.SPOKE, pwp)
    assert referrals_suggested_for_discharge() == []
    [suggested] = referrals_suggested_for_discharge(include_declined=True)
    assert suggested == before
    assert (suggested.discharge_reason, suggested.suggested_end_code, suggested.opt_in_invitation) == (
        "Declined",
        "50",
        None,
    )


def test_attempts_logged_outside_the_call_list_can_still_make_the_invitation_due(frozen, referral, pwp):
    from scheduling.calls.services import invite_to_opt_in, log_contact_attempt

    for hours in (50, 26, 2):
        log_contact_attempt(
            referral=referral, practitioner=pwp, outcome="no_answer", attempted_at=NOW - timedelta(hours=hours)
        )
    [row] = people_to_reach(practitioner=pwp, viewer=pwp)
    assert row.invitation_needed and "Record the opt-in invitation" in row.next_step
    sent = []
    receiver = lambda sender, referral, actor, **kw: sent.append(referral.pk)  # noqa: E731
    opt_in_invitation_due.connect(receiver)
    try:
        invitation = invite_to_opt_in(referral=referral, actor=pwp)
        assert invite_to_opt_in(referral=referral, actor=pwp) == invitation  # sent twice: one invitation
        frozen.shift(timedelta(minutes=3))
        with pytest.raises(ValidationError, match="already due"):
            invite_to_opt_in(referral=referral, actor=pwp)
    finally:
        opt_in_invitation_due.disconnect(receiver)
    assert sent == [referral.pk]
    assert (invitation.attempt, invitation.deadline) == (None, NOW.date() + timedelta(days=14))
    [row] = people_to_reach(practitioner=pwp, viewer=pwp)
    assert row.invitation == invitation and not row.invitation_needed


def test_the_invitation_cannot_be_recorded_before_the_attempts_are_used_up(frozen, referral, pwp):
    from scheduling.calls.services import invite_to_opt_in

    click(referral, CallButton.NO_ANSWER, pwp)
    with pytest.raises(ValidationError, match="Only 1 of the policy's 3"):
        invite_to_opt_in(referral=referral, actor=pwp)
    assert not OptInInvitation.objects.exists()
