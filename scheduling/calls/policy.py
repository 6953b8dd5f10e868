"""The contact policy's arithmetic: working days and the suggested time of the next attempt.
Pure functions of their arguments (no database), computed in UK time."""

from datetime import date, datetime, time, timedelta
from functools import lru_cache

import holidays

from scheduling.caseload.models import TIME_OF_DAY_HOURS, TimeOfDay, time_of_day_for
from scheduling.uktime import LONDON

PARTS = [TimeOfDay.MORNING.value, TimeOfDay.AFTERNOON.value, TimeOfDay.EVENING.value]
PART_LABELS = {TimeOfDay.MORNING: "morning", TimeOfDay.AFTERNOON: "afternoon", TimeOfDay.EVENING: "early evening"}


@lru_cache(maxsize=16)
def _bank_holidays(year: int):
    return holidays.country_holidays("GB", subdiv="ENG", years=year)


def is_working_day(day: date) -> bool:
    return day.weekday() < 5 and day not in _bank_holidays(day.year)


def add_working_days(day: date, count: int) -> date:
    while count > 0:
        day += timedelta(days=1)
        if is_working_day(day):
            count -= 1
    return day


def part_of_day(moment: datetime) -> str | None:
    return time_of_day_for(moment.astimezone(LONDON).hour)


def _day_allowed(day: date, preferred_days) -> bool:
    if day in _bank_holidays(day.year):
        return False
    if preferred_days:
        return day.weekday() in {int(d) for d in preferred_days}
    return day.weekday() < 5


def suggest_next_attempt(
    *, earliest: date, now: datetime, failed_parts=(), preferred_days=(), preferred_times=(), vary_time_of_day=True
) -> tuple[datetime, str]:
    """The first moment on or after `earliest` (and not before now) on an allowed day, in a part of the
    day the patient prefers that has not already failed. Returns (local start, part)."""
    now_local = now.astimezone(LONDON)
    allowed = [p for p in PARTS if not preferred_times or p in preferred_times]
    untried = [p for p in allowed if p not in set(failed_parts)] if vary_time_of_day else allowed
    parts = untried or allowed
    day = max(earliest, now_local.date())
    for _ in range(60):
        if _day_allowed(day, preferred_days):
            for part in parts:
                start_hour, end_hour = TIME_OF_DAY_HOURS[TimeOfDay(part)]
                start = datetime.combine(day, time(start_hour), tzinfo=LONDON)
                end = datetime.combine(day, time(end_hour), tzinfo=LONDON)
                if end <= now_local:
                    continue
                return max(start, now_local.replace(second=0, microsecond=0)), part
        day += timedelta(days=1)
    # Preferred days that never come round (should not happen): fall back to the earliest day.
    start_hour = TIME_OF_DAY_HOURS[TimeOfDay(parts[0])][0]
    return datetime.combine(max(earliest, now_local.date()), time(start_hour), tzinfo=LONDON), parts[0]
