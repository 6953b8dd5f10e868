"""Bank holidays and the free time left in practitioners' diaries.

Working patterns are UK wall-clock times; everything stored is UTC. Each day's working blocks are turned
into UTC instants (scheduling.uktime), so a 09:00 start is 09:00 local on both sides of a clock change.
"""

import datetime as dt
from functools import lru_cache

import holidays

SLOT_GRID_MINUTES = 15  # slots start on the quarter hour


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
