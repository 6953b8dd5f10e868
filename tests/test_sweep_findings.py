"""Defects the hostile-input sweep found outside the other fixes, each pinned by a direct test."""

import datetime as dt

from django.test import Client
from django.urls import reverse
from django.utils import timezone

from scheduling.calls.models import ContactAttempt
from scheduling.caseload.models import Patient


def test_a_search_of_100k_characters_gets_an_empty_list_not_a_500(admin_user, referral):
    client = Client(raise_request_exception=False)
    client.force_login(admin_user)
    response = client.get(reverse("caseload:referral_list"), {"q": "x" * 100_000})
    assert response.status_code == 200
    assert referral.patient.family_name not in response.content.decode()


def test_a_search_or_status_holding_a_nul_is_a_400_naming_it_not_a_500(admin_user, referral):
    client = Client(raise_request_exception=False)
    client.force_login(admin_user)
    for name, value in (("q", "Pat\x00ient"), ("status", "a\x00b")):
        response = client.get(reverse("caseload:referral_list"), {name: value})
        assert response.status_code == 400
        assert f"{name}: contains a NUL character" in response.content.decode()
        assert referral.patient.family_name not in response.content.decode()


def test_a_call_outcome_with_an_over_long_return_date_is_refused_before_anything_is_recorded(pwp, referral):
    client = Client(raise_request_exception=False)
    client.force_login(pwp)
    response = client.post(
        reverse("calls:log"), {"referral": referral.pk, "button": "no_answer", "date": "x" * 100_000, "practitioner": "9" * 5000}
    )
    assert response.status_code == 400
    assert "date" in response.content.decode()
    assert ContactAttempt.objects.filter(referral=referral).count() == 0


def test_a_new_referral_refused_after_the_patient_was_registered_leaves_no_patient(admin_user):
    client = Client(raise_request_exception=False)
    client.force_login(admin_user)
    tomorrow = timezone.localdate() + dt.timedelta(days=1)
    response = client.post(reverse("booking:new_referral"), {
        "nhs_number": "9434765919", "given_name": "Ann", "family_name": "Example", "date_of_birth": "1970-05-17",
        "source": "A1", "received_on": tomorrow.isoformat(), "reason": "Chronic widespread pain",
    })
    assert response.status_code in (200, 400)
    assert 'class="errorlist' in response.content.decode()
    assert not Patient.objects.filter(nhs_number="9434765919").exists()
