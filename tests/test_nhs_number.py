import pytest
from django.core.exceptions import ValidationError

from scheduling.caseload.nhs_number import normalise_nhs_number


@pytest.mark.parametrize("raw", ["9990000018", "9990000026", "9990000034", "999 000 0018", "999-000-0026", " 9990000034 "])
def test_it_accepts_valid_test_range_numbers_with_or_without_spaces(raw):
    assert normalise_nhs_number(raw) == raw.replace(" ", "").replace("-", "")


def test_it_rejects_a_wrong_check_digit():
    with pytest.raises(ValidationError) as exc:
        normalise_nhs_number("9990000019")
    assert exc.value.code == "check_digit"


def test_it_rejects_numbers_whose_check_digit_would_be_ten():
    # 999000007: weighted sum gives remainder 1 -> check digit 10 -> no valid number starts this way.
    from scheduling.caseload.nhs_number import check_digit

    nine = next(f"999{i:06d}" for i in range(1000) if check_digit(f"999{i:06d}") is None)
    for last in range(10):
        with pytest.raises(ValidationError):
            normalise_nhs_number(f"{nine}{last}")


@pytest.mark.parametrize("raw,code", [("999000001", "wrong_length"), ("99900000188", "wrong_length"), ("", "required"), ("999000001X", "not_digits")])
def test_it_names_what_is_wrong(raw, code):
    with pytest.raises(ValidationError) as exc:
        normalise_nhs_number(raw)
    assert exc.value.code == code


def test_check_digit_eleven_means_zero():
    from scheduling.caseload.nhs_number import check_digit

    nine = next(f"999{i:06d}" for i in range(1000) if check_digit(f"999{i:06d}") == 0)
    weights = range(10, 1, -1)
    assert sum(int(d) * w for d, w in zip(nine, weights)) % 11 == 0
    assert normalise_nhs_number(nine + "0") == nine + "0"
