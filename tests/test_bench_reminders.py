"""The SMS benchmark keeps working: a few due reminders through a real qcluster to the fake Twilio
server, each sent once. Behaviour only; the figures it prints are not asserted."""

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from scheduling.caseload.models import Patient
from scheduling.reminders.models import OutboundMessage
from tests.factories import make_patient


def _result(text: str) -> dict:
    return json.loads(text[text.index("{\n"): text.rindex("}") + 1])


@pytest.mark.e2e
@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_the_benchmark_sends_every_due_reminder_through_the_queue_once():
    if connection.vendor != "postgresql":
        pytest.skip("The benchmark runs on PostgreSQL only (it refuses SQLite, see the test below)")
    out = StringIO()
    # transaction=True: the qcluster the command starts is another process and must see committed rows
    # in this (test) database, which the command hands it as DATABASE_URL.
    call_command("bench_reminders", messages=20, workers=2, timeout=60, repeats=2, stdout=out, stderr=StringIO())
    result = _result(out.getvalue())
    assert result["duplicates"] == 0 and result["problems"] == []
    assert result["rows"] == result["rows_handed_over"] == result["fake_messages_created"] == 40
    # Each round has its own rows, plain loop and queued run, checked on their own.
    assert [each["round"] for each in result["rounds"]] == [1, 2]
    for each in result["rounds"]:
        assert each["rows"] == each["rows_handed_over"] == each["fake_messages_created"] == 20
        assert each["duplicates"] == 0 and each["baseline_msgs_per_s"] > 0 and each["queue_msgs_per_s"] > 0
    ratios = sorted(each["queue_to_baseline_ratio"] for each in result["rounds"])
    assert result["queue_to_baseline_ratio"]["min"] == ratios[0] and result["queue_to_baseline_ratio"]["max"] == ratios[-1]
    assert ratios[0] <= result["queue_to_baseline_ratio"]["median"] <= ratios[-1]
    assert OutboundMessage.objects.filter(status=OutboundMessage.Status.SENT, attempts=1).count() == 40
    sids = set(OutboundMessage.objects.values_list("provider_sid", flat=True))
    assert len(sids) == 40 and "" not in sids
    assert "All checks passed" in out.getvalue()


@pytest.mark.postgres_only
def test_the_benchmark_refuses_a_database_that_holds_patients(db):
    if connection.vendor != "postgresql":
        pytest.skip("On SQLite the benchmark refuses the database before looking at it")
    make_patient()
    with pytest.raises(CommandError, match="already holds patients"):
        call_command("bench_reminders", messages=5, stdout=StringIO())
    assert Patient.objects.count() == 1 and not OutboundMessage.objects.exists()


def test_the_benchmark_refuses_anything_but_postgresql(db):
    if connection.vendor == "postgresql":
        pytest.skip("Only meaningful on another database")
    with pytest.raises(CommandError, match="runs on PostgreSQL"):
        call_command("bench_reminders", messages=5, stdout=StringIO())
    assert not Patient.objects.exists()
