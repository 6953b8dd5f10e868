"""Login lockouts behind the proxy: by the client's address as the proxy saw it (django-ipware), so a stranger
cannot lock a clinician out from elsewhere, and a client cannot escape a lockout by writing its own
X-Forwarded-For."""

import importlib
import os

import pytest
from django.conf import settings as django_settings
from django.urls import reverse

import painplatform.settings as settings_module

PROXY = "172.18.0.5"  # Caddy's address inside the stack: REMOTE_ADDR of every request


@pytest.fixture
def behind_one_proxy(settings, monkeypatch):
    """The settings exactly as painplatform/settings.py computes them with AXES_PROXY_COUNT=1."""
    monkeypatch.setitem(os.environ, "AXES_PROXY_COUNT", "1")
    try:
        computed = importlib.reload(settings_module)
        for name in ("AXES_IPWARE_META_PRECEDENCE_ORDER", "AXES_IPWARE_PROXY_COUNT", "AXES_IPWARE_PROXY_ORDER", "IPWARE_STRICT"):
            setattr(settings, name, getattr(computed, name))
    finally:
        monkeypatch.delitem(os.environ, "AXES_PROXY_COUNT")
        importlib.reload(settings_module)
    return settings


def sign_in(client, user, password, forwarded_for):
    return client.post(
        reverse("login"), {"username": user.username, "password": password},
        REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR=forwarded_for,
    )


def lock_out(client, user, forwarded_for):
    for _ in range(django_settings.AXES_FAILURE_LIMIT):
        response = sign_in(client, user, "wrong", forwarded_for)
    assert response.status_code == 429


def test_a_stranger_at_another_address_cannot_lock_a_clinician_out(behind_one_proxy, client, pwp):
    lock_out(client, pwp, "203.0.113.66")
    assert sign_in(client, pwp, "test-pass-123", "203.0.113.66").status_code == 429  # the stranger stays locked out
    client.logout()
    response = sign_in(client, pwp, "test-pass-123", "198.51.100.10")
    assert response.status_code == 302
    assert client.session["_auth_user_id"] == str(pwp.pk)


def test_rotating_the_forwarded_for_header_does_not_escape_a_lockout(behind_one_proxy, client, pwp):
    # The proxy appends the address it received from (203.0.113.66); the left part is the client's own.
    for i in range(django_settings.AXES_FAILURE_LIMIT):
        sign_in(client, pwp, "wrong", f"10.0.0.{i}, 203.0.113.66")
    for forged in ("10.9.9.9, 203.0.113.66", "198.51.100.10, 203.0.113.66", "1.2.3.4, 5.6.7.8, 203.0.113.66", "garbage, 203.0.113.66"):
        response = sign_in(client, pwp, "test-pass-123", forged)
        assert response.status_code == 429, forged
        assert "_auth_user_id" not in client.session


def test_the_lockout_page_is_a_429_inside_the_sites_layout(behind_one_proxy, client, pwp):
    lock_out(client, pwp, "203.0.113.66")
    response = sign_in(client, pwp, "test-pass-123", "203.0.113.66")
    assert response.status_code == 429
    page = response.content.decode()
    assert "Sign-in paused" in page and "<main" in page and 'href="/static/' in page


def test_without_a_proxy_the_forwarded_for_header_is_ignored(client, pwp):
    # AXES_PROXY_COUNT=0 (the default): the site is reached directly, so the header is the client's own.
    assert django_settings.AXES_IPWARE_META_PRECEDENCE_ORDER == ("REMOTE_ADDR",)
    for i in range(django_settings.AXES_FAILURE_LIMIT):
        client.post(reverse("login"), {"username": pwp.username, "password": "wrong"}, HTTP_X_FORWARDED_FOR=f"10.0.0.{i}")
    response = client.post(reverse("login"), {"username": pwp.username, "password": "test-pass-123"}, HTTP_X_FORWARDED_FOR="10.1.1.1")
    assert response.status_code == 429
