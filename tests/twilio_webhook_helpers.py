"""Posting Twilio-signed webhooks through Django's test client, as Twilio would (form-encoded)."""

import uuid
from urllib.parse import urlencode

from twilio.request_validator import RequestValidator

TOKEN = "test-auth-token-not-a-real-one"
PUBLIC_BASE = "https://sms.example.test"
OUR_NUMBER = "+447700900000"


def new_sid() -> str:
    return "SM" + uuid.uuid4().hex


def signature(params: dict, *, url: str, token: str = TOKEN) -> str:
    return RequestValidator(token).compute_signature(url, params)


def post_webhook(client, path: str, params: dict, *, signed_url: str | None = None, token: str = TOKEN, sign: bool = True):
    """POST `params` to `path`, signed for `signed_url` (default: the public https address)."""
    headers = {}
    if sign:
        headers["HTTP_X_TWILIO_SIGNATURE"] = signature(params, url=signed_url or PUBLIC_BASE + path, token=token)
    return client.post(path, urlencode(params), content_type="application/x-www-form-urlencoded", **headers)


def inbound_params(*, from_number: str, body: str, sid: str | None = None, to_number: str = OUR_NUMBER) -> dict:
    """The fields Twilio posts for an incoming SMS (blank geographic ones included: they are signed too)."""
    sid = sid or new_sid()
    return {
        "ToCountry": "GB", "ToState": "", "SmsMessageSid": sid, "NumMedia": "0", "ToCity": "", "FromZip": "",
        "SmsSid": sid, "FromState": "", "SmsStatus": "received", "FromCity": "", "Body": body, "FromCountry": "GB",
        "To": to_number, "ToZip": "", "NumSegments": "1", "MessageSid": sid, "AccountSid": "AC" + "0" * 32,
        "From": from_number, "ApiVersion": "2010-04-01",
    }


def status_params(*, sid: str, status: str, error_code: str = "", to_number: str = "+447700900001") -> dict:
    params = {
        "MessageSid": sid, "SmsSid": sid, "AccountSid": "AC" + "0" * 32, "From": OUR_NUMBER, "To": to_number,
        "MessageStatus": status, "SmsStatus": status, "ApiVersion": "2010-04-01",
    }
    if error_code:
        params["ErrorCode"] = error_code
    return params


def use_fake_twilio(settings, fake, *, public_base: str) -> None:
    """Point the app's SMS settings at a fake Twilio server: the real twilio client sends to it, and
    webhooks are checked with its token, as addressed to `public_base`."""
    settings.SMS_BACKEND = "twilio"
    settings.TWILIO_ACCOUNT_SID = fake.account_sid
    settings.TWILIO_AUTH_TOKEN = fake.auth_token
    settings.TWILIO_API_BASE_URL = fake.base_url
    settings.TWILIO_FROM_NUMBER = fake.default_from
    settings.TWILIO_MESSAGING_SERVICE_SID = ""
    settings.SMS_PUBLIC_BASE_URL = public_base
