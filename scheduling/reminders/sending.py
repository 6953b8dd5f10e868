"""Getting outbox rows out of the door exactly once, and recording what became of them.

    dispatch_due_messages   every minute (django-q2 schedule): reconciles rows a dead worker left in
                            "sending" (time-boxed), then enqueues send tasks for the due rows, up to
                            SEND_BATCH rows each.
    send_messages           the task: claims its rows (scheduled -> sending, one conditional
                            UPDATE ... RETURNING, so a second worker, a retried task or a replayed
                            schedule gets none of them), checks each is still wanted and records its
                            number, commits; then re-checks and sends each through the one Twilio
                            client of this process and records the results in bulk.
    reconcile_message       a row stuck in "sending" is asked of Twilio (by SID, or by number and
                            body if the answer was lost) before it is ever tried again.
    apply_delivery_report   Twilio's status callbacks: recorded always, applied only forwards.
"""

import datetime
import logging
import math
import time
from dataclasses import dataclass, field

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone
from django_q.tasks import async_task

from scheduling.booking.models import Appointment
from scheduling.calls.models import OptInInvitation
from scheduling.calls.selectors import patients_with_wrong_numbers
from scheduling.calls.services import mark_opt_in_invitation_sent
from scheduling.caseload.models import Patient
from scheduling.codes import AttendanceOutcome
from scheduling.reminders import gateway, heartbeat
from scheduling.reminders.models import MessageEvent, OutboundMessage, SmsSettings
from scheduling.reminders.rules import sms_refusal_reason
from scheduling.reminders.services import end_of_quiet_hours, in_quiet_hours, opt_out_patient, still_useful
from scheduling.worklist.models import AdminTask
from scheduling.worklist.services import raise_admin_task

logger = logging.getLogger(__name__)
Status = OutboundMessage.Status
Source = MessageEvent.Source

# Twilio's status words, mapped onto ours.
TWILIO_STATUS = {
    "accepted": Status.SENT,
    "scheduled": Status.SENT,
    "queued": Status.SENT,
    "sending": Status.SENT,
    "sent": Status.SENT,
    "delivered": Status.DELIVERED,
    "read": Status.DELIVERED,
    "undelivered": Status.UNDELIVERED,
    "failed": Status.FAILED,
    "canceled": Status.FAILED,
}
# Carrier delivery failures that mean staff should check the number (30003 unreachable ... 30008 unknown).
WORKLIST_DELIVERY_ERRORS = frozenset({"30003", "30004", "30005", "30006", "30007", "30008"})
ENQUEUE_AGAIN_AFTER = datetime.timedelta(minutes=5)
# A confirmation held up this long (workers down for a day) is news no more: the reminders still go.
CONFIRMATION_STALE_AFTER = datetime.timedelta(hours=24)
DISPATCH_BATCH = 5000
# Rows per send task: one claim, one commit of events and one of results for up to this many texts
# (a text per task spent most of its time on a dozen queries and three commits). Small enough that a
# worker killed mid-batch leaves only a few rows for the reconciler to ask Twilio about.
SEND_BATCH = 50
# A batch starts no new request after this long and hands its remaining rows back to the dispatcher:
# even if the last request hangs to its HTTP timeout (10 s), the task ends inside the queue's 60 s.
BATCH_BUDGET_SECONDS = 30
# Each reconciliation may wait for Twilio (SMS_HTTP_TIMEOUT_SECONDS); the dispatcher stops starting
# new ones after this long, so it always ends well inside the queue's 60-second task timeout.
RECONCILE_BUDGET_SECONDS = 20


def _move(message_id: int, *, from_statuses, to: str, source: str, detail: str = "", now, **fields) -> bool:
    """Conditional status change plus its event. False (and nothing written) if the row was not in
    one of `from_statuses`: someone else got there first."""
    row = OutboundMessage.objects.filter(pk=message_id, status__in=list(from_statuses)).values("status").first()
    if row is None:
        return False
    updated = OutboundMessage.objects.filter(pk=message_id, status=row["status"]).update(
        status=to, updated_at=now, **fields
    )
    if updated:
        MessageEvent.objects.create(
            message_id=message_id, source=source, old_status=row["status"], new_status=to, detail=detail[:300], at=now
        )
    return bool(updated)


# --- Dispatch --------------------------------------------------------------------------------

