"""The admin worklist: open tasks, and items derived from calls and bookings (discharge suggested, no
assessment booked), oldest first, with who has taken each."""

import datetime as dt
import re
from collections import defaultdict
from dataclasses import dataclass
from urllib.parse import urlencode

from django.db.models import Exists, Max, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce
from django.urls import reverse
from django.utils import timezone

from scheduling.booking.models import Appointment
from scheduling.calls.selectors import referrals_suggested_for_discharge
from scheduling.caseload.models import Referral
from scheduling.codes import AppointmentType, AttendanceOutcome, EndOfCare
from scheduling.uktime import lenient_local_datetime
from scheduling.worklist.models import AdminTask, WorklistClaim

SUGGEST_DISCHARGE = "suggest_discharge"
NO_ASSESSMENT = "no_assessment"
# Every kind of item, in the order the filter shows them, with the words staff see.
WORKLIST_KINDS = [
    *AdminTask.Kind.choices,
    (SUGGEST_DISCHARGE, "Discharge suggested"),
    (NO_ASSESSMENT, "No assessment booked"),
]
WORKLIST_KIND_LABELS = dict(WORKLIST_KINDS)
# "task:12", "suggest_discharge:referral:5", "no_assessment:referral:5": ids bounded as any id parameter.
WORKLIST_KEY_PATTERN = re.compile(r"^(task|suggest_discharge:referral|no_assessment:referral):([1-9][0-9]{0,9})$")
# The longest name or NHS number search worth running: no name is longer (Patient names are 100 each).
WORKLIST_SEARCH_MAX_LENGTH = 100


@dataclass
class WorklistItem:
    kind: str
    label: str
    since: dt.datetime
    patient_name: str
    referral_id: int | None
    action_url: str
    action_label: str
    detail: str = ""
    task_id: int | None = None
    appointment: Appointment | None = None
    key: str = ""
    nhs_number: str = ""
    # The referral whose record the patient's name links to (a task may name the patient only).
    record_referral_id: int | None = None
    # Only the day is known (a referral received before it was entered): shown without a time.
    since_is_date: bool = False
    # The open claim on the item, if someone has taken it since it last changed.
    claim: WorklistClaim | None = None

    @property
    def kind_label(self) -> str:
        return WORKLIST_KIND_LABELS.get(self.kind, self.kind)

    @property
    def nhs_number_display(self) -> str:
        n = self.nhs_number
        return f"{n[:3]} {n[3:6]} {n[6:]}" if n else ""

    @property
    def dom_id(self) -> str:
        return "item-" + self.key.replace(":", "-")


def _task_items(*, now) -> list[WorklistItem]:
    items = []
    tasks = list(
        AdminTask.objects.filter(resolved_at__isnull=True).select_related("patient", "referral__patient", "appointment")
    )
    # A task raised against a patient alone (a text from their number) still links to their record: the newest referral.
    latest_referral = {}
    for patient_id, referral_id in (
        Referral.objects.filter(patient_id__in={t.patient_id for t in tasks if t.patient_id and not t.referral_id})
        .order_by("patient_id", "received_on", "id").values_list("patient_id", "pk")
    ):
        latest_referral[patient_id] = referral_id
    for task in tasks:
        if task.kind == AdminTask.Kind.SELF_SERVICE_LOCKED:
            # Someone may be guessing: staff check with the patient, then mark it done.
            url, action = reverse("worklist:task_resolve", args=[task.pk]), "Review"
        elif task.kind == AdminTask.Kind.REARRANGE_REQUEST and task.appointment_id and not task.appointment.is_cancelled:
            url, action = reverse("booking:rearrange", args=[task.appointment_id]), "Rearrange"
        elif task.kind == AdminTask.Kind.REARRANGE_REQUEST and task.referral_id:
            url, action = reverse("booking:find_slots", args=[task.referral_id]), "Find a new time"
        elif task.kind in (AdminTask.Kind.WRONG_NUMBER, AdminTask.Kind.SMS_FAILED) and task.patient_id:
            # Saving a corrected number there resolves the item.
            url, action = reverse("caseload:patient_details", args=[task.patient_id]), "Correct the number"
        elif task.referral_id:
            url, action = reverse("caseload:referral_detail", args=[task.referral_id]), "Open referral"
        else:
            url, action = reverse("worklist:task_resolve", args=[task.pk]), "Review"
        patient = task.patient or (task.referral.patient if task.referral_id else None)
        items.append(WorklistItem(
            kind=task.kind, label=f"{task.get_kind_display()} ({task.get_source_display().lower()})", since=task.raised_at,
            patient_name=patient.full_name if patient else "", referral_id=task.referral_id,
            action_url=url, action_label=action, detail=task.detail, task_id=task.pk, appointment=task.appointment,
            key=f"task:{task.pk}", nhs_number=patient.nhs_number if patient else "",
            record_referral_id=task.referral_id or latest_referral.get(task.patient_id),
        ))
    return items


