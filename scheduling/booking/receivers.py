"""Booking's answers to the caseload's hooks (connected in apps.py). They run inside the sender's
transaction."""

from django.dispatch import receiver
from django.utils import timezone

from scheduling.booking.models import Appointment
from scheduling.booking.services import cancel_appointment
from scheduling.caseload.signals import referral_discharging
from scheduling.codes import AttendanceOutcome


@receiver(referral_discharging, dispatch_uid="booking.cancel_on_discharge")
def cancel_future_appointments(sender, referral, actor=None, **kwargs):
    future = referral.appointments.not_cancelled().filter(
        start__gt=timezone.now(), outcome=AttendanceOutcome.NOT_APPLICABLE
    )
    for appointment in future:
        cancel_appointment(appointment=appointment, cancelled_by=Appointment.CancelledBy.SERVICE, reason="Referral discharged", actor=actor)