def dispatch_due_messages(*, now=None, enqueue=None, enqueue_batch=None) -> int:
    """Settle rows a dead worker left in "sending" (time-boxed, so a hanging Twilio cannot hold up
    the rest), then enqueue send tasks for the due rows (none in quiet hours), a batch of rows each.
    `enqueue_batch(ids)` replaces the queue; `enqueue(id)` (tests) is called for each row instead."""
    now = now or timezone.now()
    if enqueue is not None:
        enqueue_batch = lambda message_ids: [enqueue(message_id) for message_id in message_ids]  # noqa: E731
    enqueue_batch = enqueue_batch or (
        lambda message_ids: async_task("scheduling.reminders.tasks.send_messages", message_ids)
    )
    problem = gateway.configuration_problem()
    if problem:
        # Nothing can go, so nothing is claimed or reconciled; /healthz says what to fix.
        logger.error("sms.dispatch_blocked problem=%r", problem)
        heartbeat.record_dispatch_run(at=now, enqueued=0, reconciled=0)
        return 0
    reconciled = reconcile_stuck_messages(now=now, budget_seconds=RECONCILE_BUDGET_SECONDS)
    quiet = in_quiet_hours(now, SmsSettings.current())
    not_yet_enqueued = Q(enqueued_at__isnull=True)
    if _queue_is_drained():
        # Still "scheduled" although enqueued a while ago, and nothing is waiting in the queue: its
        # task was lost (a flushed Redis, say). While a backlog is still queued it is only waiting.
        not_yet_enqueued |= Q(enqueued_at__lt=now - ENQUEUE_AGAIN_AFTER)
    due_ids = [] if quiet else list(
        OutboundMessage.objects.filter(status=Status.SCHEDULED, due_at__lte=now)
        .filter(not_yet_enqueued)
        .order_by("due_at", "id")
        .values_list("pk", flat=True)[:DISPATCH_BATCH]
    )
    if due_ids:
        # Marked so the next minute's run does not enqueue them again; if a task is lost anyway, the
        # row is still "scheduled" and is enqueued again once the queue has drained. One transaction:
        # with the database broker the marks and the tasks commit together (and in one commit, not
        # thousands); with Redis a task may start before the commit, which its claim does not mind.
        with transaction.atomic():
            OutboundMessage.objects.filter(pk__in=due_ids, status=Status.SCHEDULED).update(enqueued_at=now)
            for batch in _batches(due_ids):
                enqueue_batch(batch)
        logger.info("sms.dispatch enqueued=%d", len(due_ids))
    heartbeat.record_dispatch_run(at=now, enqueued=len(due_ids), reconciled=reconciled, in_quiet_hours=quiet)
    return len(due_ids)


def _batches(ids: list[int]) -> list[list[int]]:
    """Up to SEND_BATCH ids each, and at least as many batches as a cluster has workers, so a few
    due texts are still shared out rather than all sent by one worker."""
    workers = max(1, int(settings.Q_CLUSTER.get("workers") or 1))
    size = max(1, min(SEND_BATCH, math.ceil(len(ids) / workers)))
    return [ids[start:start + size] for start in range(0, len(ids), size)]


def _queue_is_drained() -> bool:
    from django_q.brokers import get_broker

    try:
        return get_broker().queue_size() == 0
    except Exception:  # a broker that cannot say: assume lost tasks, the conditional claim makes it safe
        logger.warning("sms.dispatch_queue_size_unknown")
        return True


# --- Sending ---------------------------------------------------------------------------------

@dataclass
class ClaimedBatch:
    """Rows one task claimed (scheduled -> sending) and checked, ready to go."""

    now: datetime.datetime
    backend: object
    sms_settings: SmsSettings
    # Claimed, checked and with the number they go to recorded (what the reconciler asks Twilio by).
    to_send: list = field(default_factory=list)
    # Rows settled without a send (held for quiet hours, skipped, cancelled), or not claimed at all.
    statuses: dict = field(default_factory=dict)


def _reason_not_to_send(message: OutboundMessage, *, now, sms_settings, later_due: bool,
                        wrong_number: bool) -> tuple[str, str] | None:
    """(status, reason) if the claimed message must not go, else None. `later_due` and `wrong_number`
    are looked up for the whole batch at once by the caller."""
    appointment = message.appointment
    if appointment is not None:
        if appointment.outcome in (AttendanceOutcome.CANCELLED_BY_PATIENT, AttendanceOutcome.CANCELLED_BY_PROVIDER):
            return Status.CANCELLED, "the appointment was cancelled or moved"
        if appointment.start != message.appointment_start:
            return Status.CANCELLED, "the appointment time changed"
        if appointment.outcome != AttendanceOutcome.NOT_APPLICABLE:
            return Status.SKIPPED, "the appointment already has an outcome"
        if not still_useful(appointment_start=appointment.start, at=now, sms_settings=sms_settings):
            return Status.SKIPPED, "too close to (or after) the appointment by the time it could be sent"
        if message.kind in OutboundMessage.CONFIRMATION_KINDS and now > message.due_at + CONFIRMATION_STALE_AFTER:
            return Status.SKIPPED, "too late to confirm the booking: the reminders will tell the patient"
        if later_due:
            return Status.SKIPPED, "a later reminder for the same appointment is due now"
    if message.opt_in_invitation_id is not None:
        invitation = message.opt_in_invitation
        if invitation.withdrawn_at is not None:
            return Status.CANCELLED, "the invitation was withdrawn"
        if timezone.localdate(now) > invitation.deadline:
            return Status.SKIPPED, "the invitation's reply-by date has passed"
    refusal = sms_refusal_reason(message.patient, wrong_number=wrong_number)
    if refusal:
        return Status.SKIPPED, refusal
    return None


