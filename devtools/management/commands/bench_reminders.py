"""Benchmark: due SMS reminders through the real queue to the fake Twilio server, as a ratio to a
plain loop calling the twilio client against the same fake in the same run.

    createdb -h 127.0.0.1 -U postgres pp_bench_reminders
    export DATABASE_URL=postgres://postgres@127.0.0.1:5432/pp_bench_reminders
    python manage.py migrate
    REDIS_URL=redis://127.0.0.1:6379/8 python manage.py bench_reminders [--messages 10000] [--workers 2] [--repeats 3]
    python manage.py bench_reminders ...          # REDIS_URL unset: django-q's ORM broker

Each repeat is steps 2 to 5 on N new rows: the baseline and the queued run take turns in the same
process, so a busy machine slows both alike; the JSON ends with min / median / max over the repeats.

1. Starts the fake Twilio server in this process on loopback (status callbacks manual: none are
   posted, so only the sends are measured; SMS_PUBLIC_BASE_URL is not passed on either).
2. Setup, not timed: N patients (test-range NHS numbers, Ofcom drama mobiles, SMS consent),
   referrals in treatment, appointments from the day after tomorrow and one reminder per
   appointment, scheduled and due now, with its planner event. Quiet hours are turned off on this
   database so the run does not depend on the time of day.
3. Baseline: a plain loop of N `client.messages.create()` calls with the twilio client, same numbers
   and bodies as the outbox rows, against the same fake.
4. Queue: starts a real `manage.py qcluster` (SMS_BACKEND=twilio pointed at the fake, Q_WORKERS,
   the same database and broker as this process), waits until a probe task has run, then calls the
   real dispatcher (`dispatch_due_messages`, DISPATCH_BATCH rows per call) until it enqueues nothing
   more and waits until no row is scheduled or sending. Timed from the first enqueue to the last
   row handed to the fake (the rows' enqueued_at and sent_at). The cluster's own every-minute
   dispatch runs as in production; tasks still queued then (rows it enqueued again) are run
   before the checks, and the cluster is stopped gracefully.
5. Checks and reports: msgs/s both ways, the ratio, and duplicates (messages the fake created minus
   outbox rows handed over); every row sent once (one try, one "sent" event), every SID unique and
   one the fake created. Exits non-zero on any duplicate, failed or unfinished row.

Needs a PostgreSQL database of its own with no patients; everything it builds is left there for
inspection (drop the database afterwards). With Redis, the broker must have no other cluster on it
and an empty queue: a production worker on the same Redis would pick up the benchmark's tasks.
"""

import contextlib
import datetime
import json
import logging
import math
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction
from django.db.models import Count, Max, Min, Q
from django.utils import timezone

from devtools.fake_twilio import FakeTwilioServer
from scheduling import roles
from scheduling.booking.models import Appointment, BookingSettings
from scheduling.caseload.models import Patient, PractitionerProfile, Referral, Team
from scheduling.codes import AppointmentType, ReferralSource
from scheduling.demo import nhs_test_numbers
from scheduling.reminders import content
from scheduling.reminders.models import MessageEvent, MessageTemplate, OutboundMessage, SmsSettings
from scheduling.reminders.sending import dispatch_due_messages
from scheduling.reminders.rules import template_body
from scheduling.uktime import lenient_local_datetime

Status = OutboundMessage.Status
FROM_NUMBER = "+447700900999"
FIRST_NAMES = ["Alex", "Sam", "Jo", "Priya", "Tomasz", "Aisha", "Gareth", "Mei", "Olu", "Siobhan", "Zoe", "Ravi"]
SESSIONS_PER_DAY = 9  # treatment sessions (BookingSettings' length) back to back from 09:00
DAYS_PER_PRACTITIONER = 20  # four working weeks
KIND = OutboundMessage.reminder_kind(2)


