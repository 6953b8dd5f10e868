"""The referral page is the patient record in one place: identity check, phones, appointments with their
rearrangements linked both ways, calls, call-backs, notes, texts and replies, open worklist items and the
history in words; its query count does not grow with the record."""

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from scheduling import roles
from scheduling.booking.services import book_appointment, record_appointment_outcome, rearrange_appointment
from scheduling.calls.models import ContactAttempt
from scheduling.calls.services import CallButton, record_call_outcome
from scheduling.audit import AuditEntry
from scheduling.caseload.notes import amend_note, write_note
from scheduling.caseload.record import describe_change
from scheduling.caseload.services import assign_practitioner, change_referral_status
from scheduling.codes import AttendanceOutcome
from scheduling.reminders.models import OutboundMessage
from scheduling.reminders.replies import handle_inbound
from tests.factories import london, make_patient, make_referral, make_user

pytestmark = pytest.mark.django_db
NOW = london(2026, 3, 2, 9)


@pytest.fixture
def alex(db):
    user = make_user("alex", roles.PWP)
    user.first_name, user.last_name = "Alex", "Morgan"
    user.save()
    return user


def page_of(client, user, referral) -> str:
    client.force_login(user)
    response = client.get(reverse("caseload:referral_detail", args=[referral.pk]))
    assert response.status_code == 200
    return response.content.decode()


def element_by_id(html: str, element_id: str) -> str:
    """The text of the element with this id (up to its row or list item's end), or "" if there is none."""
    match = re.search(rf'<(tr|li|article)[^>]*\bid="{re.escape(element_id)}"', html)
    if not match:
        return ""
    end = html.index(f"</{match.group(1)}>", match.end())
    return html[match.start():end]


# --- Identity, phones, best times ---------------------------------------------------------------------


def test_the_identity_check_shows_date_of_birth_with_age_and_the_nhs_number_formatted(client, frozen, alex, admin_user):
    patient = make_patient(nhs_number="9434765919", preferred_days=[0, 1, 2, 3, 4], preferred_times=["morning"])
    referral = make_referral(alex, patient=patient, actor=admin_user)
    html = page_of(client, alex, referral)
    assert "Identity check" in html
    assert "<dt>Date of birth</dt><dd>17 May 1970 <span class=\"meta\">(age 55)</span>" in html
    assert "943 476 5919" in html
    assert f'href="tel:{patient.mobile_phone}"' in html
    assert "<dt>Best times</dt><dd>weekdays, mornings</dd>" in html


# --- History in words ---------------------------------------------------------------------------------


def test_the_history_reads_in_words_naming_people_and_the_appointment(client, frozen, alex, admin_user, manager):
    referral = make_referral(None, actor=admin_user)
    assign_practitioner(referral=referral, practitioner=alex, actor=admin_user)
    change_referral_status(referral=referral, to_status="contacted", actor=alex, reason="Spoke on the phone")
    appointment = book_appointment(
        referral=referral, practitioner=alex, appointment_type="assessment", start=london(2026, 3, 10, 10), actor=admin_user
    )
    frozen.move_to(london(2026, 3, 10, 10, 30))
    record_appointment_outcome(appointment=appointment, outcome=AttendanceOutcome.DID_NOT_ATTEND, actor=alex)
    html = page_of(client, manager, referral)
    history = html[html.index('id="history-heading"'):]
    assert "Status: Awaiting first contact → Contacted – Spoke on the phone, by Alex Morgan" in history
    assert "Practitioner: none → Alex Morgan, by Admin.One Tester" in history
    assert "Booked (Initial assessment, Tue 10 Mar 2026 10:00)" in history
    assert "Outcome: Not yet → Did not attend (Initial assessment, Tue 10 Mar 2026 10:00), by Alex Morgan" in history
    assert "Status: Assessment booked → Contacted" in history
    # No stored field names, codes or ids.
    for internal in ("assigned_practitioner", "awaiting_contact", "→ 3", f"→ {alex.pk}<", "0 →"):
        assert internal not in history


def test_describe_change_is_the_one_place_codes_become_words():
    entry = AuditEntry(field="end_code", old_value="", new_value="46")
    assert describe_change(entry, user_names={}, appointment_labels={}) == "End of care: none → Completed treatment"
    entry = AuditEntry(field="assigned_practitioner", old_value="7", new_value="8")
    assert describe_change(entry, user_names={7: "Sam Lee", 8: "Alex Morgan"}, appointment_labels={}) == (
        "Practitioner: Sam Lee → Alex Morgan"
    )
    entry = AuditEntry(field="opt_in_invitation", old_value="due", new_value="withdrawn")
    assert describe_change(entry, user_names={}, appointment_labels={}) == "Invitation to get in touch: due → withdrawn"
    entry = AuditEntry(field="confirmed", old_value="", new_value="by SMS", appointment_id=5)
    assert describe_change(entry, user_names={}, appointment_labels={5: "Review, Mon 1 Jun 2026 09:00"}) == (
        "Confirmed by the patient (text message) (Review, Mon 1 Jun 2026 09:00)"
    )


