"""The activity import: whole-file validation, idempotent re-import, and the report on imported data."""

import datetime
from io import StringIO

import pytest
import time_machine
from django.core.management import CommandError, call_command

from scheduling.audit import AuditEntry
from scheduling.booking.models import Appointment, Rearrangement
from scheduling.calls.models import ContactAttempt, OptInInvitation, WrongNumberMark
from scheduling.caseload.models import Patient, Referral
from scheduling.worklist.models import AdminTask
from scheduling.reports.models import ImportedEvent
from scheduling.reminders.models import OutboundMessage
from scheduling.reports.selectors import ReportParams, build_report
from tests.factories import london, make_patient

FROZEN = london(2026, 6, 1, 12)
HEADER = "referral_id,nhs_number,practitioner,event,at,appointment_type,duration_minutes,outcome,cancelled_at,source\n"
GOOD = HEADER + (
    "R1,999 000 0018,Alex Example,referral_received,2026-03-02,,,,,A1\n"
    "R1,9990000018,Alex Example,call_attempt,2026-03-03T10:00,,,no_answer,,\n"
    "R1,9990000018,Alex Example,call_attempt,2026-03-04T10:00:00+00:00,,,answered,,\n"
    "R1,,Alex Example,appointment,2026-03-10T10:00,assessment,60,rearranged_by_patient,2026-03-09T15:00,\n"
    "R1,,Alex Example,appointment,2026-03-17T10:00,assessment,60,rearranged_by_patient,2026-03-15T10:00,\n"
    "R1,,Alex Example,appointment,2026-03-24T10:00,assessment,,attended,,\n"
    "R1,,Alex Example,call_attempt,2026-03-24T10:00,assessment,,answered,,\n"
    "R1,,Alex Example,appointment,2026-03-31T10:00,treatment,45,dna,,\n"
    "R2,9990000026,Sam Sample,referral_received,2026-03-20T09:00,,,,,H2\n"
    "R2,9990000026,Sam Sample,call_attempt,2026-03-23T09:00,,,voicemail,,\n"
)


