"""Text replies (Twilio's inbound-SMS webhook): what a reply means, whose it is, and what is done.

The first word of the reply, upper-cased with punctuation stripped, decides what it means:

    YES Y C CONFIRM                                   confirm the next appointment
    NO N CHANGE R RESCHEDULE REARRANGE CANCEL         ask to rearrange it (a task for admin staff;
                                                      nothing is cancelled automatically)
    STOP STOPALL UNSUBSCRIBE END QUIT REVOKE OPTOUT   stop all texts, at once
    START UNSTOP                                      texts may go again
    YES 4821, YES4821, Y 4821                         takes the earlier time offered with that code
                                                      (answered by scheduling/offers through the
                                                      offer_code_reply signal; never a confirmation)
    NO 4821, N4821; or NO / N (and "No thanks")       declines that offer; a bare no declines the offer only
                                                      when an open offer was the patient's latest text
                                                      (otherwise it asks to rearrange, as above)
    anything else                                     a task for admin staff, with the text

The sender is matched on patients' mobile numbers (then, if none, their other numbers). Nothing is
ever guessed: a number on no record, or shared by several patients, gives a task with the text for
staff to act on, not a confirmation or request against anyone's appointment. Opt-outs are the
exception: a STOP is honoured for every patient with that number.

Twilio and CANCEL: CANCEL is one of Twilio's default opt-out keywords, but a patient who replies
CANCEL to a reminder means "not then", so it is read here as a rearrangement request. The Twilio
number's (or Messaging Service's) Advanced Opt-Out keyword list must have CANCEL removed. If Twilio
opts the number out anyway, the next text to it fails with error 21610, which sending.py records as
an opt-out and puts on the worklist, so the patient is not texted against their wishes either way.
Twilio answers STOP/START itself, so we never send an automatic reply.

Message bodies and phone numbers never reach the logs: only ids, the meaning and the handling.
"""

import logging
import re

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from scheduling.booking.models import Appointment
from scheduling.booking.services import confirm_appointment
from scheduling.caseload.models import Patient
from scheduling.worklist.models import AdminTask
from scheduling.caseload.phones import display_phone, parse_uk_phone
from scheduling.worklist.services import raise_admin_task
from scheduling.codes import AttendanceOutcome
from scheduling.reminders.models import InboundMessage
from scheduling.reminders.services import opt_in_patient, opt_out_patient
from scheduling.reminders.signals import offer_code_reply

logger = logging.getLogger(__name__)
Meaning = InboundMessage.Meaning
Handling = InboundMessage.Handling

KEYWORDS = {
    **dict.fromkeys(("YES", "Y", "C", "CONFIRM"), Meaning.CONFIRM),
    **dict.fromkeys(("NO", "N", "CHANGE", "R", "RESCHEDULE", "REARRANGE", "CANCEL"), Meaning.REARRANGE),
    **dict.fromkeys(("STOP", "STOPALL", "UNSUBSCRIBE", "END", "QUIT", "REVOKE", "OPTOUT"), Meaning.OPT_OUT),
    **dict.fromkeys(("START", "UNSTOP"), Meaning.OPT_IN),
}
# Words that add nothing after a keyword ("Yes thanks", "C see you then x"). Anything else after a
# reply we act on automatically is also passed to staff, so "Yes but can it be 3pm" is not lost.
COURTESY_WORDS = frozenset({
    "THANKS", "THANK", "YOU", "THANKYOU", "THX", "TA", "CHEERS", "OK", "OKAY", "PLEASE", "PLS", "SEE", "THEN",
    "X", "XX", "XXX",
})
QUOTE_LIMIT = 380  # characters of the reply copied into a task (AdminTask.detail holds 500)


def _words(body: str) -> list[str]:
    """The reply's words, upper-cased, punctuation stripped, empty ones dropped."""
    words = (re.sub(r"[^A-Z0-9]", "", word.upper()) for word in (body or "").split())
    return [word for word in words if word]


# A yes with a four-digit offer code, together or apart: "YES 4821", "yes4821", "Y-4821"; a no likewise.
OFFER_CODE = re.compile(r"^\s*(?:YES|Y)\W*(\d{4})(?!\d)", re.IGNORECASE)
OFFER_DECLINE = re.compile(r"^\s*(?:NO|N)\W*(\d{4})(?!\d)", re.IGNORECASE)
BARE_NO = frozenset({"NO", "N"})


