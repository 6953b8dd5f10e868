"""The call list's query count does not grow with the caseload or the number of past attempts."""

import re
from datetime import timedelta

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from scheduling.booking.services import book_appointment
from scheduling.calls.models import ContactAttempt, OptInInvitation
from scheduling.calls.services import CallButton, record_call_outcome
from scheduling.reminders.replies import handle_inbound
from tests.factories import london, make_referral

pytestmark = pytest.mark.django_db
NOW = london(2026, 3, 10, 15, 0)
# Call-backs, numbers marked wrong and notes on calls (issue 13) cost a few fixed queries more, and the
# patients' texts waiting for staff one more for each part of the list (timed calls, call-backs, to reach).
QUERY_BOUND = 33
OUTCOMES = ["no_answer", "voicemail", "busy", "answered", "wrong_number", "callback_requested"]


def grow_caseload(pwp, admin_user, *, patients: int, attempts_each: int, start_index: int):
    referrals = [
        make_referral(pwp, actor=admin_user, received_on=NOW.date() - timedelta(days=30)) for _ in range(patients)
    ]
    rows = []
    for n, referral in enumerate(referrals):
        for k in range(attempts_each):
            at = NOW - timedelta(days=29 - k % 28, hours=k % 7)
            outcome = OUTCOMES[(n + k) % len(OUTCOMES)]
            rows.append(
                ContactAttempt(
                    referral=referral,
                    practitioner=pwp,
                    recorded_by=pwp,
                    attempted_at=at,
                    outcome=outcome,
                    callback_at=at + timedelta(hours=1) if outcome == "callback_requested" else None,
                )
            )
    # Bulk insert: past history only matters here for its size (the services are tested elsewhere).
    ContactAttempt.objects.bulk_create(rows)
    # Some booked sessions today, one with attempts and a rearrange request; some opt-in invitations.
    for i, referral in enumerate(referrals[:3]):
        appt = book_appointment(
            referral=referral,
            practitioner=pwp,
            appointment_type="assessment",
            start=NOW + timedelta(minutes=60 * i + 70 * start_index),
            actor=admin_user,
        )
        record_call_outcome(referral=referral, button=CallButton.NO_ANSWER, actor=pwp, appointment=appt)
        if i == 0:
            record_call_outcome(referral=referral, button=CallButton.REARRANGE, actor=pwp, appointment=appt)
    for referral in referrals[3:5]:
        OptInInvitation.objects.create(referral=referral, deadline=NOW.date() - timedelta(days=1))
    record_call_outcome(referral=referrals[-1], button=CallButton.NO_ANSWER, actor=pwp)
    # Free-text replies waiting for staff, on booked and to-reach rows alike.
    for n, referral in enumerate(referrals[:2] + referrals[-2:]):
        handle_inbound(
            provider_sid=f"SMQUERIES{start_index:03d}{n:020d}", from_number=referral.patient.mobile_phone,
            to_number="+447700900999", body=f"Please ring after {n + 2}pm", received_at=NOW - timedelta(hours=1),
        )


def render_count(client, pwp, *, page=None):
    url = reverse("calls:today") + f"?practitioner={pwp.pk}" + (f"&page={page}" if page else "")
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url)
    assert response.status_code == 200
    return len(ctx.captured_queries), response.content.decode()


def all_pages(client, pwp) -> str:
    """Every page of people to reach, following the "Next 25" links as a person would."""
    _, html = render_count(client, pwp)
    pages = [html]
    while match := re.search(r'href="([^"]*page=(\d+)[^"]*)" class="pager-next"', html):
        _, html = render_count(client, pwp, page=int(match.group(2)))
        pages.append(html)
    return "".join(pages)


def test_the_call_list_needs_the_same_queries_for_5_200_and_1000_patients(client, pwp, admin_user):
    with time_machine.travel(NOW, tick=False):
        client.force_login(pwp)
        grow_caseload(pwp, admin_user, patients=5, attempts_each=20, start_index=0)
        small, html_small = render_count(client, pwp)
        grow_caseload(pwp, admin_user, patients=195, attempts_each=20, start_index=4)
        large, html_large = render_count(client, pwp)
        everything = all_pages(client, pwp)
        # Fewer past attempts for the next 800: their number is covered above, and the test stays quick.
        grow_caseload(pwp, admin_user, patients=800, attempts_each=3, start_index=8)
        largest, html_largest = render_count(client, pwp)
        last_page, _ = render_count(client, pwp, page=40)
    assert ContactAttempt.objects.count() > 6000
    assert html_large.count('class="call-row') > html_small.count('class="call-row') >= 5
    # The page shows 25 people to reach however many there are; the rest are a "Next 25" link away.
    assert html_large.count('class="call-row') == html_largest.count('class="call-row') <= 25 + 12
    assert "Asked to rearrange" in html_large
    assert "Suggest discharge" in everything
    assert small == large == largest == last_page, (small, large, largest, last_page)
    assert everything.count('class="patient-reply"') > html_small.count('class="patient-reply"') >= 2
    assert large <= QUERY_BOUND
