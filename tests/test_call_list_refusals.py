"""The call list's posts refuse other caseloads without naming anyone, read every parameter through
scheduling.params (a bad one is a 400 naming it), and refuse call-back times that cannot be meant."""

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone

from scheduling.booking.services import book_appointment
from scheduling.calls.models import ContactAttempt, ContactAttemptUndo, OptInInvitation
from scheduling.calls.services import CALLBACK_HORIZON, CallButton, log_contact_attempt, record_call_outcome
from tests.factories import london, make_patient, make_referral

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("frozen")]
NOW = london(2026, 3, 10, 10, 0)  # Tuesday, GMT
LOG, UNDO, INVITE, LIST = reverse("calls:log"), reverse("calls:undo"), reverse("calls:invite"), reverse("calls:today")


@pytest.fixture
def catherine(pwp, admin_user):
    """A patient on pwp.one's caseload, with a session now."""
    referral = make_referral(pwp, patient=make_patient(given_name="Catherine", family_name="Price"), actor=admin_user)
    session = book_appointment(referral=referral, practitioner=pwp, appointment_type="assessment", start=NOW, actor=admin_user)
    return referral, session


@pytest.fixture
def own(other_pwp, admin_user):
    """A patient on pwp.two's caseload, with a session in an hour."""
    referral = make_referral(other_pwp, patient=make_patient(given_name="Olive", family_name="Own"), actor=admin_user)
    session = book_appointment(
        referral=referral, practitioner=other_pwp, appointment_type="assessment", start=NOW + timedelta(hours=1), actor=admin_user
    )
    return referral, session


def assert_refused_without_a_name(response, status=403):
    html = response.content.decode()
    assert response.status_code == status, (response.status_code, html[:300])
    assert "Catherine" not in html and "Price" not in html
    assert not ContactAttempt.objects.exists()


# --- other caseloads: 403, no name; nonexistent ids: 404 ---------------------------------------


@pytest.mark.parametrize("htmx", [False, True])
def test_a_pwp_pairing_another_caseloads_referral_with_their_own_appointment_is_refused_without_the_name(
    client, other_pwp, catherine, own, htmx
):
    client.force_login(other_pwp)
    headers = {"HTTP_HX_REQUEST": "true"} if htmx else {}
    data = {"referral": catherine[0].pk, "appointment": own[1].pk, "button": "no_answer", "date": "2026-03-10"}
    response = client.post(LOG, data, **headers)
    assert_refused_without_a_name(response)
    # Nor does a flash message carry it to the next page.
    assert "Price" not in client.get(LIST).content.decode()


def test_a_pwp_pairing_their_own_referral_with_another_caseloads_appointment_is_refused_without_the_name(
    client, other_pwp, catherine, own
):
    client.force_login(other_pwp)
    response = client.post(LOG, {"referral": own[0].pk, "appointment": catherine[1].pk, "button": "no_answer"})
    assert_refused_without_a_name(response)


def test_a_referral_and_appointment_that_do_not_belong_together_are_a_bad_request_even_on_own_caseloads(
    client, manager, catherine, own
):
    client.force_login(manager)  # may log on both caseloads
    response = client.post(LOG, {"referral": own[0].pk, "appointment": catherine[1].pk, "button": "no_answer"})
    assert_refused_without_a_name(response, status=400)
    assert "appointment: that appointment belongs to another referral" in response.content.decode()


def test_undo_and_invite_on_another_caseload_are_refused_without_the_name(client, pwp, other_pwp, catherine):
    referral = catherine[0]
    for hours in (50, 26, 2):
        log_contact_attempt(referral=referral, practitioner=pwp, outcome="busy", attempted_at=NOW - timedelta(hours=hours))
    attempt = record_call_outcome(referral=referral, button=CallButton.NO_ANSWER, actor=pwp, appointment=catherine[1])
    client.force_login(other_pwp)
    for url, data in ((UNDO, {"attempt": attempt.pk}), (INVITE, {"referral": referral.pk})):
        for headers in ({}, {"HTTP_HX_REQUEST": "true"}):
            response = client.post(url, data, **headers)
            assert response.status_code == 403
            assert "Catherine" not in response.content.decode() and "Price" not in response.content.decode()
    assert not ContactAttemptUndo.objects.exists() and not OptInInvitation.objects.exists()


def test_ids_that_do_not_exist_are_not_found(client, pwp, catherine):
    client.force_login(pwp)
    referral, session = catherine
    assert client.post(LOG, {"referral": 999999, "button": "no_answer"}).status_code == 404
    assert client.post(LOG, {"referral": referral.pk, "appointment": 999999, "button": "no_answer"}).status_code == 404
    assert client.post(UNDO, {"attempt": 999999}).status_code == 404
    assert client.post(INVITE, {"referral": 999999}).status_code == 404
    assert client.get(LIST, {"practitioner": 999999}).status_code == 404
    assert not ContactAttempt.objects.exists()


