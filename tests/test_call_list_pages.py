"""The call list page: who may open it, who may log on it, htmx rows and plain form posts."""

import re
from datetime import timedelta

import pytest
from django.urls import reverse

from scheduling.booking.services import book_appointment
from scheduling.calls.models import ContactAttempt, ContactAttemptUndo
from scheduling.caseload.models import CaseloadCover, Referral
from tests.factories import london, make_referral, make_user

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("frozen")]
NOW = london(2026, 3, 10, 10, 0)
URL = reverse("calls:today")


@pytest.fixture
def session(referral, pwp, admin_user):
    return book_appointment(
        referral=referral, practitioner=pwp, appointment_type="assessment", start=NOW, actor=admin_user
    )


def post_log(client, referral, button, *, appointment=None, htmx=False, **extra):
    data = {"referral": referral.pk, "button": button, "date": "2026-03-10", **extra}
    if appointment is not None:
        data["appointment"] = appointment.pk
    headers = {"HTTP_HX_REQUEST": "true"} if htmx else {}
    return client.post(reverse("calls:log"), data, **headers)


def test_a_pwp_lands_on_their_call_list_after_login(client, pwp):
    client.force_login(pwp)
    response = client.get(reverse("home"))
    assert response.status_code == 302 and response.url == URL


def test_the_page_lists_booked_calls_and_people_to_reach(client, pwp, session, admin_user):
    waiting = make_referral(pwp, actor=admin_user)
    client.force_login(pwp)
    html = client.get(URL).content.decode()
    assert 'id="appointment-%d"' % session.pk in html
    assert 'id="referral-%d"' % waiting.pk in html
    assert "Initial assessment" in html and "Due now" in html
    assert 'href="tel:+447700900' in html
    assert "Spoke – session held" in html and "Patient wants to rearrange" in html
    assert "<script>" not in html and " style=" not in html and " onclick=" not in html


def test_previous_and_next_days_and_the_date_picker(client, pwp, referral, admin_user):
    book_appointment(
        referral=referral,
        practitioner=pwp,
        appointment_type="assessment",
        start=NOW + timedelta(days=1),
        actor=admin_user,
    )
    client.force_login(pwp)
    html = client.get(URL + "?date=2026-03-11").content.decode()
    assert "Wednesday 11 March 2026" in html and "?date=2026-03-10" in html and "?date=2026-03-12" in html
    assert "Booked calls (1)" in html
    assert "Log the call" not in html  # no outcomes for a day that has not come
    assert "Booked calls (0)" in client.get(URL + "?date=2026-03-12").content.decode()
    response = client.get(URL + "?date=not-a-date")
    assert response.status_code == 400 and "date: “not-a-date” is not a date" in response.content.decode()


def test_htmx_no_answer_returns_just_the_updated_row(client, pwp, session, referral):
    client.force_login(pwp)
    response = post_log(client, referral, "no_answer", appointment=session, htmx=True)
    html = response.content.decode()
    assert response.status_code == 200
    assert html.strip().startswith('<li id="appointment-%d"' % session.pk)
    assert "Recorded: No answer." in html and "Undo “No answer”" in html
    assert "<html" not in html
    assert ContactAttempt.objects.filter(appointment=session, outcome="no_answer", practitioner=pwp).count() == 1
    response = post_log(client, referral, "rearrange", appointment=session, htmx=True)
    assert "Undo “Patient wants to rearrange”" in response.content.decode()
    assert "Asked to rearrange" in response.content.decode()


def test_a_plain_form_post_redirects_back_to_the_list(client, pwp, session, referral):
    client.force_login(pwp)
    response = post_log(client, referral, "spoke", appointment=session, practitioner=pwp.pk)
    assert response.status_code == 302
    assert response.url == f"{URL}?date=2026-03-10&practitioner={pwp.pk}#appointment-{session.pk}"
    page = client.get(response.url).content.decode()
    assert "Recorded: Spoke – session held." in page and "Done: Attended" in page


def test_without_javascript_spoke_keeps_the_row_with_undo_and_a_booking_link(client, pwp, referral):
    client.force_login(pwp)
    response = post_log(client, referral, "spoke")
    page = client.get(response.url).content.decode()
    assert "Spoken to" in page and "Book the assessment" in page and "Undo “Spoke to patient”" in page
    # The link leads to the slot finder for this referral (followed in tests/test_booking_by_pwps.py).
    assert f'href="{reverse("booking:find_slots", args=[referral.pk])}?type=assessment&amp;back=calls">Book the assessment' in page


