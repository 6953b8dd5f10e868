"""Who a patient is and how to reach them: NHS numbers, phones, dates, and registering with a referral.

Each refusal is checked at the boundary (service, form) and, for what the database can say, in the
database too, on whichever engine runs the suite (SQLite or PostgreSQL)."""

import threading
from datetime import date, timedelta

import phonenumbers
import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.forms import modelform_factory
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from scheduling import roles
from scheduling.caseload import services
from scheduling.audit import AuditEntry
from scheduling.caseload.models import Patient, Referral
from scheduling.caseload.nhs_number import normalise_nhs_number
from scheduling.caseload.services import (
    DuplicatePatient,
    create_referral,
    register_patient,
    register_patient_with_referral,
)
from tests.factories import london, make_patient, make_user, next_nhs_number
from tests.test_activity_import import HEADER, run_import

NOW = london(2026, 3, 2, 9, 0)
TODAY = NOW.date()
VALID = "9434765919"  # a valid NHS number (the NHS's own documentation example)
ARABIC_INDIC = VALID.translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"))
FULL_WIDTH = VALID.translate(str.maketrans("0123456789", "０１２３４５６７８９"))
DEVANAGARI = VALID.translate(str.maketrans("0123456789", "०१२३४५६७८९"))
MIXED = "９４３４７６５９١٩"  # full-width with two Arabic-Indic digits at the end
US_NUMBER = phonenumbers.format_number(
    phonenumbers.example_number_for_type("US", phonenumbers.PhoneNumberType.MOBILE), phonenumbers.PhoneNumberFormat.E164
)


def patient_fields(**overrides):
    values = dict(
        nhs_number=next_nhs_number(), given_name="Rowan", family_name="Example", date_of_birth=date(1980, 2, 1),
        mobile_phone="07700 900123", sms_consent=True,
    )
    values.update(overrides)
    return values


def referral_fields(**overrides):
    values = dict(source="A1", received_on=TODAY, reason="Fibromyalgia")
    values.update(overrides)
    return values


def form_post(**overrides):
    data = {
        "nhs_number": next_nhs_number(), "given_name": "Rowan", "family_name": "Example", "date_of_birth": "1980-02-01",
        "mobile_phone": "07700 900123", "sms_consent": "on", "source": "A1", "received_on": "2026-03-02",
        "reason": "Fibromyalgia",
    }
    data.update(overrides)
    return data


def refused_fields(call) -> dict:
    with pytest.raises(ValidationError) as exc:
        call()
    return exc.value.message_dict


def refused_by_database(write):
    with pytest.raises(IntegrityError), transaction.atomic():
        write()


# --- 1. NHS numbers: ASCII digits only, never one repeated digit -------------------------------


def test_the_example_numbers_are_what_the_tests_say():
    assert normalise_nhs_number(VALID) == VALID
    assert all(ch.isdigit() for ch in ARABIC_INDIC + FULL_WIDTH + DEVANAGARI + MIXED)
    assert int(ARABIC_INDIC) == int(FULL_WIDTH) == int(VALID)  # why isdigit()/int() let them through


@pytest.mark.parametrize("raw", [ARABIC_INDIC, FULL_WIDTH, DEVANAGARI, MIXED, "943 476 ５９１９", "943\u00a0476\u00a05919"])
def test_it_refuses_an_nhs_number_written_in_anything_but_ascii_digits(raw):
    with pytest.raises(ValidationError) as exc:
        normalise_nhs_number(raw)
    assert exc.value.code == "not_digits"
    assert "0 to 9" in exc.value.messages[0]


@pytest.mark.parametrize("digit", "0123456789")
def test_it_refuses_an_nhs_number_of_one_repeated_digit_with_a_clear_message(digit):
    with pytest.raises(ValidationError) as exc:
        normalise_nhs_number(f"{digit * 3} {digit * 3} {digit * 4}")
    assert exc.value.code == "repeated_digit"
    assert "never issued" in exc.value.messages[0]


