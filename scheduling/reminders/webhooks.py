"""Twilio's webhooks: delivery reports and text replies.

Neither has a login (Twilio cannot sign in) or a CSRF token; instead every request must carry a
valid X-Twilio-Signature: an HMAC of the URL Twilio called and the POST parameters, keyed with our
auth token. The URL is the public one (settings.SMS_PUBLIC_BASE_URL + the path), not what Django
sees: behind a TLS-terminating proxy Django sees http and an internal host, and a signature checked
against that would never match. Anything unsigned, wrongly signed, or arriving while no auth token
is configured is refused (403) before it touches the database.

    POST /sms/twilio/status/<message id>/   delivery report for one outbox row -> 204
                                            (404 for an unknown row: Twilio retries only on 5xx)
    POST /sms/twilio/inbound/               a reply -> empty TwiML (Twilio itself answers STOP/START)

The console backend never calls back. Log lines carry ids and statuses only, never numbers or text.
"""

import logging

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.http import HttpResponse, HttpResponseBadRequest, HttpResponseForbidden, HttpResponseNotFound
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from twilio.request_validator import RequestValidator

from scheduling.reminders import replies, sending

logger = logging.getLogger(__name__)

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'


def public_url(request) -> str:
    """The URL Twilio called, as Twilio wrote it (and signed it)."""
    base = settings.SMS_PUBLIC_BASE_URL.rstrip("/")
    if base:
        return base + request.get_full_path()
    return request.build_absolute_uri()


def signature_problem(request) -> str:
    """Why this request is not a genuine Twilio webhook, or "" if it is.

    During a token rotation (README, "Rotating the Twilio token") Twilio still signs with the old
    primary token while we already call its API with the new one, so TWILIO_AUTH_TOKEN_PREVIOUS is
    accepted too until it is removed from the environment."""
    token = settings.TWILIO_AUTH_TOKEN
    if not token:
        return "no_auth_token_configured"
    signature = request.headers.get("X-Twilio-Signature", "")
    if not signature:
        return "missing_signature"
    url = public_url(request)
    if RequestValidator(token).validate(url, request.POST, signature):
        return ""
    previous = settings.TWILIO_AUTH_TOKEN_PREVIOUS
    if previous and previous != token and RequestValidator(previous).validate(url, request.POST, signature):
        # Says when Twilio has stopped using the old token: then it can be removed.
        logger.info("sms.webhook_signed_with_previous_token path=%s", request.path)
        return ""
    return "invalid_signature"


def _refuse(hook: str, problem: str) -> HttpResponseForbidden:
    logger.warning("sms.webhook_refused hook=%s reason=%s", hook, problem)
    return HttpResponseForbidden()


@csrf_exempt
@login_not_required
@require_POST
def status_callback(request, message_id):
    problem = signature_problem(request)
    if problem:
        return _refuse("status", problem)
    reported = request.POST.get("MessageStatus") or request.POST.get("SmsStatus") or ""
    result = sending.receive_delivery_report(
        message_id=message_id,
        reported_status=reported,
        error_code=request.POST.get("ErrorCode", ""),
        provider_sid=request.POST.get("MessageSid") or request.POST.get("SmsSid") or "",
    )
    logger.info("sms.status_callback message_id=%s reported=%s result=%s", message_id, reported[:20], result)
    if result == sending.DeliveryReport.UNKNOWN_MESSAGE:
        return HttpResponseNotFound()
    return HttpResponse(status=204)


@csrf_exempt
@login_not_required
@require_POST
def inbound(request):
    problem = signature_problem(request)
    if problem:
        return _refuse("inbound", problem)
    provider_sid = request.POST.get("MessageSid") or request.POST.get("SmsSid") or ""
    if not provider_sid:
        logger.warning("sms.inbound_refused reason=no_message_sid")
        return HttpResponseBadRequest()
    replies.handle_inbound(
        provider_sid=provider_sid,
        from_number=request.POST.get("From", ""),
        to_number=request.POST.get("To", ""),
        body=request.POST.get("Body", ""),
    )
    return HttpResponse(EMPTY_TWIML, content_type="text/xml")
