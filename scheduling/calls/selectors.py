"""Reads for the call list. A fixed number of queries whatever the size of the caseload or the number
of past attempts (asserted by tests/test_call_list_queries.py)."""

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

from django.contrib.auth import get_user_model
from django.db.models import Case, Count, Exists, F, Func, Max, OuterRef, Q, Subquery, When, Window
from django.db.models.functions import Coalesce, RowNumber
from django.utils import timezone

from scheduling.audit import AuditEntry
from scheduling.booking.models import Appointment, BookingSettings
from scheduling.booking.rules import EARLIEST_OUTCOME_BEFORE_START
from scheduling.calls.buttons import CallButton, action_label
from scheduling.calls.models import ContactAttempt, ContactPolicy, OptInInvitation, WrongNumberMark
from scheduling.calls.policy import (
    CONTACT_OUTCOMES,
    PART_LABELS,
    POLICY_FAILED_OUTCOMES,
    UNANSWERED_OUTCOMES,
    ContactState,
    add_working_days,
    classify_contact,
    part_of_day,
    suggest_next_attempt,
    tries_before_dna,
)
from scheduling.caseload.models import CaseloadCover, ClinicalNote, PractitionerProfile, Referral
from scheduling.caseload.phones import display_phone
from scheduling.caseload.selectors import (
    WaitingReply,
    can_view_all_caseloads,
    can_view_clinical_notes,
    latest_replies_waiting_for_staff,
)
from scheduling.codes import (
    ASSESSMENT_STARTED_OUTCOMES,
    MISSED_OUTCOMES,
    AppointmentType,
    AttendanceOutcome,
    EndOfCare,
    TaskKind,
)
from scheduling.uktime import LONDON, lenient_local_datetime, local_day_bounds, short_local

Status = Referral.Status
Outcome = ContactAttempt.Outcome
# Referrals the contact policy works on: not yet (or no longer) reachable before treatment starts.
TO_REACH_STATUSES = [Status.AWAITING_CONTACT, Status.CONTACTED, Status.ASSESSED]


@dataclass
class AttemptInfo:
    pk: int
    attempted_at: datetime
    outcome: str
    appointment_id: int | None
    callback_at: datetime | None
    recorded_by_id: int | None
    recorded_at: datetime
    practitioner_id: int | None = None
    button: str = ""
    note: str = ""  # the clinical note written with it, for a viewer who may read notes

    @property
    def outcome_label(self) -> str:
        return Outcome(self.outcome).label

    @property
    def action_label(self) -> str:
        """What was clicked ("Patient wants to rearrange"), else the call outcome."""
        if self.button in CallButton.values:
            return action_label(self.button, on_appointment=self.appointment_id is not None)
        return self.outcome_label

    @property
    def was_successful(self) -> bool:
        return self.outcome in ContactAttempt.SUCCESSFUL_OUTCOMES


_ATTEMPT_FIELDS = [
    "pk", "attempted_at", "outcome", "appointment_id", "callback_at", "recorded_by_id", "recorded_at", "practitioner_id",
]


def _add_notes(attempts, viewer) -> None:
    """Put on each attempt the clinical note written with it (its latest version), for a viewer who may read
    clinical notes (never admin staff). One query for the whole list."""
    attempts = [a for a in attempts if a is not None]
    if not attempts or viewer is None or not can_view_clinical_notes(viewer):
        return
    texts = dict(
        ClinicalNote.objects.filter(contact_attempt_id__in={a.pk for a in attempts})
        .order_by("written_at", "id")
        .values_list("contact_attempt_id", "text")
    )
    for attempt in attempts:
        attempt.note = texts.get(attempt.pk, "")


def number_marked_wrong(patient) -> bool:
    """A call found this patient's numbers (as they still are) wrong or not in service."""
    return WrongNumberMark.objects.in_force().filter(patient_id=patient.pk).exists()


def numbers_were_marked_wrong(*, patient, mobile_phone: str, other_phone: str) -> bool:
    """A call found these numbers (the patient's before a correction) wrong, and that call still counts."""
    return WrongNumberMark.objects.filter(
        patient_id=patient.pk, attempt__undo__isnull=True, mobile_phone=mobile_phone, other_phone=other_phone
    ).exists()


def patients_with_wrong_numbers(patient_ids) -> set[int]:
    return set(WrongNumberMark.objects.in_force().filter(patient_id__in=patient_ids).values_list("patient_id", flat=True))


def _latest_attempt_pk(outer: str, *, field: str):
    """The latest effective attempt (by when it was made) on the row `outer` names, as a subquery."""
    return Subquery(
        ContactAttempt.objects.effective()
        .filter(**{field: OuterRef(outer)})
        .order_by("-attempted_at", "-id")
        .values("pk")[:1]
    )


def _count(attempts):
    """How many of these attempts (correlated through OuterRef), as a subquery: 0 when none."""
    return Coalesce(
        # COUNT as a plain function (not an aggregate): no GROUP BY, one row whatever matches.
        Subquery(attempts.order_by().annotate(n=Func(F("pk"), function="COUNT")).values("n")),
        0,
    )


