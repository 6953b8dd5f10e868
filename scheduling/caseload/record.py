"""The patient record in one place (the referral page): reads and the words it shows.

Everything is read with a fixed number of queries however long the record grows (select_related and
one query per kind of row), through the reverse relations of the referral and patient, so this module
needs no imports from the capabilities above caseload (booking, calls, reminders).
"""

import re
from dataclasses import dataclass, field

from django.contrib.auth import get_user_model
from django.db.models import Q
from django.utils import timezone

from scheduling.audit import AuditEntry
from scheduling.caseload.models import Referral
from scheduling.caseload.patient_details import describe_detail_change, detail_changes
from scheduling.caseload.notes import NoteThread, can_read_notes, can_write_notes, note_threads
from scheduling.caseload.selectors import quote_briefly
from scheduling.codes import AttendanceOutcome, EndOfCare

# --- Words --------------------------------------------------------------------------------------


def local_text(moment) -> str:
    """'Tue 10 Mar 2026 10:00', in UK time."""
    local = timezone.localtime(moment)
    return f"{local:%a} {local.day} {local:%b %Y %H:%M}"


def appointment_label(appointment) -> str:
    """'Initial assessment, Tue 10 Mar 2026 10:00'."""
    return f"{appointment.get_appointment_type_display()}, {local_text(appointment.start)}"


def user_name(user) -> str:
    return (user.get_full_name() or user.get_username()) if user is not None else ""


# Field names as staff say them.
_FIELD_WORDS = {
    "status": "Status",
    "end_code": "End of care",
    "assigned_practitioner": "Practitioner",
    "outcome": "Outcome",
    "booking": "Booking",
    "confirmed": "Confirmed",
    "opt_in_invitation": "Invitation to get in touch",
    "self_service_link": "Self-service link",
}
_STATUS_WORDS = dict(Referral.Status.choices)
_END_WORDS = dict(EndOfCare.choices)
_OUTCOME_WORDS = {**dict(AttendanceOutcome.choices), AttendanceOutcome.NOT_APPLICABLE.value: "Not yet"}
_INVITATION_WORDS = {"due": "due", "withdrawn": "withdrawn", "sent": "sent"}
_REARRANGED_FROM = re.compile(r"^Rearranged from appointment (\d+)$")


def describe_change(entry: AuditEntry, *, user_names: dict[int, str], appointment_labels: dict[int, str]) -> str:
    """One audit entry in words: "Status: Awaiting first contact → Contacted", "Practitioner: none →
    Alex Morgan", "Outcome: Not yet → Did not attend (Initial assessment, Tue 10 Mar 2026 10:00)".

    The one place where stored field names, codes and user ids become words. An unknown field (a
    newer kind of change) is still shown, with its name made readable.
    """

    def practitioner(value: str) -> str:
        return user_names.get(int(value), "a former member of staff") if value.isdigit() else "none"

    words_for = {
        "status": lambda v: _STATUS_WORDS.get(v, v) if v else "none",
        "end_code": lambda v: _END_WORDS.get(v, v) if v else "none",
        "assigned_practitioner": practitioner,
        "outcome": lambda v: _OUTCOME_WORDS.get(v, v) if v else "Not yet",
        "opt_in_invitation": lambda v: _INVITATION_WORDS.get(v, v) if v else "none",
    }.get(entry.field, lambda v: v or "none")
    label = _FIELD_WORDS.get(entry.field, entry.field.replace("_", " ").capitalize())
    if entry.field == "booking":
        text = "Booked"
    elif entry.field == "confirmed":
        source = entry.new_value.removeprefix("by ").strip()
        text = f"Confirmed by the patient ({'text message' if source == 'SMS' else source})"
    else:
        text = f"{label}: {words_for(entry.old_value)} → {words_for(entry.new_value)}"
    if entry.appointment_id:
        text += f" ({appointment_labels.get(entry.appointment_id, 'an appointment')})"
    reason = entry.reason
    moved = _REARRANGED_FROM.match(reason or "")
    if moved:
        reason = f"moved from {appointment_labels.get(int(moved.group(1)), 'another appointment')}"
    if reason:
        text += f" – {reason}"
    if entry.actor_id:
        text += f", by {user_names.get(entry.actor_id, 'a former member of staff')}"
    elif entry.via and entry.field != "confirmed":  # a confirmation says who already
        text += f", {entry.get_via_display().lower()}"  # "by the patient, self-service"
    return text