def referrals_without_assessment():
    """Open referrals with no assessment booked or held (derived, so they clear when one is booked)."""
    assessment = Appointment.objects.filter(referral=OuterRef("pk"), appointment_type=AppointmentType.ASSESSMENT).exclude(
        outcome__in=[AttendanceOutcome.CANCELLED_BY_PATIENT, AttendanceOutcome.CANCELLED_BY_PROVIDER,
                     AttendanceOutcome.DID_NOT_ATTEND, AttendanceOutcome.LATE_NOT_SEEN]
    )
    return (
        Referral.objects.filter(status__in=[Referral.Status.AWAITING_CONTACT, Referral.Status.CONTACTED])
        .exclude(Exists(assessment))
        .select_related("patient", "assigned_practitioner")
    )


def _latest_attempts(referral_ids) -> dict[int, dt.datetime]:
    """When each referral was last called (attempts that were undone do not count)."""
    rows = (
        Referral.objects.filter(pk__in=referral_ids)
        .annotate(last=Max("contact_attempts__attempted_at", filter=Q(contact_attempts__undo__isnull=True)))
        .values_list("pk", "last")
    )
    return {pk: last for pk, last in rows if last}


def _entered_or_received(referral) -> tuple[dt.datetime, bool]:
    """When the referral reached the service: the moment it was entered, or only the day it was received
    when it was entered on a later day (its real time that day is not known)."""
    if timezone.localdate(referral.created_at) <= referral.received_on:
        return referral.created_at, False
    return lenient_local_datetime(referral.received_on, dt.time(0)), True


def _suggested_discharge_items(*, now) -> list[WorklistItem]:
    """The contact policy's "unable to contact" suggestions (scheduling.calls), with the NHS end of care to use."""
    items = []
    referrals = referrals_suggested_for_discharge(now=now, include_declined=True)
    last_called = _latest_attempts([r.pk for r in referrals])
    for referral in referrals:
        invitation = referral.opt_in_invitation
        end_of_care = EndOfCare(referral.suggested_end_code).label
        # The latest thing that happened: the last call (a decline, or the last unanswered one) or the
        # opt-in invitation sent after it.
        events = [last_called.get(referral.pk)]
        if invitation:
            events.append(invitation.sent_at or invitation.due_at)
        events = [e for e in events if e]
        since, date_only = (max(events), False) if events else _entered_or_received(referral)
        items.append(WorklistItem(
            kind=SUGGEST_DISCHARGE,
            label=f"Suggest discharge: {referral.discharge_reason.lower()} (end of care: {end_of_care.lower()})",
            since=since, since_is_date=date_only,
            patient_name=referral.patient.full_name, referral_id=referral.pk,
            action_url=reverse("caseload:discharge", args=[referral.pk])
            + "?" + urlencode({"end_code": referral.suggested_end_code, "reason": referral.discharge_reason}),
            action_label="Discharge",
            detail=(f"Opt-in invitation deadline {invitation.deadline:%d %b %Y} passed with no contact" if invitation
                    else "The patient declined on the last call"),
            key=f"{SUGGEST_DISCHARGE}:referral:{referral.pk}", nhs_number=referral.patient.nhs_number,
            record_referral_id=referral.pk,
        ))
    return items


