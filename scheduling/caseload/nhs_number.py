"""NHS number validation: 10 digits with a modulus 11 check digit."""

from django.core.exceptions import ValidationError

WEIGHTS = (10, 9, 8, 7, 6, 5, 4, 3, 2)
ASCII_DIGITS = frozenset("0123456789")
# The database check constraint (Patient) says the same in SQL: ten ASCII digits, not one digit repeated.
NHS_NUMBER_REGEX = r"\A[0-9]{10}\Z"
REPEATED_DIGIT_NUMBERS = tuple(d * 10 for d in "0123456789")


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
    # Not str.isdigit(): it is true for Arabic-Indic, full-width and other digits, which int() reads too,
    # so '٩٩٩...' passed the check digit and was stored as a second patient for the same number.
    if not set(digits) <= ASCII_DIGITS:
        raise ValidationError(
            "An NHS number contains only the digits 0 to 9 (spaces and hyphens are allowed).", code="not_digits"
        )
    if len(digits) != 10:
        raise ValidationError(f"An NHS number has 10 digits; this has {len(digits)}.", code="wrong_length")
    if digits in REPEATED_DIGIT_NUMBERS:
        # 0000000000, 1111111111, ... pass modulus 11 but are never issued.
        raise ValidationError(
            "This is not a real NHS number: numbers made of one repeated digit are never issued.", code="repeated_digit"
        )
    expected = check_digit(digits[:9])
    if expected is None or expected != int(digits[9]):
        raise ValidationError("This is not a valid NHS number: the check digit does not match.", code="check_digit")
    return digits


def validate_stored_nhs_number(value: str) -> None:
    """Model field validator: the column holds only the normalised form (no spaces)."""
    if normalise_nhs_number(value) != value:
        raise ValidationError("Store the NHS number as 10 digits without spaces.", code="not_normalised")