# --- The record ---------------------------------------------------------------------------------


@dataclass
class AppointmentRow:
    appointment: object
    label: str
    moved_from: object = None  # the Rearrangement that made this appointment, if any
    moved_to: object = None  # the Rearrangement that replaced it, if any
    moved_from_label: str = ""
    moved_to_label: str = ""
    notes: list = field(default_factory=list)


@dataclass
class AttemptRow:
    attempt: object
    appointment_label: str = ""
    notes: list = field(default_factory=list)


@dataclass
class HistoryLine:
    at: object
    text: str


@dataclass
class Record:
    referral: Referral
    patient: object
    age: int | None
    appointments: list[AppointmentRow]
    attempts: list[AttemptRow]
    callbacks: list
    notes: list[NoteThread]
    show_notes: bool
    may_write_notes: bool
    texts_sent: list
    replies: list
    open_tasks: list
    history: list[HistoryLine]


def _appointment_rows(referral) -> tuple[list[AppointmentRow], dict[int, AppointmentRow]]:
    appointments = list(
        referral.appointments.select_related(
            "practitioner", "rearranged_to__replacement", "rearranged_from__original"
        ).order_by("start", "id")
    )
    rows = []
    for a in appointments:
        row = AppointmentRow(appointment=a, label=appointment_label(a))
        row.moved_to = getattr(a, "rearranged_to", None)
        row.moved_from = getattr(a, "rearranged_from", None)
        if row.moved_to is not None:
            row.moved_to_label = appointment_label(row.moved_to.replacement)
        if row.moved_from is not None:
            row.moved_from_label = appointment_label(row.moved_from.original)
        rows.append(row)
    return rows, {row.appointment.pk: row for row in rows}


def _texts(referral):
    """Texts sent about this referral (its appointments, its opt-in invitations) or to the patient about
    nothing in particular, and the replies, newest first, with their delivery status."""
    patient = referral.patient
    sent = list(
        patient.outbound_messages.filter(
            Q(appointment__referral=referral)
            | Q(opt_in_invitation__referral=referral)
            | Q(appointment__isnull=True, opt_in_invitation__isnull=True)
        ).order_by("-due_at", "-id")
    )
    replies = list(
        patient.inbound_messages.filter(Q(appointment__referral=referral) | Q(appointment__isnull=True))
        .select_related("admin_task__resolved_by")
        .order_by("-received_at", "-id")
    )
    return sent, replies


def reply_follow_up(reply) -> str:
    """What became of a reply passed to admin staff: still on their worklist, or dealt with."""
    task = reply.admin_task
    if task is None:
        return ""
    if task.resolved_at is None:
        return "waiting on the admin worklist"
    by = f" by {user_name(task.resolved_by)}" if task.resolved_by_id else ""
    return f"dealt with {local_text(task.resolved_at)}{by}"


def describe_reply(reply, *, appointment_labels: dict[int, str]) -> str:
    """A text from the patient as a line of the record's history: what they wrote (briefly), what it
    was read as, and whether staff have dealt with it."""
    text = f"Text from the patient: “{quote_briefly(reply.body)}” – {reply.get_meaning_display().lower()}"
    if reply.appointment_id:
        text += f" ({appointment_labels.get(reply.appointment_id, 'an appointment')})"
    follow_up = reply_follow_up(reply)
    if follow_up:
        text += f", {follow_up}"
    return text