def send_message(*, message_id: int, now=None) -> str:
    """One row as a batch of one. Returns its status afterwards (for logs and tests)."""
    return send_messages(message_ids=[message_id], now=now)[message_id]


def send_messages(*, message_ids, now=None) -> dict[int, str]:
    """The send task: claims the rows still due, sends each through one Twilio client, records the
    results in bulk. Returns {message id: status afterwards} for every id asked about."""
    ids = sorted({int(each) for each in message_ids})
    problem = gateway.configuration_problem()
    if problem:
        # Not claimed: the rows stay scheduled and go once the setup is fixed (if still useful).
        logger.error("sms.not_configured messages=%d problem=%r", len(ids), problem)
        return _statuses(ids)
    batch = claim_batch(message_ids=ids, now=now)
    statuses = send_claimed(batch)
    missing = [each for each in ids if each not in statuses]
    if missing:
        statuses.update(_statuses(missing))
    return statuses


def _statuses(ids) -> dict[int, str]:
    return dict(OutboundMessage.objects.filter(pk__in=ids).values_list("pk", "status"))


def claim_batch(*, message_ids, now=None) -> ClaimedBatch:
    """Claim (one conditional UPDATE ... RETURNING: a row another worker, a retried task or a replayed
    schedule already claimed is simply not returned) and check the rows, in one transaction that
    commits before anything is sent."""
    now = now or timezone.now()
    ids = sorted({int(each) for each in message_ids})
    batch = ClaimedBatch(now=now, backend=gateway.get_backend(), sms_settings=SmsSettings.current())
    sms_settings = batch.sms_settings
    with transaction.atomic():
        appointment_ids = sorted(set(
            OutboundMessage.objects.filter(pk__in=ids, status=Status.SCHEDULED, appointment__isnull=False)
            .values_list("appointment_id", flat=True)
        ))
        # Same lock the cancel service takes (in id order, so two batches cannot deadlock): a
        # cancellation either committed before this (and cancelled the row, so the claim below
        # finds nothing) or waits until these rows are claimed and checked.
        appointments = Appointment.objects.select_for_update().filter(pk__in=appointment_ids).order_by("pk")
        appointments = {each.pk: each for each in appointments}
        claimed_ids = _claim(ids, now=now)
        if not claimed_ids:
            return batch
        messages = list(
            OutboundMessage.objects.select_related("patient", "opt_in_invitation").filter(pk__in=claimed_ids)
            .order_by("due_at", "id")
        )
        for message in messages:
            if message.appointment_id is not None:
                if message.appointment_id not in appointments:
                    # Put back to "scheduled" (by the reconciler) between the look-up and the claim.
                    appointments[message.appointment_id] = Appointment.objects.select_for_update().get(
                        pk=message.appointment_id)
                message.appointment = appointments[message.appointment_id]
        MessageEvent.objects.bulk_create([
            MessageEvent(message_id=message.pk, source=Source.WORKER, old_status=Status.SCHEDULED,
                         new_status=Status.SENDING, at=now)
            for message in messages
        ])
        if in_quiet_hours(now, sms_settings):
            for message in messages:
                batch.statuses[message.pk] = _hold_for_quiet_hours(message, now=now, sms_settings=sms_settings)
            return batch
        wrong_numbers = patients_with_wrong_numbers({message.patient_id for message in messages})
        later_due = _with_a_later_reminder_due(messages, now=now)
        for message in messages:
            refusal = _reason_not_to_send(message, now=now, sms_settings=sms_settings,
                                          later_due=message.pk in later_due,
                                          wrong_number=message.patient_id in wrong_numbers)
            if refusal is not None:
                status, reason = refusal
                _move(message.pk, from_statuses=[Status.SENDING], to=status, source=Source.WORKER, now=now,
                      detail=reason, status_reason=reason, finished_at=now)
                batch.statuses[message.pk] = status
                continue
            message.to_number = message.patient.mobile_phone
            message.backend = batch.backend.name
            batch.to_send.append(message)
        # Committed with the claim, before any request: a row a killed worker leaves "sending" is
        # looked up at Twilio by this number (and its body), never sent again blindly.
        _update_from_values("to_number", [(message.pk, message.to_number) for message in batch.to_send],
                            backend=batch.backend.name)
    return batch


def _update_from_values(column: str, pairs, where_status=None, **same) -> int:
    """UPDATE ... FROM (VALUES (id, value), ...): one statement giving each row its own `column` (and
    every row the `same` values), where Django's bulk_update builds a CASE per field and row that
    costs more to compile than the statement takes to run. PostgreSQL, and SQLite since 3.33."""
    if not pairs:
        return 0
    table = connection.ops.quote_name(OutboundMessage._meta.db_table)
    fields = {name: OutboundMessage._meta.get_field(name) for name in same}
    assignments = [f"{connection.ops.quote_name(column)} = v.column2"] + [
        f"{connection.ops.quote_name(field.column)} = %s" for field in fields.values()
    ]
    params = [field.get_db_prep_save(same[name], connection) for name, field in fields.items()]
    rows = ", ".join(["(%s, %s)"] * len(pairs))
    params += [each for pair in pairs for each in pair]
    condition = ""
    if where_status is not None:
        condition = f" AND {table}.status IN ({', '.join(['%s'] * len(where_status))})"
        params += list(where_status)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET {', '.join(assignments)} FROM (VALUES {rows}) AS v WHERE {table}.id = v.column1{condition}",
            params,
        )
        return cursor.rowcount


