"""Writes to contact attempts, and the call list's one-click outcomes and their undo."""

from datetime import timedelta

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q, TextChoices
from django.utils import timezone

from scheduling.audit import record_change, save_and_log
from scheduling.booking.models import Appointment
from scheduling.booking.services import (
    EARLIEST_OUTCOME_BEFORE_START,
    correct_appointment_outcome,
    record_appointment_outcome,
)
from scheduling.calls.models import (
    CallOutcomeEffect,
    ContactAttempt,
    ContactAttemptUndo,
    ContactPolicy,
    OptInInvitation,
    WrongNumberMark,
)
from scheduling.calls.signals import (
    call_outcome_recorded,
    call_outcome_undone,
    number_marked_wrong,
    opt_in_invitation_due,
)
from scheduling.caseload.models import Patient, PractitionerProfile, Referral
from scheduling.caseload.notes import can_write_notes, text_problem, write_note
from scheduling.caseload.services import (
    advance_referral_to,
    revert_referral_status,
)
from scheduling.codes import AttendanceOutcome

Outcome = ContactAttempt.Outcome

# The same click (same button, same person, same referral and appointment, same call-back time) this
# close to an earlier one is that submission sent again (a double click, a form re-sent without
# JavaScript, a retried request), not a second call: a real call that rings out and is dialled again
# takes longer. It is recorded once and answered with the first result.
SAME_SUBMISSION_WINDOW = timedelta(minutes=2)
# How far ahead a call-back can be asked for. Further than this is a slip of the keyboard (a year 9999),
# not a plan: the person would otherwise drop off the list of people to reach until then.
CALLBACK_HORIZON = timedelta(days=90)


def log_contact_attempt(
    *,
    referral: Referral,
    practitioner,
    outcome: str,
    actor=None,
    appointment=None,
    attempted_at=None,
    callback_at=None,
    minutes_spent: int = 0,
    note: str = "",
    import_key: str = "",
    is_demo: bool = False,
) -> ContactAttempt:
    """Record one call attempt. A first successful contact moves the referral to 'contacted'."""
    now = timezone.now()
    attempted_at = attempted_at or now
    errors = {}
    if outcome not in Outcome.values:
        errors["outcome"] = f"'{outcome}' is not a call outcome."
    if outcome == Outcome.CALLBACK_REQUESTED and callback_at is None:
        errors["callback_at"] = "Enter when the patient asked to be called back."
    if callback_at is not None and callback_at < attempted_at:
        errors["callback_at"] = "The call-back time must be after the call."
    elif callback_at is not None and callback_at > attempted_at + CALLBACK_HORIZON:
        errors["callback_at"] = f"The call-back time must be within {CALLBACK_HORIZON.days} days of the call."
    if attempted_at > now + timedelta(minutes=5):
        errors["attempted_at"] = "A call attempt cannot be in the future."
    if minutes_spent < 0 or minutes_spent > 240:
        errors["minutes_spent"] = "Minutes spent must be between 0 and 240."
    if appointment is not None and appointment.referral_id != referral.pk:
        errors["appointment"] = "That appointment belongs to another referral."
    if referral.status == Referral.Status.DISCHARGED:
        errors["referral"] = "This referral is discharged."
    if errors:
        raise ValidationError(errors)
    with transaction.atomic():
        attempt = ContactAttempt.objects.create(
            referral=referral,
            appointment=appointment,
            practitioner=practitioner,
            attempted_at=attempted_at,
            outcome=outcome,
            callback_at=callback_at,
            minutes_spent=minutes_spent,
            note=(note or "")[:300],
            recorded_by=actor,
            import_key=import_key,
            is_demo=is_demo,
        )
        _follow_attempt_on_referral(attempt=attempt, actor=actor)
    return attempt


def _follow_attempt_on_referral(*, attempt: ContactAttempt, actor):
    if attempt.outcome in ContactAttempt.SUCCESSFUL_OUTCOMES:
        advance_referral_to(
            referral=attempt.referral, from_statuses={Referral.Status.AWAITING_CONTACT},
            to_status=Referral.Status.CONTACTED, actor=actor, reason="First successful contact", at=attempt.attempted_at,
        )