def _attempts_by_pk(pks, *, key: str) -> dict:
    """These attempts (with the call-list button that recorded each), by `key`. One query."""
    found = {}
    if not pks:
        return found
    for row in ContactAttempt.objects.filter(pk__in=pks).values_list(*_ATTEMPT_FIELDS, "effect__button", key):
        info = AttemptInfo(*row[:-2])
        info.button = row[-2] or ""
        found[row[-1]] = info
    return found


@dataclass
class Undoable:
    attempt_pk: int
    label: str
    until: datetime


def _undoable(last: AttemptInfo | None, *, viewer, now, policy) -> Undoable | None:
    if last is None or viewer is None or last.recorded_by_id != viewer.pk:
        return None
    until = last.recorded_at + timedelta(minutes=policy.undo_minutes)
    if now > until:
        return None
    return Undoable(attempt_pk=last.pk, label=last.action_label, until=until)


@dataclass
class BookedCall:
    appointment: Appointment
    referral: Referral
    age: int
    session_label: str
    attempts_for_appointment: int
    attempts_for_referral: int
    unanswered_tries: int
    tries_before_dna: int
    confirmed_by_sms: bool
    rearrange_requested: bool
    state: str  # upcoming, now, past (no outcome yet), done (has an outcome)
    last_attempt: AttemptInfo | None
    undo: Undoable | None
    number_wrong: bool = False
    latest_reply: WaitingReply | None = None  # the patient's latest text still waiting for staff
    self_service: str = ""  # what the patient last did on the self-service page about this call, in words

    kind = "booked"

    @property
    def sort_at(self) -> datetime:
        return self.appointment.start

    @property
    def patient(self):
        return self.referral.patient

    @property
    def row_id(self) -> str:
        return f"appointment-{self.appointment.pk}"

    @property
    def state_label(self) -> str:
        if self.state == "done":
            return f"Done: {self.appointment.get_outcome_display()}"
        return {"upcoming": "Upcoming", "now": "Due now", "past": "Past: no outcome recorded"}[self.state]

    @property
    def is_open(self) -> bool:
        return self.state != "done"


@dataclass
class PersonToReach:
    referral: Referral
    age: int
    due_at: datetime
    reason: str
    next_step: str
    failed_attempts: int
    max_attempts: int
    attempts_for_referral: int
    suggested_part: str = ""
    invitation: OptInInvitation | None = None
    suggest_discharge: bool = False
    suggested_end_code: str = ""
    last_attempt: AttemptInfo | None = None
    undo: Undoable | None = None
    spoken_to: bool = False
    due_now: bool = False
    invitation_needed: bool = False
    book_url: str = ""
    failed_parts: list = field(default_factory=list)
    extra_failed: int = 0  # failed calls after the policy's attempts were used up (not counted against it)
    number_wrong: bool = False
    callback: AttemptInfo | None = None
    callback_on_timed_list: bool = False  # today's call-back row (with the timed calls) carries the buttons
    latest_reply: WaitingReply | None = None

    kind = "reach"

    @property
    def callback_row_id(self) -> str:
        return f"callback-{self.callback.pk}" if self.callback else ""

    @property
    def patient(self):
        return self.referral.patient

    @property
    def row_id(self) -> str:
        return f"referral-{self.referral.pk}"

    @property
    def sms_possible(self) -> bool:
        return self.referral.patient.can_receive_sms

    @property
    def suggested_end_label(self) -> str:
        return EndOfCare(self.suggested_end_code).label if self.suggested_end_code else ""

    @property
    def is_open(self) -> bool:
        return not self.spoken_to

    @property
    def offers_booking(self) -> bool:
        """Just got through to someone who still needs an assessment booked."""
        return bool(
            self.spoken_to
            and self.last_attempt
            and self.last_attempt.outcome == Outcome.ANSWERED
            and self.referral.status in (Status.AWAITING_CONTACT, Status.CONTACTED)
        )


@dataclass
class CallBack:
    """A call back the patient asked for, on the list of whoever took that call, at the time asked for."""

    request: AttemptInfo
    referral: Referral
    appointment: Appointment | None
    age: int
    state: str  # upcoming, now, past (not called back), done (a call was logged after the request)
    answer: AttemptInfo | None
    undo: Undoable | None
    number_wrong: bool = False
    latest_reply: WaitingReply | None = None

    kind = "callback"

    @property
    def patient(self):
        return self.referral.patient

    @property
    def row_id(self) -> str:
        return f"callback-{self.request.pk}"

    @property
    def sort_at(self) -> datetime:
        return self.request.callback_at

    @property
    def last_attempt(self) -> AttemptInfo | None:
        return self.answer

    @property
    def state_label(self) -> str:
        if self.state == "done":
            return f"Done: {self.answer.action_label}"
        return {"upcoming": "Upcoming", "now": "Due now", "past": "Past: not called back"}[self.state]

    @property
    def is_open(self) -> bool:
        return self.state != "done"


