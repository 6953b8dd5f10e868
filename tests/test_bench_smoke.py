"""Every benchmark command still runs, at a tiny size, so a change that breaks one fails the suite (the
figures are not asserted, only that each prints them with their spread). The PostgreSQL-only ones run in
the PostgreSQL pass. bench_call_list and bench_reminders have their own tests (test_bench_call_list.py,
test_bench_reminders.py)."""

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from scheduling import roles
from scheduling.booking.models import Appointment
from scheduling.calls.models import ContactAttempt
from scheduling.caseload.models import Referral
from tests.factories import make_referral, make_user

SPREAD = {"min", "median", "max"}


def _json(text: str) -> dict:
    return json.loads(text[text.index("{\n"): text.rindex("}") + 1])


def _assert_spread(figure: dict):
    assert set(figure) == SPREAD and figure["min"] <= figure["median"] <= figure["max"]


def test_the_slot_finder_benchmark_prints_its_ratios_with_their_spread(db):
    out = StringIO()
    call_command("bench_slot_finder", practitioners=2, weeks=1, repeat=3, stdout=out)
    result = _json(out.getvalue())
    assert result["practitioners"] == 2 and result["appointments_in_range"] > 0
    for key in ("next_10_free_slots_whole_team_ratio", "every_free_slot_8_weeks_whole_team_ratio", "baseline_single_indexed_query_seconds"):
        _assert_spread(result[key])
    assert not Appointment.objects.exists()  # rolled back


@pytest.mark.postgres_only
def test_the_capacity_report_benchmark_builds_its_service_and_agrees_with_the_hand_written_sql(db):
    if connection.vendor != "postgresql":
        pytest.skip("The benchmark runs on PostgreSQL only (it refuses SQLite, see below)")
    out = StringIO()
    # Two practitioners with 60 appointments a year: about two a day each, so the generator must find
    # free slots and keep to the no-overlap constraint; the command fails if its figures differ from the
    # hand-written reference's.
    call_command("bench_capacity_report", practitioners=2, appointments=300, attempts=1500, extra_years=1, repeat=2, stdout=out)
    text = out.getvalue()
    assert "The report's figures equal the hand-written reference's." in text
    result = _json(text)
    assert result["history_years"] == 2 and result["headline_totals"]["booked"] > 0
    for key in ("year_report_to_reference_ratio", "year_report_to_six_totals_ratio", "week_report_history_ratio", "year_report_seconds"):
        _assert_spread(result[key])
    assert set(result["year_report_parts_seconds"]) == {
        "headline_weekly_practitioners",
        "pre_assessment_and_assessment_wait",
        "first_contact_wait",
        "first_treatment_waits",
        "longest_held_without_assessment",
        "recovered_capacity",
    }
    assert Appointment.objects.count() == 300 and ContactAttempt.objects.count() == 1500 and Referral.objects.count() == 60


@pytest.mark.postgres_only
def test_the_capacity_report_benchmark_refuses_a_database_that_holds_referrals(db):
    if connection.vendor != "postgresql":
        pytest.skip("On SQLite the benchmark refuses the database before looking at it")
    make_referral(make_user("pwp.one", roles.PWP))
    with pytest.raises(CommandError, match="already holds referrals"):
        call_command("bench_capacity_report", practitioners=1, appointments=5, attempts=5, stdout=StringIO())
    assert Referral.objects.count() == 1 and not Appointment.objects.exists()


def test_the_capacity_report_benchmark_refuses_anything_but_postgresql(db):
    if connection.vendor == "postgresql":
        pytest.skip("Only meaningful on another database")
    with pytest.raises(CommandError, match="runs on PostgreSQL"):
        call_command("bench_capacity_report", practitioners=1, appointments=5, attempts=5, stdout=StringIO())


def test_the_offer_candidate_benchmark_prints_its_ratios_with_their_spread(db):
    out = StringIO()
    call_command("bench_offer_candidates", referrals=60, practitioners=2, repeat=3, stdout=out)
    result = _json(out.getvalue())
    assert result["open_referrals"] == 60 and result["candidates_found"] <= 3
    for key in ("candidate_search_caseload_ratio", "candidate_search_whole_team_ratio", "baseline_single_indexed_query_seconds"):
        _assert_spread(result[key])
    assert not Referral.objects.exists()  # rolled back