def import_contact_attempt(
    *, referral: Referral, practitioner, outcome: str, attempted_at, import_key: str, appointment=None, actor=None
) -> ContactAttempt:
    """A call from another system's history. The referral follows as it does live (a first successful contact
    makes it contacted); the call list's follow-ups (an opt-in invitation, worklist items, a wrong-number mark)
    are not raised for history, and a referral discharged since may still receive its earlier calls."""
    if outcome not in Outcome.values:
        raise ValidationError({"outcome": f"'{outcome}' is not a call outcome."})
    if appointment is not None and appointment.referral_id != referral.pk:
        raise ValidationError({"appointment": "That appointment belongs to another referral."})
    with transaction.atomic():
        attempt = ContactAttempt.objects.create(
            referral=referral, appointment=appointment, practitioner=practitioner, attempted_at=attempted_at,
            outcome=outcome, recorded_by=actor, import_key=import_key,
        )
        _follow_attempt_on_referral(attempt=attempt, actor=actor)
    return attempt


# --- The call list's one-click outcomes ---------------------------------------------------------

class CallButton(TextChoices):
    """The outcome buttons on a call-list row, and the call outcome each one records."""

    SPOKE = "spoke", "Spoke – session held"
    NO_ANSWER = "no_answer", "No answer"
    VOICEMAIL = "voicemail", "Voicemail left"
    ENGAGED = "engaged", "Engaged"
    WRONG_NUMBER = "wrong_number", "Wrong number / not in service"
    CALLBACK = "callback", "Call back requested"
    REARRANGE = "rearrange", "Patient wants to rearrange"
    DECLINED = "declined", "Patient declined"


def action_label(button: str, *, on_appointment: bool) -> str:
    """The words for a click, as the row it was made on says them: "Spoke – session held" only where
    there is a session."""
    if button == CallButton.SPOKE and not on_appointment:
        return "Spoke to patient"
    return CallButton(button).label


BUTTON_OUTCOMES = {
    CallButton.SPOKE: Outcome.ANSWERED,
    CallButton.NO_ANSWER: Outcome.NO_ANSWER,
    CallButton.VOICEMAIL: Outcome.VOICEMAIL,
    CallButton.ENGAGED: Outcome.BUSY,
    CallButton.WRONG_NUMBER: Outcome.WRONG_NUMBER,
    CallButton.CALLBACK: Outcome.CALLBACK_REQUESTED,
    CallButton.REARRANGE: Outcome.ANSWERED,
    CallButton.DECLINED: Outcome.DECLINED,
}
# Tries that did not reach the patient; at a booked session they count towards a DNA.
UNANSWERED_OUTCOMES = frozenset({Outcome.NO_ANSWER.value, Outcome.VOICEMAIL.value, Outcome.BUSY.value})
# Failed attempts that count towards the contact policy (a wrong number is a failed attempt too).
POLICY_FAILED_OUTCOMES = UNANSWERED_OUTCOMES | {Outcome.WRONG_NUMBER.value, Outcome.NOT_IN_SERVICE.value}
DEFAULT_TRIES_BEFORE_DNA = 2


def tries_before_dna_for(practitioner) -> int:
    value = (
        PractitionerProfile.objects.filter(user_id=getattr(practitioner, "pk", practitioner))
        .values_list("tries_before_dna", flat=True)
        .first()
    )
    return max(1, value or DEFAULT_TRIES_BEFORE_DNA)


def policy_attempts_since_last_contact(referral) -> list[ContactAttempt]:
    """Effective first-contact attempts (not tied to an appointment) since the last successful call."""
    attempts = list(
        ContactAttempt.objects.effective().filter(referral=referral).order_by("attempted_at", "id")
    )
    since = []
    for attempt in attempts:
        if attempt.outcome in ContactAttempt.SUCCESSFUL_OUTCOMES:
            since = []
        elif attempt.appointment_id is None and attempt.outcome in POLICY_FAILED_OUTCOMES:
            since.append(attempt)
    return since


def _maybe_invite_to_opt_in(*, referral, attempt, actor, policy: ContactPolicy, now) -> OptInInvitation | None:
    """The policy's rule: once its attempts have all failed, the invitation is due at once (the SMS is
    queued by the reminders capability), whether the last failed call or the button records it."""
    failed = policy_attempts_since_last_contact(referral)
    if len(failed) < policy.max_attempts:
        return None
    already = OptInInvitation.objects.active().filter(referral=referral, due_at__gte=failed[0].attempted_at).exists()
    if already:
        return None
    patient = referral.patient
    sms_possible = patient.can_receive_sms and not WrongNumberMark.objects.in_force().filter(patient=patient).exists()
    invitation = OptInInvitation.objects.create(
        referral=referral,
        attempt=attempt,
        due_at=now,
        deadline=timezone.localdate(now) + timedelta(days=policy.opt_in_days),
        sms_possible=sms_possible,
        sms_to=patient.mobile_phone if sms_possible else "",
        recorded_by=actor,
        recorded_at=now,
    )
    record_change(
        referral=referral, field="opt_in_invitation", old="", new="due", actor=actor, at=now,
        reason=f"{len(failed)} call attempts failed; invited to get in touch within {policy.opt_in_days} days",
    )
    opt_in_invitation_due.send(sender=Referral, referral=referral, actor=actor)
    return invitation


