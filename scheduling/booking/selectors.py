"""Reads for booking: free slots and course plans (no writes)."""

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field

from dateutil.relativedelta import relativedelta
from dateutil.rrule import WEEKLY, rrule
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.utils import timezone

from scheduling.booking.availability import (
    LONDON,
    bank_holiday_name,
    intersect,
    lenient_local_datetime,
    local_datetime,
    slot_starts,
    subtract,
)
from scheduling.booking.models import Appointment, AvailabilityException, BookingSettings, WorkingHours
from scheduling.caseload.models import TIME_OF_DAY_HOURS, ServiceSettings, Referral
from scheduling.codes import AppointmentType


@dataclass(frozen=True)
class Slot:
    practitioner_id: int
    start: dt.datetime
    end: dt.datetime

    @property
    def local_start(self) -> dt.datetime:
        return self.start.astimezone(LONDON)


def slot_minutes(appointment_type: str) -> int:
    return BookingSettings.current().minutes_for(appointment_type)


# With the patient on the phone the lead time gives way; slots start this long from now, enough to
# finish the call and get ready.
ON_THE_PHONE_MARGIN = dt.timedelta(minutes=15)


def earliest_bookable(*, now=None, patient_on_phone: bool = False) -> dt.datetime:
    now = now or timezone.now()
    if patient_on_phone:
        return now + ON_THE_PHONE_MARGIN
    return now + dt.timedelta(hours=ServiceSettings.current().booking_lead_time_hours)


# Used for a practitioner with no working hours recorded yet: Mon-Fri 09:00-17:00, lunch 12:30-13:30.
DEFAULT_WORKING_PATTERN = [
    (weekday, start, end)
    for weekday in range(5)
    for start, end in ((dt.time(9, 0), dt.time(12, 30)), (dt.time(13, 30), dt.time(17, 0)))
]


def load_working_patterns(practitioner_ids) -> dict:
    """(practitioner_id, weekday) -> [(starts, ends)] local times; the default week for anyone with none."""
    pattern = defaultdict(list)
    for pid, weekday, starts, ends in WorkingHours.objects.filter(practitioner_id__in=list(practitioner_ids)).values_list(
        "practitioner_id", "weekday", "starts", "ends"
    ):
        pattern[(pid, weekday)].append((starts, ends))
    with_pattern = {pid for pid, _ in pattern}
    for pid in practitioner_ids:
        if pid not in with_pattern:
            for weekday, starts, ends in DEFAULT_WORKING_PATTERN:
                pattern[(pid, weekday)].append((starts, ends))
    return pattern


class Diary:
    """Working hours, exceptions and appointments of some practitioners over a date range, read in
    three queries; answers "what is free on this day" without touching the database again."""

    def __init__(self, *, practitioner_ids, first_day: dt.date, last_day: dt.date, ignore_appointment_ids=(), pattern=None):
        self.practitioner_ids = list(practitioner_ids)
        self.first_day, self.last_day = first_day, last_day
        range_start = lenient_local_datetime(first_day, dt.time(0))
        range_end = lenient_local_datetime(last_day + dt.timedelta(days=1), dt.time(0))
        self.pattern = pattern if pattern is not None else load_working_patterns(self.practitioner_ids)
        self.busy = defaultdict(list)  # practitioner_id -> [(start, end)] sorted
        self.exceptions = defaultdict(list)
        for pid, start, end, kind in AvailabilityException.objects.filter(
            practitioner_id__in=self.practitioner_ids, withdrawn_at__isnull=True, starts_at__lt=range_end, ends_at__gt=range_start
        ).values_list("practitioner_id", "starts_at", "ends_at", "kind"):
            self.busy[pid].append((start, end))
            self.exceptions[pid].append((start, end, kind))
        appointments = Appointment.objects.not_cancelled().filter(
            practitioner_id__in=self.practitioner_ids, start__lt=range_end, end__gt=range_start
        )
        if ignore_appointment_ids:
            appointments = appointments.exclude(pk__in=list(ignore_appointment_ids))
        for pid, start, end in appointments.values_list("practitioner_id", "start", "end"):
            self.busy[pid].append((start, end))
        for pid in self.busy:
            self.busy[pid].sort()

    def working_blocks(self, pid: int, day: dt.date) -> list[tuple]:
        if bank_holiday_name(day):
            return []
        return sorted(
            (lenient_local_datetime(day, s), lenient_local_datetime(day, e)) for s, e in self.pattern.get((pid, day.weekday()), [])
        )

    def free(self, pid: int, day: dt.date) -> list[tuple]:
        return subtract(self.working_blocks(pid, day), self.busy.get(pid, []))

    def why_unavailable(self, pid: int, start: dt.datetime, end: dt.datetime) -> str | None:
        """None if the practitioner works and is free for the whole of [start, end); otherwise why not."""
        day = start.astimezone(LONDON).date()
        holiday = bank_holiday_name(day)
        if holiday:
            return f"bank holiday ({holiday})"
        for ex_start, ex_end, kind in self.exceptions.get(pid, []):
            if ex_start < end and start < ex_end:
                return AvailabilityException.Kind(kind).label.lower()
        if not any(s <= start and end <= e for s, e in self.working_blocks(pid, day)):
            return "outside working hours"
        return None

    def clash(self, pid: int, start: dt.datetime, end: dt.datetime) -> bool:
        return any(s < end and start < e for s, e in self.busy.get(pid, []))