def offer_code_of(body: str) -> str:
    match = OFFER_CODE.match(body or "")
    return match.group(1) if match else ""


def offer_decline_code_of(body: str) -> str:
    match = OFFER_DECLINE.match(body or "")
    return match.group(1) if match else ""


def meaning_of(body: str) -> str:
    if offer_code_of(body) or offer_decline_code_of(body):
        return Meaning.OFFER_REPLY
    words = _words(body)
    return KEYWORDS.get(words[0], Meaning.OTHER) if words else Meaning.OTHER


def says_more_than_its_keyword(body: str) -> bool:
    words = _words(body)
    meaning = meaning_of(body)
    return any(word not in COURTESY_WORDS and KEYWORDS.get(word) != meaning for word in words[1:])


def normalise_number(raw: str) -> str:
    """E.164 when it parses as a phone number; otherwise (a short code, an alphanumeric sender) as sent."""
    text = (raw or "").strip()
    try:
        # Fictional numbers are accepted here: this only normalises what Twilio sent, it validates nothing.
        return parse_uk_phone(text, accept_fictional=True).e164
    except ValidationError:
        return text[:20]


def patients_with_number(number: str) -> list[Patient]:
    """Patients whose mobile is this number; if none, those whose other number is."""
    if not number.startswith("+"):
        return []
    by_mobile = list(Patient.objects.filter(mobile_phone=number).order_by("pk"))
    return by_mobile or list(Patient.objects.filter(other_phone=number).order_by("pk"))


def next_appointment(patient: Patient, *, after) -> Appointment | None:
    """The patient's next appointment still to happen: after `after`, no outcome, not cancelled."""
    return (
        Appointment.objects.not_cancelled()
        .filter(referral__patient=patient, start__gt=after, outcome=AttendanceOutcome.NOT_APPLICABLE)
        .select_related("referral")
        .order_by("start", "id")
        .first()
    )


def _quote(body: str, limit: int = QUOTE_LIMIT) -> str:
    text = " ".join((body or "").split())
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return f'"{text}"'


def _number_for_staff(number: str) -> str:
    return display_phone(number) if number.startswith("+") else number


def handle_inbound(*, provider_sid: str, from_number: str, to_number: str, body: str, received_at=None) -> InboundMessage:
    """Store a reply and act on it, in one transaction. Idempotent on Twilio's MessageSid: a replayed
    webhook returns the row already stored and changes nothing."""
    provider_sid = (provider_sid or "").strip()[:64]
    if not provider_sid:
        raise ValueError("An inbound message needs Twilio's MessageSid.")
    existing = InboundMessage.objects.filter(provider_sid=provider_sid).first()
    if existing is not None:
        logger.info("sms.inbound_repeated inbound_id=%s", existing.pk)
        return existing
    try:
        with transaction.atomic():
            message = _store_and_act(
                provider_sid=provider_sid, from_number=from_number, to_number=to_number, body=body or "",
                received_at=received_at or timezone.now(),
            )
    except IntegrityError:
        # The same webhook, delivered twice at once: the other request stored it first, and
        # everything this one did has been rolled back with its row.
        existing = InboundMessage.objects.filter(provider_sid=provider_sid).first()
        if existing is None:
            raise
        logger.info("sms.inbound_repeated inbound_id=%s", existing.pk)
        return existing
    logger.info(
        "sms.inbound inbound_id=%s meaning=%s handling=%s task_id=%s",
        message.pk, message.meaning, message.handling, message.admin_task_id,
    )
    return message


def _store_and_act(*, provider_sid, from_number, to_number, body, received_at) -> InboundMessage:
    sender = normalise_number(from_number)
    meaning = meaning_of(body)
    patients = patients_with_number(sender)
    # Stored first: a second copy of the same webhook stops here (unique SID) until this one commits.
    message = InboundMessage.objects.create(
        provider_sid=provider_sid, from_number=sender, to_number=normalise_number(to_number), body=body,
        received_at=received_at, meaning=meaning, handling=Handling.FOR_STAFF,
        patient=patients[0] if len(patients) == 1 else None,
    )
    handling, appointment, task = _act(message=message, patients=patients, body=body, at=received_at)
    message.handling = handling
    message.appointment = appointment
    message.admin_task = task
    message.save(update_fields=["handling", "appointment", "admin_task"])
    return message