@dataclass
class CallList:
    practitioner: object
    day: object
    now: datetime
    booked: list
    to_reach: list
    policy: ContactPolicy
    callbacks: list = field(default_factory=list)
    # People still to reach come a page at a time (those due now first): a PWP works a few dozen calls a
    # morning, and a list of hundreds costs every page load. `to_reach` is the page shown.
    to_reach_total: int = 0
    to_reach_due_now: int = 0
    reach_page: int = 1
    reach_pages: int = 1
    reach_per_page: int = 25

    @property
    def reach_first(self) -> int:
        """Position (from 1) of the first person on this page."""
        return (self.reach_page - 1) * self.reach_per_page + 1 if self.to_reach else 0

    @property
    def reach_last(self) -> int:
        return self.reach_first + len(self.to_reach) - 1 if self.to_reach else 0

    @property
    def reach_previous_page(self) -> int | None:
        return self.reach_page - 1 if self.reach_page > 1 else None

    @property
    def reach_next_page(self) -> int | None:
        return self.reach_page + 1 if self.reach_page < self.reach_pages else None

    @property
    def timed(self) -> list:
        """Booked sessions and call-backs together, in time order."""
        return sorted([*self.booked, *self.callbacks], key=lambda row: (row.sort_at, row.kind, row.row_id))


def _session_label(appointment: Appointment, total: int) -> str:
    if appointment.appointment_type == AppointmentType.ASSESSMENT:
        return "Initial assessment"
    if appointment.appointment_type == AppointmentType.REVIEW:
        return "Review" + (f" (session {appointment.session_number})" if appointment.session_number else "")
    if appointment.session_number:
        return f"Session {appointment.session_number} of {max(total, appointment.session_number)}"
    return "Treatment session"


_SELF_SERVICE_WORDS = {
    "confirmed": "Confirmed on the self-service page",
    "booking": "Moved to this time by the patient (self-service page)",
}
# The patient took an offered earlier time on the page: the offer's "accepted" entry, linked to the booking.
_TOOK_OFFER_WORDS = "Took this offered time on the self-service page"


def _self_service_words(appointment_ids) -> dict[int, str]:
    """The latest thing the patient did on the self-service page about each appointment (one query)."""
    words = {}
    took_offer = Q(subject_type=AuditEntry.Subject.OFFER_INVITATION, field="status", new_value="accepted")
    for appointment_id, subject_type, field in (
        AuditEntry.objects.filter(Q(field__in=list(_SELF_SERVICE_WORDS)) | took_offer,
                                  appointment_id__in=appointment_ids, via=AuditEntry.Via.SELF_SERVICE)
        .order_by("at", "id").values_list("appointment_id", "subject_type", "field")
    ):
        if subject_type == AuditEntry.Subject.OFFER_INVITATION:
            words[appointment_id] = _TOOK_OFFER_WORDS
        elif field == "booking" and words.get(appointment_id) == _TOOK_OFFER_WORDS:
            continue  # the same booking (its entry may be stamped a moment after the offer's)
        elif field in _SELF_SERVICE_WORDS:
            words[appointment_id] = _SELF_SERVICE_WORDS[field]
    return words


def _booked_appointments(*, practitioner, day, appointment_ids) -> list[Appointment]:
    """The day's live appointments (or those asked for), each with its attempts summarised in SQL: how many, how
    many unanswered tries within the slot, the latest; how many on the whole referral. Not every attempt is loaded."""
    if appointment_ids is not None:
        appointments = Appointment.objects.filter(pk__in=appointment_ids)
    else:
        start, end = local_day_bounds(day)
        appointments = Appointment.objects.not_cancelled().filter(
            practitioner=practitioner, start__gte=start, start__lt=end
        )
    effective = ContactAttempt.objects.effective()
    return list(
        appointments.select_related("referral__patient")
        .annotate(
            last_attempt_pk=_latest_attempt_pk("pk", field="appointment_id"),
            attempts_n=_count(effective.filter(appointment_id=OuterRef("pk"))),
            in_slot_n=_count(
                effective.filter(
                    appointment_id=OuterRef("pk"),
                    outcome__in=sorted(UNANSWERED_OUTCOMES),
                    attempted_at__gte=OuterRef("start") - EARLIEST_OUTCOME_BEFORE_START,
                )
            ),
            referral_attempts_n=_count(effective.filter(referral_id=OuterRef("referral_id"))),
        )
        .order_by("start", "id")
    )


def _course_lengths(referral_ids) -> dict[int, int]:
    """Each referral's course length for "Session n of m": the assessment and BookingSettings' treatment
    sessions, unless more are booked."""
    course_sessions = 1 + BookingSettings.current().course_treatment_sessions
    booked = dict(
        Appointment.objects.not_cancelled()
        .filter(referral_id__in=referral_ids)
        .exclude(appointment_type=AppointmentType.REVIEW)
        .order_by()
        .values("referral_id")
        .annotate(m=Max("session_number"))
        .values_list("referral_id", "m")
    )
    return {referral_id: max(booked.get(referral_id) or 0, course_sessions) for referral_id in referral_ids}


def _booked_state(appointment: Appointment, now) -> str:
    if appointment.outcome != AttendanceOutcome.NOT_APPLICABLE:
        return "done"
    if now > appointment.end:
        return "past"
    if now >= appointment.start - EARLIEST_OUTCOME_BEFORE_START:
        return "now"
    return "upcoming"


