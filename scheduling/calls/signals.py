"""Hooks the call list offers other capabilities. Sent synchronously inside the transaction.

opt_in_invitation_due(sender=Referral, referral, actor)
    The contact policy's attempts all failed: the patient should be sent an opt-in invitation
    ("please get in touch within 14 days") if they consent to SMS. The reminders capability
    connects a receiver that writes the message to the SMS outbox.
"""

from django.dispatch import Signal

opt_in_invitation_due = Signal()
