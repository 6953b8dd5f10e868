"""Hooks other capabilities attach to. Sent synchronously inside the booking transaction, so a
receiver's writes (e.g. planning or cancelling SMS reminders) commit or roll back with the booking.

appointment_booked(sender=Appointment, appointment, actor, rearranged_from=None)  # the original, for a move
appointment_cancelled(sender=Appointment, appointment, actor)  # also sent for the original of a rearrangement
"""

from django.dispatch import Signal

appointment_booked = Signal()
appointment_cancelled = Signal()
