"""Reads the outbox's writes and the pages both rely on: whether a patient may be texted at all, and
the wording a template has now. Kept apart from services so selectors and the send task read them
without importing the writes."""

from scheduling.calls.selectors import number_marked_wrong
from scheduling.reminders import content
from scheduling.reminders.models import MessageTemplate


def template_body(key: str) -> str:
    template = MessageTemplate.objects.filter(key=key).first()
    return template.body if template else content.DEFAULT_TEMPLATES[key]


def template_includes_link(key: str) -> bool:
    """Whether texts from this template get the self-service link (the setting is off by default)."""
    if not MessageTemplate.may_carry_link(key):
        return False
    return MessageTemplate.objects.filter(key=key, include_link=True).exists()


WRONG_NUMBER_REASON = "the number was marked wrong on a call: waiting for a new number"

def sms_refusal_reason(patient, *, wrong_number: bool | None = None) -> str:
    """Why this patient cannot be sent an SMS, or "" if they can. `wrong_number`: whether a call found
    the number wrong, when the caller looked it up already (the send task does, for a whole batch)."""
    if patient.sms_opted_out:
        return "patient replied STOP (opted out)"
    if not patient.sms_consent:
        return "no SMS consent recorded"
    if not patient.mobile_phone:
        return "no mobile number"
    if not patient.mobile_is_mobile:
        return "the number on record is not a mobile"
    if number_marked_wrong(patient) if wrong_number is None else wrong_number:
        return WRONG_NUMBER_REASON
    return ""