def _within_window(field: str, now) -> dict:
    return {f"{field}__gte": now - SAME_SUBMISSION_WINDOW, f"{field}__lte": now + SAME_SUBMISSION_WINDOW}


def invite_to_opt_in(*, referral: Referral, actor, now=None) -> OptInInvitation:
    """Record that an opt-in invitation is due for a referral whose policy attempts have all failed but has
    none yet (attempts logged before the policy applied, imported, or the policy was changed). Same record,
    audit entry and signal as when the last failed attempt is logged on the call list.

    Sent twice by the same person (a double click, a re-sent form), it answers with the first invitation."""
    now = now or timezone.now()
    policy = ContactPolicy.current()
    with transaction.atomic():
        referral = Referral.objects.select_for_update().select_related("patient").get(pk=referral.pk)
        first = (
            OptInInvitation.objects.active()
            .filter(referral=referral, attempt__isnull=True, recorded_by_id=getattr(actor, "pk", None))
            .filter(**_within_window("recorded_at", now))
            .order_by("recorded_at", "id")
            .first()
        )
        if first is not None:
            return first
        if referral.status == Referral.Status.DISCHARGED:
            raise ValidationError("This referral is discharged.", code="invalid_transition")
        failed = policy_attempts_since_last_contact(referral)
        if len(failed) < policy.max_attempts:
            raise ValidationError(
                f"Only {len(failed)} of the policy's {policy.max_attempts} call attempts have failed.",
                code="too_early",
            )
        invitation = _maybe_invite_to_opt_in(referral=referral, attempt=None, actor=actor, policy=policy, now=now)
        if invitation is None:
            raise ValidationError("An opt-in invitation is already due for this person.", code="already_invited")
    return invitation


def _first_submission(*, referral, appointment, actor, button, callback_at, now) -> ContactAttempt | None:
    """The attempt an identical click made moments ago, if this click is that submission sent again."""
    return (
        ContactAttempt.objects.effective()
        .filter(
            referral_id=referral.pk,
            appointment_id=appointment.pk if appointment is not None else None,
            recorded_by_id=getattr(actor, "pk", None),
            effect__button=button,
            callback_at=callback_at,
            **_within_window("attempted_at", now),  # a click's attempt is made at its `now`
        )
        .order_by("recorded_at", "id")
        .first()
    )


def _refusals(*, button, appointment, callback_at, now, clinical_note="", may_write_note=True) -> dict:
    errors = {}
    if clinical_note:
        problem = text_problem(clinical_note)
        if problem:
            errors["clinical_note"] = problem
        elif not may_write_note:
            errors["clinical_note"] = "Note: you cannot write clinical notes on this referral; nothing was recorded."
    if button == CallButton.REARRANGE and appointment is None:
        errors["button"] = "Rearranging needs a booked appointment."
    if button == CallButton.CALLBACK and callback_at is None:
        errors["callback_at"] = "Enter when the patient asked to be called back."
    elif callback_at is not None and callback_at <= now:
        errors["callback_at"] = "Call-back time: it must be in the future."
    elif callback_at is not None and callback_at > now + CALLBACK_HORIZON:
        errors["callback_at"] = (
            f"Call-back time: it must be within {CALLBACK_HORIZON.days} days "
            f"(by {timezone.localtime(now + CALLBACK_HORIZON):%d/%m/%Y})."
        )
    if appointment is not None and appointment.is_cancelled:
        errors["appointment"] = "That appointment was cancelled."
    if (
        button == CallButton.SPOKE
        and appointment is not None
        and (appointment.outcome != AttendanceOutcome.NOT_APPLICABLE or now < appointment.start - EARLIEST_OUTCOME_BEFORE_START)
    ):
        errors["button"] = (
            "This session already has an outcome." if appointment.outcome != AttendanceOutcome.NOT_APPLICABLE
            else "A session cannot be recorded as held before it starts."
        )
    return errors