def booked_calls(*, practitioner, day, viewer=None, now=None, policy=None, appointment_ids=None) -> list[BookedCall]:
    now = now or timezone.now()
    policy = policy or ContactPolicy.current()
    appointments = _booked_appointments(practitioner=practitioner, day=day, appointment_ids=appointment_ids)
    if not appointments:
        return []
    referral_ids = {a.referral_id for a in appointments}
    patient_ids = {a.referral.patient_id for a in appointments}
    last_by_appointment = _attempts_by_pk(
        {a.last_attempt_pk for a in appointments if a.last_attempt_pk is not None}, key="appointment_id"
    )
    # Open rearrange requests, read through the appointment (the worklist, above, owns the tasks).
    rearrange = set(
        Appointment.objects.filter(
            pk__in=[a.pk for a in appointments],
            admin_tasks__kind=TaskKind.REARRANGE_REQUEST,
            admin_tasks__resolved_at__isnull=True,
        ).values_list("pk", flat=True)
    )
    course_lengths = _course_lengths(referral_ids)
    tries = dict(
        PractitionerProfile.objects.filter(user_id__in={a.practitioner_id for a in appointments}).values_list(
            "user_id", "tries_before_dna"
        )
    )
    # Latest attempt on each referral (any appointment or none), to offer undo only on the latest.
    latest = _latest_attempts(referral_ids, since=now - timedelta(minutes=policy.undo_minutes))
    wrong = patients_with_wrong_numbers(patient_ids)
    replies = latest_replies_waiting_for_staff(patient_ids)
    self_service = _self_service_words([a.pk for a in appointments])
    rows = []
    for a in appointments:
        last = last_by_appointment.get(a.pk)
        latest_on_referral = latest.get(a.referral_id)
        undo = None
        if last is not None and latest_on_referral is not None and latest_on_referral.pk == last.pk:
            undo = _undoable(latest_on_referral, viewer=viewer, now=now, policy=policy)
        rows.append(
            BookedCall(
                appointment=a,
                referral=a.referral,
                age=a.referral.patient.age_on(timezone.localdate(a.start)),
                session_label=_session_label(a, course_lengths[a.referral_id]),
                attempts_for_appointment=a.attempts_n,
                attempts_for_referral=a.referral_attempts_n,
                unanswered_tries=a.in_slot_n,
                tries_before_dna=tries_before_dna(tries.get(a.practitioner_id)),
                confirmed_by_sms=a.confirmed_at is not None,
                rearrange_requested=a.pk in rearrange,
                state=_booked_state(a, now),
                last_attempt=last,
                undo=undo,
                number_wrong=a.referral.patient_id in wrong,
                latest_reply=replies.get(a.referral.patient_id),
                self_service=self_service.get(a.pk, ""),
            )
        )
    _add_notes([row.last_attempt for row in rows], viewer)
    return rows


def callbacks_on(*, practitioner, day, viewer=None, now=None, policy=None, request_ids=None) -> list[CallBack]:
    """Call backs asked for on `day` on the calls `practitioner` took (they made the promise), in time order.
    One is done once any call is logged on the referral after it. A fixed number of queries."""
    now = now or timezone.now()
    policy = policy or ContactPolicy.current()
    requests = ContactAttempt.objects.effective().filter(outcome=Outcome.CALLBACK_REQUESTED)
    if request_ids is not None:
        requests = requests.filter(pk__in=request_ids)
    else:
        start, end = local_day_bounds(day)
        requests = requests.filter(practitioner=practitioner, callback_at__gte=start, callback_at__lt=end).exclude(
            referral__status=Status.DISCHARGED
        )
    requests = list(
        requests.select_related("referral__patient", "appointment").order_by("callback_at", "id")
    )
    if not requests:
        return []
    referral_ids = {r.referral_id for r in requests}
    later = {}
    for row in (
        ContactAttempt.objects.effective()
        .filter(referral_id__in=referral_ids, attempted_at__gte=min(r.attempted_at for r in requests))
        .order_by("attempted_at", "id")
        .values_list(*_ATTEMPT_FIELDS, "effect__button", "referral_id")
    ):
        info = AttemptInfo(*row[:-2])
        info.button = row[-2] or ""
        later.setdefault(row[-1], []).append(info)
    latest = _latest_attempts(referral_ids, since=now - timedelta(minutes=policy.undo_minutes))
    wrong = patients_with_wrong_numbers({r.referral.patient_id for r in requests})
    replies = latest_replies_waiting_for_staff({r.referral.patient_id for r in requests})
    today = timezone.localdate(now)
    rows = []
    for request in requests:
        info = AttemptInfo(*[getattr(request, f) for f in _ATTEMPT_FIELDS])
        answer = next(
            (
                t for t in later.get(request.referral_id, [])
                if (t.attempted_at, t.pk) > (request.attempted_at, request.pk)
            ),
            None,
        )
        if answer is not None:
            state = "done"
        elif timezone.localdate(request.callback_at) < today:
            state = "past"
        elif now >= request.callback_at - EARLIEST_OUTCOME_BEFORE_START:
            state = "now"
        else:
            state = "upcoming"
        undo = None
        if answer is not None and latest.get(request.referral_id) and latest[request.referral_id].pk == answer.pk:
            undo = _undoable(latest[request.referral_id], viewer=viewer, now=now, policy=policy)
        rows.append(
            CallBack(
                request=info,
                referral=request.referral,
                appointment=request.appointment,
                age=request.referral.patient.age_on(timezone.localdate(request.callback_at)),
                state=state,
                answer=answer,
                undo=undo,
                number_wrong=request.referral.patient_id in wrong,
                latest_reply=replies.get(request.referral.patient_id),
            )
        )
    _add_notes([row.answer for row in rows], viewer)
    return rows