def _reply_task(*, detail: str, kind: str = AdminTask.Kind.SMS_REPLY, patient=None, appointment=None) -> AdminTask:
    return raise_admin_task(kind=kind, source=AdminTask.Source.SMS, patient=patient, appointment=appointment,
                            detail=detail)


def _also_says(message: InboundMessage, body: str, *, shared_by: int = 1) -> str:
    sender = f" from a number shared by {shared_by} patients ({_number_for_staff(message.from_number)})" if shared_by > 1 else ""
    return f"Reply{sender} applied ({message.get_meaning_display().lower()}); it also says: {_quote(body)}"


def _offer_answer(message: InboundMessage, *, patients, code: str, declined: bool, at):
    """(handling, appointment, no task) from the offers receiver, or None if no receiver took the reply."""
    for _receiver, answer in offer_code_reply.send(
        sender=InboundMessage, message=message, patients=patients, code=code, declined=declined, at=at
    ):
        if answer is not None:
            if answer.patient is not None and message.patient_id is None:
                message.patient = answer.patient
                message.save(update_fields=["patient"])
            return answer.handling, answer.appointment, None
    return None


def _act(*, message: InboundMessage, patients: list[Patient], body: str, at):
    """(handling, appointment, admin task) for a stored reply, after doing what it asks."""
    meaning = message.meaning
    more = says_more_than_its_keyword(body)
    single = patients[0] if len(patients) == 1 else None

    if meaning in (Meaning.OPT_OUT, Meaning.OPT_IN):
        if not patients:
            return Handling.UNKNOWN_SENDER, None, None
        for patient in patients:
            if meaning == Meaning.OPT_OUT:
                opt_out_patient(patient=patient, reason="patient replied STOP", at=at)
            else:
                opt_in_patient(patient=patient, at=at)
        task = _reply_task(patient=single, detail=_also_says(message, body, shared_by=len(patients))) if more else None
        return Handling.APPLIED, None, task

    if meaning == Meaning.OFFER_REPLY and patients:
        # Not a confirmation of the next appointment: the offers capability answers it (one-way stack).
        accepted = offer_code_of(body)
        answered = _offer_answer(message, patients=patients, code=accepted or offer_decline_code_of(body),
                                 declined=not accepted, at=at)
        if answered is not None:
            return answered
        return Handling.FOR_STAFF, None, _reply_task(patient=single, detail=f"Reply with an offer code: {_quote(body)}")
    words = _words(body)
    if meaning == Meaning.REARRANGE and single is not None and words[0] in BARE_NO:
        # "No" (or "No thanks") straight after an offer of an earlier time answers the offer, not a reminder.
        answered = _offer_answer(message, patients=patients, code="", declined=True, at=at)
        if answered is not None:
            return answered

    if not patients:
        detail = f"Text from a number not on our records ({_number_for_staff(message.from_number)}): {_quote(body)}"
        return Handling.UNKNOWN_SENDER, None, _reply_task(detail=detail)
    if single is None:
        detail = (f"Text from a number shared by {len(patients)} patients ({_number_for_staff(message.from_number)}):"
                  f" check who sent it. {_quote(body)}")
        return Handling.SHARED_NUMBER, None, _reply_task(detail=detail)

    appointment = next_appointment(single, after=at)
    if appointment is None:
        last = (
            Appointment.objects.not_cancelled().filter(referral__patient=single, start__lte=at)
            .select_related("referral").order_by("-start", "-id").first()
        )
        if last is not None:
            when = timezone.localtime(last.start)
            detail = f"Reply received after the appointment on {when:%a %d %b %Y %H:%M}: {_quote(body)}"
        else:
            detail = f"Reply received with no upcoming appointment: {_quote(body)}"
        return Handling.NO_UPCOMING_APPOINTMENT, None, _reply_task(patient=single, appointment=last, detail=detail)

    if meaning == Meaning.CONFIRM:
        confirm_appointment(appointment=appointment, at=at, source="SMS")
        task = _reply_task(appointment=appointment, detail=_also_says(message, body)) if more else None
        return Handling.APPLIED, appointment, task
    if meaning == Meaning.REARRANGE:
        task = _reply_task(kind=AdminTask.Kind.REARRANGE_REQUEST, appointment=appointment,
                           detail=f"Replied by text: {_quote(body)}")
        return Handling.FOR_STAFF, appointment, task
    return Handling.FOR_STAFF, appointment, _reply_task(appointment=appointment, detail=f"Text reply: {_quote(body)}")