def test_it_refuses_0000000000_although_it_passes_modulus_11():
    from scheduling.caseload.nhs_number import check_digit

    assert check_digit("000000000") == 0
    with pytest.raises(ValidationError, match="repeated digit"):
        normalise_nhs_number("0000000000")


@pytest.mark.parametrize("raw", [ARABIC_INDIC, FULL_WIDTH, MIXED])
def test_the_new_referral_form_refuses_non_ascii_digits_and_makes_no_second_patient(frozen, admin_client, raw):
    first = admin_client.post(reverse("booking:new_referral"), form_post(nhs_number=VALID))
    assert first.status_code == 302
    response = admin_client.post(reverse("booking:new_referral"), form_post(nhs_number=raw))
    assert response.status_code == 400
    assert "only the digits 0 to 9" in response.content.decode()
    assert list(Patient.objects.values_list("nhs_number", flat=True)) == [VALID]


def test_the_activity_import_refuses_an_nhs_number_in_non_ascii_digits(db, tmp_path):
    from django.core.management import CommandError

    text = HEADER + f"R1,{ARABIC_INDIC},Alex Example,referral_received,2026-03-02,,,,,A1\n"
    with pytest.raises(CommandError, match="1 bad row"):
        run_import(tmp_path, text)
    assert not Patient.objects.exists() and not Referral.objects.exists()


@pytest.mark.parametrize("bad", [ARABIC_INDIC, FULL_WIDTH, "0000000000", "1111111111", "943476591", "94347659x9"])
def test_the_database_refuses_an_nhs_number_that_is_not_ten_ascii_digits(db, bad):
    refused_by_database(lambda: Patient.objects.create(nhs_number=bad, given_name="A", family_name="B"))
    patient = make_patient()
    refused_by_database(lambda: Patient.objects.filter(pk=patient.pk).update(nhs_number=bad))
    assert Patient.objects.get(pk=patient.pk).nhs_number != bad


@pytest.mark.parametrize("bad", [ARABIC_INDIC, FULL_WIDTH, "0000000000", "943 476 59", "9434765918"])
def test_a_model_form_like_django_admins_refuses_a_bad_nhs_number(db, bad):
    form = modelform_factory(Patient, fields=["nhs_number", "given_name", "family_name"])(
        {"nhs_number": bad, "given_name": "A", "family_name": "B"}
    )
    assert not form.is_valid() and "nhs_number" in form.errors


# --- 1. Phones: E.164 in the columns, UK mobiles for texts ------------------------------------


def test_a_us_number_is_refused_as_the_mobile_for_texts_with_the_reason(db):
    errors = refused_fields(lambda: register_patient(**patient_fields(mobile_phone=US_NUMBER)))
    assert list(errors) == ["mobile_phone"]
    assert "A mobile for texts must be a UK mobile" in errors["mobile_phone"][0]
    assert not Patient.objects.exists()


def test_a_us_number_may_still_be_the_other_phone(db):
    patient = register_patient(**patient_fields(other_phone=US_NUMBER))
    assert patient.other_phone == US_NUMBER and patient.mobile_phone == "+447700900123"


def test_the_drama_range_mobile_is_still_accepted_when_fictional_numbers_are_on(db, settings):
    settings.PHONE_ACCEPT_FICTIONAL_NUMBERS = True
    patient = register_patient(**patient_fields(mobile_phone="07700 900456", other_phone="01632 960456"))
    assert (patient.mobile_phone, patient.other_phone, patient.mobile_is_mobile) == ("+447700900456", "+441632960456", True)


def test_the_new_referral_form_names_the_mobile_when_it_is_not_a_uk_mobile(frozen, admin_client):
    response = admin_client.post(reverse("booking:new_referral"), form_post(mobile_phone=US_NUMBER))
    assert response.status_code == 400
    assert "A mobile for texts must be a UK mobile" in response.context["form"].errors["mobile_phone"][0]
    assert not Patient.objects.exists()