DIARY_CHUNK_DAYS = 7


def preference_windows(day: dt.date, preferred_days, preferred_times) -> list[tuple] | None:
    """The patient's preferred windows on `day`: None means any time; [] means not this day."""
    if preferred_days and day.weekday() not in {int(d) for d in preferred_days}:
        return []
    if not preferred_times:
        return None
    windows = []
    for part in preferred_times:
        start_hour, end_hour = TIME_OF_DAY_HOURS[part]
        windows.append((lenient_local_datetime(day, dt.time(start_hour)), lenient_local_datetime(day, dt.time(end_hour))))
    return sorted(windows)


def find_free_slots(
    *,
    practitioner_ids,
    duration_minutes: int,
    earliest: dt.datetime,
    weeks: int = 8,
    preferred_days=(),
    preferred_times=(),
    limit: int = 10,
    ignore_appointment_ids=(),
    diary: Diary | None = None,
    exclude_slots=(),
) -> list[Slot]:
    """The earliest `limit` free slots, across the given practitioners, from `earliest` for `weeks` weeks,
    leaving out `exclude_slots` ((practitioner_id, start) pairs)."""
    exclude_slots = {(pid, start.astimezone(dt.timezone.utc)) for pid, start in exclude_slots}
    earliest = earliest.astimezone(dt.timezone.utc)  # all arithmetic in UTC (see availability.local_datetime)
    first_day = earliest.astimezone(LONDON).date()
    last_day = first_day + dt.timedelta(weeks=weeks)
    duration = dt.timedelta(minutes=duration_minutes)
    found: list[Slot] = []
    pattern = diary.pattern if diary else load_working_patterns(list(practitioner_ids))
    day = first_day
    while day <= last_day and len(found) < limit:
        # The diary is read a week at a time (three indexed queries), so the usual search, which finds
        # its slots in the first week or two, never reads the weeks after.
        if diary is None or day > diary.last_day:
            diary = Diary(
                practitioner_ids=practitioner_ids, first_day=day, last_day=min(day + dt.timedelta(days=DIARY_CHUNK_DAYS - 1), last_day),
                ignore_appointment_ids=ignore_appointment_ids, pattern=pattern,
            )
        windows = preference_windows(day, preferred_days, preferred_times)
        if windows != []:
            todays = []
            for pid in diary.practitioner_ids:
                free = diary.free(pid, day)
                if windows is not None:
                    free = intersect(free, windows)
                free = [(max(s, earliest), e) for s, e in free if e > earliest]
                todays.extend(
                    Slot(pid, start, start + duration) for start in slot_starts(free, duration) if (pid, start) not in exclude_slots
                )
            todays.sort(key=lambda s: (s.start, s.practitioner_id))
            found.extend(todays)
        day += dt.timedelta(days=1)
    return found[:limit]