def _claim(ids, *, now) -> list[int]:
    """scheduled -> sending for those of `ids` still scheduled and due, one statement; the ids it won."""
    if not ids:
        return []
    table = connection.ops.quote_name(OutboundMessage._meta.db_table)
    at = connection.ops.adapt_datetimefield_value(now)
    marks = ", ".join(["%s"] * len(ids))
    with connection.cursor() as cursor:
        # RETURNING: PostgreSQL, and SQLite since 3.35.
        cursor.execute(
            f"UPDATE {table} SET status = %s, claimed_at = %s, updated_at = %s, attempts = attempts + 1 "
            f"WHERE id IN ({marks}) AND status = %s AND due_at <= %s RETURNING id",
            [Status.SENDING, at, at, *ids, Status.SCHEDULED, at],
        )
        return sorted(row[0] for row in cursor.fetchall())


def _with_a_later_reminder_due(messages, *, now) -> set[int]:
    """Those of `messages` with a later reminder for the same appointment occurrence also due now."""
    appointment_ids = {message.appointment_id for message in messages if message.appointment_id is not None}
    if not appointment_ids:
        return set()
    others = {}
    for row in (OutboundMessage.objects.filter(appointment_id__in=appointment_ids, due_at__lte=now)
                .exclude(status__in=[Status.CANCELLED, Status.SKIPPED])
                .values_list("pk", "appointment_id", "appointment_start", "due_at")):
        others.setdefault(row[1], []).append(row)
    return {
        message.pk for message in messages if message.appointment_id is not None and any(
            pk != message.pk and start == message.appointment_start and due_at > message.due_at
            for pk, _, start, due_at in others.get(message.appointment_id, ())
        )
    }


def _hold_for_quiet_hours(message: OutboundMessage, *, now, sms_settings) -> str:
    later = end_of_quiet_hours(now, sms_settings)
    if message.appointment is None or still_useful(
        appointment_start=message.appointment.start, at=later, sms_settings=sms_settings
    ):
        _move(message.pk, from_statuses=[Status.SENDING], to=Status.SCHEDULED, source=Source.WORKER, now=now,
              detail="quiet hours: held until they end", due_at=later, enqueued_at=None,
              attempts=F("attempts") - 1)
        return Status.SCHEDULED
    _move(message.pk, from_statuses=[Status.SENDING], to=Status.SKIPPED, source=Source.WORKER, now=now,
          detail="quiet hours: would be too late after them", status_reason="quiet hours", finished_at=now)
    return Status.SKIPPED


def send_claimed(batch: ClaimedBatch) -> dict[int, str]:
    """Send the claimed rows one by one (each re-checked just before), then record what Twilio took
    in bulk. A worker killed in here leaves its rows "sending" with their numbers recorded: the
    reconciler asks Twilio about each (sent: adopted; not sent: tried again), none goes twice."""
    statuses = dict(batch.statuses)
    handed = []
    started = time.monotonic()
    try:
        for index, message in enumerate(batch.to_send):
            if time.monotonic() - started > BATCH_BUDGET_SECONDS:
                # Twilio is slow: the rest go back to the dispatcher rather than risk the task timeout.
                for left in batch.to_send[index:]:
                    statuses[left.pk] = _hand_back(left, now=timezone.now(),
                                                   detail="not sent within this batch's time; queued again")
                break
            changed = _changed_since_claim(message)
            if changed is not None:
                status, reason = changed
                if status is not None:
                    _move(message.pk, from_statuses=[Status.SENDING], to=status, source=Source.WORKER,
                          now=timezone.now(), detail=reason, status_reason=reason, finished_at=timezone.now())
                    statuses[message.pk] = status
                elif reason:
                    statuses[message.pk] = _hand_back(message, now=timezone.now(), detail=reason)
                continue
            statuses[message.pk] = _send_one(batch, message, handed)
    except Exception:
        # What already went is recorded before the error reaches the queue's log (a killed worker
        # records nothing: the reconciler settles its rows).
        _record_handed_over_in_bulk(handed, source=Source.WORKER)
        raise
    statuses.update(_record_handed_over_in_bulk(handed, source=Source.WORKER))
    return statuses