def _latest_attempts(referral_ids, *, since) -> dict:
    """The latest effective attempt per referral, among those recorded since `since` (undo candidates),
    with the call-list button that recorded it (if any)."""
    latest = {}
    qs = ContactAttempt.objects.effective().filter(referral_id__in=referral_ids, recorded_at__gte=since)
    later = (
        ContactAttempt.objects.effective()
        .filter(referral_id=OuterRef("referral_id"))
        .filter(
            Q(attempted_at__gt=OuterRef("attempted_at"))
            | Q(attempted_at=OuterRef("attempted_at"), pk__gt=OuterRef("pk"))
        )
    )
    rows = (
        qs.exclude(Exists(later))
        .order_by("attempted_at", "id")
        .values_list(*_ATTEMPT_FIELDS, "effect__button", "referral_id")
    )
    for row in rows:
        info = AttemptInfo(*row[:-2])
        info.button = row[-2] or ""
        latest[row[-1]] = info
    return latest


def _end_code(*, status: str, assessment_started: bool) -> str:
    if assessment_started or status == Status.ASSESSED:
        return EndOfCare.INCOMPLETE_ASSESSMENT.value
    return EndOfCare.NOT_ASSESSED.value


def _assessment_started():
    return Exists(
        Appointment.objects.filter(
            referral_id=OuterRef("pk"),
            appointment_type=AppointmentType.ASSESSMENT,
            outcome__in=sorted(ASSESSMENT_STARTED_OUTCOMES),
        )
    )


def _nothing_pending(referral: str = "pk"):
    """No appointment still to happen on the referral (`referral`: the outer field holding its id)."""
    return ~Exists(Appointment.objects.filter(referral_id=OuterRef(referral), outcome=AttendanceOutcome.NOT_APPLICABLE))


def _reach_candidates(*, practitioner, referral_ids):
    """The referrals the list looks at (as a queryset, for the reads that follow) and, loaded, with their patient,
    whether an assessment was started and when an appointment was last missed."""
    if referral_ids is not None:
        chosen = Referral.objects.filter(pk__in=referral_ids)
    else:
        chosen = Referral.objects.filter(assigned_practitioner=practitioner, status__in=TO_REACH_STATUSES).filter(
            _nothing_pending()
        )
    referrals = list(
        chosen.select_related("patient").annotate(
            assessment_started=_assessment_started(),
            last_missed_at=Subquery(
                Appointment.objects.filter(referral_id=OuterRef("pk"), outcome__in=sorted(MISSED_OUTCOMES))
                .order_by("-start")
                .values("start")[:1]
            ),
        )
    )
    return chosen, referrals


@dataclass
class _AttemptSummary:
    """What the list reads of one referral's attempts: how many, when the last contact was, the latest attempt,
    and the rows the contact policy looks at (the failed calls since that contact, and the latest)."""

    total: int = 0
    last_contact_at: datetime | None = None
    latest: AttemptInfo | None = None
    rows: list = field(default_factory=list)


def _attempt_summaries(referrals) -> dict[int, _AttemptSummary]:
    """Each referral's attempts summarised in SQL, in one pass: how many, when the last contact was (window
    aggregates over the referral's attempts), and only the rows needed: its latest attempt and the failed calls
    since that contact (the policy counts those; nothing older matters). `referrals`: a queryset of their ids."""
    contact_at = Case(When(outcome__in=sorted(CONTACT_OUTCOMES), then=F("attempted_at")))
    per_referral = [F("referral_id")]
    needed = (
        ContactAttempt.objects.effective()
        .filter(referral_id__in=referrals)
        .annotate(
            last_success_at=Window(Max(contact_at), partition_by=per_referral),
            referral_total=Window(Count("id"), partition_by=per_referral),
            newest_first=Window(RowNumber(), partition_by=per_referral, order_by=[F("attempted_at").desc(), F("id").desc()]),
        )
        .filter(
            Q(newest_first=1)
            | Q(
                Q(last_success_at__isnull=True) | Q(attempted_at__gte=F("last_success_at")),
                appointment__isnull=True,
                outcome__in=sorted(POLICY_FAILED_OUTCOMES),
            )
        )
        .order_by("attempted_at", "id")
        .values_list(*_ATTEMPT_FIELDS, "effect__button", "referral_id", "referral_total", "last_success_at", "newest_first")
    )
    summaries = {}
    for *fields, button, referral_id, total, last_contact_at, newest_first in needed:
        summary = summaries.setdefault(referral_id, _AttemptSummary(total=total, last_contact_at=last_contact_at))
        info = AttemptInfo(*fields)
        if newest_first == 1:
            info.button = button or ""
            summary.latest = info
        summary.rows.append(info)
    return summaries


