"""Issue 13, the PWP's call from start to finish: call-backs on the day's timed calls, numbers marked wrong,
the opt-in invitation's count and words, a decline on the admin worklist, the result shown at the row
without JavaScript, words that match the row, a clinical note with the call, and a calmer row."""

import re
from datetime import timedelta

import pytest
from django.urls import reverse

from scheduling.booking.services import book_appointment
from scheduling.calls.models import ContactAttempt, ContactPolicy, OptInInvitation, WrongNumberMark
from scheduling.calls.selectors import call_list, callbacks_on, people_to_reach, referrals_suggested_for_discharge
from scheduling.calls.services import (
    CallButton,
    log_contact_attempt,
    mark_opt_in_invitation_sent,
    record_call_outcome,
    undo_call_outcome,
)
from scheduling.caseload.models import ClinicalNote, Patient, Referral
from scheduling.caseload.phones import display_phone
from scheduling.reminders.models import OutboundMessage
from scheduling.reminders.rules import WRONG_NUMBER_REASON
from tests.factories import london, make_referral

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("frozen")]
S = OutboundMessage.Status
# Tuesday 10 March 2026, 10:00 in London (GMT).
NOW = london(2026, 3, 10, 10, 0)
URL = reverse("calls:today")


def click(referral, button, actor, **kw):
    return record_call_outcome(referral=referral, button=button, actor=actor, **kw)


def book(referral, pwp, actor, start, kind="assessment"):
    return book_appointment(referral=referral, practitioner=pwp, appointment_type=kind, start=start, actor=actor)


def row_html(html: str, row_id: str) -> str:
    """The markup of one row of the list (its <li>), to check that something is shown *there*."""
    match = re.search(rf'<li id="{row_id}".*?</li>', html, re.S)
    assert match, f"no row {row_id}"
    return match.group(0)


def fail_policy_attempts_outside_the_list(referral, pwp, n=3):
    """Failed attempts logged outside the call list (imported, or before the policy applied): no invitation."""
    for k in range(n):
        log_contact_attempt(referral=referral, practitioner=pwp, outcome="no_answer", attempted_at=NOW - timedelta(days=6 - 2 * k))


# --- 3. a requested call-back time is kept: on that day's timed calls, on the row, on the record ------------


def test_a_call_back_puts_the_person_on_that_days_timed_calls_at_that_time_labelled_call_back(
    client, pwp, referral, admin_user
):
    early = book(make_referral(pwp, actor=admin_user), pwp, admin_user, london(2026, 3, 10, 11))
    late = book(make_referral(pwp, actor=admin_user), pwp, admin_user, london(2026, 3, 10, 19))
    request = click(referral, CallButton.CALLBACK, pwp, callback_at=london(2026, 3, 10, 18))

    timed = call_list(practitioner=pwp, day=NOW.date(), viewer=pwp).timed
    assert [row.row_id for row in timed] == [f"appointment-{early.pk}", f"callback-{request.pk}", f"appointment-{late.pk}"]

    client.force_login(pwp)
    html = client.get(URL).content.decode()
    row = row_html(html, f"callback-{request.pk}")
    assert "18:00" in row and "Call back" in row and "Log the call to" in row
    assert html.index(f'id="appointment-{early.pk}"') < html.index(f'id="callback-{request.pk}"') < html.index(
        f'id="appointment-{late.pk}"'
    )
    assert "and call-backs (1)" in html


def test_a_call_back_on_another_day_is_on_that_days_list_and_said_on_todays_row(client, pwp, referral):
    request = click(referral, CallButton.CALLBACK, pwp, callback_at=london(2026, 3, 11, 18))
    client.force_login(pwp)
    today = client.get(URL).content.decode()
    assert f'id="callback-{request.pk}"' not in today
    reach = row_html(today, f"referral-{referral.pk}")
    assert "Call back requested for Wed 11 Mar 18:00" in reach
    # The "Next day" link lands on the list that has it.
    tomorrow = client.get(URL + "?date=2026-03-11")
    assert 'href="?date=2026-03-11' in today and tomorrow.status_code == 200
    assert "18:00" in row_html(tomorrow.content.decode(), f"callback-{request.pk}")


