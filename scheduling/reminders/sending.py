"""Getting outbox rows out of the door exactly once, and recording what became of them.

    dispatch_due_messages   every minute (django-q2 schedule): reconciles rows a dead worker left in
                            "sending" (time-boxed), then enqueues one send task per due row.
    send_message            the task: claims its row (scheduled -> sending, a conditional update, so
                            a second worker, a retried task or a replayed schedule finds nothing to
                            claim), checks the message is still wanted, hands it to the gateway.
    reconcile_message       a row stuck in "sending" is asked of Twilio (by SID, or by number and
                            body if the answer was lost) before it is ever tried again.
    apply_delivery_report   Twilio's status callbacks: recorded always, applied only forwards.
"""

import datetime
import logging
import math
import time

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from scheduling.booking.models import Appointment
from scheduling.caseload.models import AdminTask
from scheduling.codes import AttendanceOutcome
from scheduling.reminders import gateway
from scheduling.reminders.models import MessageEvent, OutboundMessage, SmsSettings
from scheduling.reminders.services import (
    end_of_quiet_hours, in_quiet_hours, opt_out_patient, sms_refusal_reason, still_useful,
)

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

def dispatch_due_messages(*, now=None, enqueue=None) -> int:
    """Settle rows a dead worker left in "sending" (time-boxed, so a hanging Twilio cannot hold up
    the rest), then enqueue a send task for each due row (none in quiet hours)."""
    from django_q.tasks import async_task

    from scheduling.reminders import heartbeat

    now = now or timezone.now()
    enqueue = enqueue or (lambda message_id: async_task("scheduling.reminders.tasks.send_message", message_id))
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
            for message_id in due_ids:
                enqueue(message_id)
        logger.info("sms.dispatch enqueued=%d", len(due_ids))
    heartbeat.record_dispatch_run(at=now, enqueued=len(due_ids), reconciled=reconciled, in_quiet_hours=quiet)
    return len(due_ids)


def _queue_is_drained() -> bool:
    from django_q.brokers import get_broker

    try:
        return get_broker().queue_size() == 0
    except Exception:  # a broker that cannot say: assume lost tasks, the conditional claim makes it safe
        logger.warning("sms.dispatch_queue_size_unknown")
        return True


# --- Sending ---------------------------------------------------------------------------------

def _reason_not_to_send(message: OutboundMessage, *, now, sms_settings) -> tuple[str, str] | None:
    """(status, reason) if the claimed message must not go, else None."""
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
        later = OutboundMessage.objects.filter(
            appointment=appointment, appointment_start=message.appointment_start, due_at__gt=message.due_at, due_at__lte=now,
        ).exclude(status__in=[Status.CANCELLED, Status.SKIPPED]).exclude(pk=message.pk)
        if later.exists():
            return Status.SKIPPED, "a later reminder for the same appointment is due now"
    if message.opt_in_invitation_id is not None:
        invitation = message.opt_in_invitation
        if invitation.withdrawn_at is not None:
            return Status.CANCELLED, "the invitation was withdrawn"
        if timezone.localdate(now) > invitation.deadline:
            return Status.SKIPPED, "the invitation's reply-by date has passed"
    refusal = sms_refusal_reason(message.patient)
    if refusal:
        return Status.SKIPPED, refusal
    return None