def team_practitioner_ids(practitioner) -> list[int]:
    """Active clinicians in the practitioner's team (or every active clinician if they have none)."""
    User = get_user_model()
    team_id = getattr(getattr(practitioner, "practitioner", None), "team_id", None)
    qs = User.objects.filter(practitioner__is_active_clinician=True, is_active=True)
    if team_id:
        qs = qs.filter(practitioner__team_id=team_id)
    ids = list(qs.order_by("pk").values_list("pk", flat=True))
    if practitioner is not None and practitioner.pk not in ids:
        ids.insert(0, practitioner.pk)
    return ids


def next_free_slots_for_referral(
    *,
    referral: Referral,
    appointment_type: str,
    whole_team: bool = False,
    respect_preferences: bool = True,
    now=None,
    after: dt.datetime | None = None,
    limit: int = 10,
    ignore_appointment_ids=(),
    patient_on_phone: bool = False,
    moving: Appointment | None = None,
) -> list[Slot]:
    """Next free slots for a referral's practitioner (or the whole team), in the patient's windows,
    no sooner than the service's booking lead time (or, with the patient on the phone, from
    ON_THE_PHONE_MARGIN from now: today's and tomorrow's slots too).

    For `moving` (an appointment being rearranged) its own time is free to overlap but never offered:
    moving it to the time it already has would only record a cancellation and an identical booking."""
    if moving is not None:
        ignore_appointment_ids = [*ignore_appointment_ids, moving.pk]
    practitioner = referral.assigned_practitioner
    if whole_team or practitioner is None:
        ids = team_practitioner_ids(practitioner) if practitioner else list(
            get_user_model().objects.filter(practitioner__is_active_clinician=True, is_active=True).values_list("pk", flat=True)
        )
    else:
        ids = [practitioner.pk]
    soonest = earliest_bookable(now=now, patient_on_phone=patient_on_phone)
    earliest = max(soonest, after) if after else soonest
    patient = referral.patient
    return find_free_slots(
        practitioner_ids=ids,
        duration_minutes=slot_minutes(appointment_type),
        earliest=earliest,
        weeks=BookingSettings.current().search_weeks,
        preferred_days=patient.preferred_days if respect_preferences else (),
        preferred_times=patient.preferred_times if respect_preferences else (),
        limit=limit,
        ignore_appointment_ids=ignore_appointment_ids,
        exclude_slots=[(moving.practitioner_id, moving.start)] if moving is not None else (),
    )


# --- Courses -----------------------------------------------------------------------------------


@dataclass
class PlannedSession:
    appointment_type: str
    session_number: int | None
    start: dt.datetime | None
    duration_minutes: int
    problem: str = ""  # why this session cannot be booked as planned (a conflict)
    skipped: list[str] = field(default_factory=list)  # weeks passed over, and why

    @property
    def end(self):
        return self.start + dt.timedelta(minutes=self.duration_minutes) if self.start else None


def remaining_treatment_session_numbers(referral: Referral) -> list[int]:
    """Session numbers (2 = first treatment) of the course not yet held or booked.

    A treatment booked on its own ("Book this one only") has no session number; it still counts
    towards BookingSettings.course_treatment_sessions, taking the earliest number still free."""
    settings = BookingSettings.current()
    numbers = list(
        referral.appointments.filter(appointment_type=AppointmentType.TREATMENT).not_cancelled()
        .values_list("session_number", flat=True)
    )
    taken = {n for n in numbers if n is not None}
    remaining = [n for n in range(2, 2 + settings.course_treatment_sessions) if n not in taken]
    unnumbered = sum(1 for n in numbers if n is None)
    return remaining[unnumbered:]


def reviews_already_booked(referral: Referral) -> int:
    """Reviews booked or held for the referral (not cancelled): a course plan does not book them again."""
    return referral.appointments.filter(appointment_type=AppointmentType.REVIEW).not_cancelled().count()


