"""The new-referral page as admin staff use it: today's date already in the picker, every problem shown on
the first submit, each naming its field."""

from datetime import date, timedelta

from django.urls import reverse

from scheduling.caseload.models import Patient, Referral
from tests.factories import london, make_patient, next_nhs_number

NOW = london(2026, 12, 2, 9, 0)
TODAY = NOW.date()


def form_post(**overrides):
    data = {
        "nhs_number": next_nhs_number(), "given_name": "Rowan", "family_name": "Example", "date_of_birth": "1980-02-01",
        "source": "A1", "received_on": TODAY.isoformat(), "reason": "Fibromyalgia",
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def test_the_received_date_picker_starts_at_today_written_as_the_browser_reads_it(frozen, admin_client):
    page = admin_client.get(reverse("booking:new_referral")).content.decode()
    # A date input drops any value that is not yyyy-mm-dd (en-GB would write 02/12/2026).
    assert 'type="date" name="received_on" value="2026-12-02"' in page
    assert "02/12/2026" not in page


def test_every_problem_is_shown_on_the_first_submit_each_naming_its_field(frozen, admin_client):
    response = admin_client.post(reverse("booking:new_referral"), form_post(
        given_name="", source=None, reason=None, date_of_birth=(TODAY - timedelta(days=365 * 10)).isoformat(),
    ))
    assert response.status_code == 400
    errors = response.context["form"].errors
    # The form's own (source, reason) and the service's (name, date of birth) together, not one then the other.
    assert set(errors) == {"given_name", "source", "reason", "date_of_birth"}
    assert errors["source"] == ["Choose the source of referral."]
    assert errors["reason"] == ["Enter the reason for referral."]
    assert errors["given_name"] == ["Enter the patient's first name."]
    assert "this service takes adults aged 16 or over" in errors["date_of_birth"][0]
    page = response.content.decode()
    assert "The referral was not created" in page
    for anchor in ("#id_given_name", "#id_source", "#id_reason", "#id_date_of_birth"):
        assert f'href="{anchor}"' in page
    assert "Source of referral: Choose the source of referral." in page
    assert not Patient.objects.exists() and not Referral.objects.exists()


def test_a_date_of_birth_that_makes_the_patient_130_is_a_field_error_on_the_date_of_birth(frozen, admin_client):
    response = admin_client.post(reverse("booking:new_referral"), form_post(date_of_birth="1896-05-01"))
    assert response.status_code == 400
    errors = response.context["form"].errors
    assert list(errors) == ["date_of_birth"]
    assert "makes the patient 130" in errors["date_of_birth"][0] and "check the year" in errors["date_of_birth"][0]
    assert 'href="#id_date_of_birth">Date of birth: The date of birth makes the patient 130' in response.content.decode()
    assert not Patient.objects.exists()


def test_a_date_that_is_not_a_date_names_its_field_and_the_other_problems_still_show(frozen, admin_client):
    response = admin_client.post(reverse("booking:new_referral"), form_post(received_on="31/02/2026", family_name=""))
    errors = response.context["form"].errors
    assert errors["received_on"] == ["Enter the date received as a real date (day, month and year)."]
    assert errors["family_name"] == ["Enter the patient's last name."]


def test_a_referral_for_a_known_patient_shows_all_its_problems_at_once(frozen, admin_client):
    known = make_patient(date_of_birth=date(1980, 2, 1))
    response = admin_client.post(reverse("booking:new_referral"), {
        "nhs_number": known.nhs_number, "use_existing": "1", "source": "A1",
        "received_on": (TODAY + timedelta(days=1)).isoformat(),
    })
    assert response.status_code == 400
    errors = response.context["form"].errors
    assert set(errors) == {"reason", "received_on"}
    assert "cannot be in the future" in errors["received_on"][0]
    assert not Referral.objects.exists()


def test_an_empty_post_shows_the_form_again_and_creates_nothing(frozen, admin_client):
    response = admin_client.post(reverse("booking:new_referral"), {})
    assert response.status_code == 200
    assert 'name="received_on" value="2026-12-02"' in response.content.decode()
    assert not Patient.objects.exists()


def test_the_form_leaves_checking_to_the_server_so_every_error_shows_at_once(frozen, admin_client):
    # The browser's own required-field checks would stop at the first empty field, one at a time.
    page = admin_client.get(reverse("booking:new_referral")).content.decode()
    assert f'action="{reverse("booking:new_referral")}" novalidate>' in page
