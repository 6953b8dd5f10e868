"""Twilio's delivery reports (POST /sms/twilio/status/<id>/): signed, idempotent, forward only."""

from urllib.parse import urlencode

import pytest
import time_machine
from django.urls import reverse

from devtools.fake_twilio import FakeTwilioServer
from scheduling.worklist.selectors import admin_worklist
from scheduling.worklist.models import AdminTask
from scheduling.reminders import sending
from scheduling.reminders.models import MessageEvent, OutboundMessage
from tests.booking_helpers import book
from tests.factories import london, make_referral
from tests.twilio_webhook_helpers import PUBLIC_BASE, new_sid, post_webhook, signature, status_params, use_fake_twilio

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("twilio_settings")]
S = OutboundMessage.Status


@pytest.fixture
def message(appointment):
    """The two-day reminder, handed to Twilio (status sent, with its SID)."""
    message = OutboundMessage.objects.get(appointment=appointment, kind="reminder_2d")
    OutboundMessage.objects.filter(pk=message.pk).update(status=S.SENT, provider_sid=new_sid())
    message.refresh_from_db()
    return message


def path_for(message_id) -> str:
    return reverse("sms:twilio_status", args=[message_id])


def report(client, message, status, *, error_code="", sid=None, **kwargs):
    params = status_params(sid=sid or message.provider_sid, status=status, error_code=error_code)
    return post_webhook(client, path_for(message.pk), params, **kwargs)


def twilio_events(message):
    return list(message.events.filter(source=MessageEvent.Source.TWILIO).values_list("reported_status", "applied"))


def test_the_callback_url_the_gateway_gives_twilio_is_this_webhook():
    from scheduling.reminders import gateway

    assert gateway.status_callback_url(42) == PUBLIC_BASE + path_for(42)


def test_a_signed_delivered_report_marks_the_message_delivered(client, message):
    response = report(client, message, "delivered")

    assert response.status_code == 204
    message.refresh_from_db()
    assert message.status == S.DELIVERED
    assert message.delivered_at is not None
    assert twilio_events(message) == [("delivered", True)]


def test_no_login_is_needed_because_twilio_signs_instead(client, message):
    # The test client is anonymous: a login-protected view would redirect to the sign-in page.
    response = report(client, message, "delivered")
    assert response.status_code == 204
    assert not response.has_header("Location")


def test_a_forged_signature_is_refused_and_changes_nothing(client, message):
    events_before = message.events.count()

    response = report(client, message, "delivered", token="not-our-token")

    assert response.status_code == 403
    message.refresh_from_db()
    assert message.status == S.SENT and message.delivered_at is None
    assert message.events.count() == events_before
    assert twilio_events(message) == []


def test_a_report_with_no_signature_is_refused(client, message):
    response = report(client, message, "delivered", sign=False)

    assert response.status_code == 403
    message.refresh_from_db()
    assert message.status == S.SENT


def test_a_signature_for_other_parameters_is_refused(client, message):
    # Signed for "sent", altered to "failed" on the way: the HMAC covers the parameters too.
    params = status_params(sid=message.provider_sid, status="failed")
    sig = signature(status_params(sid=message.provider_sid, status="sent"), url=PUBLIC_BASE + path_for(message.pk))
    response = client.post(path_for(message.pk), urlencode(params), content_type="application/x-www-form-urlencoded",
                           HTTP_X_TWILIO_SIGNATURE=sig)

    assert response.status_code == 403
    message.refresh_from_db()
    assert message.status == S.SENT


def test_nothing_is_accepted_while_no_auth_token_is_configured(client, message, settings):
    settings.TWILIO_AUTH_TOKEN = ""

    response = report(client, message, "delivered", token="")

    assert response.status_code == 403
    message.refresh_from_db()
    assert message.status == S.SENT


def test_a_signature_for_the_address_behind_the_proxy_is_refused(client, message):
    # Twilio signs the public https URL; the http address Django sees behind a TLS proxy is not it.
    response = report(client, message, "delivered", signed_url="http://testserver" + path_for(message.pk))

    assert response.status_code == 403
    message.refresh_from_db()
    assert message.status == S.SENT


def test_the_public_https_address_is_checked_although_django_sees_plain_http(client, message):
    response = report(client, message, "delivered", signed_url="https://sms.example.test" + path_for(message.pk))

    assert response.wsgi_request.scheme == "http"
    assert response.status_code == 204


def test_without_a_public_base_url_the_address_django_sees_is_checked(client, message, settings):
    settings.SMS_PUBLIC_BASE_URL = ""

    response = report(client, message, "delivered", signed_url="http://testserver" + path_for(message.pk))

    assert response.status_code == 204
    message.refresh_from_db()
    assert message.status == S.DELIVERED