def record_call_outcome(
    *,
    referral: Referral,
    button: str,
    actor,
    appointment: Appointment | None = None,
    callback_at=None,
    note: str = "",
    clinical_note: str = "",
    now=None,
) -> ContactAttempt:
    """One click on the call list: record the attempt (by `actor`, now) and make the state change it means.

    - spoke on a booked session: the appointment is attended (5); on a to-reach row the referral is contacted;
    - no answer / voicemail / engaged at a booked session: after the practitioner's `tries_before_dna`
      such tries within the slot, the appointment is did not attend (3);
    - a failed first-contact attempt that uses up the contact policy makes an opt-in invitation due;
    - wrong number marks the patient's numbers wrong (their pending texts are cancelled and none is sent
      until the numbers change); the worklist raises a task for it, and for wants to rearrange
      (signals.call_outcome_recorded);
    - a clinical note, if given, is written on the referral linked to the attempt, in the same transaction.

    The same click sent again within SAME_SUBMISSION_WINDOW (also several at once) is recorded once: every
    copy returns the first attempt and changes nothing more.
    """
    now = now or timezone.now()
    clinical_note = (clinical_note or "").strip()
    if button not in CallButton.values:
        raise ValidationError({"button": f"'{button}' is not a call-list outcome."})
    if appointment is not None and appointment.referral_id != referral.pk:
        raise ValidationError({"appointment": "That appointment belongs to another referral."})
    policy = ContactPolicy.current()
    with transaction.atomic():
        # Clicks on one person take turns on the referral's row: a copy sent at the same moment waits here,
        # then finds the first one's attempt.
        status_before = Referral.objects.select_for_update().values_list("status", flat=True).get(pk=referral.pk)
        referral.status = status_before
        first = _first_submission(
            referral=referral, appointment=appointment, actor=actor, button=button, callback_at=callback_at, now=now
        )
        if first is not None:
            return first
        if appointment is not None:
            appointment.refresh_from_db()  # its outcome as it is now, not as the page saw it
        errors = _refusals(
            button=button, appointment=appointment, callback_at=callback_at, now=now, clinical_note=clinical_note,
            may_write_note=not clinical_note or can_write_notes(actor, referral),
        )
        if errors:
            raise ValidationError(errors)
        outcome_before = appointment.outcome if appointment is not None else ""
        attempt = log_contact_attempt(
            referral=referral, practitioner=actor, outcome=BUTTON_OUTCOMES[CallButton(button)], actor=actor,
            appointment=appointment, attempted_at=now, callback_at=callback_at, note=note,
        )
        if clinical_note:
            write_note(referral=referral, author=actor, text=clinical_note, contact_attempt=attempt)
        if appointment is not None and button == CallButton.SPOKE:
            record_appointment_outcome(appointment=appointment, outcome=AttendanceOutcome.ATTENDED, actor=actor, at=now)
        elif (
            appointment is not None
            and attempt.outcome in UNANSWERED_OUTCOMES
            and appointment.outcome == AttendanceOutcome.NOT_APPLICABLE
            and now >= appointment.start - EARLIEST_OUTCOME_BEFORE_START
        ):
            tries = ContactAttempt.objects.effective().filter(
                appointment=appointment, outcome__in=UNANSWERED_OUTCOMES,
                attempted_at__gte=appointment.start - EARLIEST_OUTCOME_BEFORE_START,
            ).count()
            if tries >= tries_before_dna_for(appointment.practitioner_id):
                record_appointment_outcome(
                    appointment=appointment, outcome=AttendanceOutcome.DID_NOT_ATTEND, actor=actor, at=now
                )
        if button == CallButton.WRONG_NUMBER:
            # Before any invitation below: it must find the number wrong and queue nothing to it.
            patient = Patient.objects.get(pk=referral.patient_id)  # the numbers as they are now
            WrongNumberMark.objects.create(
                attempt=attempt, patient=patient, mobile_phone=patient.mobile_phone, other_phone=patient.other_phone,
                marked_at=now,
            )
            number_marked_wrong.send(sender=Referral, patient=patient, actor=actor)
        if appointment is None and attempt.outcome in POLICY_FAILED_OUTCOMES:
            _maybe_invite_to_opt_in(referral=referral, attempt=attempt, actor=actor, policy=policy, now=now)
        if appointment is not None:
            appointment.refresh_from_db(fields=["outcome", "outcome_recorded_at"])
        status_after = Referral.objects.values_list("status", flat=True).get(pk=referral.pk)
        referral.status = status_after
        effect = CallOutcomeEffect.objects.create(
            attempt=attempt,
            button=button,
            appointment_outcome_before=outcome_before,
            appointment_outcome_after=appointment.outcome if appointment is not None else "",
            referral_status_before=status_before,
            referral_status_after=status_after,
        )
        # The worklist raises the task a wrong number or a rearrange request asks for, linked on the effect.
        call_outcome_recorded.send(
            sender=ContactAttempt, attempt=attempt, effect=effect, button=button, referral=referral,
            appointment=appointment, actor=actor, note=note,
        )
    return attempt