@pytest.mark.parametrize(
    "url, data, named",
    [
        (LOG, {"referral": "abc", "button": "no_answer"}, "referral:"),
        (LOG, {"button": "no_answer"}, "referral: missing"),
        (LOG, {"referral": "{referral}", "appointment": "-3", "button": "no_answer"}, "appointment:"),
        (LOG, {"referral": "{referral}", "button": "shout"}, "button:"),
        (LOG, {"referral": "{referral}", "button": "no_answer", "date": "9999-12-31"}, "date:"),
        (LOG, {"referral": "{referral}", "button": "no_answer", "practitioner": "me"}, "practitioner:"),
        (UNDO, {"attempt": "99999999999999999999"}, "attempt:"),
        (UNDO, {"attempt": "1", "date": "0001-01-01"}, "date:"),
        (INVITE, {"referral": "1.5"}, "referral:"),
    ],
)
def test_a_malformed_parameter_is_a_bad_request_naming_it_and_changes_nothing(client, pwp, catherine, url, data, named):
    client.force_login(pwp)
    data = {k: v.format(referral=catherine[0].pk) if isinstance(v, str) else v for k, v in data.items()}
    response = client.post(url, data)
    assert response.status_code == 400
    assert named in response.content.decode()
    assert not ContactAttempt.objects.exists()


# --- dates and ids on the list pages ---------------------------------------------------------------


@pytest.mark.parametrize("value", ["9999-12-31", "0001-01-01", "2026-02-30"])
def test_a_day_the_service_cannot_work_with_is_a_bad_request_naming_the_date(client, pwp, value):
    client.force_login(pwp)
    response = client.get(LIST, {"date": value})
    assert response.status_code == 400
    assert "date: " in response.content.decode()


def test_the_furthest_days_allowed_still_open(client, pwp):
    client.force_login(pwp)
    assert client.get(LIST, {"date": "2100-12-31"}).status_code == 200
    assert client.get(LIST, {"date": "1900-01-01"}).status_code == 200


def test_a_practitioner_that_is_not_an_id_is_a_bad_request_on_the_call_list_and_the_referral_list(client, admin_user):
    client.force_login(admin_user)
    for url in (LIST, reverse("caseload:referral_list")):
        response = client.get(url, {"practitioner": "abc"})
        assert response.status_code == 400
        assert "practitioner: “abc” is not a valid choice" in response.content.decode()


def test_the_referral_list_still_filters_by_practitioner(client, admin_user, pwp, other_pwp, catherine, own):
    client.force_login(admin_user)
    html = client.get(reverse("caseload:referral_list"), {"practitioner": pwp.pk}).content.decode()
    assert "Price" in html and "Olive" not in html


# --- call-back times -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "typed, says",
    [
        ("9999-12-31T10:00", "Call-back time: 9999-12-31 is outside the dates"),
        ("2026-12-01T10:00", "Call-back time: it must be within 90 days"),
        ("2026-03-10T09:00", "Call-back time: it must be in the future"),
        ("2026-03-29T01:30", "Call-back time: 29/03/2026 01:30 falls in the hour the clocks change"),
        ("tomorrow", "Call-back time: “tomorrow” is not a date and time"),
    ],
)
def test_a_call_back_time_that_cannot_be_meant_is_refused_on_the_row_naming_the_field(client, pwp, catherine, typed, says):
    client.force_login(pwp)
    referral = catherine[0]
    response = client.post(
        LOG, {"referral": referral.pk, "button": "callback", "callback_at": typed, "date": "2026-03-10"}, HTTP_HX_REQUEST="true"
    )
    html = response.content.decode()
    assert response.status_code == 200 and "Not recorded:" in html and says in html
    # Without JavaScript: back to the list with the same words.
    response = client.post(LOG, {"referral": referral.pk, "button": "callback", "callback_at": typed}, follow=True)
    assert says in response.content.decode()
    assert not ContactAttempt.objects.exists()


def test_a_call_back_time_is_read_in_uk_time(client, pwp, catherine):
    client.force_login(pwp)
    referral = catherine[0]
    client.post(LOG, {"referral": referral.pk, "button": "callback", "callback_at": "2026-04-01T15:00"}, HTTP_HX_REQUEST="true")
    assert ContactAttempt.objects.get().callback_at == london(2026, 4, 1, 15, 0)  # 14:00 UTC (BST)


def test_the_service_refuses_call_backs_in_the_past_or_beyond_the_horizon_and_takes_the_horizon_itself(pwp, catherine):
    referral = catherine[0]
    assert CALLBACK_HORIZON == timedelta(days=90)
    for when, words in ((NOW - timedelta(minutes=1), "in the future"), (NOW, "in the future"), (NOW + timedelta(days=91), "90 days")):
        with pytest.raises(ValidationError, match=words):
            record_call_outcome(referral=referral, button=CallButton.CALLBACK, actor=pwp, callback_at=when)
    assert not ContactAttempt.objects.exists()
    attempt = record_call_outcome(referral=referral, button=CallButton.CALLBACK, actor=pwp, callback_at=NOW + CALLBACK_HORIZON)
    assert attempt.callback_at == NOW + CALLBACK_HORIZON


def test_a_logged_or_imported_call_back_must_fall_within_the_horizon_of_its_call(pwp, catherine):
    referral = catherine[0]
    with pytest.raises(ValidationError, match="within 90 days of the call"):
        log_contact_attempt(
            referral=referral, practitioner=pwp, outcome="callback_requested", attempted_at=NOW - timedelta(days=1),
            callback_at=timezone.now() + timedelta(days=365 * 7000),
        )
    assert not ContactAttempt.objects.exists()


def test_the_call_back_picker_offers_only_times_from_now_to_the_horizon(client, pwp, catherine):
    client.force_login(pwp)
    html = client.get(LIST).content.decode()
    assert 'min="2026-03-10T10:00" max="2026-06-08T11:00"' in html  # 90 days on, in BST
