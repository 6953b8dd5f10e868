"""Capacity and slot-wastage figures. Every number is computed by the database (aggregates, grouped joins
and window functions; totals are sums of the groups it returns) and the same conditions select the rows
behind each figure, so any figure can be checked by hand. The definitions are written out in
docs/capacity-report.md (also the site's definitions page); keep the two in step."""

from __future__ import annotations

import dataclasses
import datetime
import statistics
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.db.models import (
    Case,
    Count,
    DateField,
    Exists,
    F,
    Func,
    IntegerField,
    OuterRef,
    Q,
    Subquery,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Coalesce, TruncDate, TruncWeek
from django.utils import timezone

from scheduling.audit import AuditEntry
from scheduling.booking.models import Appointment, BookingSettings
from scheduling.booking.rules import late_cancellation_q, short_notice_q, short_notice_service_cancellation_q
from scheduling.calls.models import ContactAttempt, ContactAttemptUndo
from scheduling.caseload.models import Referral, ServiceSettings
from scheduling.codes import ATTENDED_OUTCOMES, CANCELLED_OUTCOMES, MISSED_OUTCOMES, AppointmentType
from scheduling.offers.models import OfferedSlot, OfferInvitation
from scheduling.patient_links import PatientLink
from scheduling.uktime import LONDON, local_day_bounds

LOST_CAUSES = ("dna", "late_cancellation", "service_cancellation", "failed_calls")
APPOINTMENT_CAUSES = ("dna", "late_cancellation", "service_cancellation")
SIX_WEEKS_DAYS = 42
EIGHTEEN_WEEKS_DAYS = 126
LONGEST_HELD_LIMIT = 20
CONTACT_BUCKETS = ("0", "1", "2", "3", "4+")
_ATTENDED = sorted(ATTENDED_OUTCOMES)
_MISSED = sorted(MISSED_OUTCOMES)
_CANCELLED = sorted(CANCELLED_OUTCOMES)
_SUCCESSFUL_CALLS = sorted(ContactAttempt.SUCCESSFUL_OUTCOMES)


class DaysBetween(Func):
    """Whole days from `earlier` to `later` (both dates), as an integer, on PostgreSQL and SQLite."""

    output_field = IntegerField()
    arg_joiner = " - "
    template = "(%(expressions)s)"

    def __init__(self, later, earlier, **extra):
        super().__init__(later, earlier, **extra)

    def as_sqlite(self, compiler, connection, **extra):
        return self.as_sql(
            compiler, connection, template="CAST(julianday(%(expressions)s) AS INTEGER)", arg_joiner=") - julianday(", **extra
        )


def local_date(expression: str):
    """The UK date of a stored instant, in SQL."""
    return TruncDate(expression, tzinfo=LONDON)


@dataclass(frozen=True)
class ReportParams:
    """A period (local dates, both included) and the filters."""

    date_from: datetime.date
    date_to: datetime.date
    team_id: int | None = None
    practitioner_id: int | None = None
    source: str = ""
    appointment_type: str = ""
    settings: ServiceSettings | None = field(default=None, compare=False, hash=False)

    @property
    def start(self) -> datetime.datetime:
        return local_day_bounds(self.date_from)[0]

    @property
    def end(self) -> datetime.datetime:
        """Exclusive: local midnight after the last day."""
        return local_day_bounds(self.date_to)[1]

    @property
    def service_settings(self) -> ServiceSettings:
        return self.settings or ServiceSettings.current()

    def with_settings(self) -> ReportParams:
        return self if self.settings else _replace(self, settings=ServiceSettings.current())

    def narrowed(self, **changes) -> ReportParams:
        return _replace(self, **changes)

    def query_dict(self) -> dict:
        values = {"from": self.date_from.isoformat(), "to": self.date_to.isoformat()}
        if self.team_id:
            values["team"] = self.team_id
        if self.practitioner_id:
            values["practitioner"] = self.practitioner_id
        if self.source:
            values["source"] = self.source
        if self.appointment_type:
            values["type"] = self.appointment_type
        return values


def _replace(params: ReportParams, **changes) -> ReportParams:
    return dataclasses.replace(params, **changes)


# ---- conditions shared by the aggregates and by the row lists behind them ----------------------------------


def appointment_conditions(params: ReportParams) -> dict[str, Q]:
    """Short notice, late cancellations and short-notice service cancellations are booking's rules
    (booking.rules), the same the cancel page applies."""
    service_settings = params.service_settings
    short = short_notice_q(service_settings=service_settings)
    dna = Q(outcome__in=_MISSED)
    late = late_cancellation_q(service_settings=service_settings)
    service = short_notice_service_cancellation_q(service_settings=service_settings)
    return {
        "booked": ~Q(outcome__in=_CANCELLED) | short,
        "attended": Q(outcome__in=_ATTENDED),
        "dna": dna,
        "late_cancellation": late,
        "service_cancellation": service,
        "lost": dna | late | service,
    }


def _effective_attempts():
    """Attempts not undone, as NOT EXISTS (the planner estimates an anti-join well; ContactAttempt.effective()'s
    outer join with IS NULL it does not, and picks poor plans on a large table)."""
    return ContactAttempt.objects.exclude(Exists(ContactAttemptUndo.objects.filter(attempt=OuterRef("pk"))))


def failed_call_q() -> Q:
    return Q(appointment__isnull=True) & ~Q(outcome__in=_SUCCESSFUL_CALLS)


def filter_by_people(qs, params: ReportParams, *, practitioner: str = "practitioner", referral: str = "referral__"):
    """The practitioner, team and referral-source filters, on whichever field holds each."""
    if params.practitioner_id:
        qs = qs.filter(**{f"{practitioner}_id": params.practitioner_id})
    if params.team_id:
        qs = qs.filter(**{f"{practitioner}__practitioner__team_id": params.team_id})
    if params.source:
        qs = qs.filter(**{f"{referral}source": params.source})
    return qs


def appointments_in_period(params: ReportParams):
    qs = Appointment.objects.filter(start__gte=params.start, start__lt=params.end)
    qs = filter_by_people(qs, params)
    if params.appointment_type:
        qs = qs.filter(appointment_type=params.appointment_type)
    return qs


def failed_calls_in_period(params: ReportParams):
    """Unsuccessful, not undone attempts not made at a booked appointment. They belong to no appointment
    type, so an appointment-type filter leaves none."""
    if params.appointment_type:
        return ContactAttempt.objects.none()
    qs = _effective_attempts().filter(failed_call_q(), attempted_at__gte=params.start, attempted_at__lt=params.end)
    qs = filter_by_people(qs, params)
    return qs


def _minutes(condition: Q):
    return Coalesce(Sum("duration_minutes", filter=condition), 0)


def _appointment_aggregates(params: ReportParams) -> dict:
    conditions = appointment_conditions(params)
    aggregates = {}
    for name in ("booked", "attended", *APPOINTMENT_CAUSES):
        aggregates[f"{name}_minutes"] = _minutes(conditions[name])
        aggregates[f"{name}_count"] = Count("pk", filter=conditions[name])
    return aggregates


# ---- first events of a referral (the cohorts for pre-assessment and waits) ---------------------------------


def _attended_of_type(appointment_type: str):
    return Appointment.objects.filter(appointment_type=appointment_type, outcome__in=_ATTENDED)


def first_attended_in_period(params: ReportParams, appointment_type: str):
    """Attended appointments of a type starting in the period that are the referral's first attended one of it
    (NOT EXISTS an earlier one: the (referral, start) index answers it per candidate)."""
    same = _attended_of_type(appointment_type)
    earlier = same.filter(referral=OuterRef("referral")).filter(
        Q(start__lt=OuterRef("start")) | Q(start=OuterRef("start"), pk__lt=OuterRef("pk"))
    )
    qs = same.filter(start__gte=params.start, start__lt=params.end).exclude(Exists(earlier))
    qs = filter_by_people(qs, params)
    return qs.annotate(wait_days=DaysBetween(local_date("start"), F("referral__received_on")))


def first_contacts_in_period(params: ReportParams):
    """Each referral's first successful (not undone) call attempt, when it falls in the period."""
    successful = _effective_attempts().filter(outcome__in=_SUCCESSFUL_CALLS)
    earlier = successful.filter(referral=OuterRef("referral")).filter(
        Q(attempted_at__lt=OuterRef("attempted_at")) | Q(attempted_at=OuterRef("attempted_at"), pk__lt=OuterRef("pk"))
    )
    qs = successful.filter(attempted_at__gte=params.start, attempted_at__lt=params.end).exclude(Exists(earlier))
    qs = filter_by_people(qs, params)
    return qs.annotate(wait_days=DaysBetween(local_date("attempted_at"), F("referral__received_on")))


def _count_subquery(qs):
    return Coalesce(
        Subquery(qs.order_by().values("referral").annotate(n=Count("pk")).values("n")[:1], output_field=IntegerField()), 0
    )


def _lost_before(params: ReportParams, before, referral_ref: str):
    """A referral's lost minutes (all causes) before `before` (an outer field name or a datetime):
    appointment causes plus failed calls."""
    lost = appointment_conditions(params)["lost"]
    outer_start = OuterRef(before) if isinstance(before, str) else before
    appointment_minutes = Coalesce(
        Subquery(
            Appointment.objects.filter(lost, referral=OuterRef(referral_ref), start__lt=outer_start)
            .order_by()
            .values("referral")
            .annotate(m=Sum("duration_minutes"))
            .values("m")[:1],
            output_field=IntegerField(),
        ),
        0,
    )
    failed = _count_subquery(
        _effective_attempts().filter(failed_call_q(), referral=OuterRef(referral_ref), attempted_at__lt=outer_start)
    )
    return appointment_minutes + failed * Value(params.service_settings.failed_call_minutes)


def pre_assessment_rows(params: ReportParams):
    """Each referral whose first attended assessment is in the period, with contacts and lost minutes before it."""
    contacts = _count_subquery(
        _effective_attempts().filter(referral=OuterRef("referral"), attempted_at__lt=OuterRef("start"))
    )
    return first_attended_in_period(params, AppointmentType.ASSESSMENT).annotate(
        contacts_before=contacts, lost_before=_lost_before(params, "start", "referral")
    )


def contacts_bucket_q(bucket: str) -> Q:
    if bucket == "4+":
        return Q(contacts_before__gte=4)
    return Q(contacts_before=int(bucket))


# ---- one statement per cohort: computed once, then counted, summed and ranked ------------------------------


def _median(low, high, n):
    median = low if n % 2 else (low + high) / 2
    if isinstance(median, float) and median.is_integer():
        median = int(median)
    return median


def _summarise(ctes: list[tuple[str, str, list]], *, figures: dict[str, str] | None = None, ranked: tuple[str, ...] = ()) -> dict:
    """One statement over a cohort: `ctes` (name, SQL, parameters) are computed once each (materialised CTEs,
    on PostgreSQL and SQLite alike), the last one holding the cohort's rows; these are counted, summed
    (`figures`: name -> SQL aggregate over its columns) and ranked with ROW_NUMBER() for the median and 90th
    percentile of each column in `ranked` (median: mean of the two middle values when n is even; 90th
    percentile: nearest rank, the value at rank ceil(0.9 n))."""
    rows = ctes[-1][0]
    ranks = "".join(f", ROW_NUMBER() OVER (ORDER BY {column}) AS _r_{column}" for column in ranked)
    selects = [f"{sql} AS {name}" for name, sql in (figures or {}).items()]
    for column in ranked:
        selects += [
            f"MAX({column}) FILTER (WHERE _r_{column} = (_n + 1) / 2) AS {column}_low",
            f"MAX({column}) FILTER (WHERE _r_{column} = _n / 2 + 1) AS {column}_high",
            f"MAX({column}) FILTER (WHERE _r_{column} = (9 * _n + 9) / 10) AS {column}_p90",
        ]
    values = [value for _, _, cte_values in ctes for value in cte_values]
    sql = (
        "WITH " + ", ".join(f"{name} AS MATERIALIZED ({cte})" for name, cte, _ in ctes)
        + f", _ranked AS (SELECT {rows}.*, COUNT(*) OVER () AS _n{ranks} FROM {rows}) "
        + f"SELECT {', '.join(['COUNT(*) AS n', *selects])} FROM _ranked"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, values)
        row = dict(zip([c[0] for c in cursor.description], cursor.fetchone()))
    n = row["n"]
    summary = {"n": n, **{name: row[name] for name in figures or {}}}
    for column in ranked:
        if n:
            summary[f"{column}_median"] = _median(row[f"{column}_low"], row[f"{column}_high"], n)
            summary[f"{column}_p90"] = row[f"{column}_p90"]
        else:
            summary[f"{column}_median"] = summary[f"{column}_p90"] = None
    return summary


def cohort_summary(qs, *, figures: dict[str, str] | None = None, ranked: tuple[str, ...] = ()) -> dict:
    """_summarise over a queryset of values (the cohort, one row each)."""
    sql, values = qs.order_by().query.sql_with_params()
    return _summarise([("cohort", sql, list(values))], figures=figures, ranked=ranked)


def _first_in_period(base, field: str, params: ReportParams) -> list[tuple[str, str, list]]:
    """The cohort (as _summarise's CTEs, one `wait_days` row each) of referrals whose first row of `base` (by
    `field`) falls in the period: the period's rows grouped by referral in one pass (MIN of the local date),
    keeping the referrals with no row before the period (an
    index probe each, after grouping). Driven by the period's rows, so more history costs only those probes.
    The practitioner and team filters need to know who made the first one and are not applied here (see
    callers)."""
    rows = base.filter(**{f"{field}__gte": params.start, f"{field}__lt": params.end})
    if params.source:
        rows = rows.filter(referral__source=params.source)
    rows = rows.annotate(day=local_date(field)).values("referral_id", "day")
    earlier = base.filter(**{f"{field}__lt": params.start}).values("referral_id")
    rows_sql, rows_values = rows.order_by().query.sql_with_params()
    earlier_sql, earlier_values = earlier.order_by().query.sql_with_params()
    # The referral is joined after grouping (one row per referral, not per row of the period).
    referral = connection.ops.quote_name(Referral._meta.db_table)
    return [
        ("firsts", f"SELECT r.referral_id AS referral_id, MIN(r.day) AS first_day FROM ({rows_sql}) r GROUP BY r.referral_id", list(rows_values)),
        (
            "cohort",
            f"""SELECT {_days_between_sql("f.first_day", "ref.received_on")} AS wait_days
                FROM firsts f JOIN {referral} ref ON ref.id = f.referral_id
                WHERE NOT EXISTS (SELECT 1 FROM ({earlier_sql}) e WHERE e.referral_id = f.referral_id)""",
            list(earlier_values),
        ),
    ]


def _days_between_sql(later: str, earlier: str) -> str:
    """DaysBetween for two date columns in hand-composed SQL."""
    if connection.vendor == "sqlite":
        return f"CAST(julianday({later}) - julianday({earlier}) AS INTEGER)"
    return f"({later} - {earlier})"


def pre_assessment_figures(params: ReportParams) -> dict:
    """Contacts and losses before each referral's first attended assessment in the period, and the wait to
    it. The cohort is computed once; the attempts and the lost appointments before each assessment are each
    one grouped join with it (not a subquery per referral and figure); buckets, sum, median and 90th
    percentile come from the same statement."""
    cohort = first_attended_in_period(params, AppointmentType.ASSESSMENT).values("id", "referral_id", "start", "wait_days")
    # Only what happened before the period's end can precede an assessment in it.
    attempts = (
        _effective_attempts()
        .filter(attempted_at__lt=params.end)
        .annotate(failed=Case(When(failed_call_q(), then=Value(1)), default=Value(0), output_field=IntegerField()))
        .values("referral_id", "attempted_at", "failed")
    )
    lost = Appointment.objects.filter(appointment_conditions(params)["lost"], start__lt=params.end).values(
        "referral_id", "start", "duration_minutes"
    )
    ctes = []
    for name, qs in (("cohort", cohort), ("attempts_before", attempts), ("lost_before", lost)):
        sql, values = qs.order_by().query.sql_with_params()  # no model ordering inside a subquery
        ctes.append((name, sql, list(values)))
    cohort_sql, attempts_sql, lost_sql = (c[1] for c in ctes)
    ctes = [
        ctes[0],
        (
            "counted",
            f"""SELECT c.id AS id, COUNT(*) AS contacts_before, COUNT(*) FILTER (WHERE t.failed = 1) AS failed_before
                FROM cohort c JOIN ({attempts_sql}) t ON t.referral_id = c.referral_id AND t.attempted_at < c."start"
                GROUP BY c.id""",
            ctes[1][2],
        ),
        (
            "lost",
            f"""SELECT c.id AS id, SUM(l.duration_minutes) AS minutes
                FROM cohort c JOIN ({lost_sql}) l ON l.referral_id = c.referral_id AND l."start" < c."start"
                GROUP BY c.id""",
            ctes[2][2],
        ),
        (
            "pre",
            """SELECT c.id AS id, c.wait_days AS wait_days, COALESCE(n.contacts_before, 0) AS contacts_before,
                      COALESCE(lost.minutes, 0) + COALESCE(n.failed_before, 0) * %s AS lost_before
               FROM cohort c LEFT JOIN counted n ON n.id = c.id LEFT JOIN lost ON lost.id = c.id""",
            [params.service_settings.failed_call_minutes],
        ),
    ]
    buckets = {
        f"b{i}": f"COUNT(*) FILTER (WHERE contacts_before {'>= 4' if bucket == '4+' else '= ' + bucket})"
        for i, bucket in enumerate(CONTACT_BUCKETS)
    }
    return _summarise(ctes, figures={"lost": "COALESCE(SUM(lost_before), 0)", **buckets}, ranked=("contacts_before", "wait_days"))


def first_contact_figures(params: ReportParams) -> dict:
    """How many referrals had their first successful call in the period, and the median wait to it."""
    if params.practitioner_id or params.team_id:
        # Who made the first call decides; one practitioner's or team's calls are few enough to check each.
        return cohort_summary(first_contacts_in_period(params).values("wait_days"), ranked=("wait_days",))
    successful = _effective_attempts().filter(outcome__in=_SUCCESSFUL_CALLS)
    return _summarise(_first_in_period(successful, "attempted_at", params), ranked=("wait_days",))


def first_treatment_figures(params: ReportParams) -> dict:
    """Referrals whose first attended treatment is in the period: how many, within 6 and 18 weeks, median wait."""
    figures = {
        "within_6": f"COUNT(*) FILTER (WHERE wait_days <= {SIX_WEEKS_DAYS})",
        "within_18": f"COUNT(*) FILTER (WHERE wait_days <= {EIGHTEEN_WEEKS_DAYS})",
    }
    if params.practitioner_id or params.team_id:
        cohort = first_attended_in_period(params, AppointmentType.TREATMENT).values("wait_days")
        return cohort_summary(cohort, figures=figures, ranked=("wait_days",))
    ctes = _first_in_period(_attended_of_type(AppointmentType.TREATMENT), "start", params)
    return _summarise(ctes, figures=figures, ranked=("wait_days",))


# ---- the report ----------------------------------------------------------------------------------------------


def _weeks(params: ReportParams) -> list[datetime.date]:
    monday = params.date_from - timedelta(days=params.date_from.weekday())
    weeks = []
    while monday <= params.date_to:
        weeks.append(monday)
        monday += timedelta(days=7)
    return weeks


def _as_local_date(value) -> datetime.date:
    if isinstance(value, datetime.datetime):
        if timezone.is_aware(value):
            value = value.astimezone(LONDON)
        return value.date()
    return value


_APPOINTMENT_FIGURES = [f"{name}_{kind}" for name in ("booked", "attended", *APPOINTMENT_CAUSES) for kind in ("minutes", "count")]


def activity_figures(params: ReportParams) -> dict:
    """The appointment aggregates and the failed calls of the period, each table read once, grouped by week
    (Monday to Sunday, Europe/London) and practitioner. The totals, the weekly chart and the practitioner
    table are sums of these groups."""
    zero = dict.fromkeys(_APPOINTMENT_FIGURES, 0)
    total, by_week, by_practitioner = dict(zero), defaultdict(lambda: dict(zero)), defaultdict(lambda: dict(zero))
    rows = (
        appointments_in_period(params)
        .annotate(week=TruncWeek("start", tzinfo=LONDON))
        .order_by()
        .values("week", "practitioner_id")
        .annotate(**_appointment_aggregates(params))
    )
    for row in rows:
        week, practitioner = _as_local_date(row["week"]), row["practitioner_id"]
        for name in _APPOINTMENT_FIGURES:
            value = int(row[name] or 0)
            total[name] += value
            by_week[week][name] += value
            by_practitioner[practitioner][name] += value
    failed, failed_by_week, failed_by_practitioner = 0, defaultdict(int), defaultdict(int)
    calls = (
        failed_calls_in_period(params)
        .annotate(week=TruncWeek("attempted_at", tzinfo=LONDON))
        .order_by()
        .values("week", "practitioner_id")
        .annotate(n=Count("pk"))
    )
    for row in calls:
        failed += row["n"]
        failed_by_week[_as_local_date(row["week"])] += row["n"]
        failed_by_practitioner[row["practitioner_id"]] += row["n"]
    return {
        "appointments": total,
        "appointments_by_week": dict(by_week),
        "appointments_by_practitioner": dict(by_practitioner),
        "failed_calls": failed,
        "failed_calls_by_week": dict(failed_by_week),
        "failed_calls_by_practitioner": dict(failed_by_practitioner),
    }


def weekly_lost(params: ReportParams, activity: dict | None = None) -> list[dict]:
    """Lost minutes by cause per week (Monday to Sunday, Europe/London), every week of the period listed."""
    activity = activity or activity_figures(params)
    minutes_per_call = params.service_settings.failed_call_minutes
    result = []
    for monday in _weeks(params):
        row = activity["appointments_by_week"].get(monday, {})
        week = {
            "week_starting": monday.isoformat(),
            "from": max(monday, params.date_from).isoformat(),
            "to": min(monday + timedelta(days=6), params.date_to).isoformat(),
        }
        for cause in APPOINTMENT_CAUSES:
            week[cause] = row.get(f"{cause}_minutes", 0)
        week["failed_calls"] = activity["failed_calls_by_week"].get(monday, 0) * minutes_per_call
        week["total"] = sum(week[cause] for cause in LOST_CAUSES)
        result.append(week)
    return result


def practitioner_rows(params: ReportParams, activity: dict | None = None) -> list[dict]:
    activity = activity or activity_figures(params)
    minutes_per_call = params.service_settings.failed_call_minutes
    by_practitioner = activity["appointments_by_practitioner"]
    failed = activity["failed_calls_by_practitioner"]
    users = get_user_model().objects.filter(pk__in=set(by_practitioner) | set(failed))
    rows = []
    for user in users:
        agg = by_practitioner.get(user.pk, {})
        row = {
            "practitioner_id": user.pk,
            "username": user.get_username(),
            "name": user.get_full_name() or user.get_username(),
            "booked_minutes": agg.get("booked_minutes", 0),
            "attended_minutes": agg.get("attended_minutes", 0),
        }
        lost = {cause: agg.get(f"{cause}_minutes", 0) for cause in APPOINTMENT_CAUSES}
        lost["failed_calls"] = failed.get(user.pk, 0) * minutes_per_call
        lost["total"] = sum(lost.values())
        row["lost_minutes"] = lost
        row["booked_lost_pct"] = _pct(lost["total"] - lost["failed_calls"], row["booked_minutes"])
        rows.append(row)
    rows.sort(key=lambda r: (-r["lost_minutes"]["total"], r["name"]))
    return rows


def longest_held_without_assessment(params: ReportParams, *, limit: int = LONGEST_HELD_LIMIT):
    """Open referrals with no attended assessment, oldest first (as of today, not limited to the period)."""
    attended_assessment = _attended_of_type(AppointmentType.ASSESSMENT).filter(referral=OuterRef("pk"))
    qs = Referral.objects.filter(status__in=Referral.OPEN_STATUSES).exclude(Exists(attended_assessment))
    qs = filter_by_people(qs, params, practitioner="assigned_practitioner", referral="")
    contacts = _count_subquery(_effective_attempts().filter(referral=OuterRef("pk")))
    return (
        qs.select_related("patient", "assigned_practitioner")
        .annotate(
            days_held=DaysBetween(Value(timezone.localdate(), output_field=DateField()), F("received_on")),
            contacts=contacts,
            lost_so_far=_lost_before(params, timezone.now(), "pk"),
        )
        .order_by("received_on", "pk")[:limit]
    )


def _pct(part, whole) -> float | None:
    if not whole:
        return None
    return round(100 * part / whole, 1)


@contextmanager
def report_session():
    """One read transaction for the whole report. On PostgreSQL, JIT compilation is switched off for it:
    these are many short index-driven queries, and JIT adds hundreds of milliseconds of compile time each."""
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL jit = off")
        yield


def build_report(params: ReportParams, *, include_lists: bool = True) -> dict:
    """The whole report as plain data (the JSON export). Minutes are integers."""
    with report_session():
        return _build_report(params, include_lists=include_lists)


def _lost_minutes(params: ReportParams, agg: dict, failed_count: int) -> dict:
    lost = {cause: int(agg[f"{cause}_minutes"]) for cause in APPOINTMENT_CAUSES}
    lost["failed_calls"] = failed_count * params.service_settings.failed_call_minutes
    lost["total"] = sum(lost.values())
    return lost


def _waits(pre: dict, contacts: dict, treatments: dict) -> dict:
    return {
        "to_first_contact_median_days": contacts["wait_days_median"],
        "to_assessment_median_days": pre["wait_days_median"],
        "to_first_treatment_median_days": treatments["wait_days_median"],
        "within_6_weeks_pct": _pct(treatments["within_6"], treatments["n"]),
        "within_18_weeks_pct": _pct(treatments["within_18"], treatments["n"]),
        "first_contacts": contacts["n"],
        "assessments": pre["n"],
        "first_treatments": treatments["n"],
    }


def _pre_assessment(pre: dict) -> dict:
    return {
        "referrals_assessed": pre["n"],
        "contacts_distribution": {bucket: pre[f"b{i}"] for i, bucket in enumerate(CONTACT_BUCKETS)},
        "contacts_median": pre["contacts_before_median"],
        "contacts_p90": pre["contacts_before_p90"],
        "lost_minutes": int(pre["lost"]),
    }


def _longest_held(params: ReportParams) -> list[dict]:
    return [
        {
            "referral_id": r.pk,
            "received_on": r.received_on.isoformat(),
            "days_held": r.days_held,
            "status": r.status,
            "contacts": r.contacts,
            "lost_minutes": r.lost_so_far,
        }
        for r in longest_held_without_assessment(params)
    ]


def _build_report(params: ReportParams, *, include_lists: bool) -> dict:
    params = params.with_settings()
    service = params.service_settings
    if include_lists:
        activity = activity_figures(params)
        agg, failed_count = activity["appointments"], activity["failed_calls"]
    else:
        agg = appointments_in_period(params).aggregate(**_appointment_aggregates(params))
        failed_count = failed_calls_in_period(params).count()
    lost = _lost_minutes(params, agg, failed_count)
    booked = int(agg["booked_minutes"])
    pre = pre_assessment_figures(params)
    waits = _waits(pre, first_contact_figures(params), first_treatment_figures(params))
    cost_pence = lost["total"] * service.clinician_hourly_cost_pence / 60
    report = {
        "period": {"from": params.date_from.isoformat(), "to": params.date_to.isoformat()},
        "filters": {
            "team": params.team_id,
            "practitioner": params.practitioner_id,
            "source": params.source or None,
            "appointment_type": params.appointment_type or None,
        },
        "settings": {
            "late_cancellation_notice_hours": service.late_cancellation_notice_hours,
            "failed_call_minutes": service.failed_call_minutes,
            "clinician_hourly_cost_pounds": round(service.clinician_hourly_cost_pence / 100, 2),
        },
        "booked_minutes": booked,
        "attended_minutes": int(agg["attended_minutes"]),
        "lost_minutes": lost,
        "appointment_counts": {
            name: agg[f"{name}_count"] for name in ("booked", "attended", *APPOINTMENT_CAUSES)
        },
        "failed_call_count": failed_count,
        "booked_lost_pct": _pct(lost["total"] - lost["failed_calls"], booked),
        "lost_hours": round(lost["total"] / 60, 1),
        # One treatment session's length as the service has set it (BookingSettings).
        "equivalent_sessions_lost": round(lost["total"] / BookingSettings.current().treatment_minutes, 1),
        "pre_assessment": _pre_assessment(pre),
        "waits": waits,
        "cost_pounds": round(cost_pence / 100, 2),
        "recovered": recovered_figures(params),
    }
    if include_lists:
        report["weekly_lost_minutes"] = weekly_lost(params, activity)
        report["practitioners"] = practitioner_rows(params, activity)
        report["longest_held_without_assessment"] = _longest_held(params)
    return report


@dataclass
class FigureRows:
    """The rows behind one figure of the capacity page, and their total as the figure counts it."""

    kind: str  # which table the rows page shows: appointments, attempts, pre_assessment or waits
    rows: object  # a queryset, ordered for paging
    total_label: str = ""
    total: int | None = None
    narrowed_by: str = ""  # words added to the title for a bucket or a "within" filter


def figure_rows(params: ReportParams, *, figure: str, bucket: str = "", within: int | None = None) -> FigureRows:
    """The rows behind `figure`, with the same conditions the report computed it from."""
    conditions = appointment_conditions(params)
    if figure in conditions:
        rows = appointments_in_period(params).filter(conditions[figure])
        rows = rows.select_related("referral__patient", "practitioner", "rearranged_to").order_by("start", "pk")
        return FigureRows("appointments", rows, "Minutes", rows.aggregate(m=Sum("duration_minutes"))["m"] or 0)
    if figure == "failed_calls":
        rows = failed_calls_in_period(params).select_related("referral__patient", "practitioner").order_by("attempted_at", "pk")
        minutes = params.service_settings.failed_call_minutes
        return FigureRows("attempts", rows, f"Minutes ({minutes} per call)", rows.count() * minutes)
    if figure == "pre_assessment":
        rows, narrowed_by = pre_assessment_rows(params), ""
        if bucket:
            rows, narrowed_by = rows.filter(contacts_bucket_q(bucket)), f", {bucket} contact attempts before it"
        rows = rows.select_related("referral__patient", "practitioner").order_by("start", "pk")
        total = rows.aggregate(m=Sum("lost_before"))["m"] or 0
        return FigureRows("pre_assessment", rows, "Lost minutes before assessment", total, narrowed_by)
    if figure == "wait_first_contact":
        rows = first_contacts_in_period(params).order_by("attempted_at", "pk")
    else:
        appointment_type = AppointmentType.ASSESSMENT if figure == "wait_assessment" else AppointmentType.TREATMENT
        rows = first_attended_in_period(params, appointment_type).order_by("start", "pk")
    narrowed_by = ""
    if within is not None:
        rows, narrowed_by = rows.filter(wait_days__lte=within), f", within {within} days of referral"
    return FigureRows("waits", rows.select_related("referral__patient", "practitioner"), narrowed_by=narrowed_by)


# ---- recovered capacity -------------------------------------------------------------------------------------
# Recovered capacity: how much of the time released with notice was booked again, by whom, and how soon.
#
# A released slot is an appointment in the period cancelled or moved with at least the notice threshold
# (booking.rules: not short notice). It is re-filled by a later booking of the same practitioner that
# overlaps it, was booked at or after the release, and still stands (not itself cancelled); the original's
# own replacement does not count (the same patient moving within the hour wins nothing back). Re-filled
# minutes are the overlap, at most the slot's length. Definitions: docs/capacity-report.md.

REFILLED_BY = ("offer", "self_service", "staff")


def released_in_period(params: ReportParams):
    """Appointments in the period cancelled or moved with notice: the slots given back."""
    return appointments_in_period(params).filter(outcome__in=_CANCELLED).exclude(
        short_notice_q(service_settings=params.service_settings)
    )


@dataclass
class _Slot:
    pk: int
    start: object
    end: object
    released_at: object
    minutes: int
    own_replacement: int | None
    filled: float = 0.0
    first_refill_at: object = None


def _booked_by_offer_or_patient(appointment_ids) -> dict[int, str]:
    """Appointment id -> "offer" (it filled an offered slot, by text or by link) or "self_service" (the patient
    moved to it on their self-service page); the others were booked by staff."""
    kinds = {pk: "self_service" for pk in AuditEntry.objects.filter(
        appointment_id__in=appointment_ids, via=AuditEntry.Via.SELF_SERVICE, field="booking", new_value="booked"
    ).values_list("appointment_id", flat=True)}
    kinds.update({pk: "offer" for pk in OfferedSlot.objects.filter(filled_by_id__in=appointment_ids).values_list(
        "filled_by_id", flat=True
    )})
    return kinds


def _filler_ids(params: ReportParams, released) -> set[int]:
    """Ids of the standing bookings that overlap a released slot of their practitioner and were made at or
    after its release. Bookings are under a day long, so two that overlap share the UTC date of their starts,
    or one runs into the day the other starts on: three joins on (practitioner, date), each hashed by the
    database, instead of one overlap test against every released slot of the practitioner."""
    reach = timedelta(days=1)
    candidates = Appointment.objects.exclude(outcome__in=_CANCELLED).filter(
        start__gt=params.start - reach, start__lt=params.end + reach
    ).annotate(start_day=TruncDate("start", tzinfo=datetime.timezone.utc), end_day=TruncDate("end", tzinfo=datetime.timezone.utc))
    slots = released.annotate(
        slot_start_day=TruncDate("start", tzinfo=datetime.timezone.utc), slot_end_day=TruncDate("end", tzinfo=datetime.timezone.utc)
    )
    overlapping = dict(
        practitioner=OuterRef("practitioner"), start__lt=OuterRef("end"), end__gt=OuterRef("start"),
        cancelled_at__lte=OuterRef("booked_at"),
    )
    ids = set()
    for slot_day, booking_day in (("slot_start_day", "start_day"), ("slot_start_day", "end_day"), ("slot_end_day", "start_day")):
        matching = slots.filter(**overlapping, **{slot_day: OuterRef(booking_day)})
        ids.update(candidates.filter(Exists(matching)).values_list("pk", flat=True))
    return ids


def recovered_figures(params: ReportParams) -> dict:
    """Minutes released and re-filled (by offers, by patients' self-service, by staff), the median hours from
    release to re-fill, the days brought forward for patients moved to an earlier time into a released slot,
    and what the offers and the self-service page did in the period."""
    released = released_in_period(params)
    slots_by_practitioner = defaultdict(list)
    for pk, practitioner_id, start, end, released_at, minutes, replacement in released.values_list(
        "pk", "practitioner_id", "start", "end", "cancelled_at", "duration_minutes", "rearranged_to__replacement_id"
    ):
        slots_by_practitioner[practitioner_id].append(_Slot(pk, start, end, released_at, minutes, replacement))
    fillers = list(
        Appointment.objects.filter(pk__in=_filler_ids(params, released))
        .values_list("pk", "practitioner_id", "start", "end", "booked_at", "rearranged_from__original__start")
    )
    refilled_by = _booked_by_offer_or_patient([row[0] for row in fillers])
    by_kind = dict.fromkeys(REFILLED_BY, 0.0)
    brought_forward = []
    for pk, practitioner_id, start, end, booked_at, moved_from_start in fillers:
        kind = refilled_by.get(pk, "staff")
        counted = False
        for slot in slots_by_practitioner[practitioner_id]:
            if pk == slot.own_replacement or not (start < slot.end and end > slot.start) or booked_at < slot.released_at:
                continue
            overlap = (min(end, slot.end) - max(start, slot.start)).total_seconds() / 60
            taken = min(overlap, slot.minutes - slot.filled)
            if taken <= 0:
                continue
            slot.filled += taken
            by_kind[kind] += taken
            if slot.first_refill_at is None or booked_at < slot.first_refill_at:
                slot.first_refill_at = booked_at
            counted = True
        if counted and moved_from_start is not None and moved_from_start > start:
            # Calendar days between the UK dates (a clock change in between is not an hour's less wait).
            brought_forward.append((moved_from_start.astimezone(LONDON).date() - start.astimezone(LONDON).date()).days)
    slots = [slot for group in slots_by_practitioner.values() for slot in group]
    released_minutes = sum(slot.minutes for slot in slots)
    refilled_minutes = round(sum(by_kind.values()))
    hours_to_refill = [
        (slot.first_refill_at - slot.released_at).total_seconds() / 3600 for slot in slots if slot.first_refill_at
    ]
    return {
        "released_slots": len(slots),
        "released_minutes": released_minutes,
        "refilled_minutes": refilled_minutes,
        "refilled_pct": round(100 * refilled_minutes / released_minutes, 1) if released_minutes else None,
        "refilled_minutes_by": {kind: round(minutes) for kind, minutes in by_kind.items()},
        "slots_refilled": len(hours_to_refill),
        "median_hours_to_refill": round(statistics.median(hours_to_refill), 1) if hours_to_refill else None,
        "patients_brought_forward": len(brought_forward),
        "days_brought_forward": sum(brought_forward),
        "offers": offer_figures(params),
        "self_service": self_service_figures(params),
    }


def offer_figures(params: ReportParams) -> dict:
    """Offers made in the period (by when the slot was offered): slots offered and how each ended, and the
    texts sent and how each was answered. The practitioner and team filters apply; the referral-source filter
    applies to the texts."""
    slots = filter_by_people(
        OfferedSlot.objects.filter(created_at__gte=params.start, created_at__lt=params.end),
        params.narrowed(source=""),
    )
    if params.appointment_type:
        slots = slots.filter(appointment_type=params.appointment_type)
    by_status = dict(slots.order_by().values_list("status").annotate(n=Count("pk")))
    invitations = filter_by_people(
        OfferInvitation.objects.filter(slot__in=slots), params, practitioner="slot__practitioner"
    )
    answered = dict(invitations.order_by().values_list("status").annotate(n=Count("pk")))
    return {
        "slots_offered": sum(by_status.values()),
        "slots_taken": by_status.get(OfferedSlot.Status.FILLED, 0),
        "slots_expired": by_status.get(OfferedSlot.Status.EXPIRED, 0),
        "slots_stopped": by_status.get(OfferedSlot.Status.STOPPED, 0),
        "slots_open": by_status.get(OfferedSlot.Status.OPEN, 0),
        "texts_sent": sum(answered.values()),
        "texts_taken": answered.get(OfferInvitation.Status.ACCEPTED, 0),
        "texts_too_late": answered.get(OfferInvitation.Status.GONE, 0),
        "texts_expired": answered.get(OfferInvitation.Status.EXPIRED, 0),
        "texts_withdrawn": answered.get(OfferInvitation.Status.WITHDRAWN, 0),
    }


def self_service_figures(params: ReportParams) -> dict:
    """What patients did on their self-service page in the period, by kind, and the links locked after three
    wrong dates of birth."""
    entries = filter_by_people(
        AuditEntry.objects.filter(via=AuditEntry.Via.SELF_SERVICE, at__gte=params.start, at__lt=params.end),
        params, practitioner="appointment__practitioner",
    )
    if params.appointment_type:
        entries = entries.filter(appointment__appointment_type=params.appointment_type)
    counts = entries.aggregate(
        confirmed=Count("pk", filter=Q(field="confirmed")),
        moved=Count("pk", filter=Q(
            field="booking", new_value="booked", appointment__rearranged_from__isnull=False, appointment__filled_offer__isnull=True
        )),
        # A move cancels its original too (with the same "via"): only cancellations that moved nowhere count.
        cancelled=Count("pk", filter=Q(field="outcome", appointment__rearranged_to__isnull=True)),
        took_offer=Count("pk", filter=Q(field="booking", new_value="booked", appointment__filled_offer__isnull=False)),
    )
    locked = filter_by_people(
        PatientLink.objects.filter(locked_at__gte=params.start, locked_at__lt=params.end),
        params, practitioner="appointment__practitioner", referral="appointment__referral__",
    )
    return {**counts, "links_locked": locked.count()}
