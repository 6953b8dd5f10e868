"""Local time, bank holidays and the free time left in practitioners' diaries.

Working patterns are local (Europe/London) wall-clock times; everything stored is UTC. Each day's
working blocks are turned into UTC instants with zoneinfo, so a 09:00 start is 09:00 local on both
sides of a clock change.
"""

import datetime as dt
from functools import lru_cache
from zoneinfo import ZoneInfo

import holidays
from django.core.exceptions import ValidationError

LONDON = ZoneInfo("Europe/London")
UTC = dt.timezone.utc
SLOT_GRID_MINUTES = 15  # slots start on the quarter hour


def local_datetime(day: dt.date, at: dt.time) -> dt.datetime:
    """The instant a local wall-clock time names, refusing times that do not exist or happen twice.

    01:30 on the last Sunday of March does not exist (clocks jump 01:00 -> 02:00); 01:30 on the last
    Sunday of October happens twice (BST, then GMT). Neither can be booked by wall-clock time alone.
    Returned in UTC: Python adds and compares datetimes sharing one tzinfo by wall clock, which is
    wrong across a clock change, so all arithmetic here is done in UTC.
    """
    naive = dt.datetime.combine(day, at.replace(tzinfo=None))
    first = naive.replace(tzinfo=LONDON, fold=0)
    if first.astimezone(UTC).astimezone(LONDON).replace(tzinfo=None) != naive:
        raise ValidationError(
            f"{at:%H:%M} does not exist on {day:%a %d %b %Y}: the clocks go forward an hour that night.",
            code="nonexistent_time",
        )
    if first.utcoffset() != naive.replace(tzinfo=LONDON, fold=1).utcoffset():
        raise ValidationError(
            f"{at:%H:%M} happens twice on {day:%a %d %b %Y} (the clocks go back); choose a time outside 01:00-02:00.",
            code="ambiguous_time",
        )
    return first.astimezone(UTC)


def lenient_local_datetime(day: dt.date, at: dt.time) -> dt.datetime:
    """Like local_datetime, but a time in the spring gap moves forward and a repeated time takes the first."""
    return dt.datetime.combine(day, at.replace(tzinfo=None)).replace(tzinfo=LONDON, fold=0).astimezone(UTC)


@lru_cache(maxsize=32)
def _bank_holidays_for_year(year: int) -> dict:
    # England and Wales share their bank holidays; the library knows them for every year.
    return dict(holidays.UK(subdiv="ENG", years=[year]))


def bank_holiday_name(day: dt.date) -> str | None:
    return _bank_holidays_for_year(day.year).get(day)


def is_bank_holiday(day: dt.date) -> bool:
    return day in _bank_holidays_for_year(day.year)


def subtract(intervals: list[tuple], busy: list[tuple]) -> list[tuple]:
    """Free parts of sorted, non-overlapping `intervals` after removing every (start, end) in `busy`."""
    if not busy:
        return intervals
    busy = sorted(busy)
    out = []
    for start, end in intervals:
        cursor = start
        for b_start, b_end in busy:
            if b_end <= cursor:
                continue
            if b_start >= end:
                break
            if b_start > cursor:
                out.append((cursor, b_start))
            cursor = max(cursor, b_end)
            if cursor >= end:
                break
        if cursor < end:
            out.append((cursor, end))
    return out


def intersect(intervals: list[tuple], windows: list[tuple]) -> list[tuple]:
    out = []
    for start, end in intervals:
        for w_start, w_end in windows:
            s, e = max(start, w_start), min(end, w_end)
            if s < e:
                out.append((s, e))
    return sorted(out)


def round_up_to_grid(moment: dt.datetime) -> dt.datetime:
    """Next quarter hour at or after `moment` (London is a whole-hour offset from UTC)."""
    moment = moment.replace(second=0, microsecond=0) + (dt.timedelta(minutes=1) if moment.second or moment.microsecond else dt.timedelta())
    extra = (-moment.minute) % SLOT_GRID_MINUTES
    return moment + dt.timedelta(minutes=extra)


def slot_starts(free: list[tuple], duration: dt.timedelta):
    """Back-to-back slot starts in each free interval, beginning on the quarter hour."""
    for start, end in free:
        cursor = round_up_to_grid(start)
        while cursor + duration <= end:
            yield cursor
            cursor += duration
