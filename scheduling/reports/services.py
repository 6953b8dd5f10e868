"""The activity import: a past year of referrals, calls and appointments from another system, so a service
can measure its capacity loss before switching over.

The whole file is validated first; if any row is bad nothing is imported and every bad line is named, with
the column at fault. Appointments that would overlap a live appointment of the same practitioner (in the
file or already in the database) are refused, as the database's no-overlap guard would refuse them.
Each row's identity is a hash of its values (ImportedEvent.key), so importing the same file again changes
nothing. Rows are written with the same audit entries the booking and caseload services write."""

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
from scheduling.booking.models import Appointment, Rearrangement
from scheduling.calls.models import ContactAttempt
from scheduling.audit import record_change
from scheduling.caseload.models import Patient, PractitionerProfile, Referral
from scheduling.caseload.nhs_number import normalise_nhs_number
from scheduling.codes import (
    ATTENDED_OUTCOMES, CANCELLED_OUTCOMES, DEFAULT_DURATION_MINUTES, AppointmentType, AttendanceOutcome, ReferralSource,
)
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
# Patients in the file have an NHS number only; the name says so rather than inventing one.
IMPORTED_GIVEN_NAME = "Not recorded"
IMPORTED_FAMILY_NAME = "(imported)"
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


def _parse_row(line: int, raw: dict, now) -> tuple[Row | None, list[str]]:
    errors = _check_text(raw)
    if errors:
        return None, errors
    event = raw.get("event", "")
    if event not in EVENTS.values:
        return None, [f"unknown event '{event}' in 'event' (expected {', '.join(EVENTS.values)})"]
    referral_id = raw.get("referral_id", "")
    if not referral_id:
        errors.append("'referral_id' is empty")
    elif len(referral_id) > 64:
        errors.append("'referral_id' is longer than 64 characters")
    nhs_number = raw.get("nhs_number", "")
    if nhs_number or event == EVENTS.REFERRAL_RECEIVED:
        try:
            if not nhs_number.isascii():
                raise ValidationError("An NHS number contains only the digits 0-9.")
            nhs_number = normalise_nhs_number(nhs_number)
        except ValidationError as exc:
            errors.append(f"invalid NHS number in 'nhs_number': {exc.messages[0]}")
    practitioner = raw.get("practitioner", "")
    if event != EVENTS.REFERRAL_RECEIVED and not practitioner:
        errors.append("'practitioner' is empty")
    if practitioner and not practitioner_username(practitioner):
        errors.append(f"practitioner '{practitioner}' in 'practitioner' has no letters or digits")
    at = None
    try:
        at = parse_time(raw.get("at", ""))
    except ValueError as exc:
        detail = str(exc) if "UK time" in str(exc) or "outside the dates" in str(exc) else "not an ISO 8601 date and time"
        errors.append(f"unparseable time in 'at' ('{raw.get('at', '')}'): {detail}")
    row = Row(line=line, event=event, referral_id=referral_id, nhs_number=nhs_number, practitioner=practitioner, at=at)
    outcome = raw.get("outcome", "")
    appointment_type = raw.get("appointment_type", "")
    if event == EVENTS.REFERRAL_RECEIVED:
        row.source = raw.get("source", "")
        if row.source not in ReferralSource.values:
            errors.append(f"source '{row.source}' is not a source-of-referral code ({', '.join(ReferralSource.values)})")
        if outcome:
            errors.append(f"outcome '{outcome}' is not valid for a referral_received event")
        if at and at > now:
            errors.append("'at': a referral cannot be received in the future")
    elif event == EVENTS.CALL_ATTEMPT:
        if outcome not in CALL_OUTCOMES:
            errors.append(f"outcome '{outcome}' is not valid for a call_attempt (expected {', '.join(CALL_OUTCOMES)})")
        row.outcome = outcome
        if appointment_type and appointment_type not in AppointmentType.values:
            errors.append(f"appointment_type '{appointment_type}' is not one of {', '.join(AppointmentType.values)}")
        row.appointment_type = appointment_type
        if at and at > now + timedelta(minutes=5):
            errors.append("'at': a call attempt cannot be in the future")
    else:
        if appointment_type not in AppointmentType.values:
            errors.append(f"appointment_type '{appointment_type}' is not one of {', '.join(AppointmentType.values)}")
        row.appointment_type = appointment_type
        duration = raw.get("duration_minutes", "")
        if duration:
            if not (duration.isascii() and duration.isdigit() and len(duration) <= 3) or not 1 <= int(duration) <= 240:
                errors.append(f"'duration_minutes' '{duration}' is not a whole number from 1 to 240")
            else:
                row.duration_minutes = int(duration)
        else:
            row.duration_minutes = DEFAULT_DURATION_MINUTES.get(appointment_type, 45)
        if outcome and outcome not in APPOINTMENT_OUTCOMES:
            errors.append(f"outcome '{outcome}' is not valid for an appointment (expected {', '.join(APPOINTMENT_OUTCOMES)})")
        row.outcome = outcome
        cancelled = raw.get("cancelled_at", "")
        needs_cancelled_at = outcome in APPOINTMENT_OUTCOMES and APPOINTMENT_OUTCOMES[outcome][1] != ""
        if cancelled:
            try:
                row.cancelled_at = parse_time(cancelled)
            except ValueError as exc:
                detail = str(exc) if "UK time" in str(exc) or "outside the dates" in str(exc) else "not an ISO 8601 date and time"
                errors.append(f"unparseable time in 'cancelled_at' ('{cancelled}'): {detail}")
            if not needs_cancelled_at:
                errors.append("'cancelled_at' is only for cancellations and rearrangements")
            elif row.cancelled_at and row.cancelled_at > now:
                errors.append("'cancelled_at' is in the future")
        elif needs_cancelled_at:
            errors.append(f"outcome '{outcome}' needs cancelled_at (when the cancellation was asked for)")
        if at and at > now and outcome and not needs_cancelled_at:
            errors.append(f"outcome '{outcome}' cannot be recorded for an appointment in the future")
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


