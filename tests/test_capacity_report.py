"""The capacity report on a small hand-computed service (every figure worked out in the comments)."""

import datetime
import json
from io import StringIO

import pytest
import time_machine
from django.core.management import call_command
from django.db.models import Q
from django.urls import reverse

from scheduling import roles
from scheduling.booking.services import book_appointment, cancel_appointment, rearrange_appointment, record_appointment_outcome
from scheduling.calls.models import ContactAttempt, ContactAttemptUndo
from scheduling.calls.services import log_contact_attempt
from scheduling.caseload.models import Referral, ServiceSettings, Team
from scheduling.reports.selectors import ReportParams, build_report
from tests.factories import london, make_referral, make_user

FROZEN = london(2026, 4, 30, 12)
WEEK = dict(date_from=datetime.date(2026, 3, 23), date_to=datetime.date(2026, 3, 29))  # clocks go forward on Sunday 29th


def attended(appointment, outcome="5"):
    return record_appointment_outcome(appointment=appointment, outcome=outcome, at=appointment.start)


def call(referral, practitioner, when, outcome="no_answer", appointment=None):
    return log_contact_attempt(referral=referral, practitioner=practitioner, outcome=outcome, attempted_at=when, appointment=appointment)


@pytest.fixture
def service(db):
    """Five referrals; the comments give every figure the tests expect for the week 23-29 March 2026."""
    with time_machine.travel(FROZEN, tick=False):
        pwp = make_user("pwp.one", roles.PWP)
        other = make_user("pwp.two", roles.PWP)
        other.practitioner.team = Team.objects.create(name="North")
        other.practitioner.save()
        admin = make_user("admin.one", roles.ADMIN_STAFF)
        book = lambda referral, who, kind, start, minutes: book_appointment(  # noqa: E731
            referral=referral, practitioner=who, appointment_type=kind, start=start, duration_minutes=minutes, actor=admin
        )

        # A: received 2 Mar; rearranged twice before the assessment (once late, once with notice).
        a = make_referral(pwp, received_on=datetime.date(2026, 3, 2), actor=admin)
        call(a, pwp, london(2026, 3, 3, 9))  # failed call before the period (counts before assessment)
        call(a, pwp, london(2026, 3, 5, 9), "answered")  # first contact, before the period
        first = book(a, pwp, "assessment", london(2026, 3, 16, 10), 60)
        second = rearrange_appointment(
            appointment=first, new_start=london(2026, 3, 20, 10), asked_by="patient", asked_at=london(2026, 3, 15, 12), actor=admin
        ).replacement  # 22 h notice: 60 lost (before the period, but before A's assessment)
        third = rearrange_appointment(
            appointment=second, new_start=london(2026, 3, 24, 10), asked_by="patient", asked_at=london(2026, 3, 18, 10), actor=admin
        ).replacement  # 48 h notice: slot released, nothing lost
        call(a, pwp, london(2026, 3, 24, 9))  # on the assessment day, before it: a contact and a failed call (5 min)
        call(a, pwp, london(2026, 3, 24, 10), "answered", appointment=third)  # at the start: not "before"
        attended(third)  # booked 60, attended 60. A: 3 contacts before, 60 + 2 x 5 = 70 lost before; waited 22 days

        # B: referred in January (before the period), assessed late-but-seen in the period.
        b = make_referral(other, received_on=datetime.date(2026, 1, 5), source="H2", actor=admin)
        undone = call(b, other, london(2026, 3, 24, 12))
        ContactAttemptUndo.objects.create(attempt=undone, undone_by=other)  # undone: counts nowhere
        attended(book(b, other, "assessment", london(2026, 3, 25, 14), 60), "6")  # booked 60, attended 60; 0 contacts; 79 days

        # C: a DNA, a cancellation exactly at the threshold, one a minute late, a late service cancellation on the DST day.
        c = make_referral(pwp, received_on=datetime.date(2026, 3, 10), actor=admin)
        call(c, pwp, london(2026, 3, 22, 9))  # Sunday before the period: not in it
        c1 = book(c, pwp, "assessment", london(2026, 3, 23, 9), 60)
        call(c, pwp, london(2026, 3, 23, 9, 5), appointment=c1)  # made at a booked appointment: not a failed call
        record_appointment_outcome(appointment=c1, outcome="3", at=c1.start)  # booked 60, dna 60
        c2 = book(c, pwp, "assessment", london(2026, 3, 27, 11), 60)
        cancel_appointment(appointment=c2, cancelled_by="patient", reason="", asked_at=london(2026, 3, 26, 11), actor=admin)  # exactly 24 h
        c3 = book(c, pwp, "assessment", london(2026, 3, 28, 11), 60)
        cancel_appointment(appointment=c3, cancelled_by="patient", reason="", asked_at=london(2026, 3, 27, 11, 1), actor=admin)  # late 60
        c4 = book(c, pwp, "review", london(2026, 3, 29, 10), 30)
        cancel_appointment(appointment=c4, cancelled_by="service", reason="", asked_at=london(2026, 3, 29, 8), actor=admin)  # service 30
        call(c, pwp, london(2026, 3, 25, 12), "answered")  # C's first contact, in the period: 15 days

        # D and E: first treatments in the period, 52 and 32 days after referral.
        d = make_referral(other, received_on=datetime.date(2026, 2, 2), actor=admin)
        attended(book(d, other, "assessment", london(2026, 2, 16, 10), 60))
        attended(book(d, other, "treatment", london(2026, 3, 26, 15), 45))  # booked 45, attended 45
        record_appointment_outcome(
            appointment=book(d, other, "treatment", london(2026, 3, 27, 15), 45), outcome="7", at=london(2026, 3, 27, 15)
        )  # booked 45, dna 45
        e = make_referral(other, received_on=datetime.date(2026, 2, 20), actor=admin)
        attended(book(e, other, "assessment", london(2026, 3, 5, 10), 60))
        attended(book(e, other, "treatment", london(2026, 3, 24, 16), 45))  # booked 45, attended 45
    return {"pwp": pwp, "other": other, "team": other.practitioner.team, "referrals": (a, b, c, d, e)}