def referral_record(*, referral: Referral, user) -> Record:
    """Everything the referral page shows, for `user` (who may view the referral)."""
    appointments, appointment_by_pk = _appointment_rows(referral)
    labels = {pk: row.label for pk, row in appointment_by_pk.items()}

    show_notes = can_read_notes(user, referral)
    threads = note_threads(referral.clinical_notes.select_related("author")) if show_notes else []
    attempts = [
        AttemptRow(attempt=a, appointment_label=labels.get(a.appointment_id, ""))
        for a in referral.contact_attempts.select_related("practitioner", "undo").order_by("-attempted_at", "-id")
    ]
    attempt_by_pk = {row.attempt.pk: row for row in attempts}
    for thread in threads:
        first = thread.first
        if first.contact_attempt_id in attempt_by_pk:
            attempt_by_pk[first.contact_attempt_id].notes.append(thread)
        if first.appointment_id in appointment_by_pk:
            appointment_by_pk[first.appointment_id].notes.append(thread)
    for thread in threads:
        thread.appointment_label = labels.get(thread.first.appointment_id, "")
        attempt_row = attempt_by_pk.get(thread.first.contact_attempt_id)
        thread.attempt_label = (
            f"{attempt_row.attempt.get_outcome_display()}, {local_text(attempt_row.attempt.attempted_at)}" if attempt_row else ""
        )
    callbacks = [row for row in attempts if row.attempt.callback_at]

    audit = list(referral.audit_entries.select_related("actor").order_by("-at", "-id"))
    practitioner_ids = {
        int(v) for e in audit if e.field == "assigned_practitioner" for v in (e.old_value, e.new_value) if v.isdigit()
    }
    user_names = {e.actor_id: user_name(e.actor) for e in audit if e.actor_id}
    if practitioner_ids - set(user_names):
        for u in get_user_model().objects.filter(pk__in=practitioner_ids - set(user_names)):
            user_names[u.pk] = user_name(u)
    # Changes to the patient's own details (names, phones, consent, a STOP) belong to every referral of theirs.
    patient_changes = list(detail_changes(referral.patient).select_related("actor"))
    user_names.update({c.actor_id: user_name(c.actor) for c in patient_changes if c.actor_id})
    history = sorted(
        [HistoryLine(at=e.at, text=describe_change(e, user_names=user_names, appointment_labels=labels)) for e in audit]
        + [HistoryLine(at=c.at, text=describe_detail_change(c, user_names=user_names)) for c in patient_changes],
        key=lambda line: line.at,
        reverse=True,
    )

    sent, replies = _texts(referral)
    for message in [*sent, *replies]:
        message.appointment_label = labels.get(message.appointment_id, "")
    for reply in replies:
        reply.follow_up = reply_follow_up(reply)
    # Replies join the timeline: "ring after 3pm" belongs with the calls and changes around it.
    history.extend(HistoryLine(at=r.received_at, text=describe_reply(r, appointment_labels=labels)) for r in replies)
    history.sort(key=lambda line: line.at, reverse=True)
    # Read through the patient (the worklist, above, owns the tasks): those about this referral, and
    # those raised against the patient alone (a text from their number).
    open_tasks = list(
        referral.patient.admin_tasks.filter(resolved_at__isnull=True)
        .filter(Q(referral=referral) | Q(referral__isnull=True))
        .order_by("raised_at", "id")
    )
    for task in open_tasks:
        task.appointment_label = labels.get(task.appointment_id, "")

    return Record(
        referral=referral,
        patient=referral.patient,
        age=referral.patient.age_on(timezone.localdate()),
        appointments=appointments,
        attempts=attempts,
        callbacks=callbacks,
        notes=list(reversed(threads)),
        show_notes=show_notes,
        may_write_notes=can_write_notes(user, referral),
        texts_sent=sent,
        replies=replies,
        open_tasks=open_tasks,
        history=history,
    )


def appointment_choices(appointments) -> list[tuple[str, str]]:
    """For the "session note" selector: the referral's appointments (oldest first in), latest first out."""
    return [("", "None (a general note)")] + [(str(a.pk), appointment_label(a)) for a in reversed(list(appointments))]
