"""Benchmark the capacity report on PostgreSQL with a large synthetic service.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/pp_bench python manage.py migrate
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/pp_bench python manage.py bench_capacity_report

Builds (with COPY, in seconds rather than hours) a service of 50 practitioners with one year of
200,000 appointments and 1,000,000 call attempts, and a copy of it with two more, older years in a
schema of its own (`bench_history`, chosen per query by `search_path`). Then prints, as JSON, with the
spread (min, median, max) over the repeats, every pair timed interleaved (A, B, A, B, ...):
- the one-year JSON report as a ratio to a hand-written SQL reference computing every figure of the
  report (checked to give the same numbers) and to one query of the six headline totals;
- what each part of the report costs;
- the one-week report with three years of history as a ratio to the same with one year.
Needs an empty database of its own: it refuses a database that already holds referrals, unless they are
this benchmark's own (`--reuse` times the data an earlier run left).
"""

import datetime
import json
import random
import time
from collections import defaultdict
from contextlib import contextmanager
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction

from devtools.timing import interleaved, ratio_spread, spread
from scheduling.booking.models import DEFAULT_MINUTES, Appointment
from scheduling.calls.models import ContactAttempt, ContactAttemptUndo
from scheduling.caseload.models import Patient, PractitionerProfile, Referral, ServiceSettings, Team
from scheduling.codes import ATTENDED_OUTCOMES, AppointmentType, AttendanceOutcome, EndOfCare, ReferralSource
from scheduling.reports import selectors
from scheduling.reports.selectors import ReportParams, build_report, report_session
from scheduling.uktime import LONDON

SOURCES = [ReferralSource.GP.value] * 3 + [
    ReferralSource.OTHER_PRIMARY_CARE.value, ReferralSource.SELF.value, ReferralSource.SECONDARY_CARE.value,
    ReferralSource.SECONDARY_CARE.value, ReferralSource.SINGLE_POINT_OF_ACCESS.value,
]
CALL_OUTCOMES = ["no_answer", "no_answer", "no_answer", "voicemail", "busy", "answered", "wrong_number", "declined"]
HISTORY_SCHEMA = "bench_history"
HISTORY_TABLES = (Patient, Referral, Appointment, ContactAttempt, ContactAttemptUndo)
# Appointment starts on a 15-minute grid, 07:00 to 21:00 local time, so a practitioner's day is a bit mask.
QUARTER_FIRST, QUARTER_END = 7 * 4, 21 * 4
# How far on a course's session may slip to find a free slot. With 60 the documented run stopped (3 December
# 2026, default seed and sizes): at 4,000 sessions a practitioner a year the busiest weeks fill up for months.
SLOT_SEARCH_DAYS = 120

SIX_TOTALS_SQL = """
WITH a AS (
  SELECT duration_minutes AS d, outcome AS o,
         (outcome IN ('2', '4') AND cancelled_at > start - make_interval(hours => %(hours)s)) AS short_notice
  FROM scheduling_appointment
  WHERE start >= %(start)s AND start < %(end)s
)
SELECT
  COALESCE(SUM(d) FILTER (WHERE o NOT IN ('2', '4') OR short_notice), 0) AS booked,
  COALESCE(SUM(d) FILTER (WHERE o IN ('5', '6')), 0) AS attended,
  COALESCE(SUM(d) FILTER (WHERE o IN ('3', '7')), 0) AS dna,
  COALESCE(SUM(d) FILTER (WHERE o = '2' AND short_notice), 0) AS late_cancellation,
  COALESCE(SUM(d) FILTER (WHERE o = '4' AND short_notice), 0) AS service_cancellation,
  (SELECT COUNT(*) FROM scheduling_contactattempt c
     WHERE c.attempted_at >= %(start)s AND c.attempted_at < %(end)s AND c.appointment_id IS NULL
       AND c.outcome NOT IN ('answered', 'callback_requested', 'declined')
       AND NOT EXISTS (SELECT 1 FROM scheduling_contactattemptundo u WHERE u.attempt_id = c.id)) * %(call_minutes)s
     AS failed_calls
FROM a
"""

