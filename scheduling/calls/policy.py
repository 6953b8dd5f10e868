"""The contact policy's rules: which calls count, where the policy stands for a referral (attempts failed,
used up, unable to contact), working days and the suggested time of the next attempt. Pure functions of
their arguments (no database), computed in UK time. The call list's queries select rows with the same
outcome sets."""

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import lru_cache

import holidays

from scheduling.calls.models import ContactAttempt
from scheduling.caseload.models import TIME_OF_DAY_HOURS, TimeOfDay, time_of_day_for
from scheduling.uktime import LONDON

Outcome = ContactAttempt.Outcome
# A call that reached the patient: the policy's count starts again after it.
CONTACT_OUTCOMES = ContactAttempt.SUCCESSFUL_OUTCOMES
# Tries that did not reach the patient; at a booked session they count towards a DNA.
UNANSWERED_OUTCOMES = frozenset({Outcome.NO_ANSWER.value, Outcome.VOICEMAIL.value, Outcome.BUSY.value})
# Failed attempts that count towards the contact policy (a wrong number is a failed attempt too).
POLICY_FAILED_OUTCOMES = UNANSWERED_OUTCOMES | {Outcome.WRONG_NUMBER.value, Outcome.NOT_IN_SERVICE.value}
# Unanswered tries within a booked session's slot before it is did not attend, when the practitioner's
# profile gives no number.
DEFAULT_TRIES_BEFORE_DNA = 2

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


def tries_before_dna(setting: int | None) -> int:
    """The practitioner's number of unanswered tries before a DNA (their profile's `tries_before_dna`), at least one."""
    return max(1, setting or DEFAULT_TRIES_BEFORE_DNA)


# --- Where the policy stands for one referral ---------------------------------------------------


def counts_against_policy(attempt) -> bool:
    """A failed first-contact call: made outside any booked session, and it did not reach the patient."""
    return attempt.appointment_id is None and attempt.outcome in POLICY_FAILED_OUTCOMES


@dataclass(frozen=True)
class ContactState:
    failed: tuple  # the failed policy attempts since the last contact, in the order they were made
    max_attempts: int
    last_contact_at: datetime | None
    invitation: object | None  # the opt-in invitation still standing: nobody got through since it fell due

    @property
    def counted(self) -> int:
        """Failed attempts the policy counts: it stops at its number of attempts."""
        return min(len(self.failed), self.max_attempts)

    @property
    def extra_failed(self) -> int:
        """Failed calls after the policy's attempts were used up (told apart, not counted against it)."""
        return max(0, len(self.failed) - self.max_attempts)

    @property
    def exhausted(self) -> bool:
        """Every attempt the policy allows has failed: an opt-in invitation is due."""
        return len(self.failed) >= self.max_attempts

    def unable_to_contact(self, today: date) -> bool:
        """The invitation's deadline has passed with no contact since it fell due: discharge is suggested."""
        return self.invitation is not None and today > self.invitation.deadline


def classify_contact(attempts, *, policy, invitation=None, last_contact_at: datetime | None = None) -> ContactState:
    """Where the contact policy stands for a referral, from its effective attempts in the order they were made
    (anything with attempted_at, outcome and appointment_id). A failed attempt counts when it was made at or
    after the last contact; attempts before the last contact may be left out when `last_contact_at` is given.
    `invitation` is the referral's latest opt-in invitation (anything with due_at and deadline), if any: a
    contact at or after it fell due ends it."""
    attempts = list(attempts)
    for attempt in attempts:
        if attempt.outcome in CONTACT_OUTCOMES and (last_contact_at is None or attempt.attempted_at > last_contact_at):
            last_contact_at = attempt.attempted_at
    failed = tuple(
        a for a in attempts
        if counts_against_policy(a) and (last_contact_at is None or a.attempted_at >= last_contact_at)
    )
    if invitation is not None and last_contact_at is not None and last_contact_at >= invitation.due_at:
        invitation = None
    return ContactState(failed=failed, max_attempts=policy.max_attempts, last_contact_at=last_contact_at, invitation=invitation)