# --- Appointments and rearrangements ------------------------------------------------------------------


def test_a_rearrangement_is_linked_both_ways_and_each_link_lands_on_the_other_appointment(client, frozen, alex, admin_user):
    referral = make_referral(alex, actor=admin_user)
    original = book_appointment(
        referral=referral, practitioner=alex, appointment_type="assessment", start=london(2026, 3, 10, 10), actor=admin_user
    )
    moved = rearrange_appointment(
        appointment=original, new_start=london(2026, 3, 17, 14), asked_by="patient", reason="Work shift", actor=admin_user
    )
    html = page_of(client, alex, referral)

    original_row = element_by_id(html, f"appointment-{original.pk}")
    to_link = re.search(r'<a class="moved-to" href="#([^"]+)">([^<]+)</a>', original_row)
    assert to_link.group(2) == "Initial assessment, Tue 17 Mar 2026 14:00"
    landed = element_by_id(html, to_link.group(1))
    assert "Tue 17 Mar 2026 14:00" in landed and to_link.group(1) == f"appointment-{moved.replacement_id}"

    back_link = re.search(r'<a class="moved-from" href="#([^"]+)">([^<]+)</a>', landed)
    assert back_link.group(2) == "Initial assessment, Tue 10 Mar 2026 10:00"
    back = element_by_id(html, back_link.group(1))
    assert "Tue 10 Mar 2026 10:00" in back and "Cancelled by patient" in back and "Work shift" in back
    # The history names the appointment moved from in words, not by its id.
    assert f"appointment {original.pk}" not in html
    assert "moved from Initial assessment, Tue 10 Mar 2026 10:00" in html


# --- Calls, call-backs, notes -------------------------------------------------------------------------


def test_call_attempts_show_their_note_and_a_requested_call_back_time(client, frozen, alex, admin_user):
    referral = make_referral(alex, actor=admin_user)
    attempt = record_call_outcome(
        referral=referral, button=CallButton.CALLBACK, actor=alex, callback_at=london(2026, 3, 3, 17, 30), note="Ring after work",
    )
    write_note(referral=referral, author=alex, text="Low mood mentioned on the call.", contact_attempt=attempt)
    html = page_of(client, alex, referral)
    row = element_by_id(html, f"attempt-{attempt.pk}")
    assert "Call back requested" in row and "Call back asked for Tue 3 Mar 2026 17:30" in row and "Ring after work" in row
    assert "Clinical note" in row
    assert "Call-backs asked for" in html
    assert "Low mood mentioned on the call." in html


def test_admin_staff_see_calls_and_call_backs_but_not_clinical_notes(client, frozen, alex, admin_user):
    referral = make_referral(alex, actor=admin_user)
    attempt = record_call_outcome(referral=referral, button=CallButton.SPOKE, actor=alex)
    write_note(referral=referral, author=alex, text="Low mood mentioned on the call.", contact_attempt=attempt)
    html = page_of(client, admin_user, referral)
    assert "Answered" in element_by_id(html, f"attempt-{attempt.pk}")
    assert "Low mood" not in html and "Clinical note" not in html


def test_the_record_shows_the_latest_note_version_amended_and_the_earlier_one(client, frozen, alex, admin_user, manager):
    referral = make_referral(alex, actor=admin_user)
    note = write_note(referral=referral, author=alex, text="First wording")
    amend_note(note=note, author=alex, text="Second wording")
    html = page_of(client, manager, referral)
    notes = html[html.index('id="notes-heading"'):html.index('id="texts-heading"')]
    assert notes.index("Second wording") < notes.index("Earlier versions (1)") < notes.index("First wording")
    assert "Amended" in notes


# --- Texts and worklist items -------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["alex", "admin_user", "manager"])
def test_texts_sent_and_replies_show_with_their_status_for_the_caseloads_pwp_admin_staff_and_managers(
    client, frozen, alex, admin_user, manager, who, request
):
    referral = make_referral(alex, actor=admin_user)
    appointment = book_appointment(
        referral=referral, practitioner=alex, appointment_type="assessment", start=london(2026, 3, 10, 10), actor=admin_user
    )
    reminder = OutboundMessage.objects.get(appointment=appointment, kind="reminder_2d")
    OutboundMessage.objects.filter(pk=reminder.pk).update(status="delivered", delivered_at=london(2026, 3, 8, 9, 1))
    frozen.move_to(london(2026, 3, 8, 11))
    handle_inbound(
        provider_sid="SMrecord01", from_number=referral.patient.mobile_phone, to_number="+447700900500", body="R",
    )
    html = page_of(client, request.getfixturevalue(who), referral)
    sent = element_by_id(html, f"sms-{reminder.pk}")
    assert "Reminder 2 days before" in sent and "Delivered" in sent and "delivered Sun 8 Mar 2026 09:01" in sent
    assert "Initial assessment, Tue 10 Mar 2026 10:00" in sent
    assert "Asked to rearrange" in html
    # The reply raised a worklist item; it is listed while open.
    assert "Open worklist items" in html and "Patient asked to rearrange" in html


