"""The activity import: a past year of referrals, calls and appointments from another system, so a service
can measure its capacity loss before switching over.

The whole file is validated first; if any row is bad nothing is imported and every bad line is named, with
the column at fault. Appointments that would overlap a live appointment of the same practitioner (in the
file or already in the database) are refused, as the database's no-overlap guard would refuse them.
Each row's identity is a hash of its values (ImportedEvent.key), so importing the same file again changes
nothing. Rows are written by the caseload, booking and calls services' import functions, so each referral
moves through its life and is audited as it would be live."""

from __future__ import annotations

import csv
import datetime
import hashlib
import re
from bisect import bisect_left
from dataclasses import dataclass, field
from datetime import timedelta
from zoneinfo import ZoneInfo

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import DataError, IntegrityError, transaction
from django.utils import timezone

from scheduling.booking.db import is_overlap_violation
from scheduling.booking.models import Appointment
from scheduling.booking.services import import_appointment, link_imported_rearrangement
from scheduling.calls.models import ContactAttempt
from scheduling.calls.services import import_contact_attempt
from scheduling.caseload.models import PractitionerProfile, Referral
from scheduling.caseload.nhs_number import normalise_nhs_number
from scheduling.caseload.services import add_imported_practitioner, find_or_add_imported_patient, import_referral
from scheduling.codes import CANCELLED_OUTCOMES, DEFAULT_DURATION_MINUTES, AppointmentType, AttendanceOutcome, ReferralSource
from scheduling.params import InvalidParameter, check_date_bounds
from scheduling.reports.models import ImportedEvent

LONDON = ZoneInfo("Europe/London")
COLUMNS = [
    "referral_id", "nhs_number", "practitioner", "event", "at", "appointment_type", "duration_minutes", "outcome",
    "cancelled_at", "source",
]
EVENTS = ImportedEvent.Event
CALL_OUTCOMES = {
    "answered": ContactAttempt.Outcome.ANSWERED,
    "no_answer": ContactAttempt.Outcome.NO_ANSWER,
    "voicemail": ContactAttempt.Outcome.VOICEMAIL,
    "busy": ContactAttempt.Outcome.BUSY,
    "wrong_number": ContactAttempt.Outcome.WRONG_NUMBER,
    "declined": ContactAttempt.Outcome.DECLINED,
}
# Import outcome -> (NHS attendance code, who cancelled, is a rearrangement)
APPOINTMENT_OUTCOMES = {
    "attended": (AttendanceOutcome.ATTENDED, "", False),
    "attended_late": (AttendanceOutcome.ATTENDED_LATE, "", False),
    "dna": (AttendanceOutcome.DID_NOT_ATTEND, "", False),
    "late_not_seen": (AttendanceOutcome.LATE_NOT_SEEN, "", False),
    "cancelled_by_patient": (AttendanceOutcome.CANCELLED_BY_PATIENT, "patient", False),
    "cancelled_by_service": (AttendanceOutcome.CANCELLED_BY_PROVIDER, "service", False),
    "rearranged_by_patient": (AttendanceOutcome.CANCELLED_BY_PATIENT, "patient", True),
    "rearranged_by_service": (AttendanceOutcome.CANCELLED_BY_PROVIDER, "service", True),
}
PROGRESS_EVERY = 1000
# Longer than any real value in any column (names, ids); a longer one is refused rather than truncated.
MAX_FIELD_LENGTH = 200


class ImportRejected(ValidationError):
    """The file has bad rows; `errors` is a list of (line number, reason). Nothing was imported."""

    def __init__(self, errors: list[tuple[int, str]]):
        self.errors = errors
        super().__init__([f"line {line}: {reason}" for line, reason in errors], code="bad_rows")


@dataclass
class Row:
    line: int
    event: str
    referral_id: str
    nhs_number: str
    practitioner: str
    at: datetime.datetime
    key: str = ""
    appointment_type: str = ""
    duration_minutes: int = 0
    outcome: str = ""
    cancelled_at: datetime.datetime | None = None
    source: str = ""