def plan_course(
    *, referral: Referral, practitioner, first_start: dt.datetime, include_reviews: bool = True, max_skips: int = 8
) -> list[PlannedSession]:
    """Remaining treatment sessions weekly at the same local time from `first_start`, then the reviews
    not already booked. What is already booked or held counts: treatments towards
    BookingSettings.course_treatment_sessions, reviews towards the first and second review.

    Weeks the practitioner does not work at that time (leave, training, bank holidays, not a working
    day) are skipped and the course runs on a week longer. A clash with an existing appointment is
    not skipped silently: it is reported as the session's problem, and nothing may be booked until
    the admin chooses a different time.
    """
    settings = BookingSettings.current()
    numbers = remaining_treatment_session_numbers(referral)
    first_start = first_start.astimezone(dt.timezone.utc)
    local_first = first_start.astimezone(LONDON)
    wall_time = local_first.time().replace(tzinfo=None)
    treatment_minutes = settings.treatment_minutes
    horizon_days = (len(numbers) + max_skips) * 7 + 31 * (max(settings.first_review_months, settings.second_review_months) + 1)
    diary = Diary(
        practitioner_ids=[practitioner.pk], first_day=local_first.date(),
        last_day=local_first.date() + dt.timedelta(days=horizon_days),
    )
    plan: list[PlannedSession] = []
    weeks = rrule(WEEKLY, dtstart=local_first.replace(tzinfo=None), count=len(numbers) + max_skips)
    pending_skips: list[str] = []
    wanted = iter(numbers)
    number = next(wanted, None)
    for occurrence in weeks:
        if number is None:
            break
        day = occurrence.date()
        try:
            start = local_datetime(day, wall_time)
        except ValidationError as exc:
            pending_skips.append(f"{day:%a %d %b}: {exc.messages[0]}")
            continue
        end = start + dt.timedelta(minutes=treatment_minutes)
        reason = diary.why_unavailable(practitioner.pk, start, end)
        if reason:
            pending_skips.append(f"{day:%a %d %b}: {reason}")
            continue
        session = PlannedSession(AppointmentType.TREATMENT, number, start, treatment_minutes, skipped=pending_skips)
        pending_skips = []
        if diary.clash(practitioner.pk, start, end):
            session.problem = "The practitioner already has an appointment at this time."
        plan.append(session)
        number = next(wanted, None)
    while number is not None:
        plan.append(PlannedSession(AppointmentType.TREATMENT, number, None, treatment_minutes,
                                   problem="No free week found at this time.", skipped=pending_skips))
        pending_skips = []
        number = next(wanted, None)
    if include_reviews and plan and plan[-1].start is not None:
        last_local = plan[-1].start.astimezone(LONDON)
        review_months = [m for m in (settings.first_review_months, settings.second_review_months) if m]
        # Reviews already booked (or held) stand for the first of the course's reviews.
        for months in review_months[reviews_already_booked(referral):]:
            plan.append(_plan_review(diary, practitioner, last_local.date() + relativedelta(months=months), wall_time, settings))
    return plan


def _plan_review(diary: Diary, practitioner, target: dt.date, wall_time: dt.time, settings) -> PlannedSession:
    """A review on the target day at the course's time, or the next working day it fits (up to 2 weeks)."""
    minutes = settings.review_minutes
    skipped = []
    for offset in range(15):
        day = target + dt.timedelta(days=offset)
        try:
            start = local_datetime(day, wall_time)
        except ValidationError as exc:
            skipped.append(f"{day:%a %d %b}: {exc.messages[0]}")
            continue
        end = start + dt.timedelta(minutes=minutes)
        reason = diary.why_unavailable(practitioner.pk, start, end) or (
            "already booked" if diary.clash(practitioner.pk, start, end) else None
        )
        if reason is None:
            return PlannedSession(AppointmentType.REVIEW, None, start, minutes, skipped=skipped)
        if reason != "outside working hours":
            skipped.append(f"{day:%a %d %b}: {reason}")
    return PlannedSession(AppointmentType.REVIEW, None, None, minutes, problem=f"No free slot within two weeks of {target:%d %b %Y}.")


