"""Hooks the call list offers other capabilities. Sent synchronously inside the transaction.

opt_in_invitation_due(sender=Referral, referral, actor)
    The contact policy's attempts all failed: the patient should be sent an opt-in invitation
    ("please get in touch within 14 days") if they consent to SMS. The reminders capability
    connects a receiver that writes the message to the SMS outbox.

number_marked_wrong(sender=Referral, patient, actor)
    A call found the patient's number wrong or not in service. The reminders capability cancels the
    patient's texts not yet handed to the gateway (and refuses new ones while the mark is in force).
"""

from django.dispatch import Signal

opt_in_invitation_due = Signal()
number_marked_wrong = Signal()