@pytest.mark.parametrize("bad", [US_NUMBER, "07700900123", "+441632960123", "+447700900123\n", "+44770090012", "+４４7700900123"])
def test_the_database_refuses_a_mobile_that_is_not_a_uk_mobile_in_e164(db, bad):
    patient = make_patient()
    refused_by_database(lambda: Patient.objects.filter(pk=patient.pk).update(mobile_phone=bad))
    assert Patient.objects.get(pk=patient.pk).mobile_phone.startswith("+447700900")


@pytest.mark.parametrize("bad", ["01632960123", "+0441632960123", "+44 1632 960123", "+441632960123\n", "+12"])
def test_the_database_refuses_an_other_phone_that_is_not_e164(db, bad):
    patient = make_patient()
    refused_by_database(lambda: Patient.objects.filter(pk=patient.pk).update(other_phone=bad))


def test_the_database_takes_e164_numbers_and_empty_phones(db):
    patient = make_patient()
    Patient.objects.filter(pk=patient.pk).update(mobile_phone="", other_phone=US_NUMBER)
    Patient.objects.filter(pk=patient.pk).update(mobile_phone="+447700900456", other_phone="")
    assert Patient.objects.get(pk=patient.pk).mobile_phone == "+447700900456"


def test_a_model_form_like_django_admins_refuses_a_us_mobile_and_a_national_format_phone(db, settings):
    settings.PHONE_ACCEPT_FICTIONAL_NUMBERS = True
    form = modelform_factory(Patient, fields=["nhs_number", "given_name", "family_name", "mobile_phone", "other_phone"])(
        {"nhs_number": VALID, "given_name": "A", "family_name": "B", "mobile_phone": US_NUMBER, "other_phone": "01632 960123"}
    )
    assert not form.is_valid()
    assert set(form.errors) == {"mobile_phone", "other_phone"}


# --- 3. Dates: received today or in the last two years; an adult aged 16 to 120 ---------------


@pytest.mark.parametrize("received_on,words", [
    (date(1900, 1, 1), "cannot be before"),
    (date(2024, 3, 1), "cannot be before"),
    (TODAY + timedelta(days=1), "cannot be in the future"),
])
def test_it_refuses_a_referral_received_long_ago_or_in_the_future_naming_the_field(frozen, db, received_on, words):
    errors = refused_fields(lambda: register_patient_with_referral(
        **patient_fields(), **referral_fields(received_on=received_on)
    ))
    assert list(errors) == ["received_on"]
    assert words in errors["received_on"][0] and "received" in errors["received_on"][0]
    assert not Patient.objects.exists() and not Referral.objects.exists()


def test_a_referral_received_exactly_two_years_ago_is_taken(frozen, db):
    referral = register_patient_with_referral(**patient_fields(), **referral_fields(received_on=date(2024, 3, 2)))
    assert referral.received_on == date(2024, 3, 2)


def test_it_refuses_a_referral_received_before_the_patients_date_of_birth(frozen, db):
    patient = make_patient(date_of_birth=date(2008, 1, 1))  # 18 today
    errors = refused_fields(lambda: create_referral(patient=patient, **referral_fields(received_on=date(2007, 6, 1))))
    assert list(errors) == ["received_on"]
    assert not Referral.objects.exists()


@pytest.mark.parametrize("date_of_birth,words", [
    (date(1, 1, 1), "check the year"),
    (date(1905, 3, 1), "makes the patient 121"),
    (date(2010, 3, 3), "aged 16 or over"),  # 15 on the day received
    (TODAY + timedelta(days=1), "cannot be in the future"),
])
def test_it_refuses_a_date_of_birth_that_is_not_an_adults_naming_the_field(frozen, db, date_of_birth, words):
    errors = refused_fields(lambda: register_patient_with_referral(
        **patient_fields(date_of_birth=date_of_birth), **referral_fields()
    ))
    assert list(errors) == ["date_of_birth"]
    assert words in errors["date_of_birth"][0] and "date of birth" in errors["date_of_birth"][0]
    assert not Patient.objects.exists()


