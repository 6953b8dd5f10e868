"""Rotating the Twilio auth token without refusing a webhook: while TWILIO_AUTH_TOKEN_PREVIOUS is
set, webhooks signed with the old token are accepted too (Twilio keeps signing with its primary
token until the secondary one is promoted)."""

import pytest
import time_machine
from django.urls import reverse

from scheduling.reminders.models import InboundMessage, OutboundMessage
from tests.booking_helpers import book
from tests.factories import london, make_referral
from tests.twilio_webhook_helpers import PUBLIC_BASE, inbound_params, new_sid, post_webhook, status_params

pytestmark = pytest.mark.django_db
S = OutboundMessage.Status
OLD, NEW = "old-primary-token-0000000000000000", "new-secondary-token-111111111111111"


@pytest.fixture(autouse=True)
def rotating(settings):
    settings.SMS_PUBLIC_BASE_URL = PUBLIC_BASE
    settings.TWILIO_AUTH_TOKEN = NEW
    settings.TWILIO_AUTH_TOKEN_PREVIOUS = OLD
    return settings


@pytest.fixture
def message(pwp, admin_user):
    with time_machine.travel(london(2026, 6, 1, 9), tick=False):
        appointment = book(make_referral(pwp), pwp, london(2026, 6, 10, 14), actor=admin_user)
    message = OutboundMessage.objects.get(appointment=appointment, kind="reminder_2d")
    OutboundMessage.objects.filter(pk=message.pk).update(status=S.SENT, provider_sid=new_sid())
    message.refresh_from_db()
    return message


def report_delivered(client, message, *, token):
    path = reverse("sms:twilio_status", args=[message.pk])
    return post_webhook(client, path, status_params(sid=message.provider_sid, status="delivered"), token=token)


def test_a_report_signed_with_the_previous_token_is_accepted_during_a_rotation(client, message, caplog):
    caplog.set_level("INFO", logger="scheduling.reminders.webhooks")
    assert report_delivered(client, message, token=OLD).status_code == 204
    message.refresh_from_db()
    assert message.status == S.DELIVERED
    assert "sms.webhook_signed_with_previous_token" in caplog.text


def test_a_report_signed_with_the_new_token_is_accepted_during_a_rotation(client, message, caplog):
    caplog.set_level("INFO", logger="scheduling.reminders.webhooks")
    assert report_delivered(client, message, token=NEW).status_code == 204
    assert "signed_with_previous_token" not in caplog.text


def test_any_other_token_is_still_refused_during_a_rotation(client, message):
    assert report_delivered(client, message, token="someone-elses-token").status_code == 403
    message.refresh_from_db()
    assert message.status == S.SENT and not message.events.filter(source="twilio").exists()


def test_the_previous_token_is_refused_once_the_rotation_is_over(client, message, rotating):
    rotating.TWILIO_AUTH_TOKEN_PREVIOUS = ""
    assert report_delivered(client, message, token=OLD).status_code == 403
    assert report_delivered(client, message, token=NEW).status_code == 204


def test_a_previous_token_alone_is_not_enough(client, message, rotating):
    rotating.TWILIO_AUTH_TOKEN = ""
    assert report_delivered(client, message, token=OLD).status_code == 403


def test_a_reply_signed_with_the_previous_token_is_acted_on_during_a_rotation(client, message):
    params = inbound_params(from_number=message.patient.mobile_phone, body="C")
    response = post_webhook(client, reverse("sms:twilio_inbound"), params, token=OLD)
    assert response.status_code == 200
    assert InboundMessage.objects.get(provider_sid=params["MessageSid"]).meaning == InboundMessage.Meaning.CONFIRM
