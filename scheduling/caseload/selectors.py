"""Reads about caseloads, and who may see or work which caseload."""

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Q
from django.utils import timezone

from scheduling.caseload.models import CaseloadCover, Patient, Referral
from scheduling.roles import is_pwp

# How much of a patient's text a call-list row quotes (the whole text is on the record).
REPLY_QUOTE_LIMIT = 120


def can_view_all_caseloads(user) -> bool:
    return user.is_authenticated and user.has_perm("scheduling.view_all_caseloads")


def caseload_owner_ids_worked_by(user, *, on_date=None) -> set[int]:
    """The practitioners whose caseloads `user` works on a day: their own, plus any they cover."""
    on_date = on_date or timezone.localdate()
    covered = CaseloadCover.objects.filter(covering=user, starts_on__lte=on_date, ends_on__gte=on_date).values_list(
        "covered_id", flat=True
    )
    return {user.pk, *covered}


def can_open_caseload_of(user, practitioner, *, on_date=None) -> bool:
    """Managers and admin staff open any caseload; a PWP opens their own and those they cover."""
    if can_view_all_caseloads(user):
        return True
    return is_pwp(user) and practitioner.pk in caseload_owner_ids_worked_by(user, on_date=on_date)


def can_log_contact_on_caseload_of(user, practitioner, *, on_date=None) -> bool:
    """Logging outcomes needs log_contact; a PWP only on their own caseload or one they cover."""
    if not user.has_perm("scheduling.log_contact"):
        return False
    if is_pwp(user):
        return practitioner.pk in caseload_owner_ids_worked_by(user, on_date=on_date)
    return can_view_all_caseloads(user)


def referrals_visible_to(user):
    qs = Referral.objects.select_related("patient", "assigned_practitioner")
    if can_view_all_caseloads(user):
        return qs
    if is_pwp(user):
        return qs.filter(assigned_practitioner_id__in=caseload_owner_ids_worked_by(user))
    return qs.none()


def can_view_referral(user, referral: Referral) -> bool:
    if can_view_all_caseloads(user):
        return True
    return bool(
        is_pwp(user)
        and referral.assigned_practitioner_id
        and referral.assigned_practitioner_id in caseload_owner_ids_worked_by(user)
    )


def can_book_for_referral(user, referral: Referral) -> bool:
    """Admin staff and managers book on any caseload (book_appointments); a PWP books on their own
    caseload and those they cover, so the call that reaches a patient can end in a booking."""
    if user.has_perm("scheduling.book_appointments"):
        return True
    if not (is_pwp(user) and referral.assigned_practitioner_id):
        return False
    # Their own caseload needs no query (the usual case); a covered one is looked up.
    return referral.assigned_practitioner_id == user.pk or referral.assigned_practitioner_id in caseload_owner_ids_worked_by(user)


def can_rearrange_appointment(user, appointment) -> bool:
    """As booking: a PWP moves appointments on a caseload they work (the referral's, or the session's
    practitioner's, as the call list shows it)."""
    if can_book_for_referral(user, appointment.referral):
        return True
    return is_pwp(user) and (appointment.practitioner_id == user.pk or appointment.practitioner_id in caseload_owner_ids_worked_by(user))


def can_cancel_appointments(user) -> bool:
    """Cancelling stays with admin staff and managers: it ends a slot the service has to refill."""
    return user.is_authenticated and user.has_perm("scheduling.book_appointments")


def can_view_clinical_notes(user) -> bool:
    return user.has_perm("scheduling.view_clinicalnote")


def search_referrals(*, user, query: str = "", status: str = "", practitioner_id=None):
    qs = referrals_visible_to(user)
    if status:
        # An unknown status matches nothing; it is not sent to the database (PostgreSQL refuses a NUL with a 500).
        qs = qs.filter(status=status) if status in Referral.Status.values else qs.none()
    if practitioner_id:
        qs = qs.filter(assigned_practitioner_id=practitioner_id)
    # No name is longer than 100 characters or holds a NUL; a longer search could only fail (SQLite
    # refuses a LIKE pattern over 50,000 bytes, PostgreSQL a NUL, both with a 500) or cost a join per word.
    query = (query or "").replace("\x00", "").strip()[:200]
    if query:
        digits = query.replace(" ", "")
        if digits.isdigit():
            qs = qs.filter(patient__nhs_number__startswith=digits)
        else:
            for word in query.split()[:8]:
                qs = qs.filter(Q(patient__given_name__icontains=word) | Q(patient__family_name__icontains=word))
    return qs.order_by("-received_on", "-id")


# --- Texts from patients ---------------------------------------------------------------------------


@dataclass
class WaitingReply:
    """A text a patient sent that staff have still to act on, quoted briefly."""

    pk: int
    patient_id: int
    quote: str
    received_at: datetime
    appointment_id: int | None


def _inbound_model():
    # The replies' model lives with the SMS capability, above caseload: reached through the patient's
    # reverse relation, so caseload imports nothing from it.
    return Patient._meta.get_field("inbound_messages").related_model


def quote_briefly(body: str, limit: int = REPLY_QUOTE_LIMIT) -> str:
    text = " ".join((body or "").split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def latest_replies_waiting_for_staff(patient_ids) -> dict[int, WaitingReply]:
    """Each patient's latest free-text reply ("ring after 3pm") whose worklist item is still open, by
    patient id. A bare keyword (C, R, STOP) is not free text; a keyword with more words is. One query."""
    inbound = _inbound_model()
    rows = (
        inbound.objects.filter(
            patient_id__in=set(patient_ids), admin_task__isnull=False, admin_task__resolved_at__isnull=True
        )
        .order_by("patient_id", "-received_at", "-id")
        .values_list("pk", "patient_id", "body", "received_at", "appointment_id", "meaning")
    )
    latest = {}
    for pk, patient_id, body, received_at, appointment_id, meaning in rows:
        if patient_id in latest:
            continue
        if meaning != inbound.Meaning.OTHER and len(body.split()) < 2:
            continue
        latest[patient_id] = WaitingReply(
            pk=pk, patient_id=patient_id, quote=quote_briefly(body), received_at=received_at,
            appointment_id=appointment_id,
        )
    return latest
