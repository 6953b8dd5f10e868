"""Writes to the SMS outbox: planning reminders and the confirmation for a booking, cancelling them
with it, queueing opt-in invitations, and the manager's edits of rules, templates and quiet hours.

Planning and cancelling run inside the booking transaction (via the booking signals), so a
booking and its reminders, or a cancellation and the cancelling of its reminders, commit together.
"""

import datetime

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from scheduling import patient_links
from scheduling.audit import save_and_log
from scheduling.booking.models import Appointment
from scheduling.calls.selectors import numbers_were_marked_wrong
from scheduling.caseload.services import record_sms_opt_in, record_sms_opt_out
from scheduling.codes import CANCELLED_OUTCOMES, AppointmentType, AttendanceOutcome
from scheduling.reminders import content
from scheduling.reminders.rules import sms_refusal_reason, template_body, template_includes_link
from scheduling.reminders.models import MessageEvent, MessageTemplate, OutboundMessage, ReminderRule, SmsSettings
from scheduling.uktime import LONDON, lenient_local_datetime, local_date

Status = OutboundMessage.Status

DEFAULT_RULES = (
    # (days before, local time, template)
    (2, datetime.time(10, 0), MessageTemplate.Key.REMINDER),
    (0, datetime.time(8, 0), MessageTemplate.Key.REMINDER_SAME_DAY),
)


# --- Defaults --------------------------------------------------------------------------------

def ensure_sms_defaults(**kwargs) -> None:
    """Default templates and reminder rules, created once (post_migrate); a manager's edits are kept."""
    for key, body in content.DEFAULT_TEMPLATES.items():
        MessageTemplate.objects.get_or_create(key=key, defaults={"body": body})
    if not ReminderRule.objects.exists():
        for appointment_type in AppointmentType.values:
            for days_before, send_at, template in DEFAULT_RULES:
                ReminderRule.objects.get_or_create(
                    appointment_type=appointment_type, days_before=days_before,
                    defaults={"send_at": send_at, "template": template},
                )
    SmsSettings.current()


# --- Quiet hours -----------------------------------------------------------------------------

def in_quiet_hours(moment: datetime.datetime, sms_settings: SmsSettings) -> bool:
    t = moment.astimezone(LONDON).time()
    start, end = sms_settings.quiet_hours_start, sms_settings.quiet_hours_end
    if start == end:
        return False
    if start > end:  # spans midnight, e.g. 20:00-08:00
        return t >= start or t < end
    return start <= t < end


def end_of_quiet_hours(moment: datetime.datetime, sms_settings: SmsSettings) -> datetime.datetime:
    """The first moment at or after `moment` that is outside quiet hours."""
    if not in_quiet_hours(moment, sms_settings):
        return moment
    local = moment.astimezone(LONDON)
    day = local.date()
    if local.time() >= sms_settings.quiet_hours_end and sms_settings.quiet_hours_start > sms_settings.quiet_hours_end:
        day += datetime.timedelta(days=1)
    return lenient_local_datetime(day, sms_settings.quiet_hours_end)


def still_useful(*, appointment_start: datetime.datetime, at: datetime.datetime, sms_settings: SmsSettings) -> bool:
    return at <= appointment_start - datetime.timedelta(minutes=sms_settings.minimum_notice_minutes)


# --- Planning --------------------------------------------------------------------------------

def _record(message: OutboundMessage, *, source: str, old: str = "", new: str = "", actor=None, detail: str = "", at=None):
    MessageEvent.objects.create(
        message=message, source=source, actor=actor, old_status=old, new_status=new or message.status,
        detail=detail[:300], at=at or timezone.now(),
    )


def _create_message(*, actor, now, **values) -> OutboundMessage | None:
    """Insert one outbox row, or nothing if its (appointment, start, kind) already exists."""
    try:
        with transaction.atomic():
            message = OutboundMessage.objects.create(created_by=actor, created_at=now, updated_at=now, **values)
    except IntegrityError:
        # The uniqueness rule: this reminder was already planned for this occurrence.
        return None
    _record(message, source=MessageEvent.Source.PLANNER, actor=actor, detail=values.get("status_reason", ""), at=now)
    return message