def test_todays_call_back_is_said_on_the_to_reach_row_which_leads_to_the_timed_row(client, pwp, referral):
    request = click(referral, CallButton.CALLBACK, pwp, callback_at=london(2026, 3, 10, 18))
    client.force_login(pwp)
    html = client.get(URL).content.decode()
    reach = row_html(html, f"referral-{referral.pk}")
    assert "Call back requested for Tue 10 Mar 18:00" in reach
    # One place to log the call: the timed row has the buttons, the to-reach row links to it.
    link = re.search(r'<a href="([^"]+)">Go to the call back</a>', reach).group(1).replace("&amp;", "&")
    assert "Log the call to" not in reach and link.endswith(f"#callback-{request.pk}")
    # Followed (also after htmx swapped only this row): the list that has the call-back row.
    landed = client.get(link.split("#")[0]).content.decode()
    assert "Log the call to" in row_html(landed, f"callback-{request.pk}")


def test_the_referral_page_says_when_a_call_back_was_requested(client, pwp, referral):
    click(referral, CallButton.CALLBACK, pwp, callback_at=london(2026, 3, 10, 18))
    client.force_login(pwp)
    html = client.get(reverse("caseload:referral_detail", args=[referral.pk])).content.decode()
    assert "Call back requested for Tue 10 Mar 18:00" in html


def test_a_call_back_request_restarts_the_policy_count_and_the_call_back_is_the_next_attempt(frozen, pwp, referral):
    click(referral, CallButton.NO_ANSWER, pwp)
    frozen.move_to(NOW + timedelta(days=1))
    click(referral, CallButton.NO_ANSWER, pwp)
    frozen.move_to(NOW + timedelta(days=1, hours=1))
    request = click(referral, CallButton.CALLBACK, pwp, callback_at=london(2026, 3, 11, 18))
    [row] = people_to_reach(practitioner=pwp, viewer=pwp)
    assert row.failed_attempts == 0 and row.due_at == london(2026, 3, 11, 18)
    frozen.move_to(london(2026, 3, 11, 18, 1))
    click(referral, CallButton.NO_ANSWER, pwp)
    [row] = people_to_reach(practitioner=pwp, viewer=pwp)
    assert row.failed_attempts == 1 and "1 of 3 attempts failed" in row.reason
    [callback] = callbacks_on(practitioner=pwp, day=london(2026, 3, 11).date(), viewer=pwp)
    assert callback.request.pk == request.pk and callback.state_label == "Done: No answer"


def test_logging_on_the_call_back_row_answers_with_that_row(client, frozen, pwp, referral):
    request = click(referral, CallButton.CALLBACK, pwp, callback_at=london(2026, 3, 10, 18))
    frozen.move_to(london(2026, 3, 10, 18, 2))
    client.force_login(pwp)
    data = {"referral": referral.pk, "callback": request.pk, "button": "spoke", "date": "2026-03-10"}
    html = client.post(reverse("calls:log"), data, HTTP_HX_REQUEST="true").content.decode()
    assert f'<li id="callback-{request.pk}"' in html
    assert "Recorded: Spoke to patient." in html and "Done: Spoke to patient" in html
    # Without JavaScript: back to the list at that row, the result shown in it.
    undo_id = ContactAttempt.objects.latest("id").pk
    response = client.post(reverse("calls:undo"), {"attempt": undo_id, "callback": request.pk, "date": "2026-03-10"})
    assert response.status_code == 302 and response.url.endswith(f"#callback-{request.pk}")
    page = client.get(response.url).content.decode()
    assert "Undone: Spoke to patient." in row_html(page, f"callback-{request.pk}")


def test_a_call_back_id_of_another_person_is_refused_and_nothing_is_recorded(client, pwp, referral, admin_user):
    other = make_referral(pwp, actor=admin_user)
    request = click(other, CallButton.CALLBACK, pwp, callback_at=london(2026, 3, 10, 18))
    client.force_login(pwp)
    before = ContactAttempt.objects.count()
    data = {"referral": referral.pk, "callback": request.pk, "button": "no_answer", "date": "2026-03-10"}
    response = client.post(reverse("calls:log"), data)
    assert response.status_code == 400 and "callback" in response.content.decode()
    assert ContactAttempt.objects.count() == before