def test_a_replayed_report_is_recorded_again_and_changes_nothing(client, message):
    assert report(client, message, "delivered").status_code == 204
    message.refresh_from_db()
    first_delivered_at = message.delivered_at

    assert report(client, message, "delivered").status_code == 204

    message.refresh_from_db()
    assert message.status == S.DELIVERED
    assert message.delivered_at == first_delivered_at
    assert twilio_events(message) == [("delivered", True), ("delivered", False)]


def test_reports_arriving_in_reverse_order_leave_the_message_delivered(client, message):
    assert report(client, message, "delivered").status_code == 204
    assert report(client, message, "sent").status_code == 204

    message.refresh_from_db()
    assert message.status == S.DELIVERED
    assert twilio_events(message) == [("delivered", True), ("sent", False)]


@pytest.mark.parametrize(
    ("error_code", "task_kind", "words"),
    [
        ("30005", AdminTask.Kind.WRONG_NUMBER, "no longer in use"),
        ("30003", AdminTask.Kind.SMS_FAILED, "switched off or unreachable"),
    ],
)
def test_an_undelivered_report_puts_the_patient_on_the_admin_worklist(client, message, error_code, task_kind, words):
    response = report(client, message, "undelivered", error_code=error_code)

    assert response.status_code == 204
    message.refresh_from_db()
    assert (message.status, message.error_code) == (S.UNDELIVERED, error_code)
    task = AdminTask.objects.get(patient=message.patient, resolved_at__isnull=True)
    assert task.kind == task_kind and words in task.detail
    assert task.pk in {item.task_id for item in admin_worklist()}


def test_a_replayed_undelivered_report_raises_one_task(client, message):
    report(client, message, "undelivered", error_code="30005")
    report(client, message, "undelivered", error_code="30005")

    assert AdminTask.objects.filter(patient=message.patient).count() == 1


def test_a_report_naming_another_twilio_message_is_recorded_and_not_applied(client, message):
    response = report(client, message, "undelivered", error_code="30005", sid=new_sid())

    assert response.status_code == 204
    message.refresh_from_db()
    assert message.status == S.SENT
    event = message.events.get(source=MessageEvent.Source.TWILIO)
    assert (event.reported_status, event.applied) == ("undelivered", False)
    assert "another Twilio message" in event.detail
    assert not AdminTask.objects.filter(patient=message.patient).exists()


def test_a_report_that_beats_the_send_answer_is_applied_and_gives_the_row_its_sid(client, appointment):
    # The worker has handed the text over but not yet stored Twilio's answer when the report comes.
    message = OutboundMessage.objects.get(appointment=appointment, kind="reminder_2d")
    OutboundMessage.objects.filter(pk=message.pk).update(status=S.SENDING)
    sid = new_sid()

    response = report(client, message, "sent", sid=sid)

    assert response.status_code == 204
    message.refresh_from_db()
    assert (message.status, message.provider_sid) == (S.SENT, sid)


def test_a_report_for_a_message_we_do_not_have_is_answered_not_found(client, message):
    response = post_webhook(client, path_for(message.pk + 1000), status_params(sid=new_sid(), status="delivered"))

    assert response.status_code == 404


def test_get_is_not_allowed(client, message):
    response = client.get(path_for(message.pk))

    assert response.status_code == 405
    message.refresh_from_db()
    assert message.status == S.SENT


def test_a_text_sent_through_twilio_is_marked_delivered_by_its_signed_callbacks(
    transactional_db, live_server, settings, pwp, admin_user
):
    """End to end: the real twilio client sends to the fake Twilio, which posts real signed callbacks
    (over HTTP, to the running app) for sent and delivered, then replays them backwards, then a forgery."""
    with FakeTwilioServer(callbacks="manual") as fake:
        use_fake_twilio(settings, fake, public_base=live_server.url)
        with time_machine.travel(london(2026, 6, 1, 9), tick=False):
            appointment = book(make_referral(pwp), pwp, london(2026, 6, 10, 14), actor=admin_user)
        message = OutboundMessage.objects.get(appointment=appointment, kind="reminder_2d")

        assert sending.send_message(message_id=message.pk, now=london(2026, 6, 8, 10)) == S.SENT
        message.refresh_from_db()
        posted = fake.deliver_callbacks(message.provider_sid)
        assert [(p["params"]["MessageStatus"], p["response_status"]) for p in posted] == [("sent", 204), ("delivered", 204)]
        message.refresh_from_db()
        assert message.status == S.DELIVERED

        replayed = fake.replay_callbacks(message.provider_sid, order="reversed")
        assert [p["response_status"] for p in replayed] == [204, 204]
        forged = fake.post_forged_callback(
            posted[0]["url"], {**posted[0]["params"], "MessageStatus": "failed", "SmsStatus": "failed"}
        )
        assert forged["response_status"] == 403

    message.refresh_from_db()
    assert message.status == S.DELIVERED
    assert twilio_events(message) == [("sent", False), ("delivered", True), ("delivered", False), ("sent", False)]
