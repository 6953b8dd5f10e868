"""One way to read dates, times and ids from a request's query string or form.

Every reader either returns a value inside sane bounds or raises `InvalidParameter`, a
`BadRequest` whose message names the parameter and says what is wrong; Django answers it with
the site's 400 page (`scheduling.views.bad_request`). Nothing out of bounds reaches date
arithmetic or the database, so no far date or odd id can become a 500.
"""

import datetime as dt

from django.core.exceptions import BadRequest, ValidationError

from scheduling.uktime import LONDON, is_clock_change_time

# Far enough for any date of birth or history, near enough that adding a course of sessions or
# converting to UTC can never overflow.
EARLIEST_DATE = dt.date(1900, 1, 1)
LATEST_DATE = dt.date(2100, 12, 31)
LARGEST_ID = 2**31 - 1


class InvalidParameter(BadRequest):
    """A request parameter that cannot be used; its message is shown to the user."""


def _raw(data, name: str) -> str:
    value = data.get(name, "")
    return value.strip() if isinstance(value, str) else ""


def check_date_bounds(value: dt.date, *, label: str) -> dt.date:
    if not EARLIEST_DATE <= value <= LATEST_DATE:
        raise InvalidParameter(
            f"{label}: {value.isoformat()} is outside the dates this service works with "
            f"({EARLIEST_DATE:%d/%m/%Y} to {LATEST_DATE:%d/%m/%Y})."
        )
    return value


def validate_date_bounds(value: dt.date) -> None:
    """The same bounds as a form field validator: the error is shown next to the field."""
    try:
        check_date_bounds(value, label="date")
    except InvalidParameter as exc:
        # The form shows the error next to the field, which names it.
        raise ValidationError(str(exc).removeprefix("date: "), code="date_bounds") from None


def date_param(data, name: str, *, default: dt.date | None = None, label: str | None = None) -> dt.date | None:
    """A `YYYY-MM-DD` date, or `default` when the parameter is absent or empty."""
    raw = _raw(data, name)
    label = label or name
    if not raw:
        return default
    try:
        value = dt.date.fromisoformat(raw)
    except ValueError:
        raise InvalidParameter(f"{label}: “{raw[:40]}” is not a date; use YYYY-MM-DD.") from None
    return check_date_bounds(value, label=label)


def instant_param(data, name: str, *, label: str | None = None) -> dt.datetime | None:
    """An ISO 8601 date and time with an offset (as the slot finder writes them), or None when absent."""
    raw = _raw(data, name)
    label = label or name
    if not raw:
        return None
    return parse_instant(raw, label=label)


def parse_instant(raw: str, *, label: str) -> dt.datetime:
    try:
        value = dt.datetime.fromisoformat(raw)
    except ValueError:
        raise InvalidParameter(f"{label}: “{raw[:40]}” is not a date and time.") from None
    if value.tzinfo is None:
        raise InvalidParameter(f"{label}: “{raw[:40]}” has no time zone.")
    check_date_bounds(value.date(), label=label)
    return value.astimezone(dt.timezone.utc)


def id_param(data, name: str, *, label: str | None = None) -> int | None:
    """A positive database id, or None when absent or empty."""
    raw = _raw(data, name)
    label = label or name
    if not raw:
        return None
    if not (raw.isascii() and raw.isdigit()) or not 0 < int(raw) <= LARGEST_ID:
        raise InvalidParameter(f"{label}: “{raw[:40]}” is not a valid choice.")
    return int(raw)


def text_param(data, name: str, *, max_length: int, label: str | None = None) -> str:
    """Free text (a search), spaces tidied, or "" when absent. Longer than any sensible value is refused
    rather than cut, so nobody searches for something other than what they typed."""
    raw = " ".join(_raw(data, name).split())
    label = label or name
    if len(raw) > max_length:
        raise InvalidParameter(f"{label}: {len(raw)} characters is too long; at most {max_length}.")
    return raw


def choice_param(data, name: str, *, choices, label: str | None = None) -> str:
    """One of `choices` (values), or "" when absent or empty."""
    raw = _raw(data, name)
    label = label or name
    if raw and raw not in choices:
        raise InvalidParameter(f"{label}: “{raw[:40]}” is not one of the choices.")
    return raw


LARGEST_PAGE = 10_000


def page_param(data, name: str = "page", *, label: str | None = None) -> int:
    """A page number counted from 1 (1 when absent or empty); anything else, or beyond LARGEST_PAGE, is refused."""
    raw = _raw(data, name)
    label = label or name
    if not raw:
        return 1
    if not (raw.isascii() and raw.isdigit()) or not 0 < int(raw) <= LARGEST_PAGE:
        raise InvalidParameter(f"{label}: “{raw[:40]}” is not a page number; use a whole number from 1 to {LARGEST_PAGE:,}.")
    return int(raw)


def local_datetime_param(data, name: str, *, label: str | None = None) -> dt.datetime | None:
    """A date and time as a `datetime-local` input sends it (`YYYY-MM-DDTHH:MM`), read in the service's
    local time (Europe/London), or None when absent. Returned in UTC. A time the clocks skip or repeat
    is refused rather than guessed."""
    raw = _raw(data, name)
    label = label or name
    if not raw:
        return None
    try:
        value = dt.datetime.fromisoformat(raw)
    except ValueError:
        raise InvalidParameter(f"{label}: “{raw[:40]}” is not a date and time; use YYYY-MM-DD HH:MM.") from None
    check_date_bounds(value.date(), label=label)
    if value.tzinfo is None:
        if is_clock_change_time(value):
            raise InvalidParameter(
                f"{label}: {value:%d/%m/%Y %H:%M} falls in the hour the clocks change; choose another time."
            )
        value = value.replace(tzinfo=LONDON, fold=0)
    return value.astimezone(dt.timezone.utc)


class RefuseNulMiddleware:
    """No field of any form or address may hold a NUL character: PostgreSQL cannot store one, and no
    person types one. Refused at the boundary (a 400 naming the field) before any view reads it."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        for data in (request.GET, request.POST):
            for name, values in data.lists():
                if "\x00" in name or any("\x00" in value for value in values):
                    raise InvalidParameter(f"{name.replace(chr(0), '')[:40]}: contains a NUL character, which cannot be stored.")
        return self.get_response(request)