def _reminder_plans(*, appointment, now, sms_settings) -> list[tuple[datetime.datetime, ReminderRule, str, str]]:
    """(due, rule, status, reason) for each active rule of the appointment's type, earliest first.

    Each rule gives a due time (days before, local time), moved out of quiet hours. A reminder
    whose time has already passed is skipped if a later one will still go, and otherwise goes now;
    one that would reach the patient too close to the call is skipped; so is one a later reminder covers.
    """
    rules = list(ReminderRule.objects.filter(appointment_type=appointment.appointment_type, active=True))
    if not rules:
        return []
    start_local_day = local_date(appointment.start)
    dues = []
    for rule in rules:
        due = lenient_local_datetime(start_local_day - datetime.timedelta(days=rule.days_before), rule.send_at)
        dues.append((end_of_quiet_hours(due, sms_settings), rule))
    dues.sort(key=lambda plan: plan[0])
    refusal = sms_refusal_reason(appointment.referral.patient)
    plans = []
    for index, (due, rule) in enumerate(dues):
        later_still_to_come = any(later_due > now for later_due, _ in dues[index + 1:])
        status, reason = Status.SCHEDULED, ""
        if refusal:
            status, reason = Status.SKIPPED, refusal
        elif due <= now:
            if later_still_to_come:
                status, reason = Status.SKIPPED, "booked after this reminder's time; a later reminder will go"
            else:
                due = end_of_quiet_hours(now, sms_settings)
        if status == Status.SCHEDULED and not still_useful(appointment_start=appointment.start, at=due, sms_settings=sms_settings):
            status, reason = Status.SKIPPED, "would arrive too close to the appointment"
        if status == Status.SCHEDULED and any(s == Status.SCHEDULED and d >= due for d, _, s, _ in plans):
            status, reason = Status.SKIPPED, "a later reminder covers it"
        plans.append((due, rule, status, reason))
    return plans


def _appointment_text(key: str, *, appointment, patient, will_send: bool, now) -> str:
    """The text from template `key` for this appointment, with a new self-service link at the end when the
    template asks for one, SMS_PUBLIC_BASE_URL is set and the text is meant to go (a skipped one gets none)."""
    body = content.render(template_body(key), content.appointment_placeholders(appointment=appointment, patient=patient))
    if will_send and patient_links.links_available() and template_includes_link(key):
        body = f"{body} {patient_links.issue_appointment_link(appointment=appointment, now=now).url}"
    return body


def _write_reminder(*, appointment, due, rule, status, reason, actor, now) -> OutboundMessage | None:
    patient = appointment.referral.patient
    body = _appointment_text(
        rule.template, appointment=appointment, patient=patient, will_send=status == Status.SCHEDULED, now=now
    )
    return _create_message(
        actor=actor,
        now=now,
        patient=patient,
        appointment=appointment,
        appointment_start=appointment.start,
        kind=rule.kind,
        body=body,
        due_at=due,
        status=status,
        status_reason=reason,
        finished_at=now if status == Status.SKIPPED else None,
    )


def plan_reminders(*, appointment, actor=None, now=None) -> list[OutboundMessage]:
    """Write the reminders the active rules give for a newly booked appointment (see _reminder_plans).
    Skipped reminders are rows too, with the reason, so staff can see why nothing was sent."""
    now = now or timezone.now()
    sms_settings = SmsSettings.current()
    created = []
    for due, rule, status, reason in _reminder_plans(appointment=appointment, now=now, sms_settings=sms_settings):
        message = _write_reminder(
            appointment=appointment, due=due, rule=rule, status=status, reason=reason, actor=actor, now=now
        )
        if message is not None:
            created.append(message)
    return created


