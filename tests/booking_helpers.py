"""Helpers for the booking tests: working patterns, frozen clocks, short names."""

import datetime as dt

from scheduling.booking.models import WorkingHours
from scheduling.booking.services import book_appointment


def give_pattern(user, *, weekdays=(0, 1, 2, 3), blocks=((dt.time(9), dt.time(12, 30)), (dt.time(13, 30), dt.time(17)))):
    """Mon-Thu 09:00-17:00 with lunch 12:30-13:30 unless told otherwise."""
    for weekday in weekdays:
        for starts, ends in blocks:
            WorkingHours.objects.create(practitioner=user, weekday=weekday, starts=starts, ends=ends)


def book(referral, practitioner, start, *, actor=None, kind="assessment", **kw):
    return book_appointment(referral=referral, practitioner=practitioner, appointment_type=kind, start=start, actor=actor, **kw)