def run_import(tmp_path, text, name="activity.csv"):
    path = tmp_path / name
    path.write_text(text)
    out, err = StringIO(), StringIO()
    with time_machine.travel(FROZEN, tick=False):
        call_command("import_activity", str(path), stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def counts():
    return (
        Referral.objects.count(), Patient.objects.count(), Appointment.objects.count(), ContactAttempt.objects.count(),
        Rearrangement.objects.count(), AuditEntry.objects.count(), ImportedEvent.objects.count(),
    )


def test_it_imports_referrals_calls_and_appointments_with_audit_entries(db, tmp_path):
    out, _ = run_import(tmp_path, GOOD)
    assert "Imported 2 referral_received, 4 call_attempt, 4 appointment." in out
    assert "New practitioners (no login): alex.example, sam.sample" in out
    r1 = Referral.objects.get(external_id="R1")
    assert r1.received_on == datetime.date(2026, 3, 2) and r1.status == Referral.Status.ASSESSED  # the treatment was a DNA
    assert r1.assigned_practitioner.username == "alex.example" and not r1.assigned_practitioner.has_usable_password()
    assert r1.patient.full_name == "Not recorded (imported)" and r1.patient.date_of_birth is None
    first = Appointment.objects.get(referral=r1, start=london(2026, 3, 10, 10))
    assert (first.outcome, first.cancelled_by, first.cancelled_at) == ("2", "patient", london(2026, 3, 9, 15))
    # Rearranged twice: each original is linked to the next assessment.
    chain = Rearrangement.objects.filter(original__referral=r1).order_by("original__start")
    assert [(x.original.start.day, x.replacement.start.day) for x in chain] == [(10, 17), (17, 24)]
    at_appointment = ContactAttempt.objects.get(referral=r1, attempted_at=london(2026, 3, 24, 10))
    assert at_appointment.appointment.start == london(2026, 3, 24, 10)
    assert AuditEntry.objects.filter(appointment=first, field="outcome", new_value="2").exists()
    assert Referral.objects.get(external_id="R2").status == Referral.Status.AWAITING_CONTACT


def test_reimporting_the_same_file_changes_nothing(db, tmp_path):
    run_import(tmp_path, GOOD)
    before = counts()
    out, _ = run_import(tmp_path, GOOD, name="again.csv")
    assert counts() == before
    assert "10 row(s) were already imported" in out


def test_the_report_measures_imported_history(db, tmp_path):
    run_import(tmp_path, GOOD)
    with time_machine.travel(FROZEN, tick=False):
        r = build_report(ReportParams(date_from=datetime.date(2026, 3, 1), date_to=datetime.date(2026, 3, 31)))
    # 10 Mar rearranged with 19 h notice (late, 60); 17 Mar with 48 h (released); 24 Mar attended; 31 Mar DNA (45).
    assert r["booked_minutes"] == 60 + 60 + 45
    assert r["lost_minutes"] == {"dna": 45, "late_cancellation": 60, "service_cancellation": 0, "failed_calls": 10, "total": 115}
    assert r["pre_assessment"]["contacts_distribution"]["2"] == 1  # 3 and 4 March; the call at the start is not before
    assert r["pre_assessment"]["lost_minutes"] == 60 + 5


def test_a_file_with_bad_rows_imports_nothing_and_names_every_bad_line(db, tmp_path):
    bad = GOOD + (
        "R1,,Alex Example,phone_call,2026-04-01T10:00,,,answered,,\n"  # line 12: unknown event
        "R3,9990000019,Alex Example,referral_received,2026-04-01,,,,,A1\n"  # line 13: invalid NHS number
        "R1,,Alex Example,call_attempt,1st April,,,no_answer,,\n"  # line 14: unparseable time
        "R1,,Alex Example,appointment,2026-04-02T10:00,treatment,45,voicemail,,\n"  # line 15: outcome not for an appointment
        "R1,,Alex Example,call_attempt,2026-04-02T11:00,,,attended,,\n"  # line 16: outcome not for a call
        "R9,,Alex Example,call_attempt,2026-04-02T11:00,,,busy,,\n"  # line 17: unknown referral
        "R1,,Alex Example,appointment,2026-04-03T10:00,treatment,45,cancelled_by_patient,,\n"  # line 18: no cancelled_at
        "R1,,Alex Example,appointment,2026-03-29T01:30,treatment,45,attended,,\n"  # line 19: 01:30 does not exist that day
    )
    with pytest.raises(CommandError, match="8 bad row"):
        run_import(tmp_path, bad)
    assert counts() == (0, 0, 0, 0, 0, 0, 0)
    err = StringIO()
    path = tmp_path / "bad.csv"
    path.write_text(bad)
    with time_machine.travel(FROZEN, tick=False), pytest.raises(CommandError):
        call_command("import_activity", str(path), stderr=err)
    lines = err.getvalue()
    assert "line 12: unknown event 'phone_call'" in lines
    assert "line 13: invalid NHS number" in lines
    assert "line 14: unparseable time in 'at'" in lines
    assert "line 15: outcome 'voicemail' is not valid for an appointment" in lines
    assert "line 16: outcome 'attended' is not valid for a call_attempt" in lines
    assert "line 17: unknown referral R9" in lines
    assert "line 18: outcome 'cancelled_by_patient' needs cancelled_at" in lines
    assert "line 19: unparseable time in 'at' ('2026-03-29T01:30'): does not exist in UK time" in lines


def test_a_call_said_to_be_at_an_appointment_must_match_one(db, tmp_path):
    text = GOOD + "R2,,Sam Sample,call_attempt,2026-03-25T09:00,assessment,,no_answer,,\n"
    with pytest.raises(CommandError):
        run_import(tmp_path, text)
    assert Referral.objects.count() == 0


def test_a_missing_column_is_reported_on_line_one(db, tmp_path):
    with pytest.raises(CommandError):
        run_import(tmp_path, "referral_id,event,at\nR1,referral_received,2026-03-01\n")


def test_each_imported_referral_moves_through_its_life_as_the_live_services_move_it(db, tmp_path):
    run_import(tmp_path, GOOD)
    r1 = Referral.objects.get(external_id="R1")
    trail = [(e.old_value, e.new_value, e.reason) for e in AuditEntry.objects.filter(referral=r1, field="status").order_by("at", "id")]
    assert trail == [
        ("", "awaiting_contact", "Referral received (activity import)"),
        ("awaiting_contact", "contacted", "First successful contact"),
        ("contacted", "assessment_booked", "Assessment booked"),  # 10 Mar, rearranged
        ("assessment_booked", "contacted", "Assessment needs rebooking"),
        ("contacted", "assessment_booked", "Assessment booked"),  # 17 Mar, rearranged
        ("assessment_booked", "contacted", "Assessment needs rebooking"),
        ("contacted", "assessment_booked", "Assessment booked"),  # 24 Mar, attended
        ("assessment_booked", "assessed", "Assessment attended"),
    ]
    assert AuditEntry.objects.filter(referral=r1, field="status").latest("at").at == london(2026, 3, 24, 10)


def test_imported_history_raises_no_follow_ups_and_plans_no_texts(db, tmp_path, pwp):
    patient = make_patient()  # consents to texts: a live booking would plan reminders
    text = HEADER + (
        f"R5,{patient.nhs_number},pwp.one,referral_received,2026-04-01,,,,,A1\n"
        "R5,,pwp.one,call_attempt,2026-04-02T10:00,,,no_answer,,\n"
        "R5,,pwp.one,call_attempt,2026-04-06T14:00,,,voicemail,,\n"
        "R5,,pwp.one,call_attempt,2026-04-08T18:00,,,busy,,\n"
        "R5,,pwp.one,call_attempt,2026-04-10T10:00,,,wrong_number,,\n"
        "R5,,pwp.one,call_attempt,2026-04-13T10:00,,,declined,,\n"
        "R5,,pwp.one,appointment,2026-06-10T10:00,assessment,60,,,\n"
    )
    run_import(tmp_path, text)
    referral = Referral.objects.get(external_id="R5")
    assert referral.patient == patient and referral.status == Referral.Status.ASSESSMENT_BOOKED
    assert not OptInInvitation.objects.exists() and not WrongNumberMark.objects.exists()
    assert not AdminTask.objects.exists() and not OutboundMessage.objects.exists()
