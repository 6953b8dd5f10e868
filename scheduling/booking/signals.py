"""Hooks other capabilities attach to (receivers are connected in apps.py). Sent synchronously inside
the booking transaction, so a receiver's writes (e.g. planning or cancelling SMS reminders, resolving
a rearrange request) commit or roll back with the booking.

appointment_booked(sender=Appointment, appointment, actor, rearranged_from=None)  # the original, for a move
    A receiver may return a sentence saying what follows for the patient ("a confirmation text will be
    sent"); the booking services keep them, in order, as the returned appointment's `follow_ups`.
appointment_cancelled(sender=Appointment, appointment, actor)  # also sent for the original of a rearrangement
"""

from django.dispatch import Signal

appointment_booked = Signal()
appointment_cancelled = Signal()