def _unbooked_referral_items(*, now) -> list[WorklistItem]:
    # A referral suggested for discharge is listed once, under that suggestion.
    suggested = {r.pk for r in referrals_suggested_for_discharge(now=now, include_declined=True)}
    lost_assessment = Appointment.objects.filter(
        referral=OuterRef("pk"), appointment_type=AppointmentType.ASSESSMENT,
        outcome__in=[AttendanceOutcome.CANCELLED_BY_PATIENT, AttendanceOutcome.CANCELLED_BY_PROVIDER,
                     AttendanceOutcome.DID_NOT_ATTEND, AttendanceOutcome.LATE_NOT_SEEN],
    ).annotate(at=Coalesce("cancelled_at", "outcome_recorded_at", "start")).order_by("-at").values("at")[:1]
    referrals = list(
        referrals_without_assessment().exclude(pk__in=suggested).annotate(lost_assessment_at=Subquery(lost_assessment))
    )
    last_called = _latest_attempts([r.pk for r in referrals if r.status == Referral.Status.CONTACTED])
    items = []
    for referral in referrals:
        contacted = referral.status == Referral.Status.CONTACTED
        # Since the latest event that left it needing an assessment: entered, a call that reached the
        # patient, or an assessment cancelled or missed.
        since, date_only = _entered_or_received(referral)
        for event in (last_called.get(referral.pk), referral.lost_assessment_at):
            if event and event > since:
                since, date_only = event, False
        items.append(WorklistItem(
            kind=NO_ASSESSMENT,
            label="Contacted: book the assessment" if contacted else "New referral: no assessment booked",
            since=since, since_is_date=date_only,
            patient_name=referral.patient.full_name, referral_id=referral.pk,
            action_url=reverse("booking:find_slots", args=[referral.pk]) + "?type=assessment",
            action_label="Book assessment",
            detail=f"Received {referral.received_on:%d %b %Y}; practitioner "
                   f"{referral.assigned_practitioner.get_full_name() if referral.assigned_practitioner else 'not assigned'}",
            key=f"{NO_ASSESSMENT}:referral:{referral.pk}", nhs_number=referral.patient.nhs_number,
            record_referral_id=referral.pk,
        ))
    return items


# Each section is a function (*, now) -> list[WorklistItem]; the worklist merges them oldest first.
WORKLIST_SECTIONS = [_task_items, _suggested_discharge_items, _unbooked_referral_items]


def _attach_claims(items: list[WorklistItem]) -> None:
    """Each item's open claim. A claim on an item that is done or gone is never looked at; one taken
    before the item last changed (a new call, a missed assessment) is not shown: the holder took
    something else."""
    by_key = {item.key: item for item in items}
    claims = WorklistClaim.objects.filter(item_key__in=list(by_key), released_at__isnull=True).select_related("taken_by")
    for claim in claims:
        item = by_key[claim.item_key]
        if claim.taken_at >= item.since:
            item.claim = claim


def admin_worklist(*, now=None) -> list[WorklistItem]:
    now = now or timezone.now()
    items = [item for section in WORKLIST_SECTIONS for item in section(now=now)]
    _attach_claims(items)
    return sorted(items, key=lambda item: (item.since, item.kind, item.referral_id or 0, item.task_id or 0))


def worklist_item(*, key: str, now=None) -> WorklistItem | None:
    """The item with this key if it is on the worklist now, with its claim."""
    return next((item for item in admin_worklist(now=now) if item.key == key), None)


def _search_matches(item: WorklistItem, query: str) -> bool:
    digits = query.replace(" ", "").replace("-", "")
    if digits.isascii() and digits.isdigit():
        # NHS numbers are read out and written in groups (943 476 5919): any spacing matches.
        return bool(item.nhs_number) and item.nhs_number.startswith(digits)
    name = item.patient_name.casefold()
    return all(word in name for word in query.casefold().split())


@dataclass
class Worklist:
    items: list[WorklistItem]
    # (kind, words, how many) for every kind, matching the search but not the kind filter.
    counts: list[tuple[str, str, int]]
    total: int
    kind: str = ""
    query: str = ""


def worklist_page(*, kind: str = "", query: str = "", now=None) -> Worklist:
    """The worklist filtered to one kind and/or a name or NHS number search, with counts per kind."""
    query = " ".join(query.split())[:WORKLIST_SEARCH_MAX_LENGTH]
    items = admin_worklist(now=now)
    if query:
        items = [item for item in items if _search_matches(item, query)]
    per_kind = defaultdict(int)
    for item in items:
        per_kind[item.kind] += 1
    counts = [(value, words, per_kind[value]) for value, words in WORKLIST_KINDS]
    shown = [item for item in items if item.kind == kind] if kind else items
    return Worklist(items=shown, counts=counts, total=len(items), kind=kind, query=query)
