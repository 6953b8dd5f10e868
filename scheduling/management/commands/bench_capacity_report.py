"""Benchmark the capacity report on PostgreSQL with a large synthetic service.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/pp_bench python manage.py migrate
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/pp_bench python manage.py bench_capacity_report

Builds (with COPY, in seconds rather than hours) a service of 50 practitioners with one year of
200,000 appointments and 1,000,000 call attempts, then prints:
- the one-year JSON report's time as a ratio to one hand-written SQL query for the same headline totals
  (both run in this process, same data, checked to agree);
- the one-week report's time with one year of history, and again after two more years are added.
Needs an empty database of its own: it refuses a database that already holds referrals.
"""

import datetime
import json
import random
import statistics
import time
from datetime import timedelta
from zoneinfo import ZoneInfo

from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction

from scheduling.booking.models import Appointment
from scheduling.calls.models import ContactAttempt
from scheduling.caseload.models import Patient, PractitionerProfile, Referral, ServiceSettings, Team
from scheduling.reports.selectors import ReportParams, build_report, report_session

LONDON = ZoneInfo("Europe/London")
SOURCES = ["A1", "A1", "A1", "A3", "B1", "H2", "H2", "M7"]
CALL_OUTCOMES = ["no_answer", "no_answer", "no_answer", "voicemail", "busy", "answered", "wrong_number", "declined"]