# A booking recorded this long after it was made (history, a back-dated entry) gets no confirmation.
CONFIRMATION_BOOKED_WITHIN = datetime.timedelta(hours=1)
# A reminder due this soon after the confirmation says the same thing: only the reminder goes.
CONFIRMATION_COVERED_BY_REMINDER_WITHIN = datetime.timedelta(hours=1)
# Confirmations planned this close together belong to one booking (a course): the first one speaks for all.
CONFIRMATION_ONE_PER_BOOKING = datetime.timedelta(minutes=5)


def confirmation_wanted(*, appointment, now=None) -> bool:
    """Confirmations are on (SMS settings) and this is a booking made just now, for a call still to
    come: not the demo's, not one recorded after the fact (imports write their rows without the
    booking hooks, so they never get this far)."""
    now = now or timezone.now()
    return (
        SmsSettings.current().send_confirmations
        and not appointment.is_demo
        and appointment.start > now
        and appointment.booked_at is not None
        and appointment.booked_at >= now - CONFIRMATION_BOOKED_WITHIN
    )


def plan_confirmation(*, appointment, moved: bool = False, actor=None, now=None) -> OutboundMessage | None:
    """Write the one confirmation text for a newly booked (or, with `moved`, newly moved-to)
    appointment: due now, or at the end of quiet hours. Skipped, with the reason, when the patient
    cannot be texted, when it would reach them too close to the call, or when a reminder goes at
    about the same time anyway. One per appointment and start (the outbox's uniqueness rule), so
    a repeated booking hook writes nothing; returns None then."""
    now = now or timezone.now()
    sms_settings = SmsSettings.current()
    patient = appointment.referral.patient
    kind = OutboundMessage.CONFIRMATION_MOVED if moved else OutboundMessage.CONFIRMATION
    key = MessageTemplate.Key.CONFIRMATION_MOVED if moved else MessageTemplate.Key.CONFIRMATION
    due = end_of_quiet_hours(now, sms_settings)
    status, reason = Status.SCHEDULED, sms_refusal_reason(patient)
    if reason:
        status = Status.SKIPPED
    elif not still_useful(appointment_start=appointment.start, at=due, sms_settings=sms_settings):
        # The same rule the worker applies at send time: a text that would come (almost) after the call.
        status, reason = Status.SKIPPED, "would arrive too close to the appointment"
    elif OutboundMessage.objects.filter(
        appointment=appointment, appointment_start=appointment.start, status=Status.SCHEDULED,
        due_at__lte=due + CONFIRMATION_COVERED_BY_REMINDER_WITHIN,
    ).exclude(kind__in=OutboundMessage.CONFIRMATION_KINDS).exists():
        status, reason = Status.SKIPPED, "a reminder goes at about the same time"
    elif not moved and OutboundMessage.objects.filter(
        patient=patient, kind=OutboundMessage.CONFIRMATION, created_at__gte=now - CONFIRMATION_ONE_PER_BOOKING,
        appointment_start__lt=appointment.start,
    ).exclude(appointment=appointment).exclude(status=Status.CANCELLED).exclude(
        appointment__outcome__in=CANCELLED_OUTCOMES
    ).exists():
        # A course is booked in one go: one text for its first call, not one per session.
        status, reason = Status.SKIPPED, "booked together with an earlier call, whose confirmation covers it"
    body = _appointment_text(key, appointment=appointment, patient=patient, will_send=status == Status.SCHEDULED, now=now)
    return _create_message(
        actor=actor,
        now=now,
        patient=patient,
        appointment=appointment,
        appointment_start=appointment.start,
        kind=kind,
        body=body,
        due_at=due,
        status=status,
        status_reason=reason,
        finished_at=now if status == Status.SKIPPED else None,
    )