# The reference: every figure of the report, written by hand for PostgreSQL (independent of the ORM code:
# medians with percentile_cont, the 90th percentile with percentile_disc, weeks with date_trunc).
_LOST = """(x.outcome IN ('3', '7') OR (x.outcome IN ('2', '4') AND x.cancelled_at > x.start - make_interval(hours => %(hours)s)))"""
_EFFECTIVE = "NOT EXISTS (SELECT 1 FROM scheduling_contactattemptundo u WHERE u.attempt_id = t.id)"
_SUCCESSFUL = "t.outcome IN ('answered', 'callback_requested', 'declined')"
_FAILED = f"t.appointment_id IS NULL AND NOT {_SUCCESSFUL} AND {_EFFECTIVE}"


def _lost_before(referral: str, before: str) -> str:
    return f"""(COALESCE((SELECT SUM(x.duration_minutes) FROM scheduling_appointment x
                  WHERE x.referral_id = {referral} AND x.start < {before} AND {_LOST}), 0)
            + %(call_minutes)s * (SELECT COUNT(*) FROM scheduling_contactattempt t
                  WHERE t.referral_id = {referral} AND t.attempted_at < {before} AND {_FAILED}))"""


REFERENCE_SQL = {
    "appointments": """
        SELECT GROUPING(week) AS all_weeks, GROUPING(practitioner_id) AS all_practitioners, week, practitioner_id,
          COALESCE(SUM(d) FILTER (WHERE NOT cancelled OR short), 0) AS booked_minutes,
          COUNT(*) FILTER (WHERE NOT cancelled OR short) AS booked_count,
          COALESCE(SUM(d) FILTER (WHERE o IN ('5', '6')), 0) AS attended_minutes,
          COUNT(*) FILTER (WHERE o IN ('5', '6')) AS attended_count,
          COALESCE(SUM(d) FILTER (WHERE o IN ('3', '7')), 0) AS dna_minutes,
          COUNT(*) FILTER (WHERE o IN ('3', '7')) AS dna_count,
          COALESCE(SUM(d) FILTER (WHERE o = '2' AND short), 0) AS late_cancellation_minutes,
          COUNT(*) FILTER (WHERE o = '2' AND short) AS late_cancellation_count,
          COALESCE(SUM(d) FILTER (WHERE o = '4' AND short), 0) AS service_cancellation_minutes,
          COUNT(*) FILTER (WHERE o = '4' AND short) AS service_cancellation_count
        FROM (SELECT practitioner_id, duration_minutes AS d, outcome AS o, outcome IN ('2', '4') AS cancelled,
                     date_trunc('week', start AT TIME ZONE 'Europe/London')::date AS week,
                     (outcome IN ('2', '4') AND cancelled_at > start - make_interval(hours => %(hours)s)) AS short
              FROM scheduling_appointment WHERE start >= %(start)s AND start < %(end)s) a
        GROUP BY GROUPING SETS ((), (week), (practitioner_id))""",
    "failed_calls": f"""
        SELECT GROUPING(week) AS all_weeks, GROUPING(practitioner_id) AS all_practitioners, week, practitioner_id, COUNT(*) AS n
        FROM (SELECT t.practitioner_id, date_trunc('week', t.attempted_at AT TIME ZONE 'Europe/London')::date AS week
              FROM scheduling_contactattempt t
              WHERE t.attempted_at >= %(start)s AND t.attempted_at < %(end)s AND {_FAILED}) f
        GROUP BY GROUPING SETS ((), (week), (practitioner_id))""",
    "pre_assessment": f"""
        WITH cohort AS MATERIALIZED (
          SELECT a.referral_id, a.start, (a.start AT TIME ZONE 'Europe/London')::date - r.received_on AS wait_days
          FROM scheduling_appointment a JOIN scheduling_referral r ON r.id = a.referral_id
          WHERE a.appointment_type = 'assessment' AND a.outcome IN ('5', '6') AND a.start >= %(start)s AND a.start < %(end)s
            AND NOT EXISTS (SELECT 1 FROM scheduling_appointment e
                            WHERE e.referral_id = a.referral_id AND e.appointment_type = 'assessment' AND e.outcome IN ('5', '6')
                              AND (e.start < a.start OR (e.start = a.start AND e.id < a.id)))),
        pre AS MATERIALIZED (
          SELECT c.wait_days,
                 (SELECT COUNT(*) FROM scheduling_contactattempt t
                   WHERE t.referral_id = c.referral_id AND t.attempted_at < c.start AND {_EFFECTIVE}) AS contacts,
                 {_lost_before("c.referral_id", "c.start")} AS lost
          FROM cohort c)
        SELECT COUNT(*) AS n, COALESCE(SUM(lost), 0) AS lost,
               COUNT(*) FILTER (WHERE contacts = 0) AS b0, COUNT(*) FILTER (WHERE contacts = 1) AS b1,
               COUNT(*) FILTER (WHERE contacts = 2) AS b2, COUNT(*) FILTER (WHERE contacts = 3) AS b3,
               COUNT(*) FILTER (WHERE contacts >= 4) AS b4,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY contacts) AS contacts_median,
               percentile_disc(0.9) WITHIN GROUP (ORDER BY contacts) AS contacts_p90,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY wait_days) AS wait_median
        FROM pre""",
    "first_contacts": f"""
        WITH s AS MATERIALIZED (
          SELECT t.referral_id, t.attempted_at FROM scheduling_contactattempt t WHERE {_SUCCESSFUL} AND {_EFFECTIVE}
            AND t.referral_id IN (SELECT t.referral_id FROM scheduling_contactattempt t
                                  WHERE t.attempted_at >= %(start)s AND t.attempted_at < %(end)s AND {_SUCCESSFUL})),
        firsts AS (SELECT referral_id, MIN(attempted_at) AS first_at FROM s GROUP BY referral_id)
        SELECT COUNT(*) AS n,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY (f.first_at AT TIME ZONE 'Europe/London')::date - r.received_on) AS wait_median
        FROM firsts f JOIN scheduling_referral r ON r.id = f.referral_id
        WHERE f.first_at >= %(start)s AND f.first_at < %(end)s""",
    "first_treatments": """
        WITH firsts AS (
          SELECT a.referral_id, MIN(a.start) AS first_at FROM scheduling_appointment a
          WHERE a.appointment_type = 'treatment' AND a.outcome IN ('5', '6')
            AND a.referral_id IN (SELECT referral_id FROM scheduling_appointment
                                  WHERE appointment_type = 'treatment' AND outcome IN ('5', '6') AND start >= %(start)s AND start < %(end)s)
          GROUP BY a.referral_id),
        waits AS (SELECT (f.first_at AT TIME ZONE 'Europe/London')::date - r.received_on AS wait_days
                  FROM firsts f JOIN scheduling_referral r ON r.id = f.referral_id
                  WHERE f.first_at >= %(start)s AND f.first_at < %(end)s)
        SELECT COUNT(*) AS n, COUNT(*) FILTER (WHERE wait_days <= 42) AS within_6, COUNT(*) FILTER (WHERE wait_days <= 126) AS within_18,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY wait_days) AS wait_median
        FROM waits""",
    "longest_held": f"""
        SELECT r.id AS referral_id, r.received_on, %(today)s::date - r.received_on AS days_held, r.status,
               (SELECT COUNT(*) FROM scheduling_contactattempt t WHERE t.referral_id = r.id AND {_EFFECTIVE}) AS contacts,
               {_lost_before("r.id", "%(now)s")} AS lost_minutes
        FROM scheduling_referral r
        WHERE r.status = ANY(%(open)s)
          AND NOT EXISTS (SELECT 1 FROM scheduling_appointment a WHERE a.referral_id = r.id
                          AND a.appointment_type = 'assessment' AND a.outcome IN ('5', '6'))
        ORDER BY r.received_on, r.id LIMIT 20""",
}