@dataclass
class ImportResult:
    rows: int = 0
    imported: dict = field(default_factory=lambda: {e: 0 for e in EVENTS.values})
    already_imported: int = 0
    duplicates_in_file: int = 0
    rearrangements_linked: int = 0
    new_practitioners: list = field(default_factory=list)
    new_patients: int = 0


def parse_time(raw: str) -> datetime.datetime:
    """ISO 8601; without an offset the time is Europe/London local time. Dates outside the service's
    bounds (scheduling.params) are refused before any time zone arithmetic could overflow."""
    value = datetime.datetime.fromisoformat(raw.strip())
    try:
        check_date_bounds(value.date(), label="date")
    except InvalidParameter as exc:
        raise ValueError(str(exc).removeprefix("date: ")) from None
    if value.tzinfo is None:
        local = value.replace(tzinfo=LONDON)
        round_trip = local.astimezone(datetime.UTC).astimezone(LONDON).replace(tzinfo=None)
        if round_trip != value:
            raise ValueError("does not exist in UK time (the clocks went forward)")
        return local
    return value


def practitioner_username(raw: str) -> str:
    return re.sub(r"[^a-z0-9@.+_-]+", ".", raw.strip().lower()).strip(".")[:150]


def _row_key(row: Row) -> str:
    parts = [
        row.event, row.referral_id, row.nhs_number, practitioner_username(row.practitioner),
        row.at.astimezone(datetime.UTC).isoformat(), row.appointment_type, str(row.duration_minutes or ""), row.outcome,
        row.cancelled_at.astimezone(datetime.UTC).isoformat() if row.cancelled_at else "", row.source,
    ]
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def read_csv(handle) -> list[tuple[int, dict]]:
    """Rows with their line numbers (the header is line 1). Raises ImportRejected for a bad header."""
    reader = csv.DictReader(handle)
    header = [h.strip() for h in (reader.fieldnames or [])]
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise ImportRejected([(1, f"missing column(s): {', '.join(missing)}")])
    reader.fieldnames = header
    rows = []
    try:
        for raw in reader:
            rows.append((reader.line_num, {k: (v if isinstance(v, str) else "").strip() for k, v in raw.items() if k}))
    except csv.Error as exc:
        # A field over the csv module's size limit, or a malformed quote: the line, not a traceback.
        raise ImportRejected([(reader.line_num, f"not readable as CSV ({exc})")]) from None
    return rows


def _check_text(raw: dict) -> list[str]:
    """Refusals that apply to every column: characters no database text can hold, absurd lengths."""
    errors = []
    for column in COLUMNS:
        value = raw.get(column, "")
        if "\x00" in value:
            errors.append(f"'{column}' contains a NUL character")
        elif len(value) > MAX_FIELD_LENGTH:
            errors.append(f"'{column}' is longer than {MAX_FIELD_LENGTH} characters")
        elif any(ord(ch) < 32 for ch in value):
            errors.append(f"'{column}' contains a control character")
    return errors


def _parse_time_column(raw: dict, column: str) -> tuple[datetime.datetime | None, list[str]]:
    value = raw.get(column, "")
    try:
        return parse_time(value), []
    except ValueError as exc:
        detail = str(exc) if "UK time" in str(exc) or "outside the dates" in str(exc) else "not an ISO 8601 date and time"
        return None, [f"unparseable time in '{column}' ('{value}'): {detail}"]


def _parse_referral_id(raw: dict) -> tuple[str, list[str]]:
    referral_id = raw.get("referral_id", "")
    if not referral_id:
        return referral_id, ["'referral_id' is empty"]
    if len(referral_id) > 64:
        return referral_id, ["'referral_id' is longer than 64 characters"]
    return referral_id, []