# --- 4. a number marked wrong receives nothing until it is corrected ------------------------------------


def test_wrong_number_cancels_the_patients_pending_texts_with_the_reason(pwp, referral, admin_user):
    today = book(referral, pwp, admin_user, NOW)
    later = book(referral, pwp, admin_user, NOW + timedelta(days=7), kind="treatment")
    pending = list(OutboundMessage.objects.filter(appointment=later, status=S.SCHEDULED))
    assert pending
    click(referral, CallButton.WRONG_NUMBER, pwp, appointment=today)
    for message in pending:
        message.refresh_from_db()
        assert (message.status, message.status_reason) == (S.CANCELLED, WRONG_NUMBER_REASON)
    assert not OutboundMessage.objects.filter(patient=referral.patient, status=S.SCHEDULED).exists()


def test_after_wrong_number_on_used_up_attempts_no_invitation_text_is_queued(client, pwp, referral):
    fail_policy_attempts_outside_the_list(referral, pwp)
    click(referral, CallButton.WRONG_NUMBER, pwp)
    invitation = OptInInvitation.objects.get(referral=referral)
    assert not invitation.sms_possible and invitation.sms_to == ""
    message = OutboundMessage.objects.get(opt_in_invitation=invitation)
    assert (message.status, message.status_reason) == (S.SKIPPED, WRONG_NUMBER_REASON)
    client.force_login(pwp)
    row = row_html(client.get(URL).content.decode(), f"referral-{referral.pk}")
    assert "Number wrong: waiting for a new number." in row
    assert "no SMS can be sent (the number was marked wrong)" in row


def test_no_reminder_is_queued_to_a_wrong_number_until_the_number_is_changed(pwp, referral, admin_user):
    click(referral, CallButton.WRONG_NUMBER, pwp)
    first = book(referral, pwp, admin_user, NOW + timedelta(days=7))
    assert not OutboundMessage.objects.filter(appointment=first, status=S.SCHEDULED).exists()
    assert set(OutboundMessage.objects.filter(appointment=first).values_list("status_reason", flat=True)) == {
        WRONG_NUMBER_REASON
    }
    # Someone corrects the number: the mark no longer applies.
    Patient.objects.filter(pk=referral.patient_id).update(mobile_phone="+447700900999")
    second = book(referral, pwp, admin_user, NOW + timedelta(days=14), kind="treatment")
    assert OutboundMessage.objects.filter(appointment=second, status=S.SCHEDULED).exists()
    [row] = people_to_reach(practitioner=pwp, viewer=pwp, referral_ids=[referral.pk])
    assert not row.number_wrong


def test_undoing_wrong_number_ends_the_mark(pwp, referral):
    attempt = click(referral, CallButton.WRONG_NUMBER, pwp)
    assert WrongNumberMark.objects.in_force().filter(patient=referral.patient).exists()
    undo_call_outcome(attempt=attempt, actor=pwp)
    assert not WrongNumberMark.objects.in_force().filter(patient=referral.patient).exists()
    assert WrongNumberMark.objects.filter(attempt=attempt).exists()  # kept, never deleted


# --- 5. the policy sends the invitation; the row says when and to which number; the count stops at it -----


def test_an_invitation_made_by_a_later_failed_call_is_said_with_its_number_and_the_count_stops_at_the_policy(
    client, pwp, referral
):
    fail_policy_attempts_outside_the_list(referral, pwp)
    [row] = people_to_reach(practitioner=pwp, viewer=pwp)
    assert row.invitation_needed and "Another failed call records it too." in row.next_step
    click(referral, CallButton.NO_ANSWER, pwp)
    invitation = OptInInvitation.objects.get(referral=referral)
    number = display_phone(referral.patient.mobile_phone)
    assert invitation.sms_to == referral.patient.mobile_phone
    client.force_login(pwp)
    row = row_html(client.get(URL).content.decode(), f"referral-{referral.pk}")
    assert "4 of 3" not in row
    assert "3 of 3 policy attempts failed, then 1 more failed call" in row
    assert f"opt-in invitation due Tue 10 Mar 10:00, to be texted to {number}" in row
    mark_opt_in_invitation_sent(invitation=invitation, sent_at=NOW + timedelta(minutes=1))
    row = row_html(client.get(URL).content.decode(), f"referral-{referral.pk}")
    assert f"opt-in invitation texted to {number} on Tue 10 Mar 10:01" in row


