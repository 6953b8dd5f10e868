"""Hooks the call list offers the capabilities above it. Sent synchronously inside the transaction, so
what a receiver writes commits or rolls back with the call. Receivers are connected in apps.py.

opt_in_invitation_due(sender=Referral, referral, actor)
    The contact policy's attempts all failed: the patient should be sent an opt-in invitation
    ("please get in touch within 14 days") if they consent to SMS. The reminders capability
    connects a receiver that writes the message to the SMS outbox.

number_marked_wrong(sender=Referral, patient, actor)
    A call found the patient's number wrong or not in service. The reminders capability cancels the
    patient's texts not yet handed to the gateway (and refuses new ones while the mark is in force).

call_outcome_recorded(sender=ContactAttempt, attempt, effect, button, referral, appointment, actor, note)
    One click on the call list was recorded (`effect` is its CallOutcomeEffect). The worklist raises
    the task the click asks admin staff for (wrong number: check it; rearrange: find a new time) and
    links it on the effect, so an undo can withdraw it.

call_outcome_undone(sender=ContactAttempt, attempt, effect, actor)
    A click was undone. The worklist withdraws the task the click raised, if still open.
"""

from django.dispatch import Signal

opt_in_invitation_due = Signal()
number_marked_wrong = Signal()
call_outcome_recorded = Signal()
call_outcome_undone = Signal()