def test_a_callback_time_is_ignored_for_other_buttons(client, pwp, referral):
    client.force_login(pwp)
    post_log(client, referral, "no_answer", htmx=True, callback_at="2026-03-10T15:00")
    assert ContactAttempt.objects.get().callback_at is None


def test_a_refused_outcome_is_shown_on_the_row_and_nothing_is_recorded(client, pwp, referral):
    client.force_login(pwp)
    response = post_log(client, referral, "callback", htmx=True)
    assert "Not recorded:" in response.content.decode()
    assert not ContactAttempt.objects.exists()


def test_undo_through_the_page(client, pwp, referral):
    client.force_login(pwp)
    post_log(client, referral, "spoke")
    attempt = ContactAttempt.objects.get()
    response = client.post(reverse("calls:undo"), {"attempt": attempt.pk, "date": "2026-03-10"}, HTTP_HX_REQUEST="true")
    assert "Undone: Spoke to patient." in response.content.decode()
    assert ContactAttemptUndo.objects.filter(attempt=attempt, undone_by=pwp).exists()
    referral.refresh_from_db()
    assert referral.status == Referral.Status.AWAITING_CONTACT


def test_a_pwp_cannot_open_or_log_on_another_pwps_list(client, other_pwp, pwp, session, referral):
    client.force_login(other_pwp)
    assert client.get(URL + f"?practitioner={pwp.pk}").status_code == 403
    assert post_log(client, referral, "no_answer", appointment=session).status_code == 403
    assert post_log(client, referral, "no_answer").status_code == 403
    assert not ContactAttempt.objects.exists()


def test_a_covering_pwp_can_open_and_log_on_the_covered_list(client, other_pwp, pwp, session, referral, manager):
    CaseloadCover.objects.create(
        covering=other_pwp, covered=pwp, starts_on=NOW.date(), ends_on=NOW.date(), created_by=manager
    )
    client.force_login(other_pwp)
    html = client.get(URL + f"?practitioner={pwp.pk}").content.decode()
    assert "Log the call" in html
    assert post_log(client, referral, "no_answer", appointment=session, htmx=True).status_code == 200
    assert ContactAttempt.objects.get().practitioner == other_pwp


def test_nobody_else_can_undo_a_click(client, other_pwp, pwp, referral, manager):
    client.force_login(pwp)
    post_log(client, referral, "no_answer")
    attempt = ContactAttempt.objects.get()
    client.force_login(manager)
    response = client.post(reverse("calls:undo"), {"attempt": attempt.pk}, HTTP_HX_REQUEST="true")
    assert "Only the person who logged" in response.content.decode()
    client.force_login(other_pwp)
    assert client.post(reverse("calls:undo"), {"attempt": attempt.pk}).status_code == 403
    assert not ContactAttemptUndo.objects.exists()


def test_managers_open_any_list_and_may_log(client, manager, pwp, session, referral):
    client.force_login(manager)
    html = client.get(URL).content.decode()
    assert "Choose whose call list" in html
    html = client.get(URL + f"?practitioner={pwp.pk}").content.decode()
    assert 'id="appointment-%d"' % session.pk in html and "Log the call" in html


def test_admin_staff_read_any_list_but_cannot_log(client, admin_user, pwp, session, referral):
    client.force_login(admin_user)
    html = client.get(URL + f"?practitioner={pwp.pk}").content.decode()
    assert 'id="appointment-%d"' % session.pk in html
    assert "Log the call" not in html and "not log calls" in html
    assert post_log(client, referral, "no_answer", appointment=session).status_code == 403


def test_a_user_without_a_role_is_refused(client, pwp):
    nobody = make_user("nobody")
    client.force_login(nobody)
    assert client.get(URL).status_code == 403


def test_login_is_required(client):
    response = client.get(URL)
    assert response.status_code == 302 and "/login" in response.url


def test_get_is_not_allowed_on_the_log_endpoint(client, pwp):
    client.force_login(pwp)
    assert client.get(reverse("calls:log")).status_code == 405


def test_the_opt_in_invitation_button_records_it_and_needs_permission(client, pwp, other_pwp, referral):
    from scheduling.calls.models import OptInInvitation
    from scheduling.calls.services import log_contact_attempt

    for hours in (50, 26, 2):
        log_contact_attempt(
            referral=referral, practitioner=pwp, outcome="busy", attempted_at=NOW - timedelta(hours=hours)
        )
    client.force_login(other_pwp)
    assert client.post(reverse("calls:invite"), {"referral": referral.pk}).status_code == 403
    client.force_login(pwp)
    assert "Record opt-in invitation" in client.get(URL).content.decode()
    response = client.post(reverse("calls:invite"), {"referral": referral.pk}, HTTP_HX_REQUEST="true")
    html = response.content.decode()
    assert "Opt-in invitation recorded." in html and "Record opt-in invitation" not in html
    assert OptInInvitation.objects.get().recorded_by == pwp


