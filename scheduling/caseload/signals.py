"""Hooks the caseload offers the capabilities above it. Sent synchronously inside the transaction.

patient_details_changed(sender=Patient, patient, changes, actor, now)
    Staff changed a patient's details on the patient details page. `changes` maps each changed
    field to (old value, new value), as stored. The reminders capability answers it: a new mobile
    (or a number that was marked wrong being corrected) plans the pending reminders again, withdrawn
    consent cancels them. A receiver may return a sentence saying what it did, for the page to show.
    Its writes commit or roll back with the change.
"""

from django.dispatch import Signal

patient_details_changed = Signal()
