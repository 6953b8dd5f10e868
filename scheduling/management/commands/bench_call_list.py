"""Benchmark: server time of the PWP call list for a large caseload, as a ratio to a minimal logged-in page.

    DATABASE_URL=postgres://... python manage.py bench_call_list [--patients 200] [--attempts 20] [--repeat 15]

Builds the caseload inside a transaction that is rolled back at the end (nothing is left behind), then
renders both pages through Django's test client in this process (server time only, no network) and
prints the medians and their ratio, then the same as JSON with the spread (min, median, max) of the
repeats, both pages timed interleaved. Meant for PostgreSQL; runs on SQLite too, with a warning.
"""

import json
import random
import statistics
import time
from datetime import datetime, timedelta
from datetime import time as clock

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand
from django.db import connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from scheduling import roles
from scheduling.booking.services import book_appointment
from scheduling.calls.models import ContactAttempt
from scheduling.calls.policy import LONDON
from scheduling.caseload.models import Patient, PractitionerProfile
from scheduling.caseload.services import create_referral, register_patient
from scheduling.demo import nhs_test_numbers
from scheduling.management.timing import interleaved, ratio_spread, spread

OUTCOMES = ["no_answer", "voicemail", "busy", "no_answer", "wrong_number", "answered", "callback_requested"]


class Rollback(Exception):
    pass


class Command(BaseCommand):
    help = "Time the call list for a large caseload against a minimal logged-in page (ratio)."

    def add_arguments(self, parser):
        parser.add_argument("--patients", type=int, default=200)
        parser.add_argument("--attempts", type=int, default=20, help="Past call attempts per patient.")
        parser.add_argument("--repeat", type=int, default=15, help="Timed renders of each page.")

    def handle(self, *args, patients, attempts, repeat, **options):
        if connection.vendor != "postgresql":
            self.stderr.write(f"Warning: running on {connection.vendor}; the benchmark is meant for PostgreSQL.")
        try:
            with transaction.atomic():
                self._run(patients=patients, attempts=attempts, repeat=repeat)
                raise Rollback
        except Rollback:
            self.stdout.write("Benchmark data rolled back.")

    def _build(self, *, patients: int, attempts: int):
        rng = random.Random(2026)
        User = get_user_model()
        pwp = User.objects.create_user(
            username=f"bench.pwp.{rng.randrange(10**9)}", first_name="Bench", last_name="PWP"
        )
        pwp.groups.add(Group.objects.get(name=roles.PWP))
        PractitionerProfile.objects.create(user=pwp)
        taken = set(Patient.objects.values_list("nhs_number", flat=True))
        numbers = (n for n in nhs_test_numbers(rng) if n not in taken)
        now = timezone.now()
        today = timezone.localdate()
        referrals = []
        for i in range(patients):
            patient = register_patient(
                nhs_number=next(numbers),
                given_name="Bench",
                family_name=f"Patient{i}",
                date_of_birth=today - timedelta(days=365 * 40 + i),
                mobile_phone=f"07700 900{i % 1000:03d}",
                sms_consent=i % 4 != 0,
                voicemail_allowed=i % 3 != 0,
                preferred_days=[[], [0, 1, 2, 3, 4], [1, 3]][i % 3],
                preferred_times=[[], ["morning"], ["evening"]][i % 3],
            )
            referrals.append(
                create_referral(
                    patient=patient,
                    source="A1",
                    received_on=today - timedelta(days=60),
                    reason="Chronic widespread pain",
                    assigned_practitioner=pwp,
                    actor=pwp,
                )
            )
        # Past attempts in bulk: their number is what is being measured, not how they were logged.
        rows = []
        for n, referral in enumerate(referrals):
            for k in range(attempts):
                at = now - timedelta(days=58 - (k * 58) // max(attempts, 1), hours=rng.randrange(0, 9))
                outcome = rng.choice(OUTCOMES)
                rows.append(
                    ContactAttempt(
                        referral=referral,
                        practitioner=pwp,
                        recorded_by=pwp,
                        attempted_at=at,
                        recorded_at=at,
                        outcome=outcome,
                        callback_at=at + timedelta(hours=2) if outcome == "callback_requested" else None,
                    )
                )
        ContactAttempt.objects.bulk_create(rows, batch_size=1000)
        for slot, referral in enumerate(referrals[:8]):
            start = datetime.combine(today, clock(9 + slot), tzinfo=LONDON)
            book_appointment(referral=referral, practitioner=pwp, appointment_type="assessment", start=start, actor=pwp)
        return pwp

    def _measure(self, client, urls, repeat):
        """Server time of each URL; samples interleaved so both pages see the same machine load."""

        def render(url):
            def fn():
                response = client.get(url)
                assert response.status_code == 200
                return response

            return fn

        samples, _ = interleaved({url: render(url) for url in urls}, repeat=repeat, warmup=2)
        result = {}
        for url in urls:
            with CaptureQueriesContext(connection) as ctx:
                response = client.get(url)
            result[url] = (samples[url], len(ctx.captured_queries), len(response.content))
        return result

    def _run(self, *, patients, attempts, repeat):
        started = time.perf_counter()
        pwp = self._build(patients=patients, attempts=attempts)
        self.stdout.write(
            f"Built {patients} patients x {attempts} attempts ({patients * attempts} attempts) in {time.perf_counter() - started:.1f} s "
            f"on {connection.vendor}"
        )
        client = Client()
        client.force_login(pwp)
        baseline_url = reverse("caseload:referral_list") + "?q=no-such-patient"
        calls_url = reverse("calls:today")
        measured = self._measure(client, [baseline_url, calls_url], repeat)
        base_s, base_q, base_size = measured[baseline_url]
        call_s, call_q, call_size = measured[calls_url]
        base_t, call_t = statistics.median(base_s), statistics.median(call_s)
        self.stdout.write(f"minimal logged-in page: median {base_t * 1000:.1f} ms, {base_q} queries, {base_size} bytes")
        self.stdout.write(f"call list:              median {call_t * 1000:.1f} ms, {call_q} queries, {call_size} bytes")
        self.stdout.write(self.style.SUCCESS(f"ratio call list / minimal page: {call_t / base_t:.1f}"))
        result = {
            "database": connection.vendor,
            "patients": patients,
            "attempts_per_patient": attempts,
            "repeat": repeat,
            "minimal_page_seconds": spread(base_s, 5),
            "call_list_seconds": spread(call_s, 5),
            "call_list_to_minimal_page_ratio": ratio_spread(call_s, base_s),
            "queries": {"minimal_page": base_q, "call_list": call_q},
        }
        self.stdout.write(json.dumps(result, indent=2))