def _send_one(batch: ClaimedBatch, message: OutboundMessage, handed: list) -> str:
    message_id = message.pk
    try:
        remote = batch.backend.send(to=message.to_number, body=message.body,
                                    status_callback=gateway.status_callback_url(message_id))
    except gateway.PermanentSmsError as exc:
        return _fail_permanently(message, exc, now=timezone.now())
    except gateway.UncertainSmsError as exc:
        # Left in "sending": the reconciler asks Twilio whether it arrived before anything else happens.
        MessageEvent.objects.create(message_id=message_id, source=Source.WORKER, old_status=Status.SENDING,
                                    new_status=Status.SENDING, detail=f"{exc.message} Will check with Twilio before any retry.")
        # Only while still "sending": a delivery report may already have settled the row meanwhile.
        OutboundMessage.objects.filter(pk=message_id, status=Status.SENDING).update(
            error_message=exc.message[:300], updated_at=timezone.now()
        )
        logger.warning("sms.send_uncertain message_id=%s", message_id)
        return Status.SENDING
    except gateway.TransientSmsError as exc:
        return _retry_later(message_id, exc, now=timezone.now(), sms_settings=batch.sms_settings)
    handed.append((message, remote))
    return Status.SENDING  # until recorded, with the rest of the batch


def _recheck_sql() -> str:
    """One short statement, written out rather than built by the ORM for every text (building the
    query cost several times what running it does). Datetimes are compared in the database, so
    nothing but strings, numbers and booleans comes back."""
    quote = connection.ops.quote_name
    tables = {model: quote(model._meta.db_table) for model in (OutboundMessage, Appointment, OptInInvitation, Patient)}
    return (
        "SELECT m.status, a.outcome, a.start = m.appointment_start, i.withdrawn_at IS NOT NULL, "
        "p.sms_opted_out, p.sms_consent, p.mobile_phone, p.mobile_is_mobile "
        f"FROM {tables[OutboundMessage]} m JOIN {tables[Patient]} p ON p.id = m.patient_id "
        f"LEFT JOIN {tables[Appointment]} a ON a.id = m.appointment_id "
        f"LEFT JOIN {tables[OptInInvitation]} i ON i.id = m.opt_in_invitation_id "
        "WHERE m.id = %s"
    )


_RECHECK_FIELDS = ("status", "appointment__outcome", "same_start", "withdrawn", "patient__sms_opted_out",
                   "patient__sms_consent", "patient__mobile_phone", "patient__mobile_is_mobile")


def _changed_since_claim(message: OutboundMessage) -> tuple[str | None, str] | None:
    """Just before the request: a cancellation, a move or an opt-out made since the claim wins (one
    short query; wrong-number marks were looked up with the claim). (status, reason) to settle the
    row with; (None, reason) to hand it back to the dispatcher; (None, "") when someone else settled
    it; None to send."""
    with connection.cursor() as cursor:
        cursor.execute(_recheck_sql(), [message.pk])
        values = cursor.fetchone()
    row = dict(zip(_RECHECK_FIELDS, values)) if values is not None else None
    if row is None or row["status"] != Status.SENDING:
        return None, ""
    if message.appointment_id is not None:
        if row["appointment__outcome"] in (AttendanceOutcome.CANCELLED_BY_PATIENT, AttendanceOutcome.CANCELLED_BY_PROVIDER):
            return Status.CANCELLED, "the appointment was cancelled or moved"
        if not row["same_start"]:
            return Status.CANCELLED, "the appointment time changed"
        if row["appointment__outcome"] != AttendanceOutcome.NOT_APPLICABLE:
            return Status.SKIPPED, "the appointment already has an outcome"
    if message.opt_in_invitation_id is not None and row["withdrawn"]:
        return Status.CANCELLED, "the invitation was withdrawn"
    patient = message.patient
    patient.sms_opted_out, patient.sms_consent = bool(row["patient__sms_opted_out"]), bool(row["patient__sms_consent"])
    patient.mobile_is_mobile = bool(row["patient__mobile_is_mobile"])
    if row["patient__mobile_phone"] != message.to_number:
        return None, "the patient's mobile number changed after the claim; queued again for the new one"
    refusal = sms_refusal_reason(patient, wrong_number=False)
    if refusal:
        return Status.SKIPPED, refusal
    return None


def _hand_back(message: OutboundMessage, *, now, detail: str) -> str:
    """sending -> scheduled, the try not counted: the next dispatch enqueues it again."""
    moved = _move(message.pk, from_statuses=[Status.SENDING], to=Status.SCHEDULED, source=Source.WORKER, now=now,
                  detail=detail, enqueued_at=None, attempts=F("attempts") - 1)
    if moved:
        return Status.SCHEDULED
    return OutboundMessage.objects.filter(pk=message.pk).values_list("status", flat=True).get()


