"""The activity import refuses hostile and clashing rows cleanly: one transaction, every refusal names its line
and column, nothing half-imported; no traceback (OverflowError, DataError, IntegrityError) reaches the user."""

import re
from io import StringIO

import pytest
import time_machine
from django.core.management import CommandError, call_command

from scheduling.booking.models import Appointment
from scheduling.caseload.models import PractitionerProfile
from scheduling.reports import services
from tests.booking_helpers import book
from tests.factories import london, make_referral
from tests.test_activity_import import FROZEN, GOOD, HEADER, counts

COLUMNS = services.COLUMNS
DATE_COLUMNS = {"at", "cancelled_at"}
NUMERIC_COLUMNS = {"nhs_number", "duration_minutes", "at", "cancelled_at"}
HOSTILE = {
    "nul": "R\x001",
    "far_future": "9999-12-31T23:30:00-05:00",
    "far_past": "0001-01-01T00:00:00+05:00",
    "just_outside": "2101-01-01",
    "non_ascii_digits": "٢٠٢٦-٠٣-٢٤T١٠:٠٠",
    "non_ascii_number": "٤٥",
    "non_ascii_nhs_number": "٩٩٩٠٠٠٠٠١٨",
    "huge": "9" * 5000,
    "over_csv_limit": "x" * 200_000,
    "empty": "",
    "html": '<script>alert("x")</script>',
    "control": "R\x1b[2J1",
}
# Values no column may take: the import must refuse them (the rest may be refused or, where harmless, imported).
ALWAYS_REFUSED = {"nul", "huge", "over_csv_limit", "control"}