HAND_WRITTEN_SQL = """
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


class Command(BaseCommand):
    help = "Benchmark the capacity report on PostgreSQL against hand-written SQL, and one week vs more history."

    def add_arguments(self, parser):
        parser.add_argument("--practitioners", type=int, default=50)
        parser.add_argument("--appointments", type=int, default=200_000, help="per year")
        parser.add_argument("--attempts", type=int, default=1_000_000, help="per year")
        parser.add_argument("--extra-years", type=int, default=2, help="older years added for the history comparison")
        parser.add_argument("--repeat", type=int, default=5)
        parser.add_argument("--seed", type=int, default=7)

    def handle(self, *args, **options):
        if connection.vendor != "postgresql":
            raise CommandError("This benchmark runs on PostgreSQL (set DATABASE_URL to a database of its own).")
        if Referral.objects.exists():
            raise CommandError("This database already holds referrals; run the benchmark on an empty database of its own.")
        self.rng = random.Random(options["seed"])
        self.repeat = options["repeat"]
        self.per_year = options["appointments"]
        self.attempts_per_appointment = max(1, options["attempts"] // options["appointments"])
        settings = ServiceSettings.current()
        today = datetime.date.today()
        self.last_day = today - timedelta(days=1)
        self.practitioners = self._practitioners(options["practitioners"])
        self.copiers = {m: _Copier(m) for m in (Patient, Referral, Appointment, ContactAttempt)}

        started = time.perf_counter()
        counts = self._year(year_index=0)
        self.stdout.write(f"year 1: {counts} inserted in {time.perf_counter() - started:.1f} s")
        self._analyze()

        year = ReportParams(date_from=self.last_day - timedelta(days=364), date_to=self.last_day)
        week_start = self.last_day - timedelta(days=self.last_day.weekday() + 7)
        week = ReportParams(date_from=week_start, date_to=week_start + timedelta(days=6))

        report_times, report = self._time(lambda: json.dumps(build_report(year)))
        report = json.loads(report)
        sql_times, sql_row = self._time(lambda: self._hand_written(year, settings))
        ours = {
            "booked": report["booked_minutes"],
            "attended": report["attended_minutes"],
            **{k: report["lost_minutes"][k] for k in ("dna", "late_cancellation", "service_cancellation", "failed_calls")},
        }
        if ours != sql_row:
            raise CommandError(f"The report and the hand-written SQL disagree: {ours} vs {sql_row}")
        week_one_times, _ = self._time(lambda: json.dumps(build_report(week)))

        started = time.perf_counter()
        for extra in range(1, options["extra_years"] + 1):
            counts = self._year(year_index=extra)
            self.stdout.write(f"older year {extra}: {counts}")
        self.stdout.write(f"extra history inserted in {time.perf_counter() - started:.1f} s")
        self._analyze()
        week_more_times, _ = self._time(lambda: json.dumps(build_report(week)))
        result = {
            "practitioners": len(self.practitioners),
            "appointments_per_year": self.per_year,
            "attempts_per_year": self.per_year * self.attempts_per_appointment,
            "headline_totals": sql_row,
            "year_report_seconds_median": round(statistics.median(report_times), 4),
            "hand_written_sql_seconds_median": round(statistics.median(sql_times), 4),
            "year_report_to_sql_ratio": round(statistics.median(report_times) / statistics.median(sql_times), 2),
            "week_report_seconds_median_1_year": round(statistics.median(week_one_times), 4),
            f"week_report_seconds_median_{1 + options['extra_years']}_years": round(statistics.median(week_more_times), 4),
            "week_report_history_ratio": round(statistics.median(week_more_times) / statistics.median(week_one_times), 2),
        }
        self.stdout.write(json.dumps(result, indent=2))

    def _time(self, fn):
        fn()  # warm up (plans, caches)
        times, value = [], None
        for _ in range(self.repeat):
            started = time.perf_counter()
            value = fn()
            times.append(time.perf_counter() - started)
        return times, value

    def _hand_written(self, params, settings):
        with report_session(), connection.cursor() as cursor:  # same session settings as the report (JIT off)
            cursor.execute(
                HAND_WRITTEN_SQL,
                {
                    "start": params.start,
                    "end": params.end,
                    "hours": settings.late_cancellation_notice_hours,
                    "call_minutes": settings.failed_call_minutes,
                },
            )
            names = [c.name for c in cursor.description]
            return {name: int(value) for name, value in zip(names, cursor.fetchone())}

    def _analyze(self):
        with connection.cursor() as cursor:
            for model in (Patient, Referral, Appointment, ContactAttempt):
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

    @transaction.atomic
    def _year(self, *, year_index: int):
        """One year of activity ending `year_index` years before yesterday."""
        rng = self.rng
        cp, cr, ca, cc = (self.copiers[m] for m in (Patient, Referral, Appointment, ContactAttempt))
        n_referrals = self.per_year // 5
        first_day = self.last_day - timedelta(days=365 * (year_index + 1) - 1)
        patient_id, referral_id, appointment_id, attempt_id = cp.next_id(), cr.next_id(), ca.next_id(), cc.next_id()
        patients, referrals, appointments, attempts = [], [], [], []
        for r in range(n_referrals):
            pid, rid = patient_id + r, referral_id + r
            patients.append(
                cp.row(id=pid, nhs_number=f"9{pid:09d}", given_name="Synthetic", family_name=f"Patient {pid}", date_of_birth=datetime.date(1970, 1, 1))
            )
            practitioner = self.practitioners[r % len(self.practitioners)]
            # Received so that the whole course (assessment ~2 weeks later, then weekly) stays inside the year.
            received = first_day + timedelta(days=rng.randrange(0, 365 - 50))
            first = datetime.datetime.combine(received + timedelta(days=rng.randrange(7, 21)), datetime.time(rng.randrange(9, 17)), LONDON)
            # Courses that ended more than two weeks ago are discharged (completed); the rest stay open.
            ended_on = first.date() + timedelta(days=7 * 4 + 14)
            finished = ended_on < self.last_day
            referrals.append(
                cr.row(id=rid, patient_id=pid, source=rng.choice(SOURCES), received_on=received, reason="Synthetic benchmark",
                       assigned_practitioner_id=practitioner, status="discharged" if finished else "in_treatment",
                       end_code="46" if finished else "", ended_on=ended_on if finished else None)
            )
            for k in range(5):
                aid = appointment_id + r * 5 + k
                start = first + timedelta(days=7 * k)
                duration = 60 if k == 0 else 45
                roll = rng.random()
                cancelled_at = cancelled_by = None
                if roll < 0.70:
                    outcome = "5"
                elif roll < 0.74:
                    outcome = "6"
                elif roll < 0.84:
                    outcome = "3"
                elif roll < 0.86:
                    outcome = "7"
                elif roll < 0.94:
                    outcome, cancelled_by = "2", "patient"
                    cancelled_at = start - timedelta(hours=rng.choice([2, 6, 20, 24, 30, 72]))
                else:
                    outcome, cancelled_by = "4", "service"
                    cancelled_at = start - timedelta(hours=rng.choice([3, 12, 48, 96]))
                appointments.append(
                    ca.row(id=aid, referral_id=rid, practitioner_id=practitioner, appointment_type="assessment" if k == 0 else "treatment",
                           start=start, duration_minutes=duration, end=start + timedelta(minutes=duration), session_number=k + 1,
                           outcome=outcome, outcome_recorded_at=start, cancelled_at=cancelled_at, cancelled_by=cancelled_by or "",
                           booked_at=start - timedelta(days=7))
                )
                for j in range(self.attempts_per_appointment):
                    at = start - timedelta(days=j, minutes=rng.randrange(0, 240))
                    attempts.append(
                        cc.row(id=attempt_id + len(attempts), referral_id=rid, practitioner_id=practitioner,
                               appointment_id=aid if j == 0 else None, attempted_at=at, recorded_at=at,
                               outcome="answered" if j == 0 and outcome in ("5", "6") else rng.choice(CALL_OUTCOMES))
                    )
        cp.copy(patients)
        cr.copy(referrals)
        ca.copy(appointments)
        cc.copy(attempts)
        for c in (cp, cr, ca, cc):
            c.reset_sequence()
        return {"referrals": len(referrals), "appointments": len(appointments), "attempts": len(attempts)}