def _parse_nhs_number(raw: dict, *, event: str) -> tuple[str, list[str]]:
    """Needed on a referral_received row; elsewhere optional (checked against the referral's)."""
    nhs_number = raw.get("nhs_number", "")
    if not nhs_number and event != EVENTS.REFERRAL_RECEIVED:
        return nhs_number, []
    try:
        if not nhs_number.isascii():
            raise ValidationError("An NHS number contains only the digits 0-9.")
        return normalise_nhs_number(nhs_number), []
    except ValidationError as exc:
        return nhs_number, [f"invalid NHS number in 'nhs_number': {exc.messages[0]}"]


def _parse_practitioner(raw: dict, *, event: str) -> tuple[str, list[str]]:
    practitioner = raw.get("practitioner", "")
    errors = []
    if event != EVENTS.REFERRAL_RECEIVED and not practitioner:
        errors.append("'practitioner' is empty")
    if practitioner and not practitioner_username(practitioner):
        errors.append(f"practitioner '{practitioner}' in 'practitioner' has no letters or digits")
    return practitioner, errors


def _parse_referral_received(row: Row, raw: dict, now) -> list[str]:
    errors = []
    row.source = raw.get("source", "")
    if row.source not in ReferralSource.values:
        errors.append(f"source '{row.source}' is not a source-of-referral code ({', '.join(ReferralSource.values)})")
    outcome = raw.get("outcome", "")
    if outcome:
        errors.append(f"outcome '{outcome}' is not valid for a referral_received event")
    if row.at and row.at > now:
        errors.append("'at': a referral cannot be received in the future")
    return errors


def _parse_call_attempt(row: Row, raw: dict, now) -> list[str]:
    errors = []
    row.outcome = raw.get("outcome", "")
    if row.outcome not in CALL_OUTCOMES:
        errors.append(f"outcome '{row.outcome}' is not valid for a call_attempt (expected {', '.join(CALL_OUTCOMES)})")
    row.appointment_type = raw.get("appointment_type", "")
    if row.appointment_type and row.appointment_type not in AppointmentType.values:
        errors.append(f"appointment_type '{row.appointment_type}' is not one of {', '.join(AppointmentType.values)}")
    if row.at and row.at > now + timedelta(minutes=5):
        errors.append("'at': a call attempt cannot be in the future")
    return errors


def _parse_duration(row: Row, raw: dict) -> list[str]:
    duration = raw.get("duration_minutes", "")
    if not duration:
        row.duration_minutes = DEFAULT_DURATION_MINUTES.get(row.appointment_type, 45)
        return []
    if not (duration.isascii() and duration.isdigit() and len(duration) <= 3) or not 1 <= int(duration) <= 240:
        return [f"'duration_minutes' '{duration}' is not a whole number from 1 to 240"]
    row.duration_minutes = int(duration)
    return []


def _parse_cancellation(row: Row, raw: dict, now) -> list[str]:
    """cancelled_at: needed by the outcomes that are cancellations or rearrangements, refused on the rest."""
    needs_cancelled_at = row.outcome in APPOINTMENT_OUTCOMES and APPOINTMENT_OUTCOMES[row.outcome][1] != ""
    if not raw.get("cancelled_at", ""):
        return [f"outcome '{row.outcome}' needs cancelled_at (when the cancellation was asked for)"] if needs_cancelled_at else []
    row.cancelled_at, errors = _parse_time_column(raw, "cancelled_at")
    if not needs_cancelled_at:
        errors.append("'cancelled_at' is only for cancellations and rearrangements")
    elif row.cancelled_at and row.cancelled_at > now:
        errors.append("'cancelled_at' is in the future")
    return errors


