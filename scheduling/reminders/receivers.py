"""Connects the outbox to the booking and call-list hooks. The receivers run inside the sender's
transaction, so reminders are planned or cancelled together with the booking change."""

from django.dispatch import receiver
from django.utils import timezone

from scheduling.booking.signals import appointment_booked, appointment_cancelled
from scheduling.calls.signals import number_marked_wrong, opt_in_invitation_due
from scheduling.caseload.signals import FollowUp, patient_details_changed
from scheduling.reminders import rules, selectors, services


@receiver(appointment_booked, dispatch_uid="reminders.plan")
def plan_reminders_for_booking(sender, appointment, actor=None, rearranged_from=None, **kwargs):
    now = timezone.now()
    if appointment.start > now:  # recording the past (imports, demo history): nothing to remind anyone of
        services.plan_reminders(appointment=appointment, actor=actor, now=now)
        # After the reminders: a reminder going at once makes the confirmation redundant.
        if services.confirmation_wanted(appointment=appointment, now=now):
            services.plan_confirmation(appointment=appointment, moved=rearranged_from is not None, actor=actor, now=now)
    # The booking pages say what this means for the patient's texts.
    return selectors.booking_text_note(appointment=appointment, now=now)


@receiver(appointment_cancelled, dispatch_uid="reminders.cancel")
def cancel_reminders_for_cancellation(sender, appointment, actor=None, **kwargs):
    services.cancel_pending_messages(appointment=appointment, actor=actor, reason="the appointment was cancelled or moved")


@receiver(opt_in_invitation_due, dispatch_uid="reminders.opt_in")
def queue_opt_in_invitation(sender, referral, actor=None, **kwargs):
    invitation = referral.opt_in_invitations.active().order_by("-due_at", "-id").first()
    if invitation is not None:
        services.queue_opt_in_invitation(invitation=invitation, actor=actor)


@receiver(number_marked_wrong, dispatch_uid="reminders.wrong_number")
def cancel_texts_to_a_wrong_number(sender, patient, actor=None, **kwargs):
    # As for a STOP or Twilio's 21610: the patient's pending texts are cancelled at once, with the reason.
    services.cancel_pending_messages(patient=patient, reason=rules.WRONG_NUMBER_REASON, actor=actor)


@receiver(patient_details_changed, dispatch_uid="reminders.patient_details")
def follow_patient_details_change(sender, patient, changes, actor=None, now=None, **kwargs):
    # In the details change's transaction: the new number and the re-planned reminders commit together.
    words = services.follow_patient_details_change(patient=patient, changes=changes, actor=actor, now=now)
    return FollowUp(words=words) if words else None
