"""Hooks the caseload offers the capabilities above it. Sent synchronously inside the transaction, so
what a receiver writes commits or rolls back with the change. Receivers are connected in apps.py.

patient_details_changed(sender=Patient, patient, changes, actor, now)
    Staff changed a patient's details on the patient details page. `changes` maps each changed
    field to (old value, new value), as stored. Reminders answer it (a new mobile, or a number that
    was marked wrong being corrected, plans the pending reminders again; withdrawn consent cancels
    them); the worklist resolves the wrong-number and failed-text items a corrected number answers.
    A receiver may return a FollowUp saying what it did, for the page to show.

referral_discharging(sender=Referral, referral, actor)
    A referral is being discharged (sent before its status changes, with the referral's row locked).
    Booking cancels its future appointments (and reminders follow those cancellations).
"""

from dataclasses import dataclass, field

from django.dispatch import Signal

patient_details_changed = Signal()
referral_discharging = Signal()


@dataclass
class FollowUp:
    """What a receiver did about a change: in words, and the worklist tasks it resolved."""

    words: str = ""
    resolved_tasks: list = field(default_factory=list)