class Command(BaseCommand):
    help = "Benchmark due SMS reminders through django-q to the fake Twilio server against a plain twilio-client loop."

    def add_arguments(self, parser):
        parser.add_argument("--messages", type=int, default=10_000)
        parser.add_argument("--workers", type=int, default=settings.Q_CLUSTER["workers"],
                            help="django-q worker processes (Q_WORKERS of the cluster started).")
        parser.add_argument("--timeout", type=float, default=1800,
                            help="Seconds to wait for every row to be sent before failing.")
        parser.add_argument("--seed", type=int, default=2026)
        parser.add_argument("--repeats", type=int, default=3,
                            help="Rounds of (new rows, plain loop, queue), taking turns; min/median/max reported.")

    def handle(self, *args, messages, workers, timeout, seed, repeats=3, **options):
        if messages < 1 or workers < 1 or repeats < 1:
            raise CommandError("--messages, --workers and --repeats must be at least 1.")
        if connection.vendor != "postgresql":
            raise CommandError("This benchmark runs on PostgreSQL (set DATABASE_URL to a database of its own).")
        if Patient.objects.exists():
            raise CommandError("This database already holds patients; run the benchmark on an empty database of its own.")
        # django-q logs a line per enqueued task; 10,000 of them would bury the report on this
        # console (the cluster logs at LOG_LEVEL, to a file).
        queue_logger = logging.getLogger("django-q")
        level = queue_logger.level
        queue_logger.setLevel(logging.WARNING)
        try:
            self._run(messages=messages, workers=workers, timeout=timeout, seed=seed, repeats=repeats)
        finally:
            queue_logger.setLevel(level)

    def _run(self, *, messages, workers, timeout, seed, repeats):
        broker_name = "redis" if settings.REDIS_URL else "orm"
        self._check_broker_is_ours()
        self.stdout.write(f"Broker: {broker_name}; workers: {workers}; messages: {messages}; repeats: {repeats}")
        rng = random.Random(seed)
        numbers = nhs_test_numbers(rng)
        rounds = []
        with FakeTwilioServer(callbacks="manual") as fake:
            for repeat in range(1, repeats + 1):
                self.stdout.write(f"--- Round {repeat} of {repeats}")
                rounds.append(self._round(fake, repeat=repeat, messages=messages, workers=workers, timeout=timeout,
                                          rng=rng, numbers=numbers))

        def spread(key):
            values = sorted(each[key] for each in rounds)
            return {"min": values[0], "median": round(statistics.median(values), 3), "max": values[-1]}

        problems = [f"round {each['round']}: {problem}" for each in rounds for problem in each["problems"]]
        result = {
            "broker": broker_name,
            "workers": workers,
            "messages": messages,
            "repeats": repeats,
            "baseline_msgs_per_s": spread("baseline_msgs_per_s"),
            "queue_msgs_per_s": spread("queue_msgs_per_s"),
            "queue_to_baseline_ratio": spread("queue_to_baseline_ratio"),
            "rows": sum(each["rows"] for each in rounds),
            "rows_handed_over": sum(each["rows_handed_over"] for each in rounds),
            "fake_messages_created": sum(each["fake_messages_created"] for each in rounds),
            "duplicates": sum(each["duplicates"] for each in rounds),
            "problems": problems,
            "rounds": rounds,
        }
        ratio = result["queue_to_baseline_ratio"]
        self.stdout.write(f"Ratio queue / baseline over {repeats} round(s): min {ratio['min']}, median {ratio['median']}, "
                          f"max {ratio['max']}")
        self.stdout.write(f"Duplicates (messages the fake created - outbox rows handed over): {result['duplicates']}")
        self.stdout.write(json.dumps(result, indent=2))
        if result["duplicates"]:
            problems = [f"{result['duplicates']} duplicate message(s) at the fake Twilio", *problems]
        if problems:
            raise CommandError("Benchmark failed its checks: " + "; ".join(problems))
        self.stdout.write("All checks passed. The benchmark data is left in this database; drop it when done.")

    def _round(self, fake: FakeTwilioServer, *, repeat, messages, workers, timeout, rng, numbers) -> dict:
        """New rows, the plain loop on them, then the queue on them; checked on their own."""
        if repeat > 1:
            # Again before each round: a cluster started on this Redis meanwhile would take our tasks.
            self._check_broker_is_ours()
        started = time.perf_counter()
        sends = self._build(messages=messages, rng=rng, numbers=numbers, repeat=repeat)
        first_id = sends[0][0]
        self.stdout.write(f"Setup (not timed): {messages} patients, referrals, appointments and due reminders "
                          f"in {time.perf_counter() - started:.1f} s")
        fake_before = len(fake.messages)

        baseline_seconds, baseline_sids = self._baseline(fake, sends)
        baseline_rate = messages / baseline_seconds
        self.stdout.write(f"Baseline, plain loop of client.messages.create(): {messages} in {baseline_seconds:.2f} s "
                          f"= {baseline_rate:.1f} msgs/s")

        queue = self._through_the_queue(fake, workers=workers, timeout=timeout, first_id=first_id)
        queue_rate = messages / queue["seconds"]
        self.stdout.write(f"Queue, dispatcher -> django-q -> send_messages -> twilio client: {messages} in "
                          f"{queue['seconds']:.2f} s = {queue_rate:.1f} msgs/s (enqueueing took "
                          f"{queue['dispatch_seconds']:.1f} s of it)")
        self.stdout.write(f"Tasks still queued when the last row was sent (the every-minute dispatch, and rows "
                          f"it enqueued again while they waited; run before the checks): {queue['redundant_tasks']}")
        checks = self._check(fake, baseline_sids=baseline_sids, expected=messages, first_id=first_id,
                             fake_before=fake_before)
        self.stdout.write(f"Ratio queue / baseline: {round(queue_rate / baseline_rate, 3)}; duplicates: {checks['duplicates']}")
        return {
            "round": repeat,
            "baseline_msgs_per_s": round(baseline_rate, 1),
            "queue_msgs_per_s": round(queue_rate, 1),
            "queue_to_baseline_ratio": round(queue_rate / baseline_rate, 3),
            "enqueue_seconds": round(queue["dispatch_seconds"], 1),
            "redundant_tasks": queue["redundant_tasks"],
            **checks,
        }

    # --- Guards ----------------------------------------------------------------------------

    def _check_broker_is_ours(self):
        """Refuse a broker with queued work or another cluster: it would run our tasks against its
        own database, or we would run its tasks."""
        from django_q.brokers import get_broker
        from django_q.status import Stat

        broker = get_broker()
        queued = self._queued(broker)
        if queued:
            raise CommandError(f"The queue already holds {queued} task(s); use a broker (Redis database) of the benchmark's own.")
        if settings.REDIS_URL and Stat.get_all(broker=broker):
            raise CommandError("Another django-q cluster is running on this Redis; use a Redis database of the benchmark's own.")

    # --- Setup -----------------------------------------------------------------------------

    @transaction.atomic
    def _build(self, *, messages: int, rng, numbers, repeat: int) -> list[tuple[int, str, str]]:
        """Rows as the booking and planning services leave them, written in bulk (each round its own
        patients and practitioners). Returns (message id, to, body) in the order the dispatcher will
        take them."""
        now = timezone.now()
        sms_settings = SmsSettings.current()
        # Texts due now must go now, whatever the time of day this runs: no quiet hours (equal times), which
        # update_sms_settings refuses to staff, so written directly on this benchmark's own database.
        sms_settings.quiet_hours_start = sms_settings.quiet_hours_end = datetime.time(0, 0)
        sms_settings.save()
        practitioners = self._practitioners(math.ceil(messages / (SESSIONS_PER_DAY * DAYS_PER_PRACTITIONER)), repeat=repeat)
        days = self._working_days(timezone.localdate() + timedelta(days=2), DAYS_PER_PRACTITIONER)
        session_minutes = BookingSettings.current().treatment_minutes

        patients = Patient.objects.bulk_create(
            [
                Patient(
                    nhs_number=next(numbers), given_name=rng.choice(FIRST_NAMES), family_name=f"Bench{repeat}x{i:05d}",
                    date_of_birth=datetime.date(1960 + i % 40, 1 + i % 12, 1 + i % 28),
                    mobile_phone=f"+447700900{i % 1000:03d}", mobile_is_mobile=True,
                    sms_consent=True, sms_consent_recorded_at=now - timedelta(days=30), created_at=now - timedelta(days=30),
                )
                for i in range(messages)
            ],
            batch_size=2000,
        )
        referrals = Referral.objects.bulk_create(
            [
                Referral(patient=p, source=ReferralSource.GP.value, received_on=timezone.localdate() - timedelta(days=30),
                         reason="Chronic widespread pain", assigned_practitioner=practitioners[i % len(practitioners)],
                         status=Referral.Status.IN_TREATMENT, created_at=now - timedelta(days=30))
                for i, p in enumerate(patients)
            ],
            batch_size=2000,
        )
        appointments = []
        for i, referral in enumerate(referrals):
            slot = i // len(practitioners)  # each practitioner's sessions back to back, day by day
            start = lenient_local_datetime(days[slot // SESSIONS_PER_DAY], datetime.time(9, 0)) + timedelta(
                minutes=session_minutes * (slot % SESSIONS_PER_DAY))
            appointments.append(Appointment(
                referral=referral, practitioner=referral.assigned_practitioner, appointment_type=AppointmentType.TREATMENT,
                start=start, duration_minutes=session_minutes, end=start + timedelta(minutes=session_minutes),
                session_number=2 + i % 7, booked_at=now - timedelta(days=7),
            ))
        appointments = Appointment.objects.bulk_create(appointments, batch_size=2000)
        template = template_body(MessageTemplate.Key.REMINDER)
        outbox = OutboundMessage.objects.bulk_create(
            [
                OutboundMessage(
                    patient=patient, appointment=appointment, appointment_start=appointment.start, kind=KIND,
                    body=content.render(template, content.appointment_placeholders(appointment=appointment, patient=patient)),
                    due_at=now - timedelta(seconds=1), status=Status.SCHEDULED,
                    created_at=appointment.booked_at, updated_at=appointment.booked_at,
                )
                for patient, appointment in zip(patients, appointments)
            ],
            batch_size=2000,
        )
        MessageEvent.objects.bulk_create(
            [MessageEvent(message=m, source=MessageEvent.Source.PLANNER, new_status=Status.SCHEDULED, at=m.created_at)
             for m in outbox],
            batch_size=2000,
        )
        with connection.cursor() as cursor:
            for model in (Patient, Referral, Appointment, OutboundMessage, MessageEvent):
                cursor.execute(f"ANALYZE {connection.ops.quote_name(model._meta.db_table)}")
        return [(m.pk, m.patient.mobile_phone, m.body) for m in sorted(outbox, key=lambda m: (m.due_at, m.pk))]

    def _practitioners(self, count: int, *, repeat: int):
        User = get_user_model()
        team, _ = Team.objects.get_or_create(name="Benchmark team")
        group = Group.objects.filter(name=roles.PWP).first()
        password = make_password(None)  # no sign-in
        users = []
        for n in range(count):
            user = User.objects.create(username=f"bench.r{repeat}.pwp{n + 1:03d}", first_name=FIRST_NAMES[n % len(FIRST_NAMES)], last_name="Bench",
                                       password=password)
            if group:
                user.groups.add(group)
            PractitionerProfile.objects.create(user=user, team=team)
            users.append(user)
        return users

    @staticmethod
    def _working_days(first: datetime.date, count: int) -> list[datetime.date]:
        days, day = [], first
        while len(days) < count:
            if day.weekday() < 5:
                days.append(day)
            day += timedelta(days=1)
        return days

    # --- Baseline --------------------------------------------------------------------------

    def _baseline(self, fake: FakeTwilioServer, sends) -> tuple[float, set[str]]:
        from twilio.http.http_client import TwilioHttpClient
        from twilio.rest import Client

        # As the gateway builds it: same HTTP timeout, base URL pointed at the fake.
        client = Client(fake.account_sid, fake.auth_token, http_client=TwilioHttpClient(timeout=settings.SMS_HTTP_TIMEOUT_SECONDS))
        client.api.base_url = fake.base_url
        sids = set()
        for _, to, body in sends[:20]:  # warm-up, not counted
            sids.add(client.messages.create(to=to, from_=FROM_NUMBER, body=body).sid)
        started = time.perf_counter()
        for _, to, body in sends:
            sids.add(client.messages.create(to=to, from_=FROM_NUMBER, body=body).sid)
        return time.perf_counter() - started, sids

    # --- Through the queue -----------------------------------------------------------------

    def _through_the_queue(self, fake: FakeTwilioServer, *, workers: int, timeout: float, first_id: int) -> dict:
        from django_q.brokers import get_broker

        broker = get_broker()
        log = tempfile.NamedTemporaryFile(prefix="bench_reminders_qcluster_", suffix=".log", delete=False)
        cluster = subprocess.Popen(
            [sys.executable, "manage.py", "qcluster"], cwd=settings.BASE_DIR, env=self._cluster_env(fake, workers),
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + timeout

        def wait_for(what: str, done) -> None:
            while not done():
                if cluster.poll() is not None:
                    raise CommandError(f"The qcluster exited (code {cluster.returncode}) while waiting for {what} "
                                       f"({self._status_counts()}); its log: {log.name}")
                if time.monotonic() > deadline:
                    raise CommandError(f"Still waiting for {what} after {timeout:.0f} s ({self._status_counts()}, "
                                       f"{self._queued(broker)} task(s) queued); qcluster log: {log.name}")
                time.sleep(0.2)

        try:
            started = time.perf_counter()
            self._wait_until_ready(cluster, log.name)
            self.stdout.write(f"qcluster ready (a probe task ran) after {time.perf_counter() - started:.1f} s")
            first_enqueue = timezone.now()
            started = time.perf_counter()
            while dispatch_due_messages():  # DISPATCH_BATCH rows a call, as the every-minute schedule would
                pass
            dispatch_seconds = time.perf_counter() - started
            wait_for("every row to be sent",
                     lambda: not OutboundMessage.objects.filter(status__in=[Status.SCHEDULED, Status.SENDING]).exists())
            # Tasks still queued now are for rows already sent (the every-minute dispatch, or a row it
            # enqueued again): they are run too, so the checks below cover them.
            redundant = self._queued(broker)
            wait_for("the queue to empty", lambda: not self._queued(broker))
        finally:
            started = time.perf_counter()
            self._stop(cluster)  # graceful: tasks a worker already holds are finished first
            log.close()
            self.stdout.write(f"qcluster stopped in {time.perf_counter() - started:.1f} s")
            # Only after a failure: tasks for this database's rows must not be left for whichever
            # cluster uses this broker next (the broker held nothing when we started).
            left = self._queued(broker)
            if left:
                broker.purge_queue()
                self.stdout.write(f"Removed {left} task(s) the benchmark had left in the queue.")
        span = OutboundMessage.objects.filter(pk__gte=first_id).aggregate(first=Min("enqueued_at"), last=Max("sent_at"))
        if span["last"] is None:
            raise CommandError(f"No row was handed to the fake ({self._status_counts()}); qcluster log: {log.name}")
        # From the first enqueue (our clock just before the dispatcher ran; it stamps enqueued_at
        # just after) to the last row handed to the fake.
        start = min(first_enqueue, span["first"] or first_enqueue)
        os.unlink(log.name)  # kept (and named in the error) only when something went wrong
        return {"seconds": (span["last"] - start).total_seconds(), "dispatch_seconds": dispatch_seconds,
                "redundant_tasks": redundant}

    @staticmethod
    def _queued(broker) -> int:
        # The ORM broker keeps a task it handed out (locked) until it is acknowledged; Redis pops it.
        return (broker.queue_size() or 0) + (broker.lock_size() or 0)

    def _cluster_env(self, fake: FakeTwilioServer, workers: int) -> dict:
        db = connection.settings_dict
        auth = urllib.parse.quote(db["USER"] or "", safe="")
        if db["PASSWORD"]:
            auth += ":" + urllib.parse.quote(db["PASSWORD"], safe="")
        host = db["HOST"] or "localhost"
        query = urllib.parse.urlencode({k: v for k, v in (db.get("OPTIONS") or {}).items() if isinstance(v, (str, int))})
        # The database this process is connected to (under pytest, the test database), not DATABASE_URL.
        database_url = f"postgres://{auth}@{host}:{db['PORT'] or 5432}/{urllib.parse.quote(db['NAME'])}" + (
            f"?{query}" if query else "")
        env = {k: v for k, v in os.environ.items() if not k.startswith("TWILIO_")}
        env.update({
            "DATABASE_URL": database_url,
            "REDIS_URL": settings.REDIS_URL,
            "Q_WORKERS": str(workers),
            "SMS_BACKEND": "twilio",
            "TWILIO_ACCOUNT_SID": fake.account_sid,
            "TWILIO_AUTH_TOKEN": fake.auth_token,
            "TWILIO_FROM_NUMBER": FROM_NUMBER,
            "TWILIO_API_BASE_URL": fake.base_url,
            "SMS_PUBLIC_BASE_URL": "",  # no delivery-report URLs: callbacks are not part of the measure
            "SMS_HTTP_TIMEOUT_SECONDS": str(settings.SMS_HTTP_TIMEOUT_SECONDS),
            "DJANGO_SETTINGS_MODULE": "painplatform.settings",
        })
        return env

    def _wait_until_ready(self, cluster: subprocess.Popen, log_name: str, *, within: float = 25):
        """A probe task has run: the workers are up, so start-up is not counted. Within 25 s: the
        cluster's scheduler first runs 30 s after start, and would dispatch the rows itself."""
        from django_q.tasks import async_task, fetch

        task_id = async_task("os.getpid", save=True)  # saved whatever the save_limit
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            task = fetch(task_id)
            if task is not None:
                if not task.success:
                    raise CommandError(f"The probe task failed in the qcluster; its log: {log_name}")
                return
            if cluster.poll() is not None:
                raise CommandError(f"The qcluster exited (code {cluster.returncode}) on start; its log: {log_name}")
            time.sleep(0.1)
        raise CommandError(f"The qcluster did not run a probe task within {within:.0f} s; its log: {log_name}")

    @staticmethod
    def _stop(cluster: subprocess.Popen):
        # SIGTERM to the cluster's main process only: it stops its workers itself, after their
        # current task (signalling the whole group would interrupt them mid-task).
        if cluster.poll() is None:
            cluster.send_signal(signal.SIGTERM)
        try:
            cluster.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(cluster.pid, signal.SIGKILL)
            cluster.wait(timeout=10)

    @staticmethod
    def _status_counts() -> str:
        counts = OutboundMessage.objects.values("status").annotate(n=Count("id")).order_by("status")
        return ", ".join(f"{row['status']}: {row['n']}" for row in counts)

    # --- Checks ----------------------------------------------------------------------------

    def _check(self, fake: FakeTwilioServer, *, baseline_sids: set[str], expected: int, first_id: int,
               fake_before: int) -> dict:
        created = [m["sid"] for m in fake.messages[fake_before:] if m["sid"] not in baseline_sids]
        created_set = set(created)
        rows = list(
            OutboundMessage.objects.filter(pk__gte=first_id).annotate(
                sent_events=Count("events", filter=Q(events__new_status=Status.SENT, events__source=MessageEvent.Source.WORKER)),
            ).values("pk", "status", "provider_sid", "attempts", "sent_events")
        )
        handed_over = [r for r in rows if r["provider_sid"]]
        sids = [r["provider_sid"] for r in handed_over]
        problems = []
        not_sent = [r for r in rows if r["status"] not in (Status.SENT, Status.DELIVERED)]
        if not_sent:
            problems.append(f"{len(not_sent)} row(s) not sent ({self._status_counts()})")
        if len(rows) != expected:
            problems.append(f"{len(rows)} outbox rows, expected {expected}")
        if len(set(sids)) != len(sids):
            problems.append(f"{len(sids) - len(set(sids))} SID(s) on more than one row")
        unknown = [s for s in sids if s not in created_set]
        if unknown:
            problems.append(f"{len(unknown)} row SID(s) the fake never created")
        twice = [r for r in rows if r["attempts"] != 1 or r["sent_events"] != 1]
        if twice:
            problems.append(f"{len(twice)} row(s) tried or sent more than once")
        return {
            "rows": len(rows),
            "rows_handed_over": len(set(sids)),
            "fake_messages_created": len(created),
            "duplicates": len(created) - len(set(sids)),
            "problems": problems,
        }