@pytest.mark.parametrize("date_of_birth", [date(2010, 3, 2), date(1906, 3, 3)])  # 16 today; 119, 120 tomorrow
def test_it_takes_the_youngest_and_oldest_plausible_adults(frozen, db, date_of_birth):
    referral = register_patient_with_referral(**patient_fields(date_of_birth=date_of_birth), **referral_fields())
    assert referral.patient.date_of_birth == date_of_birth


def test_the_age_is_taken_on_the_day_the_referral_was_received(frozen, db):
    # 16 today, but 15 on the day the referral came in a month ago.
    errors = refused_fields(lambda: register_patient_with_referral(
        **patient_fields(date_of_birth=date(2010, 2, 20)), **referral_fields(received_on=date(2026, 2, 1))
    ))
    assert list(errors) == ["date_of_birth"] and "15 on 01 Feb 2026" in errors["date_of_birth"][0]


def test_the_new_referral_form_shows_each_date_error_beside_its_field(frozen, admin_client):
    response = admin_client.post(reverse("booking:new_referral"), form_post(date_of_birth="0001-01-01", received_on="1900-01-01"))
    assert response.status_code == 400
    errors = response.context["form"].errors
    assert set(errors) == {"date_of_birth", "received_on"}
    assert not Patient.objects.exists()


# --- 5. One service, one transaction -----------------------------------------------------------


def test_a_bad_received_date_leaves_no_patient_and_the_corrected_resubmission_succeeds(frozen, admin_client):
    data = form_post(received_on="2026-03-03")  # tomorrow
    refused = admin_client.post(reverse("booking:new_referral"), data)
    assert refused.status_code == 400
    assert "cannot be in the future" in refused.content.decode()
    assert not Patient.objects.exists() and not Referral.objects.exists() and not AuditEntry.objects.exists()
    accepted = admin_client.post(reverse("booking:new_referral"), {**data, "received_on": "2026-03-02"})
    assert accepted.status_code == 302
    referral = Referral.objects.get(patient__nhs_number=data["nhs_number"])
    assert accepted["Location"] == reverse("booking:find_slots", args=[referral.pk])
    assert Patient.objects.count() == 1


def test_register_patient_with_referral_writes_both_and_the_audit_entry(frozen, db, admin_user, pwp):
    referral = register_patient_with_referral(
        **patient_fields(preferred_days=["1", "3"], preferred_times=["morning"]), **referral_fields(),
        assigned_practitioner=pwp, actor=admin_user,
    )
    assert referral.patient.preferred_days == [1, 3] and referral.patient.sms_consent_recorded_at == NOW
    assert referral.created_by == admin_user and referral.assigned_practitioner == pwp
    entry = AuditEntry.objects.get(referral=referral)
    assert (entry.field, entry.new_value, entry.actor) == ("status", Referral.Status.AWAITING_CONTACT, admin_user)


def test_register_patient_with_referral_names_every_bad_field_at_once_and_saves_nothing(frozen, db):
    errors = refused_fields(lambda: register_patient_with_referral(
        **patient_fields(nhs_number=ARABIC_INDIC, given_name="", mobile_phone=US_NUMBER),
        **referral_fields(source="ZZ", reason=" ", received_on=date(1900, 1, 1)),
    ))
    assert set(errors) == {"nhs_number", "given_name", "mobile_phone", "source", "reason", "received_on"}
    assert not Patient.objects.exists()


# --- Double submit and races: the loser is told "already exists", never a 500 -----------------