def _parse_appointment(row: Row, raw: dict, now) -> list[str]:
    errors = []
    row.appointment_type = raw.get("appointment_type", "")
    if row.appointment_type not in AppointmentType.values:
        errors.append(f"appointment_type '{row.appointment_type}' is not one of {', '.join(AppointmentType.values)}")
    errors += _parse_duration(row, raw)
    row.outcome = raw.get("outcome", "")
    if row.outcome and row.outcome not in APPOINTMENT_OUTCOMES:
        errors.append(f"outcome '{row.outcome}' is not valid for an appointment (expected {', '.join(APPOINTMENT_OUTCOMES)})")
    errors += _parse_cancellation(row, raw, now)
    is_cancellation = row.outcome in APPOINTMENT_OUTCOMES and APPOINTMENT_OUTCOMES[row.outcome][1] != ""
    if row.at and row.at > now and row.outcome and not is_cancellation:
        errors.append(f"outcome '{row.outcome}' cannot be recorded for an appointment in the future")
    return errors


_EVENT_PARSERS = {
    EVENTS.REFERRAL_RECEIVED: _parse_referral_received,
    EVENTS.CALL_ATTEMPT: _parse_call_attempt,
    EVENTS.APPOINTMENT: _parse_appointment,
}


def _parse_row(line: int, raw: dict, now) -> tuple[Row | None, list[str]]:
    """One row read and checked on its own: the columns every event has, then the event's own."""
    errors = _check_text(raw)
    if errors:
        return None, errors
    event = raw.get("event", "")
    if event not in EVENTS.values:
        return None, [f"unknown event '{event}' in 'event' (expected {', '.join(EVENTS.values)})"]
    referral_id, referral_errors = _parse_referral_id(raw)
    nhs_number, nhs_errors = _parse_nhs_number(raw, event=event)
    practitioner, practitioner_errors = _parse_practitioner(raw, event=event)
    at, at_errors = _parse_time_column(raw, "at")
    row = Row(line=line, event=event, referral_id=referral_id, nhs_number=nhs_number, practitioner=practitioner, at=at)
    errors = referral_errors + nhs_errors + practitioner_errors + at_errors + _EVENT_PARSERS[event](row, raw, now)
    if not errors:
        row.key = _row_key(row)
    return row, errors


def validate_rows(raw_rows: list[tuple[int, dict]], *, progress=None) -> tuple[list[Row], list[tuple[int, str]]]:
    """Parse and check every row, and the file as a whole. Returns (rows, errors)."""
    now = timezone.now()
    rows, errors = [], []
    for i, (line, raw) in enumerate(raw_rows, 1):
        row, row_errors = _parse_row(line, raw, now)
        errors.extend((line, e) for e in row_errors)
        if row is not None and not row_errors:
            rows.append(row)
        if progress and i % PROGRESS_EVERY == 0:
            progress(f"validated {i}/{len(raw_rows)} rows")
    # Whole-file checks: every referral known, one NHS number per referral, calls at real appointments.
    received = {}
    for row in rows:
        if row.event == EVENTS.REFERRAL_RECEIVED:
            if row.referral_id in received and received[row.referral_id].key != row.key:
                errors.append((row.line, f"referral {row.referral_id} ('referral_id') is already received on line {received[row.referral_id].line}"))
            else:
                received.setdefault(row.referral_id, row)
    existing = {
        r.external_id: r
        for r in Referral.objects.filter(external_id__in={r.referral_id for r in rows}).select_related("patient")
    }
    imported_keys = set(
        ImportedEvent.objects.filter(key__in=[r.key for r in rows]).values_list("key", flat=True)
    )
    for row in rows:
        if row.event == EVENTS.REFERRAL_RECEIVED and row.referral_id in existing and row.key not in imported_keys:
            errors.append((row.line, f"referral {row.referral_id} ('referral_id') already exists in the database"))
    starts = {}
    for row in rows:
        if row.event == EVENTS.APPOINTMENT:
            starts.setdefault((row.referral_id, row.appointment_type, row.at), row)
    for row in rows:
        if row.event == EVENTS.REFERRAL_RECEIVED:
            continue
        first = received.get(row.referral_id)
        known = existing.get(row.referral_id)
        if first is None and known is None:
            errors.append((row.line, f"unknown referral {row.referral_id} in 'referral_id' (no referral_received row and not in the database)"))
            continue
        expected_nhs = first.nhs_number if first else known.patient.nhs_number
        if row.nhs_number and row.nhs_number != expected_nhs:
            errors.append((row.line, f"NHS number in 'nhs_number' differs from referral {row.referral_id}'s"))
        if row.event == EVENTS.CALL_ATTEMPT and row.appointment_type:
            in_file = (row.referral_id, row.appointment_type, row.at) in starts
            in_db = known is not None and Appointment.objects.filter(
                referral=known, appointment_type=row.appointment_type, start=row.at
            ).exists()
            if not (in_file or in_db):
                errors.append((row.line, f"no {row.appointment_type} appointment ('appointment_type') for referral {row.referral_id} starts at {row.at.isoformat()} ('at')"))
    users, practitioner_errors = _existing_practitioners(rows)
    errors.extend(practitioner_errors)
    errors.extend(_overlap_errors(rows, imported_keys, users))
    errors.sort()
    return rows, errors


