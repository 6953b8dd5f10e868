"""Offers' answers to the hooks below them (connected in apps.py): a cancellation or move with notice,
or availability added, releases a slot; a "YES <code>" text reply takes one. They run inside the
sender's transaction, so a slot is released together with the cancellation that freed it."""

from django.dispatch import receiver
from django.utils import timezone

from scheduling.booking.rules import is_short_notice
from scheduling.booking.signals import appointment_cancelled, availability_added
from scheduling.caseload.models import ServiceSettings
from scheduling.codes import AttendanceOutcome
from scheduling.offers import services
from scheduling.reminders.signals import offer_code_reply


@receiver(appointment_cancelled, dispatch_uid="offers.release_cancelled")
def release_cancelled_slot(sender, appointment, actor=None, rearranged: bool = False, **kwargs):
    now = timezone.now()
    if appointment.start <= now or appointment.cancelled_at is None:
        return
    # A service cancellation that is not a move usually means the practitioner cannot take the call then.
    if appointment.outcome == AttendanceOutcome.CANCELLED_BY_PROVIDER and not rearranged:
        return
    # "With notice": booking's one rule for short notice (the late-cancellation threshold).
    if is_short_notice(appointment.notice_given, service_settings=ServiceSettings.current()):
        return
    services.release_for_cancellation(appointment=appointment, rearranged=rearranged, now=now)


@receiver(availability_added, dispatch_uid="offers.release_availability")
def release_added_availability(sender, practitioner, starts_at, ends_at, actor=None, **kwargs):
    services.release_availability(practitioner=practitioner, starts_at=starts_at, ends_at=ends_at)


@receiver(offer_code_reply, dispatch_uid="offers.answer_reply")
def answer_offer_code_reply(sender, message, patients, code, at, declined: bool = False, **kwargs):
    if declined:
        return services.decline_offer(patients=patients, code=code, at=at)
    return services.answer_offer_reply(patients=patients, code=code, at=at)