def undo_deadline(attempt: ContactAttempt, *, policy: ContactPolicy | None = None):
    policy = policy or ContactPolicy.current()
    return attempt.recorded_at + timedelta(minutes=policy.undo_minutes)


def undo_call_outcome(*, attempt: ContactAttempt, actor, reason: str = "Logged by mistake", now=None) -> ContactAttemptUndo:
    """Undo an accidental click: only by the person who made it, within the policy's undo window, and only
    for the latest attempt on the referral. The attempt stays; a ContactAttemptUndo row marks it, and each
    change the click made is reversed by a new audited change. Undone again by the same person (a re-sent
    form), it changes nothing and returns the first undo."""
    now = now or timezone.now()
    policy = ContactPolicy.current()
    with transaction.atomic():
        # Undos and clicks on one person take turns on the referral's row (one undo row per attempt is the
        # database's own guard).
        Referral.objects.select_for_update().filter(pk=attempt.referral_id).first()
        attempt = ContactAttempt.objects.select_related("referral", "appointment").get(pk=attempt.pk)
        done = ContactAttemptUndo.objects.filter(attempt=attempt).first()
        if done is not None:
            if done.undone_by_id == getattr(actor, "pk", None):
                return done
            raise ValidationError("This call outcome has already been undone.", code="already_undone")
        if attempt.recorded_by_id != getattr(actor, "pk", None):
            raise ValidationError("Only the person who logged this call outcome can undo it.", code="not_yours")
        if now > undo_deadline(attempt, policy=policy):
            raise ValidationError(
                f"Call outcomes can only be undone within {policy.undo_minutes} minutes.", code="too_late"
            )
        later = ContactAttempt.objects.effective().filter(referral_id=attempt.referral_id).filter(
            Q(attempted_at__gt=attempt.attempted_at) | Q(attempted_at=attempt.attempted_at, pk__gt=attempt.pk)
        )
        if later.exists():
            raise ValidationError("A later call has been logged for this person; undo that first.", code="not_latest")
        undo = ContactAttemptUndo.objects.create(attempt=attempt, undone_by=actor, undone_at=now, reason=reason[:200])
        referral = attempt.referral
        effect = CallOutcomeEffect.objects.filter(attempt=attempt).first()
        label = effect.button if effect else attempt.outcome
        if effect is not None:
            appointment = attempt.appointment
            if appointment is not None and effect.appointment_outcome_after != effect.appointment_outcome_before:
                appointment.refresh_from_db()
                if appointment.outcome == effect.appointment_outcome_after:
                    correct_appointment_outcome(
                        appointment=appointment, outcome=effect.appointment_outcome_before, actor=actor,
                        reason=f"Undo of call outcome '{label}'",
                    )
            if effect.referral_status_after != effect.referral_status_before:
                revert_referral_status(
                    referral=referral, from_status=effect.referral_status_after, to_status=effect.referral_status_before,
                    actor=actor, reason=f"call outcome '{label}' undone",
                )
            call_outcome_undone.send(sender=ContactAttempt, attempt=attempt, effect=effect, actor=actor)
        withdrawn = OptInInvitation.objects.active().filter(attempt=attempt).update(withdrawn_at=now, withdrawn_by=actor)
        if withdrawn:
            record_change(
                referral=referral, field="opt_in_invitation", old="due", new="withdrawn", actor=actor, at=now,
                reason=f"Undo: call outcome '{label}' undone",
            )
    return undo


def mark_opt_in_invitation_sent(*, invitation: OptInInvitation, sent_at=None) -> OptInInvitation:
    """For the reminders capability: the opt-in SMS was queued. Only the first call sets the time."""
    OptInInvitation.objects.filter(pk=invitation.pk, sent_at__isnull=True).update(sent_at=sent_at or timezone.now())
    invitation.refresh_from_db(fields=["sent_at"])
    return invitation


def save_contact_policy(*, policy: ContactPolicy, actor) -> ContactPolicy:
    """A manager's change to the contact policy (Django admin), audited with each value from and to."""
    save_and_log(instance=policy, actor=actor)
    return policy