def _find_user(raw: str):
    return get_user_model().objects.filter(username__in=[raw.strip(), practitioner_username(raw)]).order_by("pk").first()


def _existing_practitioners(rows: list[Row]) -> tuple[dict, list[tuple[int, str]]]:
    """Existing accounts the file names, by username. An existing account without a practitioner profile
    (an admin or manager account) is refused: importing must not make anyone a practitioner."""
    users, errors = {}, []
    for raw in sorted({row.practitioner for row in rows if row.practitioner}):
        user = _find_user(raw)
        if user is None:
            continue
        if not PractitionerProfile.objects.filter(user=user).exists():
            lines = [row.line for row in rows if row.practitioner == raw]
            errors.extend(
                (line, f"practitioner '{raw}' in 'practitioner' is an existing account that is not a practitioner "
                       f"(an admin or manager account); the import does not make accounts practitioners")
                for line in lines
            )
            continue
        users[practitioner_username(raw)] = user
    return users, errors


def _is_live(row: Row) -> bool:
    code = APPOINTMENT_OUTCOMES.get(row.outcome, (AttendanceOutcome.NOT_APPLICABLE, "", False))[0]
    return code not in CANCELLED_OUTCOMES


def _when(start, end) -> str:
    return f"{start.astimezone(LONDON):%d/%m/%Y %H:%M}-{end.astimezone(LONDON):%H:%M} UK time"


def _overlap_errors(rows: list[Row], imported_keys: set, users: dict) -> list[tuple[int, str]]:
    """A practitioner cannot hold two live (not cancelled) appointments at once: the database refuses it
    (booking/db.py), so the file is checked against itself and the database first, naming both sides."""
    fresh, seen = {}, set()
    for row in rows:
        if row.event != EVENTS.APPOINTMENT or row.key in imported_keys or row.key in seen or not _is_live(row):
            continue
        seen.add(row.key)
        fresh.setdefault(practitioner_username(row.practitioner), []).append(row)
    errors = []
    for username, group in fresh.items():
        group.sort(key=lambda r: (r.at, r.line))
        latest = None  # the row ending last so far
        for row in group:
            end = row.at + timedelta(minutes=row.duration_minutes)
            if latest is not None and row.at < latest[1]:
                other = latest[0]
                errors.append((row.line, f"appointment at 'at' {_when(row.at, end)} overlaps {username}'s live "
                                         f"appointment on line {other.line} ({_when(other.at, latest[1])})"))
            if latest is None or end > latest[1]:
                latest = (row, end)
        user = users.get(username)
        if user is None:
            continue
        booked = list(
            Appointment.objects.not_cancelled()
            .filter(practitioner=user, start__lt=max(r.at + timedelta(minutes=r.duration_minutes) for r in group),
                    end__gt=min(r.at for r in group))
            .order_by("start")
            .values_list("start", "end")
        )
        starts = [start for start, _ in booked]
        for row in group:
            end = row.at + timedelta(minutes=row.duration_minutes)
            # Live appointments in the database never overlap each other, so only the last one starting
            # before this row ends can reach into it.
            i = bisect_left(starts, end) - 1
            if i >= 0 and booked[i][1] > row.at:
                errors.append((row.line, f"appointment at 'at' {_when(row.at, end)} overlaps a live appointment of "
                                         f"{username} already in the database ({_when(*booked[i])})"))
    return errors


