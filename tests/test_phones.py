import pytest
from django.core.exceptions import ValidationError

from scheduling.caseload.phones import display_phone, is_fictional_number, parse_uk_phone

import phonenumbers

# libphonenumber's own documented example numbers: valid, outside the drama range, never dialled.
_MOBILE = phonenumbers.example_number_for_type("GB", phonenumbers.PhoneNumberType.MOBILE)
_LANDLINE = phonenumbers.example_number_for_type("GB", phonenumbers.PhoneNumberType.FIXED_LINE)
VALID_MOBILE = phonenumbers.format_number(_MOBILE, phonenumbers.PhoneNumberFormat.NATIONAL)
VALID_LANDLINE = phonenumbers.format_number(_LANDLINE, phonenumbers.PhoneNumberFormat.NATIONAL)


def test_it_parses_a_valid_uk_mobile_to_e164():
    parsed = parse_uk_phone(VALID_MOBILE, accept_fictional=False)
    assert parsed.e164 == phonenumbers.format_number(_MOBILE, phonenumbers.PhoneNumberFormat.E164)
    assert parsed.is_mobile and not parsed.is_fictional


def test_it_knows_a_landline_is_not_a_mobile():
    parsed = parse_uk_phone(VALID_LANDLINE, accept_fictional=False)
    assert parsed.e164 == phonenumbers.format_number(_LANDLINE, phonenumbers.PhoneNumberFormat.E164)
    assert not parsed.is_mobile


@pytest.mark.parametrize("garbage", ["hello", "123", "07700 90", "+44 7700 9001234567", "0800 CALL ME NOW"])
def test_it_rejects_garbage(garbage):
    with pytest.raises(ValidationError):
        parse_uk_phone(garbage, accept_fictional=False)


def test_it_accepts_the_drama_range_as_fictional_mobiles_when_allowed():
    parsed = parse_uk_phone("07700 900123", accept_fictional=True)
    assert parsed == parsed.__class__(e164="+447700900123", is_mobile=True, is_fictional=True)
    assert is_fictional_number("+447700900123")
    assert display_phone("+447700900123") == "07700 900123"


def test_it_refuses_the_drama_range_when_fictional_numbers_are_off():
    with pytest.raises(ValidationError) as exc:
        parse_uk_phone("+447700900123", accept_fictional=False)
    assert exc.value.code == "fictional"


def test_the_fictional_range_is_exactly_900000_to_900999():
    assert not is_fictional_number("+447700901000")
    assert not is_fictional_number("+44770090012")
    with pytest.raises(ValidationError):
        parse_uk_phone("07700 901000", accept_fictional=True)


def test_the_setting_decides_by_default(settings):
    settings.PHONE_ACCEPT_FICTIONAL_NUMBERS = False
    with pytest.raises(ValidationError):
        parse_uk_phone("07700 900001")
    settings.PHONE_ACCEPT_FICTIONAL_NUMBERS = True
    assert parse_uk_phone("07700 900001").is_fictional


def test_the_fictional_landline_range_is_not_a_mobile():
    parsed = parse_uk_phone("01632 960123", accept_fictional=True)
    assert parsed.is_fictional and not parsed.is_mobile
