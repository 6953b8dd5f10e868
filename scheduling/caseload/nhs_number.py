"""NHS number validation: 10 digits with a modulus 11 check digit."""

from django.core.exceptions import ValidationError

WEIGHTS = (10, 9, 8, 7, 6, 5, 4, 3, 2)


def check_digit(first_nine: str) -> int | None:
    """The check digit for nine digits, or None when no valid NHS number starts with them."""
    remainder = sum(int(d) * w for d, w in zip(first_nine, WEIGHTS)) % 11
    digit = 11 - remainder
    if digit == 11:
        return 0
    if digit == 10:
        return None
    return digit


def normalise_nhs_number(raw: str) -> str:
    """Return the 10-digit NHS number, accepting spaces or hyphens; raise ValidationError otherwise."""
    if raw is None:
        raise ValidationError("Enter an NHS number.", code="required")
    digits = "".join(ch for ch in str(raw) if ch not in " -")
    if not digits:
        raise ValidationError("Enter an NHS number.", code="required")
    if not digits.isdigit():
        raise ValidationError("An NHS number contains only digits (spaces are allowed).", code="not_digits")
    if len(digits) != 10:
        raise ValidationError(f"An NHS number has 10 digits; this has {len(digits)}.", code="wrong_length")
    expected = check_digit(digits[:9])
    if expected is None or expected != int(digits[9]):
        raise ValidationError("This is not a valid NHS number: the check digit does not match.", code="check_digit")
    return digits