def import_activity(*, raw_rows: list[tuple[int, dict]], file_name: str = "", actor=None, progress=None) -> ImportResult:
    """Validate every row, then import all of them in one transaction (or raise ImportRejected and import none)."""
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
        order = {EVENTS.REFERRAL_RECEIVED: 0, EVENTS.APPOINTMENT: 1, EVENTS.CALL_ATTEMPT: 2}
        fresh.sort(key=lambda r: (order[r.event], r.at, r.line))
        importer = _Importer(file_name=file_name, actor=actor, result=result)
        for i, row in enumerate(fresh, 1):
            try:
                importer.add(row)
            except (IntegrityError, DataError) as exc:
                # The database as the last guard (e.g. a booking made since validation): the whole import is
                # rolled back and the line named.
                raise ImportRejected([(row.line, _database_refusal(exc))]) from None
            if progress and i % PROGRESS_EVERY == 0:
                progress(f"imported {i}/{len(fresh)} new rows")
        importer.link_rearrangements()
        importer.settle_statuses()
    return result


class _Importer:
    def __init__(self, *, file_name, actor, result: ImportResult):
        self.file_name = file_name[:255]
        self.actor = actor
        self.result = result
        self.referrals: dict[str, Referral] = {}
        self.users: dict[str, object] = {}
        self.rearranged: list[tuple[Appointment, str]] = []
        self.touched: set[int] = set()

    def _referral(self, referral_id: str) -> Referral:
        if referral_id not in self.referrals:
            self.referrals[referral_id] = Referral.objects.get(external_id=referral_id)
        return self.referrals[referral_id]

    def _practitioner(self, raw: str):
        if not raw:
            return None
        username = practitioner_username(raw)
        if username not in self.users:
            User = get_user_model()
            user = _find_user(raw)
            if user is None:
                words = raw.strip().split()
                user = User(username=username, first_name=" ".join(words[:-1])[:150] if len(words) > 1 else "", last_name=words[-1][:150] if words else "")
                user.set_unusable_password()
                user.save()
                self.result.new_practitioners.append(username)
                PractitionerProfile.objects.create(user=user)
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
        self.touched.add(referral.pk)

    def add(self, row: Row):
        getattr(self, f"_add_{row.event}")(row)

    def _add_referral_received(self, row: Row):
        patient = Patient.objects.filter(nhs_number=row.nhs_number).first()
        if patient is None:
            patient = Patient.objects.create(
                nhs_number=row.nhs_number, given_name=IMPORTED_GIVEN_NAME, family_name=IMPORTED_FAMILY_NAME, date_of_birth=None
            )
            self.result.new_patients += 1
        referral = Referral.objects.create(
            patient=patient, source=row.source, received_on=row.at.astimezone(LONDON).date(), reason="Imported referral",
            assigned_practitioner=self._practitioner(row.practitioner), external_id=row.referral_id, created_by=self.actor,
        )
        record_change(referral=referral, field="status", old="", new=referral.status, actor=self.actor, at=row.at,
                      reason="Referral received (activity import)")
        self.referrals[row.referral_id] = referral
        self._record(row, referral)

    def _add_appointment(self, row: Row):
        referral = self._referral(row.referral_id)
        code, cancelled_by, rearranged = APPOINTMENT_OUTCOMES.get(row.outcome, (AttendanceOutcome.NOT_APPLICABLE, "", False))
        booked_at = min(row.at, row.cancelled_at) if row.cancelled_at else row.at
        appointment = Appointment(
            referral=referral, practitioner=self._practitioner(row.practitioner), appointment_type=row.appointment_type,
            start=row.at, duration_minutes=row.duration_minutes, session_number=1 if row.appointment_type == AppointmentType.ASSESSMENT else None,
            booked_at=booked_at, booked_by=self.actor,
        )
        appointment.outcome = code
        if code != AttendanceOutcome.NOT_APPLICABLE:
            appointment.outcome_recorded_at = row.cancelled_at or row.at
        if cancelled_by:
            appointment.cancelled_at = row.cancelled_at
            appointment.cancelled_by = cancelled_by
            appointment.cancellation_reason = "Rearranged (activity import)" if rearranged else "Cancelled (activity import)"
            appointment.cancellation_recorded_by = self.actor
        appointment.save()
        record_change(referral=referral, appointment=appointment, field="booking", old="", new="booked", actor=self.actor,
                      at=booked_at, reason="Activity import")
        if code != AttendanceOutcome.NOT_APPLICABLE:
            record_change(referral=referral, appointment=appointment, field="outcome", old=AttendanceOutcome.NOT_APPLICABLE,
                          new=code, actor=self.actor, at=appointment.outcome_recorded_at, reason="Activity import")
        if rearranged:
            self.rearranged.append((appointment, cancelled_by))
        self._record(row, referral, appointment=appointment)

    def _add_call_attempt(self, row: Row):
        referral = self._referral(row.referral_id)
        appointment = None
        if row.appointment_type:
            appointment = Appointment.objects.filter(referral=referral, appointment_type=row.appointment_type, start=row.at).first()
        attempt = ContactAttempt.objects.create(
            referral=referral, appointment=appointment, practitioner=self._practitioner(row.practitioner), attempted_at=row.at,
            outcome=CALL_OUTCOMES[row.outcome], recorded_by=self.actor, import_key=row.key[:64],
        )
        self._record(row, referral, attempt=attempt)

    def link_rearrangements(self):
        """A rearranged appointment is linked to the next appointment of the same type for the same referral."""
        for original, asked_by in self.rearranged:
            if Rearrangement.objects.filter(original=original).exists():
                continue
            replacement = (
                Appointment.objects.filter(
                    referral_id=original.referral_id, appointment_type=original.appointment_type, start__gt=original.start
                )
                .exclude(rearranged_from__isnull=False)
                .order_by("start", "pk")
                .first()
            )
            if replacement is None:
                continue
            if replacement.session_number is None and original.session_number is not None:
                Appointment.objects.filter(pk=replacement.pk).update(session_number=original.session_number)
            Rearrangement.objects.create(
                original=original, replacement=replacement, asked_by=asked_by, asked_at=original.cancelled_at,
                reason="Activity import", recorded_by=self.actor,
            )
            self.result.rearrangements_linked += 1

    def settle_statuses(self):
        """Bring each touched referral's status in line with its imported history (audited)."""
        now = timezone.now()
        for referral in Referral.objects.filter(pk__in=self.touched):
            if referral.status == Referral.Status.DISCHARGED:
                continue
            appointments = referral.appointments.all()
            attended = appointments.filter(outcome__in=ATTENDED_OUTCOMES)
            if attended.filter(appointment_type=AppointmentType.TREATMENT).exists():
                status = Referral.Status.IN_TREATMENT
            elif attended.filter(appointment_type=AppointmentType.ASSESSMENT).exists():
                status = Referral.Status.ASSESSED
            elif appointments.filter(
                appointment_type=AppointmentType.ASSESSMENT, outcome=AttendanceOutcome.NOT_APPLICABLE, start__gte=now
            ).exists():
                status = Referral.Status.ASSESSMENT_BOOKED
            elif referral.contact_attempts.effective().filter(outcome__in=ContactAttempt.SUCCESSFUL_OUTCOMES).exists():
                status = Referral.Status.CONTACTED
            else:
                status = Referral.Status.AWAITING_CONTACT
            if status != referral.status:
                old = referral.status
                Referral.objects.filter(pk=referral.pk).update(status=status)
                record_change(referral=referral, field="status", old=old, new=status, actor=self.actor, reason="Activity import")
