"""The self-service page's forms: the date of birth (lenient on how it is written, strict on the value) and
the time picked."""

import datetime as dt
import re

from django import forms
from django.utils import timezone

MONTHS = {
    name: number
    for number, names in enumerate(
        [("jan", "january"), ("feb", "february"), ("mar", "march"), ("apr", "april"), ("may",), ("jun", "june"),
         ("jul", "july"), ("aug", "august"), ("sep", "sept", "september"), ("oct", "october"), ("nov", "november"),
         ("dec", "december")],
        start=1,
    )
    for name in names
}
_WHOLE_DATE = re.compile(r"^\s*(\d{1,2})\s*[/.\- ]\s*(\w{1,9})\s*[/.\- ]\s*(\d{4})\s*$")
_EIGHT_DIGITS = re.compile(r"^\s*(\d{2})(\d{2})(\d{4})\s*$")
UNREADABLE = "Enter your date of birth as numbers, for example 31 3 1980."


def _number(text: str, *, month: bool = False) -> int | None:
    text = (text or "").strip().lower()
    if month and text in MONTHS:
        return MONTHS[text]
    return int(text) if text.isdigit() and len(text) <= 4 else None


def parse_date_of_birth(day: str, month: str, year: str) -> dt.date:
    """The date in three boxes, or a whole date typed into one of them (31/03/1980, 31-3-1980, 31.03.1980,
    31 March 1980, 31031980). Raises ValidationError if it is not a real date in the past 130 years."""
    filled = [part for part in (day, month, year) if (part or "").strip()]
    if len(filled) == 1:
        whole = _WHOLE_DATE.match(filled[0]) or _EIGHT_DIGITS.match(filled[0])
        if whole is None:
            raise forms.ValidationError(UNREADABLE, code="unreadable")
        day, month, year = whole.groups()
    d, m, y = _number(day), _number(month, month=True), _number(year)
    if d is None or m is None or y is None:
        raise forms.ValidationError(UNREADABLE, code="unreadable")
    if y < 100:
        raise forms.ValidationError("Enter the year with 4 numbers, for example 1980.", code="short_year")
    try:
        value = dt.date(y, m, d)
    except ValueError:
        raise forms.ValidationError("That is not a real date. Check the day and month.", code="not_a_date") from None
    today = timezone.localdate()
    if value > today or value.year < today.year - 130:
        raise forms.ValidationError("That is not a real date of birth. Check the year.", code="not_a_date")
    return value


class DateOfBirthForm(forms.Form):
    # Text boxes with numeric keyboards (as NHS services do), not type=number: no spinners, leading zeros kept.
    day = forms.CharField(label="Day", required=False, max_length=20)
    month = forms.CharField(label="Month", required=False, max_length=20)
    year = forms.CharField(label="Year", required=False, max_length=20)

    def clean(self):
        data = super().clean()
        if not any((data.get(name) or "").strip() for name in ("day", "month", "year")):
            raise forms.ValidationError("Enter your date of birth.", code="empty")
        data["date_of_birth"] = parse_date_of_birth(data.get("day", ""), data.get("month", ""), data.get("year", ""))
        return data


class PickTimeForm(forms.Form):
    start = forms.CharField(max_length=40, error_messages={"required": "Choose a time."})

    def clean_start(self):
        raw = self.cleaned_data["start"]
        try:
            value = dt.datetime.fromisoformat(raw)
        except ValueError:
            raise forms.ValidationError("Choose one of the times shown.", code="invalid") from None
        if value.tzinfo is None:
            raise forms.ValidationError("Choose one of the times shown.", code="invalid")
        return value.astimezone(dt.timezone.utc)
