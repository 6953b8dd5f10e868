"""Texts carrying the self-service link: a per-template setting, off by default, edited (and audited) on the
template page; when on and SMS_PUBLIC_BASE_URL is set, reminders and confirmations end with a new link to
their appointment, which opens it; the length shown counts the link."""

import re

import pytest
import time_machine
from django.urls import reverse

from scheduling import patient_links
from scheduling.audit import AuditEntry
from scheduling.reminders.content import DEFAULT_TEMPLATES
from scheduling.reminders.models import MessageTemplate, OutboundMessage
from scheduling.reminders.services import update_template
from tests.booking_helpers import book
from tests.factories import london, make_referral

pytestmark = pytest.mark.django_db
BASE = "https://pp.example.org"
LINK = re.compile(re.escape(BASE) + r"/s/([A-Za-z0-9_-]{28})$")


def booked(pwp, admin_user):
    with time_machine.travel(london(2026, 6, 1, 11), tick=False):
        return book(make_referral(pwp), pwp, london(2026, 6, 10, 14), actor=admin_user)


def test_texts_carry_no_link_by_default(settings, pwp, admin_user):
    settings.SMS_PUBLIC_BASE_URL = BASE
    appointment = booked(pwp, admin_user)
    bodies = [m.body for m in OutboundMessage.objects.filter(appointment=appointment)]
    assert bodies and not any("/s/" in body for body in bodies)
    assert not patient_links.PatientLink.objects.exists()
    assert not MessageTemplate._meta.get_field("include_link").default


def test_with_the_setting_on_reminders_and_confirmations_end_with_a_link_that_opens_the_appointment(
    settings, pwp, admin_user, manager, client
):
    settings.SMS_PUBLIC_BASE_URL = BASE
    for key in ("reminder", "reminder_same_day", "confirmation"):
        update_template(key=key, body=DEFAULT_TEMPLATES[key], actor=manager, include_link=True)
    appointment = booked(pwp, admin_user)
    sent = OutboundMessage.objects.filter(appointment=appointment, status=OutboundMessage.Status.SCHEDULED)
    assert sent.count() >= 2
    for message in sent:
        token = LINK.search(message.body).group(1)
        link = patient_links.resolve_token(token, now=london(2026, 6, 1, 12))
        assert link.appointment_id == appointment.pk and link.patient_id == appointment.referral.patient_id
        assert link.expires_at == appointment.end
    # Each text its own link.
    assert patient_links.PatientLink.objects.count() == sent.count()


def test_no_link_without_a_public_address(settings, pwp, admin_user, manager):
    settings.SMS_PUBLIC_BASE_URL = ""
    update_template(key="confirmation", body=DEFAULT_TEMPLATES["confirmation"], actor=manager, include_link=True)
    appointment = booked(pwp, admin_user)
    assert not any("/s/" in m.body for m in OutboundMessage.objects.filter(appointment=appointment))


def test_the_setting_is_edited_on_the_template_page_and_audited(settings, client, manager):
    settings.SMS_PUBLIC_BASE_URL = BASE
    client.force_login(manager)
    url = reverse("sms:edit_template", args=["confirmation"])
    page = client.get(url).content.decode()
    assert "Add the patient&#x27;s self-service link" in page
    response = client.post(url, {"body": DEFAULT_TEMPLATES["confirmation"], "include_link": "on", "save": "1"})
    assert response.status_code == 302
    assert MessageTemplate.objects.get(key="confirmation").include_link
    entry = AuditEntry.objects.filter(subject_type=AuditEntry.Subject.MESSAGE_TEMPLATE).last()
    assert entry.actor == manager
    assert entry.data.get("changes", {}).get("include_link") == ["False", "True"] or entry.data.get("values", {}).get("include_link") == "True"
    # The preview counts the link's length.
    preview = client.post(url, {"body": DEFAULT_TEMPLATES["confirmation"], "include_link": "on", "preview": "1"}).content.decode()
    assert f"{BASE}/s/" in preview


def test_the_template_page_says_when_no_link_can_be_added(settings, client, manager):
    settings.SMS_PUBLIC_BASE_URL = ""
    client.force_login(manager)
    page = client.get(reverse("sms:edit_template", args=["reminder"])).content.decode()
    assert "SMS_PUBLIC_BASE_URL" in page and "is not set" in page


def test_an_invitation_never_carries_a_link(client, manager):
    client.force_login(manager)
    page = client.get(reverse("sms:edit_template", args=["opt_in_invitation"])).content.decode()
    assert "self-service link" not in page
    update_template(key="opt_in_invitation", body=DEFAULT_TEMPLATES["opt_in_invitation"], actor=manager, include_link=True)
    assert not MessageTemplate.objects.get(key="opt_in_invitation").include_link