def replan_reminders(*, appointment, reason: str, actor=None, now=None) -> list[OutboundMessage]:
    """Plan an upcoming appointment's reminders again after the patient's details changed (a new
    mobile, consent given, a wrong number corrected): its pending ones are cancelled with `reason`,
    and those still to go are written afresh, so they go to the number on record when they are sent.

    Texts already handed to Twilio stay as they are and are not sent again: a kind with a live row
    (sending, sent, delivered, failed) is not planned again, and once any reminder of this occurrence
    went, only reminders due later are. Nothing is written when the patient still cannot be texted;
    the cancelled rows say why."""
    now = now or timezone.now()
    sms_settings = SmsSettings.current()
    cancel_pending_messages(appointment=appointment, reason=reason, actor=actor, now=now)
    if sms_refusal_reason(appointment.referral.patient):
        return []
    live = list(
        OutboundMessage.objects.filter(appointment=appointment, appointment_start=appointment.start)
        .exclude(status__in=[Status.CANCELLED, Status.SKIPPED])
        .values_list("kind", "due_at")
    )
    live_kinds = {kind for kind, _ in live}
    latest_live = max((due for _, due in live), default=None)
    created = []
    for due, rule, status, _reason in _reminder_plans(appointment=appointment, now=now, sms_settings=sms_settings):
        if status != Status.SCHEDULED or rule.kind in live_kinds:
            continue
        if latest_live is not None and (due <= now or due <= latest_live):
            continue  # a reminder for this occurrence already went: only later ones add anything
        message = _write_reminder(
            appointment=appointment, due=due, rule=rule, status=status, reason="", actor=actor, now=now
        )
        if message is not None:
            created.append(message)
    return created


def replan_patient_reminders(*, patient, reason: str, actor=None, now=None) -> list[OutboundMessage]:
    """replan_reminders for each of the patient's upcoming appointments (no outcome yet, not cancelled).
    The appointments are locked first, the lock booking and the send task take, so a cancellation or
    move of one of them and this re-plan take turns."""
    now = now or timezone.now()
    created = []
    with transaction.atomic():
        upcoming = list(
            Appointment.objects.select_for_update()
            .filter(referral__patient=patient, start__gt=now, outcome=AttendanceOutcome.NOT_APPLICABLE)
            .select_related("referral__patient", "practitioner")
            .order_by("start", "id")
        )
        for appointment in upcoming:
            created += replan_reminders(appointment=appointment, reason=reason, actor=actor, now=now)
    return created


def cancel_pending_messages(*, appointment=None, patient=None, message=None, reason: str, actor=None, now=None) -> int:
    """Cancel every message not yet handed to the gateway, for an appointment, a patient or one message.
    Runs in the caller's transaction; a send task that has not claimed its row yet finds it cancelled."""
    now = now or timezone.now()
    pending = OutboundMessage.objects.filter(status=Status.SCHEDULED)
    if message is not None:
        pending = pending.filter(pk=message.pk)
    if appointment is not None:
        pending = pending.filter(appointment=appointment)
    if patient is not None:
        pending = pending.filter(patient=patient)
    ids = list(pending.values_list("pk", flat=True))
    cancelled = 0
    for message_id in ids:
        # Conditional: a row claimed by a worker meanwhile is left to that worker.
        if OutboundMessage.objects.filter(pk=message_id, status=Status.SCHEDULED).update(
            status=Status.CANCELLED, status_reason=reason[:200], finished_at=now, updated_at=now
        ):
            MessageEvent.objects.create(
                message_id=message_id, source=MessageEvent.Source.STAFF if actor else MessageEvent.Source.PLANNER,
                actor=actor, old_status=Status.SCHEDULED, new_status=Status.CANCELLED, detail=reason[:300], at=now,
            )
            cancelled += 1
    return cancelled