def _record_handed_over_in_bulk(handed, *, source) -> dict[int, str]:
    """The rows Twilio took, in a few statements: their SIDs and status, one event each."""
    if not handed:
        return {}
    now = timezone.now()
    statuses, moved, events, late = {}, {}, [], []
    with transaction.atomic():
        # Locked: a delivery report for one of them waits, then finds it further on.
        current = dict(
            OutboundMessage.objects.select_for_update().filter(pk__in=[message.pk for message, _ in handed])
            .order_by("pk").values_list("pk", "status")
        )
        for message, remote in handed:
            status = _handed_over_status(remote)
            old = current.get(message.pk)
            if old not in (Status.SENDING, Status.SCHEDULED):
                # A delivery report beat us to it: the row keeps its status, and gets its SID.
                late.append((message.pk, remote.sid))
                statuses[message.pk] = old
                continue
            moved.setdefault(status, []).append((message.pk, remote.sid))
            events.append(MessageEvent(message_id=message.pk, source=source, old_status=old, new_status=status,
                                       detail=f"handed to {remote.sid[:34]}", at=now))
            statuses[message.pk] = status
        for status, pairs in moved.items():
            done = {"delivered_at": now, "finished_at": now} if status == Status.DELIVERED else {}
            _update_from_values("provider_sid", pairs, where_status=[Status.SENDING, Status.SCHEDULED], status=status,
                                sent_at=now, updated_at=now, error_code="", error_message="", **done)
        MessageEvent.objects.bulk_create(events)
        for message_id, sid in late:
            OutboundMessage.objects.filter(pk=message_id, provider_sid="").update(provider_sid=sid, sent_at=now)
    for message, remote in handed:
        if message.opt_in_invitation_id is not None:
            _mark_invitation_sent(message.opt_in_invitation_id, at=now)
        logger.info("sms.sent message_id=%s sid=%s", message.pk, remote.sid)
    return statuses


def _handed_over_status(remote: gateway.RemoteMessage) -> str:
    status = TWILIO_STATUS.get(remote.status, Status.SENT)
    if status in (Status.UNDELIVERED, Status.FAILED):
        # Handed over, then failed at Twilio: that is a delivery report (the reconciler applies it next,
        # Twilio's callback would too), which keeps the error code and puts the patient on the worklist.
        return Status.SENT
    return status


def _mark_invitation_sent(invitation_id: int, *, at) -> None:
    mark_opt_in_invitation_sent(invitation=OptInInvitation.objects.get(pk=invitation_id), sent_at=at)

def _record_handed_over(message_id: int, remote: gateway.RemoteMessage, *, now, source, invitation_id) -> str:
    """One row Twilio has (the reconciler's finding)."""
    status = _handed_over_status(remote)
    fields = {"provider_sid": remote.sid, "sent_at": now, "error_code": "", "error_message": ""}
    if status == Status.DELIVERED:
        fields.update(delivered_at=now, finished_at=now)
    # A delivery report can beat us to it: then the row is already further on and keeps its status.
    moved = _move(message_id, from_statuses=[Status.SENDING, Status.SCHEDULED], to=status, source=source, now=now,
                  detail=f"handed to {remote.sid[:34]}", **fields)
    if not moved:
        OutboundMessage.objects.filter(pk=message_id, provider_sid="").update(provider_sid=remote.sid, sent_at=now)
    if invitation_id is not None:
        _mark_invitation_sent(invitation_id, at=now)
    logger.info("sms.sent message_id=%s sid=%s", message_id, remote.sid)
    if moved:
        return status
    return OutboundMessage.objects.filter(pk=message_id).values_list("status", flat=True).get()


def _retry_later(message_id: int, exc, *, now, sms_settings) -> str:
    message = OutboundMessage.objects.get(pk=message_id)
    if message.attempts >= sms_settings.max_send_attempts:
        _move(message_id, from_statuses=[Status.SENDING], to=Status.FAILED, source=Source.WORKER, now=now,
              detail=f"gave up after {message.attempts} tries: {exc.message}", error_code=str(exc.code or ""),
              error_message=exc.message[:300], status_reason="Twilio unavailable", finished_at=now)
        logger.error("sms.send_gave_up message_id=%s code=%s", message_id, exc.code)
        return Status.FAILED
    # Backoff: 1, 2, 4, 8 minutes..., or Twilio's Retry-After if longer.
    backoff = 60 * 2 ** (message.attempts - 1)
    wait = max(backoff, exc.retry_after or 0)
    asked = ", as Twilio asked" if wait > backoff else ""
    _move(message_id, from_statuses=[Status.SENDING], to=Status.SCHEDULED, source=Source.WORKER, now=now,
          detail=f"try {message.attempts} failed ({exc.message}); next try in {math.ceil(wait)} s{asked}",
          due_at=now + datetime.timedelta(seconds=wait), enqueued_at=None, error_code=str(exc.code or ""),
          error_message=exc.message[:300])
    logger.warning("sms.send_retry message_id=%s attempt=%s code=%s", message_id, message.attempts, exc.code)
    return Status.SCHEDULED


