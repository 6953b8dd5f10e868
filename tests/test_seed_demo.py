import pytest
import time_machine
from django.core.management import CommandError, call_command
from django.db import transaction

from scheduling.booking.models import Appointment
from scheduling.calls.models import ContactAttempt
from scheduling.caseload.models import Patient, Referral
from scheduling.caseload.phones import is_fictional_number
from tests.factories import london, make_patient

FROZEN = london(2026, 11, 18, 12, 0)


def fingerprint():
    return (
        list(Patient.objects.order_by("nhs_number").values_list("nhs_number", "given_name", "family_name", "mobile_phone")),
        list(Referral.objects.order_by("received_on", "patient__nhs_number").values_list("patient__nhs_number", "source", "status")),
        list(Appointment.objects.order_by("start", "practitioner__username").values_list("practitioner__username", "start", "appointment_type", "outcome")),
        list(ContactAttempt.objects.order_by("attempted_at", "practitioner__username").values_list("attempted_at", "outcome")),
    )


def seed_and_fingerprint(seed):
    with transaction.atomic():
        call_command("seed_demo", "--seed", str(seed), "--referrals", "40", stdout=open("/dev/null", "w"))
        result = fingerprint()
        transaction.set_rollback(True)
    return result


@time_machine.travel(FROZEN, tick=False)
def test_the_demo_data_is_the_same_for_the_same_seed(db):
    first = seed_and_fingerprint(7)
    assert first[0] and first[2] and first[3]
    assert seed_and_fingerprint(7) == first
    assert seed_and_fingerprint(8) != first


@time_machine.travel(FROZEN, tick=False)
def test_the_demo_service_is_realistic_and_uses_only_safe_identifiers(db, capsys):
    call_command("seed_demo", "--referrals", "120")
    out = capsys.readouterr().out
    assert "Referrals: 120/120" in out and "password" in out
    patients = Patient.objects.all()
    assert all(p.nhs_number.startswith("999") for p in patients)
    assert all(is_fictional_number(p.mobile_phone) for p in patients if p.mobile_phone)
    assert all(is_fictional_number(p.other_phone) for p in patients if p.other_phone)
    statuses = set(Referral.objects.values_list("status", flat=True))
    assert {"awaiting_contact", "assessment_booked", "in_treatment"} <= statuses
    assert ContactAttempt.objects.filter(outcome__in=["no_answer", "voicemail", "busy"]).count() > 30
    past = Appointment.objects.filter(start__lt=FROZEN).exclude(outcome__in=["2", "4"])
    dna_rate = past.filter(outcome="3").count() / past.count()
    first_dna_rate = past.filter(appointment_type="assessment", outcome="3").count() / past.filter(appointment_type="assessment").count()
    assert 0.05 < dna_rate < 0.3
    assert first_dna_rate > dna_rate
    assert Appointment.objects.filter(start__gt=FROZEN, outcome="0").exists()


def test_it_refuses_a_database_holding_real_patients(db):
    make_patient()
    with pytest.raises(CommandError, match="non-demo"):
        call_command("seed_demo", "--referrals", "5")
    assert Patient.objects.count() == 1


def test_it_refuses_to_load_twice_but_if_empty_succeeds_quietly(db):
    call_command("seed_demo", "--referrals", "3", stdout=open("/dev/null", "w"))
    with pytest.raises(CommandError, match="already loaded"):
        call_command("seed_demo", "--referrals", "3")
    call_command("seed_demo", "--if-empty", stdout=open("/dev/null", "w"))
    assert Referral.objects.count() == 3


@time_machine.travel(FROZEN, tick=False)
def test_the_demo_has_offers_in_flight_and_the_replay_is_a_deterministic_labelled_estimate_that_writes_nothing(db):
    import json
    from io import StringIO

    from scheduling.audit import AuditEntry
    from scheduling.offers.models import OfferedSlot, OfferInvitation, OfferSettings

    call_command("seed_demo", "--referrals", "60", stdout=StringIO())
    assert OfferSettings.current().enabled
    assert OfferedSlot.objects.filter(status=OfferedSlot.Status.OPEN).exists() and OfferInvitation.objects.exists()
    assert Appointment.objects.filter(wants_sooner=True).exists()
    rows = (Appointment.objects.count(), OfferedSlot.objects.count(), AuditEntry.objects.count())

    def replay(seed):
        out = StringIO()
        call_command("replay_offers", "--seed", str(seed), stdout=out)
        return json.loads(out.getvalue())

    first = replay(5)
    assert first == replay(5)
    assert first["estimate"] is True and "ESTIMATE" in first["label"] and "probability 0.35" in first["patient_response_model"]
    assert first["releases_with_notice"] > 0 and 0 <= first["share_of_released_minutes_refilled"] <= 1
    assert (Appointment.objects.count(), OfferedSlot.objects.count(), AuditEntry.objects.count()) == rows