def _number(value):
    """A median as the report gives it: an int when whole."""
    if value is None:
        return None
    value = float(value)
    return int(value) if value.is_integer() else value


def _pct(part, whole):
    return round(100 * part / whole, 1) if whole else None


class _Copier:
    """COPY rows into a model's table, every concrete column filled (model defaults for the rest)."""

    def __init__(self, model):
        self.model = model
        self.fields = [f for f in model._meta.concrete_fields]
        self.index = {f.attname: i for i, f in enumerate(self.fields)}
        template = []
        for f in self.fields:
            value = f.get_default()
            if f.get_internal_type() == "JSONField":
                value = json.dumps(value)
            template.append(value)
        self.template = template
        self.columns = ", ".join(connection.ops.quote_name(f.column) for f in self.fields)

    def row(self, **values):
        row = list(self.template)
        for name, value in values.items():
            row[self.index[name]] = value
        return row

    def copy(self, rows):
        table = connection.ops.quote_name(self.model._meta.db_table)
        with connection.cursor() as cursor:
            with cursor.cursor.copy(f"COPY {table} ({self.columns}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)

    def next_id(self):
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT COALESCE(MAX(id), 0) + 1 FROM {connection.ops.quote_name(self.model._meta.db_table)}")
            return cursor.fetchone()[0]

    def reset_sequence(self):
        table = self.model._meta.db_table
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT setval(pg_get_serial_sequence(%s, 'id'), (SELECT COALESCE(MAX(id), 1) FROM {connection.ops.quote_name(table)}))",
                [table],
            )