def _latest_invitations(referrals) -> dict[int, OptInInvitation]:
    invitations = {}
    for invitation in OptInInvitation.objects.active().filter(referral_id__in=referrals).order_by("due_at", "id"):
        invitations[invitation.referral_id] = invitation  # the latest wins
    return invitations


@dataclass(frozen=True)
class _ReachContext:
    """What every row of people_to_reach is drawn with."""

    viewer: object
    now: datetime
    today: date
    policy: ContactPolicy
    practitioner: object
    listed: bool  # particular referrals were asked for: each gets its row, whatever its state
    include_spoken: bool
    wrong: set
    replies: dict


def people_to_reach(
    *, practitioner, viewer=None, now=None, policy=None, referral_ids=None, include_spoken=False, with_notes=True
) -> list[PersonToReach]:
    """Referrals awaiting first contact, or whose last attempts failed, ordered by when the next attempt is due.
    A fixed number of queries; with_notes=False leaves out the notes on the last calls (the call list reads
    them for the page it shows only)."""
    now = now or timezone.now()
    policy = policy or ContactPolicy.current()
    chosen, referrals = _reach_candidates(practitioner=practitioner, referral_ids=referral_ids)
    if not referrals:
        return []
    # The reads below name the referrals by a subquery rather than by a list of ids: hundreds of ids would
    # be sent (and parsed) in every query.
    ids = chosen.values("pk")
    summaries = _attempt_summaries(ids)
    invitations = _latest_invitations(ids)
    context = _ReachContext(
        viewer=viewer, now=now, today=timezone.localdate(now), policy=policy, practitioner=practitioner,
        listed=referral_ids is not None, include_spoken=include_spoken,
        wrong=patients_with_wrong_numbers(chosen.values("patient_id")),
        replies=latest_replies_waiting_for_staff({r.patient_id for r in referrals}),
    )
    rows = []
    for referral in referrals:
        summary = summaries.get(referral.pk) or _AttemptSummary()
        state = classify_contact(
            summary.rows, policy=policy, invitation=invitations.get(referral.pk), last_contact_at=summary.last_contact_at
        )
        row = _reach_row(referral, summary=summary, state=state, context=context)
        if row is not None:
            rows.append(row)
    for row in rows:
        # The last attempt is the latest on the referral: the only one that can be undone.
        row.undo = _undoable(row.last_attempt, viewer=viewer, now=now, policy=policy)
        row.due_now = row.due_at <= now
    rows.sort(key=lambda r: (r.due_at, r.referral.received_on, r.referral.pk))
    if with_notes:
        _add_notes([row.last_attempt for row in rows], viewer)
    return rows


def _reach_row(referral, *, summary: _AttemptSummary, state: ContactState, context: _ReachContext) -> PersonToReach | None:
    """The referral's row, or None when there is nobody to ring: past first contact with no failed calls, call-back,
    invitation or missed appointment to follow up, or spoken to (unless spoken rows are asked for)."""
    last = summary.latest
    callback = last if last is not None and last.outcome == Outcome.CALLBACK_REQUESTED else None
    missed = referral.last_missed_at is not None and (last is None or last.attempted_at < referral.last_missed_at)
    spoken = not missed and last is not None and last.outcome in (Outcome.ANSWERED, Outcome.DECLINED)
    # Whoever just got through keeps the row (with its undo and next step) until the undo window closes.
    just_spoken = spoken and _undoable(last, viewer=context.viewer, now=context.now, policy=context.policy) is not None
    if not context.listed and not just_spoken:
        if referral.status != Status.AWAITING_CONTACT and not (state.failed or callback or state.invitation or missed):
            return None
        if spoken and not context.include_spoken:
            return None
    patient = referral.patient
    row = PersonToReach(
        referral=referral,
        age=patient.age_on(context.today),
        due_at=context.now,
        reason="",
        next_step="",
        failed_attempts=state.counted,
        extra_failed=state.extra_failed,
        max_attempts=context.policy.max_attempts,
        attempts_for_referral=summary.total,
        invitation=state.invitation,
        last_attempt=last,
        spoken_to=spoken,
        failed_parts=[p for p in (part_of_day(a.attempted_at) for a in state.failed) if p],
        number_wrong=patient.pk in context.wrong,
        callback=callback,
        latest_reply=context.replies.get(patient.pk),
    )
    if spoken:
        _describe_spoken(row)
    elif state.invitation is not None:
        _describe_invitation(row, state=state, context=context)
    elif callback is not None:
        _describe_callback(row, context=context)
    elif state.exhausted:
        row.reason = f"All {state.max_attempts} policy attempts failed."
        row.next_step = (
            "Record the opt-in invitation (texted at once if the patient can be texted). "
            "Another failed call records it too."
        )
        row.invitation_needed = True
    else:
        _describe_next_attempt(row, state=state, missed=missed, context=context)
    return row