def follow_patient_details_change(*, patient, changes: dict, actor=None, now=None) -> str:
    """What the outbox does when staff change a patient's details (caseload.signals.patient_details_changed):
    withdrawn consent or a removed mobile cancels the texts not yet handed to Twilio, with the reason; a new
    mobile, consent given again, or a number marked wrong on a call being corrected plans the upcoming
    reminders again. Returns what was done, in words, or "" when nothing needed doing."""
    now = now or timezone.now()
    if changes.get("sms_consent", ("", ""))[1] == "no":
        cancelled = cancel_pending_messages(patient=patient, reason="SMS consent withdrawn", actor=actor, now=now)
        return f"{_texts(cancelled)} not yet sent cancelled: consent withdrawn." if cancelled else ""
    if "mobile_phone" in changes and not changes["mobile_phone"][1]:
        cancelled = cancel_pending_messages(patient=patient, reason="the mobile number was removed", actor=actor, now=now)
        return f"{_texts(cancelled)} not yet sent cancelled: no mobile number." if cancelled else ""
    if "mobile_phone" in changes:
        reason = "the mobile number changed: planned again for the new number"
    elif changes.get("sms_consent", ("", ""))[1] == "yes":
        reason = "SMS consent given: planned again"
    elif "other_phone" in changes and numbers_were_marked_wrong(
        patient=patient,
        mobile_phone=changes.get("mobile_phone", (patient.mobile_phone,))[0],
        other_phone=changes["other_phone"][0],
    ):
        reason = "the number marked wrong was corrected: planned again"
    else:
        return ""
    created = replan_patient_reminders(patient=patient, reason=reason, actor=actor, now=now)
    if sms_refusal_reason(patient):
        return f"No reminders planned: {sms_refusal_reason(patient)}."
    if not created:
        return "No reminders are due to be planned."
    words = "the new number" if "mobile_phone" in changes else "the number on record"
    return f"{_texts(len(created), 'reminder')} planned again; they go to {words}."


def _texts(count: int, noun: str = "text") -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def opt_out_patient(*, patient, reason: str, at=None) -> int:
    """STOP: record the opt-out (audited on the patient, with `reason`) and cancel every text not yet handed
    to Twilio, in one transaction. Returns how many were cancelled. Anything already claimed is refused by
    the send task's check."""
    at = at or timezone.now()
    with transaction.atomic():
        record_sms_opt_out(patient=patient, reason=reason, at=at)
        return cancel_pending_messages(patient=patient, reason=reason, now=at)


def opt_in_patient(*, patient, reason: str = "patient replied START", at=None):
    """START: texts may go again (to appointments booked from now on; reminders cancelled by the
    opt-out stay cancelled). Audited on the patient."""
    return record_sms_opt_in(patient=patient, reason=reason, at=at)


def queue_opt_in_invitation(*, invitation, actor=None, now=None) -> OutboundMessage | None:
    """Write the "please get in touch" SMS for an opt-in invitation (skipped, with the reason, if
    the patient cannot be texted). One per invitation."""
    now = now or timezone.now()
    sms_settings = SmsSettings.current()
    patient = invitation.referral.patient
    refusal = sms_refusal_reason(patient)
    deadline = invitation.deadline
    body = content.render(
        template_body(MessageTemplate.Key.OPT_IN_INVITATION),
        {"first_name": patient.given_name, "deadline": f"{deadline:%A} {deadline.day} {deadline:%B}"},
    )
    if OutboundMessage.objects.filter(opt_in_invitation=invitation).exists():
        return None
    return _create_message(
        actor=actor,
        now=now,
        patient=patient,
        opt_in_invitation=invitation,
        kind=OutboundMessage.OPT_IN_INVITATION,
        body=body,
        due_at=end_of_quiet_hours(max(now, invitation.due_at), sms_settings),
        status=Status.SKIPPED if refusal else Status.SCHEDULED,
        status_reason=refusal,
        finished_at=now if refusal else None,
    )


def queue_text(*, patient, kind: str, body: str, actor=None, now=None, not_after=None) -> OutboundMessage:
    """Write one text about no appointment (a capability above the outbox words it: an offer of an earlier
    time, say), due now or at the end of quiet hours. Skipped, with the reason, when the patient cannot
    be texted, or when the end of quiet hours is after `not_after` (it would be news no more)."""
    now = now or timezone.now()
    due = end_of_quiet_hours(now, SmsSettings.current())
    reason = sms_refusal_reason(patient)
    if not reason and content.clinical_words_in(body):
        reason = "the text would mention care or conditions"
    if not reason and not_after is not None and due >= not_after:
        reason = "quiet hours last until it would be too late"
    message = _create_message(
        actor=actor, now=now, patient=patient, kind=kind, body=body, due_at=due,
        status=Status.SKIPPED if reason else Status.SCHEDULED, status_reason=reason, finished_at=now if reason else None,
    )
    return message


