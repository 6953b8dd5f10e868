"""UK time: the service's one time zone, and the rules for turning a wall-clock time into an instant.

Everything is stored in UTC and shown in UK time (Europe/London: GMT in winter, BST in summer). Once a
year the clocks skip an hour (01:00-02:00 on the last Sunday of March does not exist) and once a year they
repeat one (01:00-02:00 on the last Sunday of October happens twice, BST then GMT). Instants are returned
in UTC: Python adds, subtracts and compares datetimes sharing one tzinfo by wall clock, which is wrong
across a clock change.
"""

import datetime as dt
from zoneinfo import ZoneInfo

from django.core.exceptions import ValidationError

LONDON = ZoneInfo("Europe/London")
UTC = dt.UTC


def is_skipped(naive: dt.datetime) -> bool:
    """A wall-clock time the spring clock change jumps over (zoneinfo would read it with the old offset)."""
    local = naive.replace(tzinfo=LONDON, fold=0)
    return local.astimezone(UTC).astimezone(LONDON).replace(tzinfo=None) != naive.replace(tzinfo=None)


def is_clock_change_time(naive: dt.datetime) -> bool:
    """A wall-clock time that names no single instant: skipped in spring or repeated in autumn."""
    return naive.replace(tzinfo=LONDON, fold=0).utcoffset() != naive.replace(tzinfo=LONDON, fold=1).utcoffset()


def local_datetime(day: dt.date, at: dt.time) -> dt.datetime:
    """The instant `at` o'clock UK time on `day` names, in UTC, refusing a time that does not exist or
    happens twice: neither can be booked by wall-clock time alone."""
    naive = dt.datetime.combine(day, at.replace(tzinfo=None))
    if is_skipped(naive):
        raise ValidationError(
            f"{at:%H:%M} does not exist on {day:%a %d %b %Y}: the clocks go forward an hour that night.",
            code="nonexistent_time",
        )
    if is_clock_change_time(naive):
        raise ValidationError(
            f"{at:%H:%M} happens twice on {day:%a %d %b %Y} (the clocks go back); choose a time outside 01:00-02:00.",
            code="ambiguous_time",
        )
    return naive.replace(tzinfo=LONDON, fold=0).astimezone(UTC)


def lenient_local_datetime(day: dt.date, at: dt.time) -> dt.datetime:
    """Like local_datetime, but a time in the spring gap is read as the time after the change (01:30 ->
    02:30 BST) and a repeated time as the first of the two (BST)."""
    return dt.datetime.combine(day, at.replace(tzinfo=None)).replace(tzinfo=LONDON, fold=0).astimezone(UTC)


def local_day_bounds(day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """The UK day as [start, end) in UTC: 23 or 25 hours long on the days the clocks change."""
    return lenient_local_datetime(day, dt.time(0)), lenient_local_datetime(day + dt.timedelta(days=1), dt.time(0))


def local_date(moment: dt.datetime) -> dt.date:
    return moment.astimezone(LONDON).date()


def short_local(moment: dt.datetime) -> str:
    """Day, date, month and time in UK time, as a list row says it: "Tue 3 Mar 14:05"."""
    local = moment.astimezone(LONDON)
    return f"{local:%a} {local.day} {local:%b} {local:%H:%M}"


def time_on_day(moment: dt.datetime) -> str:
    """Time, then day and date in UK time, as a refusal says it: "14:05 on Tue 03 Mar 2026"."""
    return f"{moment.astimezone(LONDON):%H:%M on %a %d %b %Y}"