def _database_refusal(exc: Exception) -> str:
    # The database's own message is not repeated: its DETAIL quotes the row's values.
    if is_overlap_violation(exc):
        return "the appointment in 'at' overlaps a live appointment of the same practitioner booked since the file was checked"
    return "the database refused this row (it conflicts with data written since the file was checked, or a value is out of range)"


# The services' names for what they refuse, as the file's columns.
_COLUMN_OF = {
    "nhs_number": "nhs_number", "source": "source", "received_on": "at", "start": "at", "attempted_at": "at",
    "outcome_at": "cancelled_at", "cancelled_by": "outcome", "outcome": "outcome", "appointment_type": "appointment_type",
    "appointment": "appointment_type", "practitioner": "practitioner",
}


def _service_refusal(exc: ValidationError) -> list[str]:
    """A service's refusal (checks the file passed but the service did not), naming the column."""
    if not hasattr(exc, "error_dict"):
        return [f"not recorded: {' '.join(exc.messages)}"]
    return [
        f"'{_COLUMN_OF.get(name, name)}': {' '.join(ValidationError(errors).messages)}"
        for name, errors in exc.error_dict.items()
    ]


# Referrals first (every other row needs its referral), then the history in the order it happened; an
# appointment before a call at its start (the call names it).
_EVENT_ORDER = {EVENTS.APPOINTMENT: 0, EVENTS.CALL_ATTEMPT: 1}


def _import_order(row: Row):
    if row.event == EVENTS.REFERRAL_RECEIVED:
        return (0, row.at, 0, row.line)
    return (1, row.at, _EVENT_ORDER[row.event], row.line)


def import_activity(*, raw_rows: list[tuple[int, dict]], file_name: str = "", actor=None, progress=None) -> ImportResult:
    """Validate every row, then import all of them in one transaction (or raise ImportRejected and import none).
    Each row is written by the capability's own import service (caseload, booking, calls), so the referral's
    life and the audit entries are the ones those services write live."""
    rows, errors = validate_rows(raw_rows, progress=progress)
    if errors:
        raise ImportRejected(errors)
    result = ImportResult(rows=len(raw_rows))
    with transaction.atomic():
        done = set(ImportedEvent.objects.filter(key__in=[r.key for r in rows]).values_list("key", flat=True))
        fresh, seen = [], set()
        for row in rows:
            if row.key in done:
                result.already_imported += 1
            elif row.key in seen:
                result.duplicates_in_file += 1
            else:
                seen.add(row.key)
                fresh.append(row)
        fresh.sort(key=_import_order)
        importer = _Importer(file_name=file_name, actor=actor, result=result)
        for i, row in enumerate(fresh, 1):
            try:
                importer.add(row)
            except (IntegrityError, DataError) as exc:
                # The database as the last guard (e.g. a booking made since validation): the whole import is
                # rolled back and the line named.
                raise ImportRejected([(row.line, _database_refusal(exc))]) from None
            except ValidationError as exc:
                raise ImportRejected([(row.line, reason) for reason in _service_refusal(exc)]) from None
            if progress and i % PROGRESS_EVERY == 0:
                progress(f"imported {i}/{len(fresh)} new rows")
        importer.link_rearrangements()
    return result