def _fail_permanently(message: OutboundMessage, exc: gateway.PermanentSmsError, *, now) -> str:
    code = exc.code or 0
    ours = code in gateway.SERVICE_SETUP_ERROR_CODES
    with transaction.atomic():
        moved = _move(message.pk, from_statuses=[Status.SENDING], to=Status.FAILED, source=Source.WORKER, now=now,
                      detail=f"Twilio refused it: {code} {exc.message}", error_code=str(code or ""),
                      error_message=exc.message[:300], finished_at=now,
                      status_reason="our SMS account or message setup" if ours else "refused by Twilio")
        if moved and ours:
            # Nothing is wrong with the patient's number: no worklist task for them; whoever runs the
            # service sees the error in the logs and the outbox's "Needs attention".
            logger.error("sms.send_refused_setup message_id=%s code=%s", message.pk, code)
            return Status.FAILED
        if moved:
            if code in gateway.OPTED_OUT_CODES:
                # As a STOP reply does: the opt-out and, at once, the patient's other pending texts
                # cancelled (not left "scheduled" in the outbox until each is skipped when due).
                opt_out_patient(patient=message.patient, reason=f"Twilio: the number has opted out (error {code})", at=now)
            kind = AdminTask.Kind.WRONG_NUMBER if code in gateway.WRONG_NUMBER_CODES else AdminTask.Kind.SMS_FAILED
            raise_admin_task(
                kind=kind, source=AdminTask.Source.SMS, patient=message.patient,
                referral=message.appointment.referral if message.appointment_id else message.opt_in_invitation.referral
                if message.opt_in_invitation_id else None,
                appointment=message.appointment if message.appointment_id else None,
                detail=f"{message.kind_display} could not be sent: {describe_error(code, exc.message)}",
            )
    logger.warning("sms.send_refused message_id=%s code=%s", message.pk, code)
    return Status.FAILED


ERROR_DESCRIPTIONS = {
    21211: "the mobile number is not a valid phone number",
    21602: "the text was empty (check the wording in SMS settings)",
    21603: "no sender is set up for our texts",
    21606: "our sending number cannot send texts (check the Twilio set-up)",
    21608: "our Twilio account is a trial one and cannot text this number",
    21617: "the text is too long (check the wording in SMS settings)",
    21408: "texts to this country are not enabled",
    21610: "the patient has opted out of texts (replied STOP)",
    21612: "the number cannot receive texts from us",
    21614: "the number is not a mobile",
    30003: "the phone was switched off or unreachable",
    30004: "the message was blocked",
    30005: "the number is unknown or no longer in use",
    30006: "the number is a landline or cannot receive texts",
    30007: "the carrier filtered the message",
    30008: "unknown delivery error",
}


def describe_error(code, fallback: str = "") -> str:
    try:
        return ERROR_DESCRIPTIONS[int(code)] + f" (error {int(code)})"
    except (KeyError, TypeError, ValueError):
        return fallback or f"error {code}"


# --- Reconciliation --------------------------------------------------------------------------

def reconcile_stuck_messages(*, now=None, budget_seconds: float | None = None) -> int:
    """Settle rows left in "sending", oldest claim first; returns how many were tried. With a budget,
    rows not reached in time wait for the next run."""
    now = now or timezone.now()
    cutoff = now - datetime.timedelta(seconds=settings.SMS_STUCK_AFTER_SECONDS)
    stuck = list(
        OutboundMessage.objects.filter(status=Status.SENDING, claimed_at__lt=cutoff)
        .order_by("claimed_at", "id").values_list("pk", flat=True)[:500]
    )
    deadline = None if budget_seconds is None else time.monotonic() + budget_seconds
    for tried, message_id in enumerate(stuck):
        if deadline is not None and time.monotonic() > deadline:
            logger.warning("sms.reconcile_deferred tried=%d left=%d", tried, len(stuck) - tried)
            return tried
        try:
            reconcile_message(message_id=message_id, now=now)
        except gateway.TransientSmsError:
            logger.warning("sms.reconcile_unreachable message_id=%s", message_id)
        except gateway.SmsError as exc:
            # Left "sending" for a person to look at: one message Twilio will not tell us about must
            # not stop the rest of this minute's dispatch.
            logger.error("sms.reconcile_refused message_id=%s code=%s", message_id, exc.code)
    return len(stuck)


def reconcile_message(*, message_id: int, now=None) -> str:
    """Settle a row left in "sending": ask Twilio, then adopt what it says; retry only if Twilio
    has no such message."""
    now = now or timezone.now()
    message = OutboundMessage.objects.select_related("patient").get(pk=message_id)
    if message.status != Status.SENDING:
        return message.status
    backend = gateway.get_backend()
    if message.provider_sid:
        remote = backend.fetch(message.provider_sid)
    elif message.to_number:
        remote = backend.find_sent(to=message.to_number, body=message.body, since=message.claimed_at or message.created_at)
    else:
        remote = None  # the worker died before handing anything over
    if remote is not None:
        MessageEvent.objects.create(message_id=message_id, source=Source.RECONCILER, old_status=Status.SENDING,
                                    new_status=Status.SENDING, reported_status=remote.status,
                                    detail=f"Twilio has it as {remote.sid[:34]}", at=now)
        _record_handed_over(message_id, remote, now=now, source=Source.RECONCILER,
                            invitation_id=message.opt_in_invitation_id)
        apply_delivery_report(message_id=message_id, reported_status=remote.status, error_code=remote.error_code,
                              provider_sid=remote.sid, source=Source.RECONCILER, now=now)
        return OutboundMessage.objects.filter(pk=message_id).values_list("status", flat=True).get()
    # Twilio never got it: it may be tried again, as a retry (counted against the bounded tries).
    sms_settings = SmsSettings.current()
    if message.attempts >= sms_settings.max_send_attempts:
        _move(message_id, from_statuses=[Status.SENDING], to=Status.FAILED, source=Source.RECONCILER, now=now,
              detail="not found at Twilio and no tries left", status_reason="not sent", finished_at=now)
        return Status.FAILED
    _move(message_id, from_statuses=[Status.SENDING], to=Status.SCHEDULED, source=Source.RECONCILER, now=now,
          detail="not found at Twilio after the worker stopped; will try again", due_at=now, enqueued_at=None)
    return Status.SCHEDULED