def test_the_last_policy_attempt_sends_the_invitation_and_the_row_says_so(pwp, referral, frozen):
    for day in range(3):
        frozen.move_to(NOW + timedelta(days=day))
        click(referral, CallButton.NO_ANSWER, pwp)
    [row] = people_to_reach(practitioner=pwp, viewer=pwp)
    assert row.failed_attempts == 3 and row.extra_failed == 0
    assert row.reason.startswith("All 3 policy attempts failed; opt-in invitation due Thu 12 Mar 10:00, to be texted to")


# --- 6. a decline goes to the admin worklist as "discharge: declined", not "book the assessment" -----------


def test_a_decline_puts_discharge_declined_on_the_worklist_with_end_code_50(client, pwp, referral, admin_user):
    click(referral, CallButton.DECLINED, pwp)
    [row] = people_to_reach(practitioner=pwp, viewer=pwp, referral_ids=[referral.pk])
    assert "discharge: declined" in row.next_step and "end code 50" in row.next_step
    client.force_login(admin_user)
    html = client.get(reverse("worklist:index")).content.decode()
    # The worklist says it in words, not the code.
    assert "Suggest discharge: declined (end of care: not assessed (including unable to contact))" in html
    assert "Contacted: book the assessment" not in html
    # Its Discharge button lands on the discharge form with the end code chosen.
    link = re.search(r'href="([^"]*/discharge/\?end_code=50[^"]*)"', html).group(1).replace("&amp;", "&")
    form = client.get(link)
    assert form.status_code == 200 and 'value="50" selected' in form.content.decode()


def test_a_decline_after_assessment_suggests_end_code_14(pwp, referral, admin_user):
    assessment = book(referral, pwp, admin_user, NOW)
    click(referral, CallButton.SPOKE, pwp, appointment=assessment)
    referral.refresh_from_db()
    assert referral.status == Referral.Status.ASSESSED
    click(referral, CallButton.DECLINED, pwp)
    [suggested] = referrals_suggested_for_discharge(include_declined=True)
    assert (suggested.pk, suggested.suggested_end_code, suggested.discharge_reason) == (referral.pk, "14", "Declined")


# --- 7 and 8. without JavaScript the result is shown at the row, in the row's own words ------------------


def test_without_javascript_the_result_is_shown_inside_the_row(client, pwp, referral):
    client.force_login(pwp)
    response = client.post(reverse("calls:log"), {"referral": referral.pk, "button": "no_answer", "date": "2026-03-10"})
    assert response.status_code == 302 and response.url.endswith(f"#referral-{referral.pk}")
    page = client.get(response.url).content.decode()
    assert "Recorded: No answer." in row_html(page, f"referral-{referral.pk}")
    # Shown once: a reload does not show it again.
    assert "Recorded: No answer." not in row_html(client.get(response.url).content.decode(), f"referral-{referral.pk}")


def test_a_refusal_without_javascript_is_shown_inside_the_row_too(client, pwp, referral):
    client.force_login(pwp)
    data = {"referral": referral.pk, "button": "callback", "callback_at": "2026-03-09T18:00", "date": "2026-03-10"}
    response = client.post(reverse("calls:log"), data)
    page = client.get(response.url).content.decode()
    assert "Not recorded: Call-back time: it must be in the future." in row_html(page, f"referral-{referral.pk}")


@pytest.mark.parametrize("htmx", [True, False])
def test_spoke_on_a_to_reach_row_is_recorded_as_spoke_to_patient(client, pwp, referral, htmx):
    client.force_login(pwp)
    headers = {"HTTP_HX_REQUEST": "true"} if htmx else {}
    response = client.post(
        reverse("calls:log"), {"referral": referral.pk, "button": "spoke", "date": "2026-03-10"}, follow=not htmx, **headers
    )
    html = response.content.decode()
    assert "Recorded: Spoke to patient." in html and "session held" not in row_html(html, f"referral-{referral.pk}")


