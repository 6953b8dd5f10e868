"""Every error page is the site's own: inside the layout (the site header), saying in words what
happened, with a way back to the start page; never Django's bare "403 Forbidden"."""

import pytest
from django.test import Client
from django.urls import reverse

from scheduling.calls.models import ContactAttempt

pytestmark = pytest.mark.urls("tests.error_pages_urls")


def assert_site_error_page(response, status: int, *words: str, back_to=("home",)):
    body = response.content.decode()
    assert response.status_code == status, (response.status_code, body[:300])
    assert 'class="site-header"' in body, f"the {status} page is not inside the site's layout"
    main = body.split("<main", 1)[-1]  # the header's brand link does not count: the message itself offers it
    assert any(f'href="{reverse(name)}"' in main for name in back_to), f"the {status} page offers no way back"
    for word in words:
        assert word in body, f"the {status} page does not say {word!r}"
    assert "<h1>403 Forbidden</h1>" not in body and "CSRF verification failed" not in body


def test_an_invalid_parameter_gets_the_400_page_naming_what_is_wrong(pwp):
    client = Client(raise_request_exception=False)
    client.force_login(pwp)
    response = client.get("/test-errors/invalid-parameter/")
    assert_site_error_page(response, 400, "date_from", "is not a date; use YYYY-MM-DD", "Nothing was changed")


def test_a_pwp_opening_a_manager_page_gets_the_403_page(pwp):
    client = Client(raise_request_exception=False)
    client.force_login(pwp)
    response = client.get(reverse("reports:capacity"))
    assert_site_error_page(response, 403, "You do not have access to this page", "Nothing was changed")


def test_a_post_without_a_csrf_token_gets_the_403_csrf_page(admin_user):
    client = Client(enforce_csrf_checks=True, raise_request_exception=False)
    client.force_login(admin_user)
    response = client.post(reverse("booking:new_referral"), {"nhs_number": "9434765919"})
    assert_site_error_page(response, 403, "That form had expired", "Nothing was changed")


def test_a_missing_record_gets_the_404_page(admin_user):
    client = Client(raise_request_exception=False)
    client.force_login(admin_user)
    response = client.get(reverse("caseload:referral_detail", args=[987654]))
    assert_site_error_page(response, 404, "Page not found", "does not exist")


def test_a_locked_out_login_gets_a_429_page_inside_the_layout(db, pwp, settings):
    settings.AXES_FAILURE_LIMIT = 3
    client = Client(raise_request_exception=False)
    for _ in range(3):
        client.post(reverse("login"), {"username": pwp.username, "password": "wrong"})
    response = client.post(reverse("login"), {"username": pwp.username, "password": "wrong"})
    # Signed out, the way back is the sign-in page (the start page would redirect there).
    assert_site_error_page(response, 429, "too many unsuccessful sign-in attempts", back_to=("home", "login"))


def test_a_view_that_raises_gets_the_500_page(pwp, settings):
    settings.DEBUG = False
    client = Client(raise_request_exception=False)
    client.force_login(pwp)
    response = client.get("/test-errors/crash/")
    assert_site_error_page(response, 500, "something went wrong", "check whether it was saved")
    assert "a bug in a view" not in response.content.decode() and "Traceback" not in response.content.decode()


def test_a_nul_character_in_any_field_is_a_400_naming_the_field_and_changes_nothing(client, pwp, referral):
    client.force_login(pwp)
    response = client.post(reverse("calls:log"), {"referral": referral.pk, "button": "no_answer", "clinical_note": "a\x00b"})
    assert response.status_code == 400
    assert "clinical_note" in response.content.decode() and "site-header" in response.content.decode()
    assert not ContactAttempt.objects.filter(referral=referral).exists()
    assert client.get(reverse("caseload:referral_list"), {"q": "x\x00"}).status_code == 400
