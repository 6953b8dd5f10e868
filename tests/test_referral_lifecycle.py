import itertools
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from scheduling.audit import AuditEntry
from scheduling.caseload.models import Patient, Referral
from scheduling.caseload.services import (
    DuplicatePatient,
    change_referral_status,
    create_referral,
    discharge_referral,
    register_patient,
)
from scheduling.codes import EndOfCare
from tests.factories import make_patient, make_referral

S = Referral.Status
ALLOWED = [(a, b) for a, targets in Referral.TRANSITIONS.items() for b in targets if b != S.DISCHARGED]
REFUSED = [
    (a, b) for a, b in itertools.product(S.values, S.values)
    if b not in Referral.TRANSITIONS[a] and b != S.DISCHARGED
]


def put_in_status(referral, status):
    Referral.objects.filter(pk=referral.pk).update(status=status)
    referral.refresh_from_db()


@pytest.mark.parametrize("from_status,to_status", ALLOWED)
def test_it_allows_and_audits_each_permitted_transition(referral, pwp, from_status, to_status):
    put_in_status(referral, from_status)
    change_referral_status(referral=referral, to_status=to_status, actor=pwp, reason="test")
    referral.refresh_from_db()
    assert referral.status == to_status
    entry = AuditEntry.objects.filter(referral=referral).latest("id")
    assert (entry.field, entry.old_value, entry.new_value, entry.actor) == ("status", from_status, to_status, pwp)


@pytest.mark.parametrize("from_status,to_status", REFUSED)
def test_it_refuses_each_forbidden_transition_and_changes_nothing(referral, pwp, from_status, to_status):
    put_in_status(referral, from_status)
    before = AuditEntry.objects.count()
    with pytest.raises(ValidationError) as exc:
        change_referral_status(referral=referral, to_status=to_status, actor=pwp)
    assert exc.value.code == "invalid_transition"
    referral.refresh_from_db()
    assert referral.status == from_status
    assert AuditEntry.objects.count() == before


def test_discharge_needs_the_discharge_service_so_an_end_code_is_recorded(referral, pwp):
    with pytest.raises(ValidationError) as exc:
        change_referral_status(referral=referral, to_status=S.DISCHARGED, actor=pwp)
    assert exc.value.code == "needs_end_code"


@pytest.mark.parametrize("status", [s for s in S.values if s != S.DISCHARGED])
def test_any_open_referral_can_be_discharged_with_an_end_code(referral, admin_user, status):
    put_in_status(referral, status)
    end = EndOfCare.COMPLETED if status == S.IN_TREATMENT else EndOfCare.INCOMPLETE_ASSESSMENT
    discharge_referral(referral=referral, end_code=end, actor=admin_user, reason="test")
    referral.refresh_from_db()
    assert (referral.status, referral.end_code, referral.ended_on) == (S.DISCHARGED, end, timezone.localdate())
    fields = list(AuditEntry.objects.filter(referral=referral).values_list("field", "new_value").order_by("-id")[:2])
    assert fields == [("end_code", end), ("status", S.DISCHARGED)]


def test_a_discharged_referral_cannot_be_discharged_again(referral, admin_user):
    discharge_referral(referral=referral, end_code=EndOfCare.NOT_ASSESSED, actor=admin_user)
    with pytest.raises(ValidationError):
        discharge_referral(referral=referral, end_code=EndOfCare.NOT_ASSESSED, actor=admin_user)


def test_end_code_50_is_refused_for_someone_who_was_assessed(referral, pwp, admin_user):
    from scheduling.booking.services import book_appointment, record_appointment_outcome

    start = timezone.now() - timedelta(hours=2)
    appt = book_appointment(referral=referral, practitioner=pwp, appointment_type="assessment", start=start, actor=admin_user)
    record_appointment_outcome(appointment=appt, outcome="5", actor=pwp)
    with pytest.raises(ValidationError) as exc:
        discharge_referral(referral=referral, end_code=EndOfCare.NOT_ASSESSED, actor=admin_user)
    assert "end_code" in exc.value.message_dict


def test_an_unknown_end_code_is_refused(referral, admin_user):
    with pytest.raises(ValidationError) as exc:
        discharge_referral(referral=referral, end_code="99", actor=admin_user)
    assert "'99' is not an end-of-care code" in str(exc.value)


def test_discharge_cancels_future_appointments_as_service_cancellations(referral, pwp, admin_user):
    from scheduling.booking.services import book_appointment

    appt = book_appointment(
        referral=referral, practitioner=pwp, appointment_type="assessment", start=timezone.now() + timedelta(days=3),
        actor=admin_user,
    )
    discharge_referral(referral=referral, end_code=EndOfCare.NOT_ASSESSED, actor=admin_user)
    appt.refresh_from_db()
    assert appt.outcome == "4" and appt.cancelled_by == "service"


def test_creating_a_referral_audits_its_first_status(pwp, admin_user):
    referral = make_referral(pwp, actor=admin_user)
    entry = AuditEntry.objects.get(referral=referral)
    assert (entry.field, entry.old_value, entry.new_value, entry.actor) == ("status", "", S.AWAITING_CONTACT, admin_user)


def test_a_referral_with_a_bad_source_or_future_date_is_refused_and_nothing_saved(db):
    patient = make_patient()
    with pytest.raises(ValidationError) as exc:
        create_referral(
            patient=patient, source="ZZ", received_on=timezone.localdate() + timedelta(days=1), reason="", step=4
        )
    assert set(exc.value.message_dict) == {"source", "received_on", "reason", "step"}
    assert not Referral.objects.exists()


def test_a_duplicate_nhs_number_is_refused_with_the_existing_patient(db):
    first = make_patient(nhs_number="999 000 0018")
    with pytest.raises(DuplicatePatient) as exc:
        make_patient(nhs_number="9990000018")
    assert exc.value.existing == first
    assert Patient.objects.count() == 1


def test_register_patient_names_every_bad_field_and_saves_nothing(db):
    with pytest.raises(ValidationError) as exc:
        register_patient(
            nhs_number="9990000019", given_name="", family_name="X", date_of_birth=timezone.localdate() + timedelta(days=1),
            mobile_phone="01632 960001", sms_consent=True, preferred_days=[9], preferred_times=["midnight"],
        )
    assert set(exc.value.message_dict) == {
        "nhs_number", "given_name", "date_of_birth", "mobile_phone", "preferred_days", "preferred_times",
    }
    assert not Patient.objects.exists()


def test_contact_windows_read_like_staff_would_say_them(db):
    p = make_patient(preferred_days=[0, 1, 3, 4], preferred_times=["morning"])
    assert p.contact_windows_display == "weekdays, not Wed, mornings"
    assert make_patient().contact_windows_display == "any day, any time"
