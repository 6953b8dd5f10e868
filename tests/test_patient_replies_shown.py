"""A patient's free-text reply ("ring after 3pm") is on their record's timeline and, while admin staff
have still to deal with it, on the PWP's call-list row; its words never reach the logs."""

import logging
import re

import pytest
import time_machine
from django.urls import reverse

from scheduling.booking.services import book_appointment
from scheduling.worklist.models import AdminTask
from scheduling.worklist.services import resolve_admin_task
from scheduling.reminders.replies import handle_inbound
from tests.factories import london, make_referral

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("frozen")]
NOW = london(2026, 3, 10, 9, 0)  # a Tuesday
CALL_LIST = reverse("calls:today")


def reply(patient, body, *, sid, at=None):
    return handle_inbound(
        provider_sid=sid, from_number=patient.mobile_phone, to_number="+447700900999", body=body, received_at=at or NOW,
    )


def row_html(html: str, row_id: str) -> str:
    match = re.search(rf'<li id="{re.escape(row_id)}"', html)
    assert match, f"no row {row_id}"
    return html[match.start():html.index("</li>", match.end())]


@pytest.fixture
def booked_today(pwp, admin_user):
    with time_machine.travel(london(2026, 3, 6, 10), tick=False):
        referral = make_referral(pwp, actor=admin_user)
        return book_appointment(
            referral=referral, practitioner=pwp, appointment_type="assessment", start=london(2026, 3, 10, 15),
            actor=admin_user,
        )


def test_a_free_text_reply_shows_on_the_pwps_call_list_row_and_following_the_name_on_the_record(
    client, pwp, booked_today, caplog
):
    patient = booked_today.referral.patient
    caplog.set_level(logging.DEBUG)
    reply(patient, "Working til 2, please ring after 3pm", sid="SMshown0001", at=london(2026, 3, 10, 7, 45))

    client.force_login(pwp)
    html = client.get(CALL_LIST).content.decode()
    row = row_html(html, f"appointment-{booked_today.pk}")
    assert "<dt>Patient texted</dt>" in row
    assert "<q>Working til 2, please ring after 3pm</q>" in row and "received Tue 10 Mar 07:45" in row

    # The patient's name on the row opens their record, where the reply is in the timeline.
    link = re.search(r'<a class="patient-link" href="([^"]+)"', row).group(1)
    assert link == reverse("caseload:referral_detail", args=[booked_today.referral.pk])
    record = client.get(link).content.decode()
    history = record[record.index('id="history-heading"'):]
    assert "Text from the patient: “Working til 2, please ring after 3pm” – other message" in history
    assert "waiting on the admin worklist" in history
    replies = record[record.index("<h3>Replies</h3>"):record.index('id="history-heading"')]
    assert "Working til 2, please ring after 3pm" in replies and "waiting on the admin worklist" in replies

    assert "ring after 3pm" not in caplog.text and patient.mobile_phone not in caplog.text


def test_once_admin_staff_deal_with_it_it_leaves_the_call_list_and_the_record_says_who_did(
    client, pwp, admin_user, booked_today, frozen
):
    patient = booked_today.referral.patient
    message = reply(patient, "Can you ring after 3pm", sid="SMshown0002")
    frozen.move_to(london(2026, 3, 10, 9, 30))
    resolve_admin_task(task=AdminTask.objects.get(pk=message.admin_task_id), actor=admin_user, resolution="Noted")

    client.force_login(pwp)
    row = row_html(client.get(CALL_LIST).content.decode(), f"appointment-{booked_today.pk}")
    assert "Patient texted" not in row and "ring after 3pm" not in row
    record = client.get(reverse("caseload:referral_detail", args=[booked_today.referral.pk])).content.decode()
    assert "“Can you ring after 3pm” – other message" in record
    assert "dealt with Tue 10 Mar 2026 09:30 by" in record


def test_the_latest_free_text_is_shown_and_a_bare_keyword_is_not_quoted(client, pwp, booked_today):
    patient = booked_today.referral.patient
    reply(patient, "Mornings are bad for me", sid="SMshown0003", at=london(2026, 3, 9, 18))
    reply(patient, "R", sid="SMshown0004", at=london(2026, 3, 10, 8))  # a rearrangement request on its own

    client.force_login(pwp)
    row = row_html(client.get(CALL_LIST).content.decode(), f"appointment-{booked_today.pk}")
    assert "<strong>Asked to rearrange</strong>" in row
    assert "<q>Mornings are bad for me</q>" in row and "received Mon 9 Mar 18:00" in row

    reply(patient, "R could we do Thursday instead", sid="SMshown0005", at=london(2026, 3, 10, 8, 30))
    row = row_html(client.get(CALL_LIST).content.decode(), f"appointment-{booked_today.pk}")
    assert "<q>R could we do Thursday instead</q>" in row and "Mornings are bad" not in row


def test_a_reply_from_someone_still_to_be_reached_shows_on_their_row(client, pwp, admin_user):
    referral = make_referral(pwp, actor=admin_user)
    reply(referral.patient, "Best after 5 on weekdays " + "thanks " * 40, sid="SMshown0006")
    client.force_login(pwp)
    row = row_html(client.get(CALL_LIST).content.decode(), f"referral-{referral.pk}")
    quote = re.search(r"<q>([^<]+)</q>", row).group(1)
    # Quoted briefly: the whole text is on the record.
    assert quote.startswith("Best after 5 on weekdays thanks") and quote.endswith("…") and len(quote) == 120


def test_another_patients_reply_is_not_on_the_row(client, pwp, admin_user, booked_today):
    other = make_referral(pwp, actor=admin_user)
    reply(other.patient, "Please ring after 3pm", sid="SMshown0007")
    client.force_login(pwp)
    html = client.get(CALL_LIST).content.decode()
    assert "Patient texted" not in row_html(html, f"appointment-{booked_today.pk}")
    assert "Please ring after 3pm" in row_html(html, f"referral-{other.pk}")
