"""UK phone numbers: parsed with libphonenumber, stored in E.164.

Ofcom's drama ranges (mobiles 07700 900000-900999, landlines 01632 960000-960999) are reserved for
fiction and are invalid to libphonenumber. With settings.PHONE_ACCEPT_FICTIONAL_NUMBERS on
(development, demo, tests) exactly those ranges are accepted: the first as fictional mobiles, the
second as fictional landlines. The SMS gateway refuses fictional numbers whenever it talks to the
real Twilio, whatever this setting says.
"""

from dataclasses import dataclass

import phonenumbers
from django.conf import settings
from django.core.exceptions import ValidationError
from phonenumbers import PhoneNumberType

FICTIONAL_MOBILE_PREFIX = "+447700900"
FICTIONAL_LANDLINE_PREFIX = "+441632960"
UK_MOBILE_PREFIX = "+447"

# What the columns may hold, as the database check constraints say it (Patient.Meta). \A and \Z, not ^ and $:
# both PostgreSQL and Python's re (SQLite's REGEXP in Django) read them as the very start and end, while
# Python's $ also matches before a trailing newline.
E164_REGEX = r"\A\+[1-9][0-9]{6,14}\Z"
UK_MOBILE_REGEX = r"\A\+447[0-9]{9}\Z"
UK_MOBILE_FOR_TEXTS_MESSAGE = (
    "A mobile for texts must be a UK mobile number (07...); put any other number in 'other phone'."
)


@dataclass(frozen=True)
class ParsedPhone:
    e164: str
    is_mobile: bool
    is_fictional: bool

    @property
    def is_uk_mobile(self) -> bool:
        """Texts go to UK mobiles only; libphonenumber calls a US number 'fixed line or mobile'."""
        return self.is_mobile and self.e164.startswith(UK_MOBILE_PREFIX)


def _in_range(e164: str, prefix: str) -> bool:
    return e164.startswith(prefix) and len(e164) == len(prefix) + 3 and e164[1:].isdigit()


def is_fictional_number(e164: str) -> bool:
    return _in_range(e164, FICTIONAL_MOBILE_PREFIX) or _in_range(e164, FICTIONAL_LANDLINE_PREFIX)


def parse_uk_phone(raw: str, *, accept_fictional: bool | None = None) -> ParsedPhone:
    """Parse a UK (or international, with +) number; raise ValidationError naming what is wrong."""
    if accept_fictional is None:
        accept_fictional = settings.PHONE_ACCEPT_FICTIONAL_NUMBERS
    text = (raw or "").strip()
    if not text:
        raise ValidationError("Enter a phone number.", code="required")
    try:
        number = phonenumbers.parse(text, "GB")
    except phonenumbers.NumberParseException:
        raise ValidationError(f"'{text}' is not a phone number.", code="unparseable")
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    if is_fictional_number(e164):
        if accept_fictional:
            return ParsedPhone(e164=e164, is_mobile=_in_range(e164, FICTIONAL_MOBILE_PREFIX), is_fictional=True)
        raise ValidationError(
            "This number is in Ofcom's fictional drama range and is not accepted here.", code="fictional"
        )
    if not phonenumbers.is_valid_number(number):
        raise ValidationError(f"'{text}' is not a valid phone number.", code="invalid")
    number_type = phonenumbers.number_type(number)
    return ParsedPhone(
        e164=e164,
        is_mobile=number_type in (PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE),
        is_fictional=False,
    )


def validate_stored_phone(value: str) -> None:
    """Model field validator: an E.164 number a person could dial (any country)."""
    if value:
        parsed = parse_uk_phone(value)
        if parsed.e164 != value:
            raise ValidationError("Store the phone number in E.164 form (+44...).", code="not_normalised")


def validate_stored_uk_mobile(value: str) -> None:
    """Model field validator for the number texts go to: a UK mobile in E.164."""
    if value:
        validate_stored_phone(value)
        if not parse_uk_phone(value).is_uk_mobile:
            raise ValidationError(UK_MOBILE_FOR_TEXTS_MESSAGE, code="not_uk_mobile")


def display_phone(e164: str) -> str:
    """National format for people to read ('07700 900123')."""
    if not e164:
        return ""
    if _in_range(e164, FICTIONAL_MOBILE_PREFIX):
        return f"07700 {e164[-6:]}"
    if _in_range(e164, FICTIONAL_LANDLINE_PREFIX):
        return f"01632 {e164[-6:]}"
    try:
        return phonenumbers.format_number(phonenumbers.parse(e164, "GB"), phonenumbers.PhoneNumberFormat.NATIONAL)
    except phonenumbers.NumberParseException:
        return e164