# --- Delivery reports ------------------------------------------------------------------------

def apply_delivery_report(*, message_id: int, reported_status: str, error_code: str = "", provider_sid: str = "",
                          source: str = Source.TWILIO, now=None) -> bool:
    """Record a delivery report and move the message forward if it is news. Idempotent: a repeated
    or late report is recorded as not applied. Returns whether the status moved."""
    now = now or timezone.now()
    reported_status = (reported_status or "").strip().lower()
    error_code = (error_code or "").strip()
    with transaction.atomic():
        message = OutboundMessage.objects.select_for_update().select_related("patient").filter(pk=message_id).first()
        if message is None:
            return False
        target = TWILIO_STATUS.get(reported_status)
        applied = (
            target is not None
            and message.status not in (Status.CANCELLED, Status.SKIPPED)
            and OutboundMessage.RANK[target] > OutboundMessage.RANK[message.status]
        )
        MessageEvent.objects.create(
            message=message, source=source, old_status=message.status, new_status=target if applied else message.status,
            reported_status=reported_status[:20], applied=applied, error_code=error_code[:10], at=now,
            detail="" if applied else "already at or past this status; recorded only",
        )
        if provider_sid and not message.provider_sid:
            message.provider_sid = provider_sid[:64]
        if not applied:
            message.save(update_fields=["provider_sid"])
            return False
        old = message.status
        message.status = target
        message.updated_at = now
        if target == Status.SENT and message.sent_at is None:
            message.sent_at = now
        if target == Status.DELIVERED:
            message.delivered_at = now
            message.finished_at = now
        if target in (Status.UNDELIVERED, Status.FAILED):
            message.finished_at = now
            message.error_code = error_code[:10]
            message.error_message = describe_error(error_code)[:300] if error_code else ""
        message.save(update_fields=["provider_sid", "status", "updated_at", "sent_at", "delivered_at", "finished_at",
                                    "error_code", "error_message"])
        if target in (Status.UNDELIVERED, Status.FAILED) and old != target and (
            error_code in WORKLIST_DELIVERY_ERRORS or not error_code
        ):
            kind = AdminTask.Kind.WRONG_NUMBER if error_code in {"30005", "30006"} else AdminTask.Kind.SMS_FAILED
            referral = message.appointment.referral if message.appointment_id else (
                message.opt_in_invitation.referral if message.opt_in_invitation_id else None
            )
            raise_admin_task(
                kind=kind, source=AdminTask.Source.SMS, patient=message.patient, referral=referral,
                appointment=message.appointment if message.appointment_id else None,
                detail=f"{message.kind_display} was not delivered: {describe_error(error_code, 'no reason given')}",
            )
    return True


class DeliveryReport:
    """What became of a status callback (scheduling.reminders.webhooks)."""

    UNKNOWN_MESSAGE = "unknown_message"
    SID_MISMATCH = "sid_mismatch"
    APPLIED = "applied"
    RECORDED = "recorded"  # a repeat, or older than what we already know


def receive_delivery_report(*, message_id: int, reported_status: str, error_code: str = "", provider_sid: str = "",
                            now=None) -> str:
    """A status callback from Twilio for one outbox row. A report naming another Twilio message than
    the one the row was handed to is recorded as an event and not applied; the rest goes to
    apply_delivery_report (recorded always, applied only forwards). The row is locked
    throughout, so the check and the update see the same SID."""
    now = now or timezone.now()
    with transaction.atomic():
        row = OutboundMessage.objects.select_for_update().filter(pk=message_id).values("status", "provider_sid").first()
        if row is None:
            return DeliveryReport.UNKNOWN_MESSAGE
        if provider_sid and row["provider_sid"] and provider_sid != row["provider_sid"]:
            MessageEvent.objects.create(
                message_id=message_id, source=MessageEvent.Source.TWILIO, old_status=row["status"],
                new_status=row["status"], reported_status=(reported_status or "").strip().lower()[:20], applied=False,
                error_code=(error_code or "").strip()[:10], at=now,
                detail=f"report for another Twilio message ({provider_sid[:34]}); recorded only",
            )
            return DeliveryReport.SID_MISMATCH
        applied = apply_delivery_report(
            message_id=message_id, reported_status=reported_status, error_code=error_code, provider_sid=provider_sid,
            now=now,
        )
    return DeliveryReport.APPLIED if applied else DeliveryReport.RECORDED