def report(**filters):
    with time_machine.travel(FROZEN, tick=False):
        return build_report(ReportParams(**WEEK, **filters))


def test_it_computes_booked_attended_and_lost_minutes_by_cause(service):
    r = report()
    assert r["booked_minutes"] == 405
    assert r["attended_minutes"] == 210
    assert r["lost_minutes"] == {"dna": 105, "late_cancellation": 60, "service_cancellation": 30, "failed_calls": 5, "total": 200}
    assert r["booked_lost_pct"] == 48.1  # 195 / 405
    assert r["lost_hours"] == 3.3
    assert r["equivalent_sessions_lost"] == 4.4
    assert r["cost_pounds"] == 116.67  # 200 min at £35 an hour


def test_a_cancellation_exactly_at_the_notice_threshold_releases_the_slot(service):
    assert report()["appointment_counts"]["late_cancellation"] == 1  # the one with 23 h 59 min notice only
    ServiceSettings.objects.filter(pk=1).update(late_cancellation_notice_hours=25)
    r = report()
    assert r["lost_minutes"]["late_cancellation"] == 120
    assert r["booked_minutes"] == 465


def test_it_reports_contacts_and_losses_before_the_first_assessment(service):
    pre = report()["pre_assessment"]
    assert pre == {
        "referrals_assessed": 2,
        "contacts_distribution": {"0": 1, "1": 0, "2": 0, "3": 1, "4+": 0},
        "contacts_median": 1.5,
        "contacts_p90": 3,
        "lost_minutes": 70,
    }


def test_it_reports_waits_against_the_six_and_eighteen_week_standards(service):
    waits = report()["waits"]
    assert waits["to_first_contact_median_days"] == 15
    assert waits["to_assessment_median_days"] == 50.5  # 22 and 79
    assert waits["to_first_treatment_median_days"] == 42  # 32 and 52
    assert waits["within_6_weeks_pct"] == 50.0
    assert waits["within_18_weeks_pct"] == 100.0


def test_it_filters_by_practitioner_team_source_and_appointment_type(service):
    by_other = report(practitioner_id=service["other"].pk)
    assert (by_other["booked_minutes"], by_other["attended_minutes"]) == (195, 150)
    assert by_other["lost_minutes"]["total"] == 45
    assert by_other["pre_assessment"]["referrals_assessed"] == 1
    assert report(team_id=service["team"].pk)["booked_minutes"] == 195
    by_source = report(source="H2")
    assert (by_source["booked_minutes"], by_source["pre_assessment"]["contacts_distribution"]["0"]) == (60, 1)
    treatments = report(appointment_type="treatment")
    assert treatments["booked_minutes"] == 135
    assert treatments["lost_minutes"]["failed_calls"] == 0


def test_the_per_practitioner_table_adds_up_to_the_totals(service):
    r = report()
    rows = {row["username"]: row for row in r["practitioners"]}
    assert rows["pwp.one"]["lost_minutes"] == {"dna": 60, "late_cancellation": 60, "service_cancellation": 30, "failed_calls": 5, "total": 155}
    assert sum(row["booked_minutes"] for row in rows.values()) == r["booked_minutes"]


