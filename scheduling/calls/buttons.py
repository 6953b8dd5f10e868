"""The outcome buttons on a call-list row: what each records, and the words for a click."""

from django.db.models import TextChoices

from scheduling.calls.models import ContactAttempt

Outcome = ContactAttempt.Outcome


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