# --- a clinical note with the call ----------------------------------------------------------------------


def test_a_note_on_a_call_becomes_a_clinical_note_of_that_attempt_shown_on_the_row_and_the_record(client, pwp, referral):
    client.force_login(pwp)
    data = {"referral": referral.pk, "button": "spoke", "date": "2026-03-10", "clinical_note": "  Low mood, wants evenings.  "}
    html = client.post(reverse("calls:log"), data, HTTP_HX_REQUEST="true").content.decode()
    attempt = ContactAttempt.objects.get(referral=referral)
    note = ClinicalNote.objects.get(referral=referral)
    assert (note.contact_attempt_id, note.author_id, note.text) == (attempt.pk, pwp.pk, "Low mood, wants evenings.")
    assert "Low mood, wants evenings." in html
    record = client.get(reverse("caseload:referral_detail", args=[referral.pk])).content.decode()
    assert "Low mood, wants evenings." in record


def test_a_note_too_long_refuses_the_click_and_records_nothing(client, pwp, referral):
    client.force_login(pwp)
    data = {"referral": referral.pk, "button": "no_answer", "date": "2026-03-10", "clinical_note": "x" * 5001}
    html = client.post(reverse("calls:log"), data, HTTP_HX_REQUEST="true").content.decode()
    assert "Not recorded: Note: at most 5,000 characters" in html
    assert not ContactAttempt.objects.exists() and not ClinicalNote.objects.exists()


def test_admin_staff_see_no_note_box_and_no_call_note_and_cannot_log(client, pwp, referral, admin_user):
    click(referral, CallButton.NO_ANSWER, pwp, clinical_note="Private clinical detail")
    client.force_login(admin_user)
    html = client.get(URL + f"?practitioner={pwp.pk}").content.decode()
    assert f'id="referral-{referral.pk}"' in html
    assert "Private clinical detail" not in html and "Note (optional, clinical)" not in html
    response = client.post(reverse("calls:log"), {"referral": referral.pk, "button": "no_answer", "clinical_note": "x"})
    assert response.status_code == 403
    assert ClinicalNote.objects.count() == 1


def test_a_manager_logging_a_call_cannot_add_a_clinical_note(client, manager, pwp, referral):
    client.force_login(manager)
    data = {"referral": referral.pk, "button": "no_answer", "date": "2026-03-10", "clinical_note": "A note"}
    html = client.post(reverse("calls:log"), data, HTTP_HX_REQUEST="true").content.decode()
    assert "Not recorded: Note: you cannot write clinical notes" in html
    assert not ContactAttempt.objects.exists() and not ClinicalNote.objects.exists()


# --- a calmer row ----------------------------------------------------------------------------------------


def test_each_row_has_one_primary_action_the_age_and_date_of_birth_and_a_link_to_the_record(
    client, pwp, referral, admin_user
):
    session = book(make_referral(pwp, actor=admin_user), pwp, admin_user, NOW)
    invite_me = make_referral(pwp, actor=admin_user)
    fail_policy_attempts_outside_the_list(invite_me, pwp)
    client.force_login(pwp)
    html = client.get(URL).content.decode()
    for row_id in (f"referral-{referral.pk}", f"appointment-{session.pk}", f"referral-{invite_me.pk}"):
        assert row_html(html, row_id).count('class="primary"') == 1, row_id
    row = row_html(html, f"referral-{referral.pk}")
    assert "Age 55" in row and "Date of birth 17/05/1970" in row
    link = re.search(r'<a class="patient-link" href="([^"]+)">([^<]+)</a>', row)
    assert link.group(2) == referral.patient.full_name
    record = client.get(link.group(1))
    assert record.status_code == 200 and f"<h1>{referral.patient.full_name}</h1>" in record.content.decode()
    assert link.group(1) == reverse("caseload:referral_detail", args=[referral.pk])
    assert ContactPolicy.current().max_attempts == 3