def test_the_longest_held_list_shows_open_referrals_without_an_assessment(service):
    held = report()["longest_held_without_assessment"]
    a, b, c, d, e = service["referrals"]
    assert [row["referral_id"] for row in held] == [c.pk]
    assert held[0]["contacts"] == 3  # 22 Mar, 23 Mar at the appointment, 25 Mar answered
    assert held[0]["lost_minutes"] == 60 + 60 + 30 + 5  # dna, late, service, one failed call


def test_weeks_are_monday_to_sunday_in_uk_time_across_both_clock_changes(db):
    with time_machine.travel(london(2026, 12, 1, 12), tick=False):
        pwp = make_user("pwp.one", roles.PWP)
        referral = make_referral(pwp, received_on=datetime.date(2026, 3, 1))
        for start in (
            london(2026, 3, 29, 23, 30),  # Sunday night BST (22:30 UTC): week of 23 Mar
            london(2026, 3, 30, 0, 30),  # Monday 00:30 BST (Sunday 23:30 UTC): week of 30 Mar
            london(2026, 10, 25, 23, 30),  # Sunday after the clocks go back: week of 19 Oct
            london(2026, 10, 26, 0, 30),  # Monday: week of 26 Oct
        ):
            record_appointment_outcome(
                appointment=book_appointment(referral=referral, practitioner=pwp, appointment_type="treatment", start=start,
                                             duration_minutes=20),
                outcome="3", at=start,
            )
        spring = build_report(ReportParams(date_from=datetime.date(2026, 3, 23), date_to=datetime.date(2026, 4, 5)))
        autumn = build_report(ReportParams(date_from=datetime.date(2026, 10, 19), date_to=datetime.date(2026, 11, 1)))
        one_day = build_report(ReportParams(date_from=datetime.date(2026, 3, 30), date_to=datetime.date(2026, 3, 30)))
    assert [(w["week_starting"], w["dna"]) for w in spring["weekly_lost_minutes"]] == [("2026-03-23", 20), ("2026-03-30", 20)]
    assert [(w["week_starting"], w["dna"]) for w in autumn["weekly_lost_minutes"]] == [("2026-10-19", 20), ("2026-10-26", 20)]
    assert one_day["lost_minutes"]["dna"] == 20


def test_an_empty_period_has_no_medians_and_no_percentages(db):
    r = build_report(ReportParams(date_from=datetime.date(2026, 1, 1), date_to=datetime.date(2026, 1, 7)))
    assert r["booked_minutes"] == 0 and r["lost_minutes"]["total"] == 0
    assert r["pre_assessment"]["contacts_median"] is None and r["waits"]["within_6_weeks_pct"] is None


def test_the_command_prints_json_with_the_agreed_keys(service):
    out = StringIO()
    with time_machine.travel(FROZEN, tick=False):
        call_command("capacity_report", "--from", "2026-03-23", "--to", "2026-03-29", "--format", "json", stdout=out)
    data = json.loads(out.getvalue())
    assert {"period", "booked_minutes", "attended_minutes", "lost_minutes", "pre_assessment", "waits", "cost_pounds"} <= set(data)
    assert data["period"] == {"from": "2026-03-23", "to": "2026-03-29"}
    assert set(data["lost_minutes"]) == {"dna", "late_cancellation", "service_cancellation", "failed_calls", "total"}
    assert set(data["pre_assessment"]) == {"referrals_assessed", "contacts_distribution", "contacts_median", "contacts_p90", "lost_minutes"}
    assert set(data["waits"]) >= {"to_first_contact_median_days", "to_assessment_median_days", "to_first_treatment_median_days",
                                  "within_6_weeks_pct", "within_18_weeks_pct"}
    assert all(isinstance(v, int) for v in data["lost_minutes"].values())


def test_the_command_filters_by_practitioner_and_source_and_prints_csv_and_text(service):
    out = StringIO()
    with time_machine.travel(FROZEN, tick=False):
        call_command("capacity_report", "--from", "2026-03-23", "--to", "2026-03-29", "--practitioner", "pwp.two", "--format", "csv", stdout=out)
        assert "booked_minutes,195" in out.getvalue().splitlines()
        out = StringIO()
        call_command("capacity_report", "--from", "2026-03-23", "--to", "2026-03-29", "--source", "H2", "--format", "text", stdout=out)
    assert "Booked minutes            60" in out.getvalue()


# ---- pages --------------------------------------------------------------------------------------------------


@pytest.fixture
def manager_client(client, service):
    manager = make_user("manager.one", roles.MANAGER)
    client.force_login(manager)
    return client


def get(client, url, **params):
    with time_machine.travel(FROZEN, tick=False):
        return client.get(url, params)