def test_another_patients_texts_are_not_shown(client, frozen, alex, admin_user):
    referral = make_referral(alex, actor=admin_user)
    other = make_referral(alex, actor=admin_user)
    appointment = book_appointment(
        referral=other, practitioner=alex, appointment_type="assessment", start=london(2026, 3, 10, 10), actor=admin_user
    )
    message = OutboundMessage.objects.filter(appointment=appointment).first()
    html = page_of(client, alex, referral)
    assert f'id="sms-{message.pk}"' not in html and "No texts." in html


def test_a_wrong_number_task_is_listed_as_an_open_worklist_item(client, frozen, alex, admin_user):
    referral = make_referral(alex, actor=admin_user)
    record_call_outcome(referral=referral, button=CallButton.WRONG_NUMBER, actor=alex)
    html = page_of(client, admin_user, referral)
    assert "Open worklist items" in html and "Phone number wrong or not in service" in html


# --- Query count ---------------------------------------------------------------------------------------


def grow(referral, pwp, admin_user, *, n: int, week: int):
    """n more call attempts, an appointment (rearranged once, so two), audit entries, notes and texts."""
    ContactAttempt.objects.bulk_create(
        ContactAttempt(referral=referral, practitioner=pwp, recorded_by=pwp, outcome="no_answer",
                       attempted_at=NOW - timedelta(days=week, hours=k))
        for k in range(n)
    )
    appointment = book_appointment(
        referral=referral, practitioner=pwp, appointment_type="treatment",
        start=london(2026, 3, 10, 10) + timedelta(weeks=week), actor=admin_user,
    )
    rearrange_appointment(appointment=appointment, new_start=appointment.start + timedelta(hours=3), asked_by="service",
                          actor=admin_user)
    attempt = record_call_outcome(referral=referral, button=CallButton.CALLBACK, actor=pwp,
                                  callback_at=NOW + timedelta(days=week, hours=1))
    note = write_note(referral=referral, author=pwp, text=f"Note {week}", contact_attempt=attempt)
    amend_note(note=note, author=pwp, text=f"Note {week} amended")
    write_note(referral=referral, author=pwp, text=f"Session {week}", appointment=appointment)
    other = make_user(f"former.{week}", roles.PWP)
    assign_practitioner(referral=referral, practitioner=other, actor=admin_user)
    assign_practitioner(referral=referral, practitioner=pwp, actor=admin_user)
    # Minutes apart each week: the same click within SAME_SUBMISSION_WINDOW would be recorded once.
    record_call_outcome(referral=referral, button=CallButton.WRONG_NUMBER, actor=pwp, now=NOW - timedelta(minutes=5 * week))


def count_queries(client, referral) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(reverse("caseload:referral_detail", args=[referral.pk]))
    assert response.status_code == 200
    return len(queries)


@pytest.mark.parametrize("who", ["pwp", "manager", "admin_user"])
def test_the_pages_query_count_does_not_grow_with_the_record(client, frozen, pwp, manager, admin_user, who, request):
    referral = make_referral(pwp, actor=admin_user)
    grow(referral, pwp, admin_user, n=2, week=1)
    client.force_login(request.getfixturevalue(who))
    small = count_queries(client, referral)
    for week in range(2, 7):
        grow(referral, pwp, admin_user, n=10, week=week)
    assert referral.contact_attempts.count() > 50 and referral.appointments.count() == 12
    big = count_queries(client, referral)
    assert big == small, f"{small} queries with a short record, {big} with a long one"
    # One query per kind of row; the patient's own detail changes (names, phones, consent) are the 21st.
    assert small <= 21, small


def test_the_referral_page_has_one_form_token_in_every_post_form(client, frozen, alex, admin_user):
    referral = make_referral(alex, actor=admin_user)
    write_note(referral=referral, author=alex, text="A note")
    html = page_of(client, alex, referral)
    forms = re.findall(r'<form method="post".*?</form>', html, flags=re.S)
    assert len(forms) == 2
    for form in forms:
        assert "csrfmiddlewaretoken" in form and form.count('name="form_token"') == 1


def test_the_groups_are_unchanged_admin_staff_cannot_add_notes(db):
    assert not Group.objects.get(name=roles.ADMIN_STAFF).permissions.filter(codename__contains="clinicalnote").exists()