def run(tmp_path, text):
    path = tmp_path / "activity.csv"
    path.write_text(text, encoding="utf-8")
    out, err = StringIO(), StringIO()
    with time_machine.travel(FROZEN, tick=False):
        call_command("import_activity", str(path), stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def refusal(tmp_path, text) -> list[str]:
    """The refusal lines printed; fails if the import succeeded or anything other than a clean refusal was raised."""
    err = StringIO()
    path = tmp_path / "activity.csv"
    path.write_text(text, encoding="utf-8")
    with time_machine.travel(FROZEN, tick=False), pytest.raises(CommandError, match="nothing was imported"):
        call_command("import_activity", str(path), stdout=StringIO(), stderr=err)
    return [line for line in err.getvalue().splitlines() if line.startswith("line ")]


def with_value(column: str, value: str) -> str:
    """GOOD with `column` set to `value` on every row (quoted, so commas and quotes stay in the field)."""
    lines = GOOD.splitlines()
    out = [lines[0]]
    for line in lines[1:]:
        fields = line.split(",")
        fields[COLUMNS.index(column)] = '"' + value.replace('"', '""') + '"'
        out.append(",".join(fields))
    return "\n".join(out) + "\n"


@pytest.mark.parametrize("column", COLUMNS)
@pytest.mark.parametrize("kind", HOSTILE)
def test_a_hostile_value_in_any_column_is_refused_cleanly_naming_line_and_column_or_imported_harmlessly(db, tmp_path, column, kind):
    text = with_value(column, HOSTILE[kind])
    must_refuse = kind in ALWAYS_REFUSED or (
        column in DATE_COLUMNS and kind in {"far_future", "far_past", "just_outside", "non_ascii_digits", "html"}
    ) or (column in NUMERIC_COLUMNS and kind.startswith("non_ascii"))
    try:
        run(tmp_path, text)
    except CommandError as exc:
        assert "nothing was imported" in str(exc)
        assert counts() == (0, 0, 0, 0, 0, 0, 0)
        lines = [line for line in refusal(tmp_path, text)]
        assert lines and all(re.match(r"line \d+: ", line) for line in lines)
        if must_refuse and kind not in {"over_csv_limit"}:
            assert any(f"'{column}'" in line or f"{column} '" in line for line in lines), lines
        return
    assert not must_refuse, f"{column}={kind!r} was imported"
    assert "\x00" not in str(list(Appointment.objects.values_list("appointment_type", "cancellation_reason")))


def test_a_far_future_time_with_an_offset_is_refused_naming_the_line_and_column(db, tmp_path):
    text = GOOD + "R1,,Alex Example,appointment,9999-12-31T23:30:00-05:00,treatment,45,,,\n"
    lines = refusal(tmp_path, text)
    assert lines == ["line 12: unparseable time in 'at' ('9999-12-31T23:30:00-05:00'): 9999-12-31 is outside the dates "
                     "this service works with (01/01/1900 to 31/12/2100)."]
    assert counts() == (0, 0, 0, 0, 0, 0, 0)


def test_overlapping_appointments_in_the_file_are_refused_naming_both_lines(db, tmp_path):
    text = GOOD + (
        "R2,,Sam Sample,appointment,2026-04-01T10:00,assessment,60,attended,,\n"  # line 12
        "R2,,Sam Sample,appointment,2026-04-01T10:30,treatment,45,attended,,\n"  # line 13: inside line 12's hour
        "R2,,Sam Sample,appointment,2026-04-01T11:15,treatment,45,attended,,\n"  # line 14: starts as line 13 ends: fine
        "R1,,Sam Sample,appointment,2026-04-01T10:15,review,30,cancelled_by_patient,2026-03-30T09:00,\n"  # cancelled: fine
    )
    lines = refusal(tmp_path, text)
    assert len(lines) == 1
    assert lines[0].startswith("line 13: appointment at 'at' 01/04/2026 10:30-11:15 UK time overlaps sam.sample's live appointment on line 12")
    assert counts() == (0, 0, 0, 0, 0, 0, 0)


def test_an_appointment_overlapping_one_in_the_database_is_refused_and_nothing_is_imported(db, tmp_path, pwp, admin_user):
    with time_machine.travel(london(2026, 3, 1, 9), tick=False):
        book(make_referral(pwp, actor=admin_user), pwp, london(2026, 4, 1, 10), actor=admin_user)
    before = counts()
    text = GOOD + "R2,,pwp.one,appointment,2026-04-01T10:30,treatment,45,attended,,\n"
    lines = refusal(tmp_path, text)
    assert lines == ["line 12: appointment at 'at' 01/04/2026 10:30-11:15 UK time overlaps a live appointment of pwp.one "
                     "already in the database (01/04/2026 10:00-11:00 UK time)"]
    assert counts() == before


def test_the_database_guard_refuses_an_overlap_the_checks_missed_naming_the_line(db, tmp_path, pwp, admin_user, monkeypatch):
    """As if the clashing booking were made between the file's checks and its import (a race)."""
    with time_machine.travel(london(2026, 3, 1, 9), tick=False):
        book(make_referral(pwp, actor=admin_user), pwp, london(2026, 4, 1, 10), actor=admin_user)
    before = counts()
    monkeypatch.setattr(services, "_overlap_errors", lambda *args: [])
    lines = refusal(tmp_path, GOOD + "R2,,pwp.one,appointment,2026-04-01T10:30,treatment,45,attended,,\n")
    assert lines == ["line 12: the appointment in 'at' overlaps a live appointment of the same practitioner booked "
                     "since the file was checked"]
    assert counts() == before


def test_reimporting_a_file_does_not_find_its_own_appointments_overlapping(db, tmp_path):
    run(tmp_path, GOOD)
    before = counts()
    out, _ = run(tmp_path, GOOD + GOOD[len(HEADER):])  # every row again, twice
    assert "Imported 0 referral_received, 0 call_attempt, 0 appointment." in out
    assert counts() == before


@pytest.mark.parametrize("column", ["practitioner"])
def test_an_admin_account_named_as_practitioner_is_refused_naming_every_line(db, tmp_path, admin_user, manager, column):
    text = HEADER + (
        "R1,9990000018,admin.one,referral_received,2026-03-02,,,,,A1\n"  # line 2
        "R1,,manager.one,call_attempt,2026-03-03T10:00,,,no_answer,,\n"  # line 3
        "R1,,Manager.One,appointment,2026-03-10T10:00,assessment,60,attended,,\n"  # line 4
    )
    lines = refusal(tmp_path, text)
    assert [line.split(":")[0] for line in lines] == ["line 2", "line 3", "line 4"]
    assert all(f"in '{column}' is an existing account that is not a practitioner" in line for line in lines)
    assert not PractitionerProfile.objects.filter(user__in=[admin_user, manager]).exists()
    assert counts()[0] == 0


def test_every_refusal_names_its_line_and_column(db, tmp_path):
    text = GOOD + (
        "R1,,Alex Example,phone_call,2026-04-01T10:00,,,answered,,\n"
        "R3,9990000019,Alex Example,referral_received,2026-04-01,,,,,A1\n"
        "R1,,Alex Example,call_attempt,1st April,,,no_answer,,\n"
        "R1,,Alex Example,appointment,2026-04-02T10:00,treatment,45,voicemail,,\n"
        "R9,,Alex Example,call_attempt,2026-04-02T11:00,,,busy,,\n"
        "R1,,Alex Example,appointment,2026-04-03T10:00,treatment,45,cancelled_by_patient,,\n"
        "R4,9990000026,Alex Example,referral_received,2026-07-01,,,,,A1\n"  # received in the future
        "R1,,Alex Example,call_attempt,2026-07-01T10:00,,,busy,,\n"  # a call in the future
        "R1,9990000026,Alex Example,call_attempt,2026-04-02T12:00,,,busy,,\n"  # another patient's NHS number
        "R2,9990000026,Sam Sample,referral_received,2026-03-21T09:00,,,,,H2\n"  # R2 received twice
        "R1,,Alex Example,appointment,2026-04-05T10:00,treatment,999,,,\n"
        "R1,,Alex Example,appointment,2026-04-06T10:00,treatment,45,attended,2026-04-01T10:00,\n"
        "R1,,Alex Example,call_attempt,2026-04-07T10:00,review,,busy,,\n"  # no such appointment
        ",,Alex Example,call_attempt,2026-04-07T10:00,,,busy,,\n"
        "R1,,,call_attempt,2026-04-07T10:00,,,busy,,\n"
    )
    lines = refusal(tmp_path, text)
    assert len(lines) >= 15
    for line in lines:
        assert re.match(r"line \d+: ", line)
        # The column quoted ('at'), or followed by the value it holds (outcome 'voicemail').
        assert any(f"'{column}'" in line or f": {column} '" in line for column in COLUMNS), line
    assert counts() == (0, 0, 0, 0, 0, 0, 0)