def test_the_same_new_referral_posted_twice_gives_one_patient_and_a_clear_refusal(frozen, admin_client):
    data = form_post()
    assert admin_client.post(reverse("booking:new_referral"), data).status_code == 302
    again = admin_client.post(reverse("booking:new_referral"), data)
    assert again.status_code == 400 and "already exists" in again.content.decode()
    assert Patient.objects.count() == 1 and Referral.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_two_new_referral_posts_at_once_for_one_nhs_number_give_one_patient_and_already_exists(monkeypatch):
    admins = [make_user(f"admin.race{i}", roles.ADMIN_STAFF) for i in range(2)]
    data = form_post(received_on=str(timezone.localdate()))
    # Both requests pass the duplicate check before either inserts, so only the unique constraint can
    # decide; the loser's IntegrityError must become the ordinary "already exists" answer.
    real_lookup = services._existing_patient
    both_checked = threading.Barrier(2, timeout=20)
    waited = threading.local()

    def lookup_then_wait(nhs_number):
        found = real_lookup(nhs_number)
        if not getattr(waited, "done", False):
            waited.done = True
            both_checked.wait()
        return found

    monkeypatch.setattr(services, "_existing_patient", lookup_then_wait)
    responses = [None, None]

    def post(i):
        try:
            client = Client()
            client.force_login(admins[i])
            responses[i] = client.post(reverse("booking:new_referral"), data)
        finally:
            connection.close()

    threads = [threading.Thread(target=post, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(40)
    assert sorted(r.status_code for r in responses) == [302, 400]
    loser = next(r for r in responses if r.status_code == 400).content.decode()
    assert "already exists" in loser
    assert Patient.objects.count() == 1 and Referral.objects.count() == 1


def test_an_integrity_error_that_is_not_a_duplicate_is_not_hidden(db):
    # Only a clash with an existing NHS number becomes "already exists"; anything else still fails loudly.
    values, errors = services._clean_patient(**patient_fields(), voicemail_allowed=False, preferred_days=[],
                                             preferred_times=[], is_demo=False, other_phone="", age_on=TODAY)
    assert not errors
    with pytest.raises(IntegrityError), transaction.atomic():
        services._insert_patient({**values, "mobile_phone": US_NUMBER})
    assert not Patient.objects.exists()


# --- 12. Managers take referrals too --------------------------------------------------------------


def test_a_manager_opens_and_submits_the_new_referral_page(frozen, client, manager, pwp):
    client.force_login(manager)
    assert client.get(reverse("booking:new_referral")).status_code == 200
    data = form_post(assigned_practitioner=pwp.pk)
    response = client.post(reverse("booking:new_referral"), data)
    referral = Referral.objects.get(patient__nhs_number=data["nhs_number"])
    assert response.status_code == 302 and referral.created_by == manager


def test_a_pwp_still_cannot_open_or_submit_the_new_referral_page(frozen, client, pwp):
    client.force_login(pwp)
    assert client.get(reverse("booking:new_referral")).status_code == 403
    assert client.post(reverse("booking:new_referral"), form_post()).status_code == 403
    assert not Patient.objects.exists()


def test_managers_have_what_admin_staff_have_for_patients_and_referrals(db):
    from django.contrib.auth.models import Group

    wanted = {"add_patient", "change_patient", "add_referral", "change_referral"}
    for role in (roles.ADMIN_STAFF, roles.MANAGER):
        assert wanted <= set(Group.objects.get(name=role).permissions.values_list("codename", flat=True))
    assert not wanted & set(Group.objects.get(name=roles.PWP).permissions.values_list("codename", flat=True))


def test_the_demo_never_draws_9999999999_which_is_now_refused():
    from scheduling.demo import nhs_test_numbers

    class Draws:  # stands in for random.Random: first 999999, then 1
        values = iter([999_999, 1])

        def randrange(self, start, stop):
            return next(self.values)

    number = next(nhs_test_numbers(Draws()))
    assert number != "9999999999" and normalise_nhs_number(number) == number