def reach_rows(html: str) -> list[str]:
    return re.findall(r'<li id="(referral-\d+)"', html)


def next_link(html: str) -> str:
    match = re.search(r'<a href="([^"]+)" class="pager-next">Next 25', html)
    return match and match.group(1).replace("&amp;", "&")


def test_people_to_reach_come_25_at_a_time_with_a_next_link_that_keeps_the_date(client, pwp, admin_user):
    everyone = {f"referral-{make_referral(pwp, actor=admin_user).pk}" for _ in range(30)}
    client.force_login(pwp)
    first = client.get(URL + "?date=2026-03-10").content.decode()
    assert "People still to reach (30)" in first and "30 due now." in first
    assert "Showing 1–25 of 30, due now first." in first and "Page 1 of 2" in first
    page_one = reach_rows(first)
    assert len(page_one) == 25
    link = next_link(first)
    assert link.startswith("?date=2026-03-10") and "page=2" in link
    second = client.get(URL + link.split("#")[0]).content.decode()
    assert len(reach_rows(second)) == 5 and "Showing 26–30 of 30" in second
    assert next_link(second) is None
    # Nobody twice and nobody missed; the previous link goes back to the first page.
    assert set(page_one) | set(reach_rows(second)) == everyone and not set(page_one) & set(reach_rows(second))
    previous = re.search(r'<a href="([^"]+)" class="pager-previous">', second).group(1).replace("&amp;", "&")
    assert "page=" not in previous and previous.startswith("?date=2026-03-10")
    assert reach_rows(client.get(URL + previous.split("#")[0]).content.decode()) == page_one
    # The rows on the second page carry their page, so a plain post comes back to it.
    assert '<input type="hidden" name="page" value="2">' in second


def test_those_due_now_come_before_those_due_later(client, pwp, admin_user, frozen):
    later = make_referral(pwp, actor=admin_user)
    ContactAttempt.objects.create(
        referral=later, practitioner=pwp, recorded_by=pwp, attempted_at=NOW - timedelta(hours=1), outcome="no_answer"
    )
    due_now = [make_referral(pwp, actor=admin_user) for _ in range(25)]
    client.force_login(pwp)
    first = client.get(URL).content.decode()
    assert f"referral-{later.pk}" not in reach_rows(first)
    assert set(reach_rows(first)) == {f"referral-{r.pk}" for r in due_now}
    assert f"referral-{later.pk}" in reach_rows(client.get(URL + "?page=2").content.decode())


def test_a_page_past_the_end_shows_the_last_page(client, pwp, admin_user):
    referral = make_referral(pwp, actor=admin_user)
    client.force_login(pwp)
    html = client.get(URL + "?page=7").content.decode()
    assert reach_rows(html) == [f"referral-{referral.pk}"] and "pager" not in html


@pytest.mark.parametrize("page", ["0", "-1", "two", "1.5", "1e3", "10001", "99999999999999999999", "٣", "+2"])
def test_a_page_that_is_not_a_page_number_is_a_400_naming_it(client, pwp, referral, page):
    client.force_login(pwp)
    response = client.get(URL, {"page": page})
    assert response.status_code == 400
    assert "page:" in response.content.decode()


def test_a_plain_post_from_the_second_page_comes_back_to_it_at_the_row(client, pwp, admin_user):
    referrals = [make_referral(pwp, actor=admin_user) for _ in range(27)]
    client.force_login(pwp)
    html = client.get(URL + "?page=2").content.decode()
    row = reach_rows(html)[0]
    referral = next(r for r in referrals if f"referral-{r.pk}" == row)
    response = post_log(client, referral, "no_answer", page="2")
    assert response.status_code == 302
    assert response.url == f"{URL}?date=2026-03-10&page=2#{row}"
    assert ContactAttempt.objects.filter(referral=referral, outcome="no_answer").count() == 1
    assert "Recorded: No answer." in client.get(response.url.split("#")[0]).content.decode()


def test_a_posted_page_that_is_not_a_page_number_is_refused_and_records_nothing(client, pwp, referral):
    client.force_login(pwp)
    response = post_log(client, referral, "no_answer", page="abc")
    assert response.status_code == 400 and "page:" in response.content.decode()
    assert not ContactAttempt.objects.filter(referral=referral).exists()
