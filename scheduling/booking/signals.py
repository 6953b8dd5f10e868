"""Hooks other capabilities attach to (receivers are connected in apps.py). Sent synchronously inside
the booking transaction, so a receiver's writes (e.g. planning or cancelling SMS reminders, resolving
a rearrange request) commit or roll back with the booking.

appointment_booked(sender=Appointment, appointment, actor, rearranged_from=None)  # the original, for a move
    A receiver may return a sentence saying what follows for the patient ("a confirmation text will be
    sent"); the booking services keep them, in order, as the returned appointment's `follow_ups`.
appointment_cancelled(sender=Appointment, appointment, actor, rearranged)  # also sent for the original of a
    rearrangement, with rearranged=True (sent before the replacement is inserted)
availability_added(sender=WorkingHours or AvailabilityException, practitioner, starts_at, ends_at, actor)
    A practitioner became bookable between starts_at and ends_at (UTC instants): working hours were added
    or changed (sent for the next AVAILABILITY_HORIZON from now), or an absence was withdrawn (its span).
    Receivers decide what, if anything, of that time to offer; it may already be partly booked.
"""

from django.dispatch import Signal

appointment_booked = Signal()
appointment_cancelled = Signal()
availability_added = Signal()