def _describe_spoken(row: PersonToReach) -> None:
    referral = row.referral
    row.due_at = row.last_attempt.attempted_at
    if row.last_attempt.outcome == Outcome.DECLINED:
        row.suggested_end_code = _declined_end_code(status=referral.status, assessment_started=referral.assessment_started)
        row.reason = "Spoke to the patient: they declined."
        row.next_step = (
            f"On the admin worklist as “discharge: declined” (suggested end code {row.suggested_end_code}, "
            f"{EndOfCare(row.suggested_end_code).label.lower()})."
        )
    else:
        row.reason = "Spoke to the patient."
        row.next_step = (
            "Book the initial assessment."
            if referral.status in (Status.AWAITING_CONTACT, Status.CONTACTED)
            else "Book the next session."
        )


def _describe_invitation(row: PersonToReach, *, state: ContactState, context: _ReachContext) -> None:
    invitation = state.invitation
    if state.unable_to_contact(context.today):
        row.suggest_discharge = True
        row.suggested_end_code = _end_code(status=row.referral.status, assessment_started=row.referral.assessment_started)
        row.due_at = lenient_local_datetime(invitation.deadline + timedelta(days=1), time(0))
        row.reason = f"{len(state.failed)} attempts failed and no reply to the opt-in invitation by {invitation.deadline:%d %b %Y}."
        row.next_step = f"Suggest discharge: unable to contact (NHS end code {row.suggested_end_code})."
    else:
        row.due_at = lenient_local_datetime(invitation.deadline, time(23, 59))
        row.reason = f"All {state.max_attempts} policy attempts failed; {_invitation_text(invitation, row)}."
        row.next_step = f"Wait for the patient to get in touch by {invitation.deadline:%a %d %b %Y}."


def _describe_callback(row: PersonToReach, *, context: _ReachContext) -> None:
    # A call-back request is a successful contact: the policy's count starts again, and the call at the time
    # asked for is the next attempt (on the timed calls of the day, for whoever took it).
    callback = row.callback
    row.due_at = callback.callback_at
    row.reason = f"Call back requested for {short_local(callback.callback_at)}."
    callback_day = timezone.localdate(callback.callback_at)
    row.callback_on_timed_list = callback_day == context.today and callback.practitioner_id == practitioner_id_of(
        context.practitioner
    )
    if row.callback_on_timed_list:
        row.next_step = f"Ring back at {callback.callback_at.astimezone(LONDON):%H:%M}: listed with today's timed calls."
    elif callback_day < context.today:
        row.next_step = "Not called back yet: ring back now."
    else:
        row.next_step = "Ring back at the time they asked for."


def _describe_next_attempt(row: PersonToReach, *, state: ContactState, missed: bool, context: _ReachContext) -> None:
    referral, policy = row.referral, context.policy
    failed = state.failed
    if failed:
        earliest = add_working_days(timezone.localdate(failed[-1].attempted_at), policy.min_working_days_between)
        tried = ", ".join(PART_LABELS.get(p, p) for p in dict.fromkeys(row.failed_parts)) or "outside working hours"
        row.reason = f"{len(failed)} of {state.max_attempts} attempts failed (tried: {tried})."
    elif missed:
        earliest = context.today
        row.reason = f"Missed the appointment on {timezone.localtime(referral.last_missed_at):%d %b %Y}: needs reaching to rebook."
    else:
        earliest = context.today
        row.reason = f"Awaiting first contact since {referral.received_on:%d %b %Y}."
    patient = referral.patient
    suggested, part = suggest_next_attempt(
        earliest=earliest,
        now=context.now,
        failed_parts=row.failed_parts,
        preferred_days=patient.preferred_days,
        preferred_times=patient.preferred_times,
        vary_time_of_day=policy.vary_time_of_day,
    )
    row.due_at = suggested
    row.suggested_part = part
    row.next_step = f"Attempt {len(failed) + 1} of {state.max_attempts}: try {PART_LABELS.get(part, part)}, {short_local(suggested)}."


def practitioner_id_of(practitioner):
    return getattr(practitioner, "pk", practitioner)


def _invitation_text(invitation: OptInInvitation, row: PersonToReach) -> str:
    """When, and to which number, the opt-in invitation went (or why it could not)."""
    if invitation.sent_at and invitation.sms_to:
        return f"opt-in invitation texted to {display_phone(invitation.sms_to)} on {short_local(invitation.sent_at)}"
    if invitation.sent_at:
        return f"opt-in invitation texted on {short_local(invitation.sent_at)}"
    if invitation.sms_possible and invitation.sms_to and not row.number_wrong:
        return f"opt-in invitation due {short_local(invitation.due_at)}, to be texted to {display_phone(invitation.sms_to)}"
    why = "the number was marked wrong" if row.number_wrong else "no consent, opted out or no mobile"
    return f"opt-in invitation recorded {short_local(invitation.due_at)}, but no SMS can be sent ({why}): write or ring"


REACH_PAGE_SIZE = 25