# --- Manager's edits -------------------------------------------------------------------------

def update_template(*, key: str, body: str, actor, include_link: bool | None = None) -> MessageTemplate:
    """Save a template's wording (and, when given, whether its texts carry the self-service link), audited."""
    if key not in MessageTemplate.Key.values:
        raise ValidationError({"key": f"Unknown message template {key!r}."})
    body = content.to_gsm7(body.replace("\r\n", "\n")).strip()
    content.validate_template_body(body)
    template = MessageTemplate.objects.filter(key=key).first() or MessageTemplate(key=key)
    template.body = body
    if include_link is not None:
        template.include_link = bool(include_link) and MessageTemplate.may_carry_link(key)
    template.updated_by = actor
    template.updated_at = timezone.now()
    save_and_log(instance=template, actor=actor, at=template.updated_at)
    return template


def update_sms_settings(*, actor, quiet_hours_start, quiet_hours_end, minimum_notice_minutes, max_send_attempts,
                        send_confirmations: bool = True) -> SmsSettings:
    errors = {}
    # Equal times read as "no quiet hours" (texts at any hour of the night): only the benchmarks and the
    # stack smoke test set that, on databases of their own, by writing the row directly.
    if quiet_hours_start == quiet_hours_end:
        errors["quiet_hours_end"] = (
            f"Quiet hours cannot start and end at the same time ({quiet_hours_start:%H:%M}): "
            "choose when texts may start again."
        )
    if not 1 <= max_send_attempts <= 10:
        errors["max_send_attempts"] = "Tries must be between 1 and 10."
    if minimum_notice_minutes > 24 * 60:
        errors["minimum_notice_minutes"] = "Minimum notice cannot be more than a day (1440 minutes)."
    if errors:
        raise ValidationError(errors)
    sms_settings = SmsSettings.current()
    sms_settings.quiet_hours_start = quiet_hours_start
    sms_settings.quiet_hours_end = quiet_hours_end
    sms_settings.minimum_notice_minutes = minimum_notice_minutes
    sms_settings.max_send_attempts = max_send_attempts
    sms_settings.send_confirmations = send_confirmations
    sms_settings.updated_by = actor
    save_and_log(instance=sms_settings, actor=actor)
    return sms_settings


def save_reminder_rule(*, actor, appointment_type: str, days_before: int, send_at: datetime.time, active: bool = True,
                       rule: ReminderRule | None = None) -> ReminderRule:
    """Create or change a rule. Only appointments booked afterwards follow it: planned messages keep
    the time they were given (pretix keeps rule and send time apart the same way)."""
    if appointment_type not in AppointmentType.values:
        raise ValidationError({"appointment_type": f"Unknown appointment type {appointment_type!r}."})
    if not 0 <= days_before <= 14:
        raise ValidationError({"days_before": "Days before must be between 0 (on the day) and 14."})
    clash = ReminderRule.objects.filter(appointment_type=appointment_type, days_before=days_before)
    if rule is not None:
        clash = clash.exclude(pk=rule.pk)
    if clash.exists():
        raise ValidationError({"days_before": "There is already a reminder that many days before for this appointment type."})
    rule = rule or ReminderRule(appointment_type=appointment_type)
    rule.appointment_type = appointment_type
    rule.days_before = days_before
    rule.send_at = send_at
    rule.active = active
    rule.template = MessageTemplate.Key.REMINDER_SAME_DAY if days_before == 0 else MessageTemplate.Key.REMINDER
    rule.updated_by = actor
    save_and_log(instance=rule, actor=actor)
    return rule


# --- Delivery reports ------------------------------------------------------------------------
