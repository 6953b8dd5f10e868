"""The capacity page speaks UK dates, and its definitions are a page of the site (rendered from
docs/capacity-report.md), open to whoever may open the capacity page."""

from pathlib import Path

import pytest
from django.conf import settings
from django.urls import reverse

from scheduling import roles
from scheduling.reports import charts
from tests.factories import make_user
from tests.test_capacity_report import get, manager_client, service  # noqa: F401 (fixtures)

PERIOD = {"from": "2026-03-23", "to": "2026-03-29"}


def test_a_weekly_chart_labels_its_weeks_as_uk_dates():
    week = {"week_starting": "2026-09-07", "dna": 45, "late_cancellation": 0, "service_cancellation": 0,
            "failed_calls": 5, "total": 50}
    svg = str(charts.weekly_lost_chart([week], lambda w, c: "/rows/"))
    assert ">7 Sep</text>" in svg
    assert "Week of 7 Sep 2026: Did not attend" in svg
    assert "09-07" not in svg


def test_the_capacity_page_shows_weeks_as_uk_dates_in_the_chart_and_its_table(manager_client):
    html = get(manager_client, reverse("reports:capacity"), **PERIOD).content.decode()
    assert ">23 Mar</text>" in html and '<th scope="row">23 Mar 2026</th>' in html
    assert ">03-23<" not in html


def test_the_capacity_page_links_to_the_definitions_page_which_renders_the_doc(manager_client):
    html = get(manager_client, reverse("reports:capacity"), **PERIOD).content.decode()
    assert "docs/capacity-report.md</code>" not in html
    href = reverse("reports:definitions")
    assert f'<a href="{href}">How each figure is worked out</a>' in html
    page = get(manager_client, href)
    assert page.status_code == 200
    body = page.content.decode()
    # The doc's own title and sections, its tables as tables, and a way back.
    source = (Path(settings.BASE_DIR) / "docs" / "capacity-report.md").read_text()
    title = source.splitlines()[0].removeprefix("# ")
    assert f"<h1 id=" in body and title in body
    assert '<h2 id="period-and-filters">Period and filters</h2>' in body
    assert body.count("<table>") == source.count("| --- |") > 0
    assert f'<a href="{reverse("reports:capacity")}">Back to the capacity report</a>' in body
    back = get(manager_client, reverse("reports:capacity"))
    assert back.status_code == 200 and "<h1>Capacity and slot wastage</h1>" in back.content.decode()
    assert "<script" not in body and "style=" not in body


def test_only_those_who_may_see_the_capacity_page_see_its_definitions(client, db):
    href = reverse("reports:definitions")
    anonymous = client.get(href)
    assert anonymous.status_code == 302 and anonymous["Location"].startswith(reverse("login"))
    for username, role in (("pwp.x", roles.PWP), ("admin.x", roles.ADMIN_STAFF)):
        client.force_login(make_user(username, role))
        assert client.get(href).status_code == 403
    client.force_login(make_user("manager.x", roles.MANAGER))
    assert client.get(href).status_code == 200
