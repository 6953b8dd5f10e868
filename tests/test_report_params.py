"""Odd and out-of-range query parameters on the report and SMS pages give a clear 400 (or the form's error
on the page), never a 500."""

import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db

HOSTILE = [
    "9999-12-31", "0001-01-01", "1899-12-31", "2101-01-01", "garbage", "", "\x00", "٢٠٢٦-٠١-٠١", "x" * 5000,
    "-1", "0", "1.5", "1" * 5000, "99999999999999999999", "2147483648", "1e9", "<b>1</b>", "2026-02-30",
]
REPORT_PARAMS = ["date_from", "date_to", "from", "to", "team", "practitioner", "source", "type"]
ROW_PARAMS = ["figure", "contacts", "within", "page"]
FIGURES = ["booked", "lost", "failed_calls", "pre_assessment", "wait_first_contact", "wait_first_treatment"]


def _assert_clean(response):
    assert response.status_code in (200, 400), response.status_code


@pytest.fixture
def manager_client(client, manager):
    client.force_login(manager)
    return client


@pytest.mark.parametrize("name", REPORT_PARAMS)
def test_the_report_and_its_exports_refuse_a_hostile_filter_without_a_server_error(manager_client, name):
    for value in HOSTILE:
        for url in (reverse("reports:capacity"), reverse("reports:export", args=["json"]), reverse("reports:export", args=["csv"])):
            _assert_clean(manager_client.get(url, {name: value}))
        for figure in ("booked", "wait_first_treatment"):  # the filters are read the same way for every figure
            _assert_clean(manager_client.get(reverse("reports:rows"), {"figure": figure, name: value}))


@pytest.mark.parametrize("name", ROW_PARAMS)
def test_the_rows_page_refuses_a_hostile_parameter_without_a_server_error(manager_client, name):
    for value in HOSTILE:
        for figure in FIGURES:
            _assert_clean(manager_client.get(reverse("reports:rows"), {"figure": figure, name: value}))


FAR_PERIODS = [("9999-12-01", "9999-12-31"), ("0001-01-01", "0001-01-31"), ("2100-12-01", "2100-12-31"), ("1900-01-01", "1900-01-31")]


@pytest.mark.parametrize("date_from, date_to", FAR_PERIODS)
def test_a_period_at_the_ends_of_the_calendar_is_refused_or_reported_without_a_server_error(manager_client, date_from, date_to):
    query = {"date_from": date_from, "date_to": date_to}
    for url in (reverse("reports:capacity"), reverse("reports:export", args=["json"]), reverse("reports:export", args=["csv"])):
        _assert_clean(manager_client.get(url, query))
    for figure in FIGURES:
        for extra in ({}, {"contacts": "3+"}, {"within": "42"}, {"page": "2"}):
            _assert_clean(manager_client.get(reverse("reports:rows"), {"figure": figure, **query, **extra}))


def test_a_far_end_date_on_the_report_is_refused_naming_the_date(manager_client):
    response = manager_client.get(reverse("reports:capacity"), {"date_from": "2026-01-01", "date_to": "9999-12-31"})
    assert response.status_code == 400
    assert "To" in response.content.decode() and "01/01/1900 to 31/12/2100" in response.content.decode()
    response = manager_client.get(reverse("reports:export", args=["json"]), {"date_to": "9999-12-31"})
    assert response.status_code == 400
    assert "31/12/2100" in response.content.decode()


@pytest.mark.parametrize("name", ["due_from", "due_to", "page", "status", "kind"])
def test_the_sms_outbox_refuses_a_hostile_filter_without_a_server_error(admin_client, name):
    for value in HOSTILE:
        _assert_clean(admin_client.get(reverse("sms:outbox"), {name: value}))


def test_the_sms_outbox_shows_far_dates_as_an_error_next_to_the_field(admin_client):
    response = admin_client.get(reverse("sms:outbox"), {"due_from": "0001-01-01", "due_to": "9999-12-31"})
    assert response.status_code == 400
    assert "31/12/2100" in response.content.decode()


@pytest.mark.parametrize("name, value", [
    ("figure", "nope"), ("figure", ""), ("contacts", "\x00"), ("within", "99999999999999999999"), ("within", "٤٢"),
])
def test_the_rows_page_names_the_parameter_it_cannot_use(manager_client, name, value):
    query = {"figure": "wait_first_treatment", "from": "2026-03-23", "to": "2026-03-29", name: value}
    response = manager_client.get(reverse("reports:rows"), query)
    assert response.status_code == 400
    assert f"{name}:" in response.content.decode()


def test_the_sms_replies_page_survives_a_hostile_page_number_with_replies_to_page_through(admin_client, settings):
    from scheduling.reminders.replies import handle_inbound
    from tests.factories import london

    for i in range(3):
        handle_inbound(provider_sid=f"SMfake9{i:03d}", from_number="+447700900999", to_number="+447700900500",
                       body="who is this?", received_at=london(2026, 6, 9, 12, i))
    for value in HOSTILE:
        _assert_clean(admin_client.get(reverse("sms:replies"), {"page": value}))
