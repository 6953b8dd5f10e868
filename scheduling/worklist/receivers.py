"""The worklist's answers to the hooks of the capabilities below it (connected in apps.py). They run
inside the sender's transaction, so a task is raised or resolved together with what caused it."""

from django.core.exceptions import ValidationError
from django.db.models import Q
from django.dispatch import receiver
from django.utils import timezone

from scheduling.booking.signals import appointment_booked
from scheduling.calls.services import CallButton
from scheduling.calls.signals import call_outcome_recorded, call_outcome_undone
from scheduling.caseload.signals import FollowUp, patient_details_changed
from scheduling.worklist.models import AdminTask
from scheduling.worklist.services import raise_admin_task, resolve_admin_task

WRONG_NUMBER_DETAIL = "Number wrong or not in service: please check it with the patient or referrer."
REARRANGE_DETAIL = "Patient asked on the phone to rearrange this appointment."


@receiver(call_outcome_recorded, dispatch_uid="worklist.call_outcome")
def raise_task_for_call_outcome(sender, attempt, effect, button, referral, appointment, actor=None, note="", **kwargs):
    if button == CallButton.WRONG_NUMBER:
        task = raise_admin_task(
            kind=AdminTask.Kind.WRONG_NUMBER, source=AdminTask.Source.CALL_LIST, referral=referral,
            appointment=appointment, actor=actor, detail=WRONG_NUMBER_DETAIL,
        )
    elif button == CallButton.REARRANGE:
        task = raise_admin_task(
            kind=AdminTask.Kind.REARRANGE_REQUEST, source=AdminTask.Source.CALL_LIST, appointment=appointment,
            actor=actor, detail=note or REARRANGE_DETAIL,
        )
    else:
        return
    effect.admin_task = task
    effect.save(update_fields=["admin_task"])


@receiver(call_outcome_undone, dispatch_uid="worklist.call_outcome_undone")
def withdraw_task_of_undone_call(sender, attempt, effect, actor=None, **kwargs):
    task = AdminTask.objects.filter(pk=effect.admin_task_id, resolved_at__isnull=True).first()
    if task is not None:
        resolve_admin_task(task=task, actor=actor, resolution="Withdrawn: the call outcome was undone")


@receiver(appointment_booked, dispatch_uid="worklist.rearranged")
def resolve_rearrange_requests(sender, appointment, actor=None, rearranged_from=None, **kwargs):
    """A move answers the patient's requests to rearrange the original (or their referral's, unspecified)."""
    if rearranged_from is None:
        return
    tasks = AdminTask.objects.filter(kind=AdminTask.Kind.REARRANGE_REQUEST, resolved_at__isnull=True).filter(
        Q(appointment=rearranged_from) | Q(referral=rearranged_from.referral_id, appointment__isnull=True)
    )
    when = timezone.localtime(appointment.start)
    for task in tasks:
        resolve_admin_task(task=task, actor=actor, resolution=f"Rearranged to {when:%a %d %b %Y %H:%M}")


# Which open items a corrected number answers: kind -> the source it must come from (None: any).
_ANSWERED_BY = {
    "mobile_phone": {AdminTask.Kind.WRONG_NUMBER: None, AdminTask.Kind.SMS_FAILED: None},
    # The call list may have rung the other number; a text never goes there.
    "other_phone": {AdminTask.Kind.WRONG_NUMBER: AdminTask.Source.CALL_LIST},
}


def _resolution(name: str, new: str) -> str:
    if name == "mobile_phone" and new:
        return "The mobile number was corrected on the patient's details page; texts now go to the new number."
    words = "other phone" if name == "other_phone" else "mobile number"
    verb = "corrected" if new else "removed"
    return f"The {words} was {verb} on the patient's details page."


@receiver(patient_details_changed, dispatch_uid="worklist.patient_details")
def resolve_tasks_a_corrected_number_answers(sender, patient, changes, actor=None, **kwargs):
    resolved = []
    for name in ("mobile_phone", "other_phone"):
        if name not in changes:
            continue
        resolution = _resolution(name, changes[name][1])
        for kind, source in _ANSWERED_BY[name].items():
            tasks = AdminTask.objects.filter(patient=patient, kind=kind, resolved_at__isnull=True)
            if source is not None:
                tasks = tasks.filter(source=source)
            for task in tasks.order_by("raised_at", "id"):
                if task in resolved:
                    continue
                try:
                    resolved.append(resolve_admin_task(task=task, actor=actor, resolution=resolution))
                except ValidationError:
                    pass  # resolved by someone else meanwhile: their resolution stands
    return FollowUp(resolved_tasks=resolved) if resolved else None