@contextmanager
def _search_path(schema: str | None):
    """Queries inside read the benchmark's tables from `schema` (the copy with more history), the rest from public."""
    with connection.cursor() as cursor:
        cursor.execute(f"SET search_path TO {schema + ', ' if schema else ''}public")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SET search_path TO public")


class Command(BaseCommand):
    help = "Benchmark the capacity report on PostgreSQL against hand-written SQL, and one week vs more history."

    def add_arguments(self, parser):
        parser.add_argument("--practitioners", type=int, default=50)
        parser.add_argument("--appointments", type=int, default=200_000, help="per year")
        parser.add_argument("--attempts", type=int, default=1_000_000, help="per year")
        parser.add_argument("--extra-years", type=int, default=2, help="older years added for the history comparison")
        parser.add_argument("--repeat", type=int, default=5)
        parser.add_argument("--seed", type=int, default=7)
        parser.add_argument("--reuse", action="store_true", help="time the data an earlier run of this benchmark left")

    def handle(self, *args, **options):
        if connection.vendor != "postgresql":
            raise CommandError("This benchmark runs on PostgreSQL (set DATABASE_URL to a database of its own).")
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM information_schema.schemata WHERE schema_name = %s", [HISTORY_SCHEMA])
            built = cursor.fetchone() is not None
        if Referral.objects.exists() and not (options["reuse"] and built):
            raise CommandError("This database already holds referrals; run the benchmark on an empty database of its own.")
        self.rng = random.Random(options["seed"])
        self.repeat = options["repeat"]
        self.per_year = options["appointments"]
        self.attempts_per_appointment = max(1, options["attempts"] // options["appointments"])
        self.busy = defaultdict(int)  # (practitioner, local date) -> bit mask of booked quarter hours
        settings = ServiceSettings.current()
        today = datetime.date.today()
        self.last_day = today - timedelta(days=1)
        if Referral.objects.exists():
            self.last_day = Referral.objects.latest("received_on").received_on + timedelta(days=50)
            self.practitioners = list(Appointment.objects.order_by().values_list("practitioner_id", flat=True).distinct())
            self.stdout.write("Reusing the data of an earlier run.")
        else:
            self._build(options)

        year = ReportParams(date_from=self.last_day - timedelta(days=364), date_to=self.last_day)
        week_start = self.last_day - timedelta(days=self.last_day.weekday() + 7)
        week = ReportParams(date_from=week_start, date_to=week_start + timedelta(days=6))

        samples, values = interleaved(
            {
                "report": lambda: json.dumps(build_report(year)),
                "reference": lambda: self._reference(year, settings),
                "six_totals": lambda: self._six_totals(year, settings),
            },
            repeat=self.repeat,
        )
        report = json.loads(values["report"])
        self._check(report, values["reference"], values["six_totals"])

        parts = {name: (lambda fn=fn: self._in_session(fn, year)) for name, fn in self._parts().items()}
        part_samples, _ = interleaved(parts, repeat=self.repeat)

        def week_report(schema):
            with _search_path(schema):
                return json.dumps(build_report(week))

        week_samples, week_values = interleaved(
            {"one_year": lambda: week_report(None), "more_years": lambda: week_report(HISTORY_SCHEMA)}, repeat=self.repeat
        )
        if week_values["one_year"] != week_values["more_years"]:
            raise CommandError("The one-week report differs with more history: the history copy is not the same data.")

        result = {
            "practitioners": len(self.practitioners),
            "appointments_per_year": self.per_year,
            "attempts_per_year": self.per_year * self.attempts_per_appointment,
            "history_years": 1 + self.extra_years,
            "repeat": self.repeat,
            "headline_totals": values["six_totals"],
            "year_report_seconds": spread(samples["report"]),
            "reference_sql_seconds": spread(samples["reference"]),
            "six_totals_sql_seconds": spread(samples["six_totals"]),
            "year_report_to_reference_ratio": ratio_spread(samples["report"], samples["reference"]),
            "year_report_to_six_totals_ratio": ratio_spread(samples["report"], samples["six_totals"]),
            "year_report_parts_seconds": {name: spread(s) for name, s in part_samples.items()},
            "week_report_seconds_1_year": spread(week_samples["one_year"]),
            f"week_report_seconds_{1 + self.extra_years}_years": spread(week_samples["more_years"]),
            "week_report_history_ratio": ratio_spread(week_samples["more_years"], week_samples["one_year"]),
        }
        self.stdout.write(json.dumps(result, indent=2))

    # ---- building the data ------------------------------------------------------------------------------

    def _build(self, options):
        self.practitioners = self._practitioners(options["practitioners"])
        self.copiers = {m: _Copier(m) for m in (Patient, Referral, Appointment, ContactAttempt, ContactAttemptUndo)}
        started = time.perf_counter()
        counts = self._year(year_index=0)
        self.stdout.write(f"year 1: {counts} inserted in {time.perf_counter() - started:.1f} s")
        self._analyze()
        started = time.perf_counter()
        self._copy_to_history()
        with _search_path(HISTORY_SCHEMA):
            for extra in range(1, options["extra_years"] + 1):
                counts = self._year(year_index=extra)
                self.stdout.write(f"older year {extra} (in {HISTORY_SCHEMA} only): {counts}")
            self._analyze()
        self.stdout.write(f"history copy built in {time.perf_counter() - started:.1f} s")

    @property
    def extra_years(self):
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT (SELECT COUNT(*) FROM {HISTORY_SCHEMA}.scheduling_referral) / (SELECT COUNT(*) FROM scheduling_referral)")
            return cursor.fetchone()[0] - 1

    def _copy_to_history(self):
        """The same year in a schema of its own, with the same indexes and constraints (LIKE ... INCLUDING ALL
        copies the no-overlap exclusion constraint too), to which the older years are then added."""
        with connection.cursor() as cursor:
            cursor.execute(f"CREATE SCHEMA {HISTORY_SCHEMA}")
            for model in HISTORY_TABLES:
                table = connection.ops.quote_name(model._meta.db_table)
                cursor.execute(f"CREATE TABLE {HISTORY_SCHEMA}.{table} (LIKE public.{table} INCLUDING ALL)")
                cursor.execute(f"INSERT INTO {HISTORY_SCHEMA}.{table} SELECT * FROM public.{table}")

    def _analyze(self):
        with connection.cursor() as cursor:
            for model in HISTORY_TABLES:
                cursor.execute(f"ANALYZE {connection.ops.quote_name(model._meta.db_table)}")

    def _practitioners(self, n):
        User = get_user_model()
        teams = [Team.objects.get_or_create(name=f"Benchmark team {i + 1}")[0] for i in range(5)]
        password = make_password(None)
        users = []
        for i in range(n):
            user, created = User.objects.get_or_create(
                username=f"bench.pwp{i + 1:02d}", defaults={"first_name": "Bench", "last_name": f"PWP {i + 1:02d}", "password": password}
            )
            if created:
                PractitionerProfile.objects.create(user=user, team=teams[i % len(teams)])
            users.append(user.pk)
        return users

    def _slot(self, practitioner, day: datetime.date, preferred: int, minutes: int) -> datetime.datetime:
        """A start on `day` (or the next day with room) that overlaps none of the practitioner's appointments:
        the database refuses two live appointments of one practitioner at once (scheduling/booking/db.py)."""
        quarters = -(-minutes // 15)
        need = (1 << quarters) - 1
        for offset in range(SLOT_SEARCH_DAYS):
            d = day + timedelta(days=offset)
            mask = self.busy[(practitioner, d)]
            for q in (preferred, *range(QUARTER_FIRST, QUARTER_END - quarters + 1)):
                if not mask & (need << q):
                    self.busy[(practitioner, d)] = mask | (need << q)
                    return datetime.datetime.combine(d, datetime.time(q // 4, 15 * (q % 4)), LONDON)
        raise CommandError(f"No free slot within {SLOT_SEARCH_DAYS} days: too many appointments per practitioner.")

    @transaction.atomic
    def _year(self, *, year_index: int):
        """One year of activity ending `year_index` years before yesterday."""
        rng = self.rng
        cp, cr, ca, cc, cu = (self.copiers[m] for m in (Patient, Referral, Appointment, ContactAttempt, ContactAttemptUndo))
        n_referrals = self.per_year // 5
        first_day = self.last_day - timedelta(days=365 * (year_index + 1) - 1)
        patient_id, referral_id, appointment_id, attempt_id, undo_id = cp.next_id(), cr.next_id(), ca.next_id(), cc.next_id(), cu.next_id()
        patients, referrals, appointments, attempts, undos = [], [], [], [], []
        for r in range(n_referrals):
            pid, rid = patient_id + r, referral_id + r
            patients.append(
                cp.row(id=pid, nhs_number=f"9{pid:09d}", given_name="Synthetic", family_name=f"Patient {pid}", date_of_birth=datetime.date(1970, 1, 1))
            )
            practitioner = self.practitioners[r % len(self.practitioners)]
            # Received so that the whole course (assessment ~2 weeks later, then weekly) stays inside the year.
            received = first_day + timedelta(days=rng.randrange(0, 365 - 50))
            first_day_of_course = received + timedelta(days=rng.randrange(7, 21))
            preferred = 4 * rng.randrange(9, 17)  # on the hour: fewer unusable gaps
            starts = []
            for k in range(5):
                minutes = DEFAULT_MINUTES[AppointmentType.ASSESSMENT if k == 0 else AppointmentType.TREATMENT]
                starts.append((self._slot(practitioner, first_day_of_course + timedelta(days=7 * k), preferred, minutes), minutes))
            # Courses that ended more than two weeks ago are discharged (completed); the rest stay open.
            ended_on = starts[-1][0].date() + timedelta(days=14)
            finished = ended_on < self.last_day
            referrals.append(
                cr.row(id=rid, patient_id=pid, source=rng.choice(SOURCES), received_on=received, reason="Synthetic benchmark",
                       assigned_practitioner_id=practitioner, status="discharged" if finished else "in_treatment",
                       end_code=EndOfCare.COMPLETED.value if finished else "", ended_on=ended_on if finished else None)
            )
            for k, (start, duration) in enumerate(starts):
                aid = appointment_id + r * 5 + k
                roll = rng.random()
                cancelled_at = cancelled_by = None
                if roll < 0.70:
                    outcome = AttendanceOutcome.ATTENDED.value
                elif roll < 0.74:
                    outcome = AttendanceOutcome.ATTENDED_LATE.value
                elif roll < 0.84:
                    outcome = AttendanceOutcome.DID_NOT_ATTEND.value
                elif roll < 0.86:
                    outcome = AttendanceOutcome.LATE_NOT_SEEN.value
                elif roll < 0.94:
                    outcome, cancelled_by = AttendanceOutcome.CANCELLED_BY_PATIENT.value, "patient"
                    cancelled_at = start - timedelta(hours=rng.choice([2, 6, 20, 24, 30, 72]))
                else:
                    outcome, cancelled_by = AttendanceOutcome.CANCELLED_BY_PROVIDER.value, "service"
                    cancelled_at = start - timedelta(hours=rng.choice([3, 12, 48, 96]))
                appointments.append(
                    ca.row(id=aid, referral_id=rid, practitioner_id=practitioner, appointment_type=AppointmentType.ASSESSMENT.value if k == 0 else AppointmentType.TREATMENT.value,
                           start=start, duration_minutes=duration, end=start + timedelta(minutes=duration), session_number=k + 1,
                           outcome=outcome, outcome_recorded_at=start, cancelled_at=cancelled_at, cancelled_by=cancelled_by or "",
                           booked_at=start - timedelta(days=7))
                )
                for j in range(self.attempts_per_appointment):
                    at = start - timedelta(days=j, minutes=rng.randrange(0, 240))
                    attempts.append(
                        cc.row(id=attempt_id + len(attempts), referral_id=rid, practitioner_id=practitioner,
                               appointment_id=aid if j == 0 else None, attempted_at=at, recorded_at=at,
                               outcome="answered" if j == 0 and outcome in ATTENDED_OUTCOMES else rng.choice(CALL_OUTCOMES))
                    )
                    if rng.random() < 0.0025:  # a few logged by mistake and undone: they count nowhere
                        undos.append(cu.row(id=undo_id + len(undos), attempt_id=attempt_id + len(attempts) - 1,
                                            undone_by_id=practitioner, undone_at=at + timedelta(hours=1)))
        cp.copy(patients)
        cr.copy(referrals)
        ca.copy(appointments)
        cc.copy(attempts)
        cu.copy(undos)
        for c in (cp, cr, ca, cc, cu):
            c.reset_sequence()
        return {"referrals": len(referrals), "appointments": len(appointments), "attempts": len(attempts), "undone": len(undos)}

    # ---- what is timed ----------------------------------------------------------------------------------

    def _parts(self):
        return {
            "headline_weekly_practitioners": lambda p: selectors.activity_figures(p),
            "pre_assessment_and_assessment_wait": lambda p: selectors.pre_assessment_figures(p),
            "first_contact_wait": lambda p: selectors.first_contact_figures(p),
            "first_treatment_waits": lambda p: selectors.first_treatment_figures(p),
            "longest_held_without_assessment": lambda p: list(selectors.longest_held_without_assessment(p)),
            # Not in the hand-written reference (which predates it): timed so its share of the report is known.
            "recovered_capacity": lambda p: selectors.recovered_figures(p),
        }

    def _in_session(self, fn, params):
        with report_session():
            return fn(params.with_settings())

    def _execute(self, cursor, sql, values):
        cursor.execute(sql, values)
        names = [c.name for c in cursor.description]
        return [dict(zip(names, row)) for row in cursor.fetchall()]

    def _values(self, params, settings):
        return {
            "start": params.start,
            "end": params.end,
            "hours": settings.late_cancellation_notice_hours,
            "call_minutes": settings.failed_call_minutes,
            "today": datetime.date.today(),
            "now": datetime.datetime.now(datetime.UTC),
            "open": [str(s) for s in Referral.OPEN_STATUSES],
        }

    def _six_totals(self, params, settings):
        with report_session(), connection.cursor() as cursor:  # same session settings as the report (JIT off)
            (row,) = self._execute(cursor, SIX_TOTALS_SQL, self._values(params, settings))
            return {name: int(value) for name, value in row.items()}

    def _reference(self, params, settings):
        values = self._values(params, settings)
        with report_session(), connection.cursor() as cursor:
            return {name: self._execute(cursor, sql, values) for name, sql in REFERENCE_SQL.items()}

    # ---- the report's numbers must be the reference's -------------------------------------------------

    def _check(self, report, reference, six_totals):
        minutes = report["settings"]["failed_call_minutes"]
        causes = ("dna", "late_cancellation", "service_cancellation")
        appointments = {(r["all_weeks"], r["all_practitioners"], r["week"], r["practitioner_id"]): r for r in reference["appointments"]}
        failed = {(r["all_weeks"], r["all_practitioners"], r["week"], r["practitioner_id"]): r["n"] for r in reference["failed_calls"]}
        total = appointments[(1, 1, None, None)]
        expected = {
            "booked_minutes": total["booked_minutes"],
            "attended_minutes": total["attended_minutes"],
            "appointment_counts": {name: total[f"{name}_count"] for name in ("booked", "attended", *causes)},
            "failed_call_count": failed.get((1, 1, None, None), 0),
        }
        lost = {cause: total[f"{cause}_minutes"] for cause in causes}
        lost["failed_calls"] = expected["failed_call_count"] * minutes
        lost["total"] = sum(lost.values())
        expected["lost_minutes"] = lost
        weekly = {}
        for (all_weeks, all_practitioners, week, _), row in appointments.items():
            if all_practitioners and not all_weeks:
                weekly[week.isoformat()] = {cause: row[f"{cause}_minutes"] for cause in causes}
        for (all_weeks, all_practitioners, week, _), n in failed.items():
            if all_practitioners and not all_weeks:
                weekly.setdefault(week.isoformat(), {cause: 0 for cause in causes})["failed_calls"] = n * minutes
        practitioners = {}
        for (all_weeks, all_practitioners, _, pid), row in appointments.items():
            if all_weeks and not all_practitioners:
                practitioners[pid] = {"booked": row["booked_minutes"], "attended": row["attended_minutes"],
                                      **{cause: row[f"{cause}_minutes"] for cause in causes}}
        for (all_weeks, all_practitioners, _, pid), n in failed.items():
            if all_weeks and not all_practitioners:
                practitioners.setdefault(pid, {"booked": 0, "attended": 0, **{cause: 0 for cause in causes}})["failed_calls"] = n * minutes
        (pre,) = reference["pre_assessment"]
        expected["pre_assessment"] = {
            "referrals_assessed": pre["n"],
            "contacts_distribution": {bucket: pre[f"b{i}"] for i, bucket in enumerate(selectors.CONTACT_BUCKETS)},
            "contacts_median": _number(pre["contacts_median"]),
            "contacts_p90": pre["contacts_p90"],
            "lost_minutes": int(pre["lost"]),
        }
        (contacts,) = reference["first_contacts"]
        (treatments,) = reference["first_treatments"]
        expected["waits"] = {
            "to_first_contact_median_days": _number(contacts["wait_median"]),
            "to_assessment_median_days": _number(pre["wait_median"]),
            "to_first_treatment_median_days": _number(treatments["wait_median"]),
            "within_6_weeks_pct": _pct(treatments["within_6"], treatments["n"]),
            "within_18_weeks_pct": _pct(treatments["within_18"], treatments["n"]),
            "first_contacts": contacts["n"],
            "assessments": pre["n"],
            "first_treatments": treatments["n"],
        }
        expected["longest_held_without_assessment"] = [
            {"referral_id": r["referral_id"], "received_on": r["received_on"].isoformat(), "days_held": r["days_held"],
             "status": r["status"], "contacts": r["contacts"], "lost_minutes": int(r["lost_minutes"])}
            for r in reference["longest_held"]
        ]
        got = {key: report[key] for key in expected}
        got_weekly = {
            w["week_starting"]: {k: w[k] for k in (*causes, "failed_calls")} for w in report["weekly_lost_minutes"] if w["total"] or w["week_starting"] in weekly
        }
        for w in weekly.values():
            w.setdefault("failed_calls", 0)
        got_practitioners = {
            p["practitioner_id"]: {"booked": p["booked_minutes"], "attended": p["attended_minutes"],
                                   **{k: p["lost_minutes"][k] for k in (*causes, "failed_calls")}}
            for p in report["practitioners"]
        }
        for p in practitioners.values():
            p.setdefault("failed_calls", 0)
        problems = [f"{key}: report {got[key]} vs reference {expected[key]}" for key in expected if got[key] != expected[key]]
        if got_weekly != weekly:
            problems.append(f"weekly lost minutes: report {got_weekly} vs reference {weekly}")
        if got_practitioners != practitioners:
            problems.append("per-practitioner figures differ from the reference")
        headline = {"booked": report["booked_minutes"], "attended": report["attended_minutes"],
                    **{k: report["lost_minutes"][k] for k in (*causes, "failed_calls")}}
        if headline != six_totals:
            problems.append(f"headline totals: report {headline} vs six-total query {six_totals}")
        if problems:
            raise CommandError("The report and the hand-written SQL disagree:\n" + "\n".join(problems))
        self.stdout.write("The report's figures equal the hand-written reference's.")