def call_list(*, practitioner, day, viewer=None, now=None, reach_page: int = 1, reach_per_page: int = REACH_PAGE_SIZE) -> CallList:
    """The day's list. People still to reach (today only) are all ordered, then cut to page `reach_page`
    (a page past the end shows the last one); notes on their last calls are read for that page only."""
    now = now or timezone.now()
    policy = ContactPolicy.current()
    is_today = day == timezone.localdate(now)
    everyone = (
        people_to_reach(practitioner=practitioner, viewer=viewer, now=now, policy=policy, with_notes=False)
        if is_today
        else []
    )
    # Those to ring now first (in the order they fell due), then the rest: spoken to, or due later.
    everyone.sort(key=lambda row: not (row.due_now and row.is_open))
    pages = max(1, -(-len(everyone) // reach_per_page))
    page = min(max(1, reach_page), pages)
    shown = everyone[(page - 1) * reach_per_page : page * reach_per_page]
    _add_notes([row.last_attempt for row in shown], viewer)
    return CallList(
        practitioner=practitioner,
        day=day,
        now=now,
        booked=booked_calls(practitioner=practitioner, day=day, viewer=viewer, now=now, policy=policy),
        to_reach=shown,
        policy=policy,
        callbacks=callbacks_on(practitioner=practitioner, day=day, viewer=viewer, now=now, policy=policy),
        to_reach_total=len(everyone),
        to_reach_due_now=sum(1 for row in everyone if row.due_now and row.is_open),
        reach_page=page,
        reach_pages=pages,
        reach_per_page=reach_per_page,
    )


def _declined_end_code(*, status: str, assessment_started: bool) -> str:
    if status == Status.IN_TREATMENT:
        return EndOfCare.ENDED_BY_PATIENT.value
    if status == Status.ASSESSED:
        return EndOfCare.DECLINED_TREATMENT.value
    return _end_code(status=status, assessment_started=assessment_started)


def _declined_referral_ids() -> set[int]:
    """Open referrals whose latest call was "patient declined"."""
    latest_outcome = Subquery(
        ContactAttempt.objects.effective()
        .filter(referral_id=OuterRef("pk"))
        .order_by("-attempted_at", "-id")
        .values("outcome")[:1]
    )
    return set(
        Referral.objects.filter(status__in=Referral.OPEN_STATUSES)
        .annotate(latest_outcome=latest_outcome)
        .filter(latest_outcome=Outcome.DECLINED)
        .values_list("pk", flat=True)
    )


def referrals_suggested_for_discharge(*, now=None, include_declined: bool = False, policy=None) -> list[Referral]:
    """Open referrals the contact policy suggests discharging as "unable to contact": every attempt failed,
    the opt-in invitation's deadline has passed and nobody got through since. Each carries
    `suggested_end_code` (50 never assessed, 16 assessment started), `opt_in_invitation` and `discharge_reason`.

    With include_declined=True, also referrals whose latest call was "patient declined" (discharge_reason
    "Declined"; end code 50 before assessment, 14 after it, 48 during treatment; opt_in_invitation None)."""
    now = now or timezone.now()
    policy = policy or ContactPolicy.current()
    today = timezone.localdate(now)
    last_contact = (
        ContactAttempt.objects.effective()
        .filter(referral_id=OuterRef("referral_id"), outcome__in=sorted(CONTACT_OUTCOMES))
        .order_by("-attempted_at")
        .values("attempted_at")[:1]
    )
    # Invitations whose deadline has passed, on referrals still to reach with nothing booked; the contact policy
    # decides which still stand.
    invitations = (
        OptInInvitation.objects.active()
        .filter(deadline__lt=today, referral__status__in=TO_REACH_STATUSES)
        .filter(_nothing_pending("referral_id"))
        .annotate(last_contact_at=Subquery(last_contact))
        .order_by("deadline", "id")
    )
    latest = {}
    for invitation in invitations:
        state = classify_contact((), policy=policy, invitation=invitation, last_contact_at=invitation.last_contact_at)
        if state.unable_to_contact(today):
            latest[invitation.referral_id] = invitation
    declined_ids = _declined_referral_ids() if include_declined else set()
    referrals = (
        Referral.objects.filter(pk__in=set(latest) | declined_ids)
        .select_related("patient", "assigned_practitioner")
        .annotate(assessment_started=_assessment_started())
        .order_by("received_on", "id")
    )
    result = []
    for referral in referrals:
        if referral.pk in declined_ids:
            referral.opt_in_invitation = None
            referral.suggested_end_code = _declined_end_code(
                status=referral.status, assessment_started=referral.assessment_started
            )
            referral.discharge_reason = "Declined"
        else:
            referral.opt_in_invitation = latest[referral.pk]
            referral.suggested_end_code = _end_code(
                status=referral.status, assessment_started=referral.assessment_started
            )
            referral.discharge_reason = "Unable to contact"
        result.append(referral)
    return result


def practitioners_viewable_by(user, *, on_date=None):
    """Whose call lists `user` may open: everyone's for managers and admin staff; own and covered for PWPs."""
    users = get_user_model().objects.filter(practitioner__isnull=False, practitioner__is_active_clinician=True)
    if can_view_all_caseloads(user):
        return users.order_by("first_name", "last_name")
    on_date = on_date or timezone.localdate()
    covered = CaseloadCover.objects.filter(covering=user, starts_on__lte=on_date, ends_on__gte=on_date).values(
        "covered_id"
    )
    return get_user_model().objects.filter(Q(pk=user.pk) | Q(pk__in=covered)).order_by("first_name", "last_name")