def send_message(*, message_id: int, now=None) -> str:
    """The send task. Returns the row's status afterwards (for logs and tests)."""
    now = now or timezone.now()
    problem = gateway.configuration_problem()
    if problem:
        # Not claimed: the row stays scheduled and goes once the setup is fixed (if still useful).
        logger.error("sms.not_configured message_id=%s problem=%r", message_id, problem)
        return OutboundMessage.objects.filter(pk=message_id).values_list("status", flat=True).first()
    backend = gateway.get_backend()
    sms_settings = SmsSettings.current()
    with transaction.atomic():
        message = OutboundMessage.objects.select_related("patient", "opt_in_invitation").get(pk=message_id)
        if message.appointment_id is not None:
            # Same lock the cancel service takes: a cancellation either committed before this
            # (and cancelled the row, so the claim below finds nothing) or waits until we claimed.
            message.appointment = Appointment.objects.select_for_update().get(pk=message.appointment_id)
        claimed = OutboundMessage.objects.filter(pk=message_id, status=Status.SCHEDULED, due_at__lte=now).update(
            status=Status.SENDING, claimed_at=now, attempts=F("attempts") + 1, updated_at=now
        )
        if not claimed:
            return OutboundMessage.objects.filter(pk=message_id).values_list("status", flat=True).first()
        MessageEvent.objects.create(message_id=message_id, source=Source.WORKER, old_status=Status.SCHEDULED,
                                    new_status=Status.SENDING, at=now)
        message.status, message.claimed_at, message.attempts = Status.SENDING, now, message.attempts + 1
        if in_quiet_hours(now, sms_settings):
            later = end_of_quiet_hours(now, sms_settings)
            if message.appointment is None or still_useful(
                appointment_start=message.appointment.start, at=later, sms_settings=sms_settings
            ):
                _move(message_id, from_statuses=[Status.SENDING], to=Status.SCHEDULED, source=Source.WORKER, now=now,
                      detail="quiet hours: held until they end", due_at=later, enqueued_at=None,
                      attempts=F("attempts") - 1)
                return Status.SCHEDULED
            _move(message_id, from_statuses=[Status.SENDING], to=Status.SKIPPED, source=Source.WORKER, now=now,
                  detail="quiet hours: would be too late after them", status_reason="quiet hours", finished_at=now)
            return Status.SKIPPED
        refusal = _reason_not_to_send(message, now=now, sms_settings=sms_settings)
        if refusal is not None:
            status, reason = refusal
            _move(message_id, from_statuses=[Status.SENDING], to=status, source=Source.WORKER, now=now, detail=reason,
                  status_reason=reason, finished_at=now)
            return status
        to_number = message.patient.mobile_phone
        OutboundMessage.objects.filter(pk=message_id).update(to_number=to_number, backend=backend.name)

    # The HTTP call happens outside any transaction: the "sending" claim is committed first, so a
    # crash from here on leaves a row the reconciler will ask Twilio about, never one resent blindly.
    try:
        remote = backend.send(to=to_number, body=message.body, status_callback=gateway.status_callback_url(message_id))
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
        return _retry_later(message_id, exc, now=timezone.now(), sms_settings=sms_settings)
    return _record_handed_over(message_id, remote, now=timezone.now(), source=Source.WORKER,
                               invitation_id=message.opt_in_invitation_id)


def _record_handed_over(message_id: int, remote: gateway.RemoteMessage, *, now, source, invitation_id) -> str:
    status = TWILIO_STATUS.get(remote.status, Status.SENT)
    if status in (Status.UNDELIVERED, Status.FAILED):
        # Handed over, then failed at Twilio: that is a delivery report (the reconciler applies it next,
        # Twilio's callback would too), which keeps the error code and puts the patient on the worklist.
        status = Status.SENT
    fields = {"provider_sid": remote.sid, "sent_at": now, "error_code": "", "error_message": ""}
    if status == Status.DELIVERED:
        fields.update(delivered_at=now, finished_at=now)
    # A delivery report can beat us to it: then the row is already further on and keeps its status.
    moved = _move(message_id, from_statuses=[Status.SENDING, Status.SCHEDULED], to=status, source=source, now=now,
                  detail=f"handed to {remote.sid[:34]}", **fields)
    if not moved:
        OutboundMessage.objects.filter(pk=message_id, provider_sid="").update(provider_sid=remote.sid, sent_at=now)
    if invitation_id is not None:
        from scheduling.calls.models import OptInInvitation
        from scheduling.calls.services import mark_opt_in_invitation_sent

        mark_opt_in_invitation_sent(invitation=OptInInvitation.objects.get(pk=invitation_id), sent_at=now)
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
    from scheduling.caseload.services import raise_admin_task

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
    from scheduling.caseload.services import raise_admin_task

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