def test_only_managers_see_the_capacity_page_and_exports(client, service):
    for username, role in (("pwp.x", roles.PWP), ("admin.x", roles.ADMIN_STAFF)):
        client.force_login(make_user(username, role))
        assert get(client, reverse("reports:capacity")).status_code == 403
        assert get(client, reverse("reports:export", args=["json"])).status_code == 403
        assert get(client, reverse("reports:rows"), figure="dna").status_code == 403


def test_the_capacity_page_shows_figures_charts_and_links_to_their_rows(manager_client):
    page = get(manager_client, reverse("reports:capacity"), **{"from": "2026-03-23", "to": "2026-03-29"})
    html = page.content.decode()
    assert page.status_code == 200
    assert html.count("<svg") == 3 and "<script" not in html and "style=" not in html
    assert "48.1%" in html and "£116.67" in html
    dna_rows = get(manager_client, reverse("reports:rows"), figure="dna", **{"from": "2026-03-23", "to": "2026-03-29"})
    assert dna_rows.status_code == 200
    assert dna_rows.context["page"].paginator.count == 2 and dna_rows.context["total"] == 105
    pre = get(manager_client, reverse("reports:rows"), figure="pre_assessment", contacts="3", **{"from": "2026-03-23", "to": "2026-03-29"})
    assert [row.contacts_before for row in pre.context["page"]] == [3]


def test_exports_give_the_same_report_as_csv_and_json(manager_client):
    query = {"from": "2026-03-23", "to": "2026-03-29", "source": "A1"}
    data = json.loads(get(manager_client, reverse("reports:export", args=["json"]), **query).content)
    assert data["booked_minutes"] == 345 and data["filters"]["source"] == "A1"
    csv_text = get(manager_client, reverse("reports:export", args=["csv"]), **query).content.decode()
    assert "booked_minutes,345" in csv_text.splitlines() and "lost_minutes.total,200" in csv_text.splitlines()


def test_a_period_ending_before_it_starts_is_refused(manager_client):
    page = get(manager_client, reverse("reports:capacity"), **{"from": "2026-03-29", "to": "2026-03-23"})
    assert page.status_code == 400
    assert "before its start" in page.content.decode()


@pytest.mark.browser
def test_a_manager_follows_a_chart_bar_to_its_rows_without_javascript_at_phone_width(transactional_db, service, live_server, browser_without_js, client):
    from django.conf import settings as django_settings
    from selenium.webdriver.common.by import By

    manager = make_user("manager.one", roles.MANAGER)
    client.force_login(manager)
    driver = browser_without_js
    driver.set_window_size(390, 900)
    driver.get(live_server.url + "/login/")
    driver.add_cookie({"name": django_settings.SESSION_COOKIE_NAME, "value": client.cookies[django_settings.SESSION_COOKIE_NAME].value, "path": "/"})
    driver.get(f"{live_server.url}{reverse('reports:capacity')}?from=2026-03-23&to=2026-03-29")
    assert driver.find_element(By.TAG_NAME, "h1").text == "Capacity and slot wastage"
    bars = driver.find_elements(By.CSS_SELECTOR, "figure svg a")
    assert len(bars) >= 5
    assert driver.find_element(By.CSS_SELECTOR, "figure svg").size["width"] <= 390
    dna_link = driver.find_element(By.XPATH, "//th[normalize-space()='Did not attend (3, 7)']/following-sibling::td/a")
    dna_link.click()
    assert driver.find_element(By.TAG_NAME, "h1").text == "Did not attend (3, 7)"
    assert "Minutes: 105" in driver.find_element(By.CSS_SELECTOR, "p.meta").text


def test_the_rows_behind_late_cancellations_show_the_notice_given(manager_client):
    page = get(manager_client, reverse("reports:rows"), figure="late_cancellation", **{"from": "2026-03-23", "to": "2026-03-29"})
    assert "23 h 59 min notice" in page.content.decode()
    released = get(manager_client, reverse("reports:rows"), figure="booked", **{"from": "2026-03-23", "to": "2026-03-29"})
    assert "24 h 00 min" not in released.content.decode()  # the cancellation exactly at the threshold is not booked


def test_the_report_indexes_cover_exactly_the_open_statuses_and_the_successful_outcomes():
    open_index = next(i for i in Referral._meta.indexes if i.name == "referral_open_received_idx")
    assert open_index.condition == Q(status__in=[str(s) for s in Referral.OPEN_STATUSES])
    successful_index = next(i for i in ContactAttempt._meta.indexes if i.name == "attempt_successful_idx")
    assert successful_index.condition == Q(outcome__in=sorted(ContactAttempt.SUCCESSFUL_OUTCOMES))