class _Importer:
    """Writes checked rows through the capabilities' import services and notes each one (ImportedEvent)."""

    def __init__(self, *, file_name, actor, result: ImportResult):
        self.file_name = file_name[:255]
        self.actor = actor
        self.result = result
        self.referrals: dict[str, Referral] = {}
        self.users: dict[str, object] = {}
        self.rearranged: list[tuple[Appointment, str]] = []

    def _referral(self, referral_id: str) -> Referral:
        if referral_id not in self.referrals:
            self.referrals[referral_id] = Referral.objects.get(external_id=referral_id)
        return self.referrals[referral_id]

    def _practitioner(self, raw: str):
        if not raw:
            return None
        username = practitioner_username(raw)
        if username not in self.users:
            user = _find_user(raw)
            if user is None:
                user = add_imported_practitioner(username=username, full_name=raw)
                self.result.new_practitioners.append(username)
            elif not PractitionerProfile.objects.filter(user=user).exists():
                # validate_rows refuses this; never turn an existing (admin) account into a practitioner.
                raise IntegrityError("an existing account without a practitioner profile")
            self.users[username] = user
        return self.users[username]

    def _record(self, row: Row, referral, appointment=None, attempt=None):
        ImportedEvent.objects.create(
            key=row.key, event=row.event, source_referral_id=row.referral_id, referral=referral, appointment=appointment,
            contact_attempt=attempt, file_name=self.file_name, line_number=row.line, imported_by=self.actor,
        )
        self.result.imported[row.event] += 1

    def add(self, row: Row):
        getattr(self, f"_add_{row.event}")(row)

    def _add_referral_received(self, row: Row):
        patient, created = find_or_add_imported_patient(nhs_number=row.nhs_number)
        self.result.new_patients += created
        referral = import_referral(
            patient=patient, source=row.source, received_on=row.at.astimezone(LONDON).date(), external_id=row.referral_id,
            assigned_practitioner=self._practitioner(row.practitioner), actor=self.actor, at=row.at,
        )
        self.referrals[row.referral_id] = referral
        self._record(row, referral)

    def _add_appointment(self, row: Row):
        referral = self._referral(row.referral_id)
        code, cancelled_by, rearranged = APPOINTMENT_OUTCOMES.get(row.outcome, (AttendanceOutcome.NOT_APPLICABLE, "", False))
        appointment = import_appointment(
            referral=referral, practitioner=self._practitioner(row.practitioner), appointment_type=row.appointment_type,
            start=row.at, duration_minutes=row.duration_minutes,
            # The earliest time the file shows the appointment existed.
            booked_at=min(row.at, row.cancelled_at) if row.cancelled_at else row.at,
            outcome=code,
            outcome_at=(row.cancelled_at or row.at) if code != AttendanceOutcome.NOT_APPLICABLE else None,
            cancelled_by=cancelled_by,
            cancellation_reason="Rearranged (activity import)" if rearranged else "Cancelled (activity import)",
            actor=self.actor,
        )
        if rearranged:
            self.rearranged.append((appointment, cancelled_by))
        self._record(row, referral, appointment=appointment)

    def _add_call_attempt(self, row: Row):
        referral = self._referral(row.referral_id)
        appointment = None
        if row.appointment_type:
            appointment = Appointment.objects.filter(referral=referral, appointment_type=row.appointment_type, start=row.at).first()
        attempt = import_contact_attempt(
            referral=referral, practitioner=self._practitioner(row.practitioner), outcome=CALL_OUTCOMES[row.outcome],
            attempted_at=row.at, appointment=appointment, actor=self.actor, import_key=row.key[:64],
        )
        self._record(row, referral, attempt=attempt)

    def link_rearrangements(self):
        """A rearranged appointment is linked to the next appointment of the same type for the same referral."""
        for original, asked_by in self.rearranged:
            if link_imported_rearrangement(original=original, asked_by=asked_by, actor=self.actor) is not None:
                self.result.rearrangements_linked += 1
