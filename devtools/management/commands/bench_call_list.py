"""Benchmark: server time of the PWP call list for a large caseload, as a ratio to a minimal logged-in page.

    DATABASE_URL=postgres://... python manage.py bench_call_list [--patients 200 1000] [--attempts 20] [--repeat 15] [--runs 3]

Builds the caseload inside a transaction that is rolled back at the end (nothing is left behind), then
renders both pages through Django's test client in this process (server time only, no network),
interleaved, `--repeat` times per run. Prints JSON: for each size and run the min/median/max of both pages
(ms), their query counts, sizes and rows, and the ratios of the mins and of the medians; then each size's
ratios over the runs. Meant for PostgreSQL; runs on SQLite too, with a warning.
"""

import json
import random
import statistics
import time
from datetime import datetime, timedelta
from datetime import time as clock

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand
from django.db import connection, transaction
from django.test import Client, override_settings
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

OUTCOMES = ["no_answer", "voicemail", "busy", "no_answer", "wrong_number", "answered", "callback_requested"]


class Rollback(Exception):
    pass


class Command(BaseCommand):
    help = "Time the call list for a large caseload against a minimal logged-in page (ratio)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--patients", type=int, nargs="+", default=[200, 1000], help="Caseload sizes to measure (each built anew)."
        )
        parser.add_argument("--attempts", type=int, default=20, help="Past call attempts per patient.")
        parser.add_argument("--repeat", type=int, default=15, help="Timed renders of each page in one run.")
        parser.add_argument("--runs", type=int, default=3, help="Runs per size (the ratio is given for each).")

    def handle(self, *args, patients, attempts, repeat, runs, **options):
        if connection.vendor != "postgresql":
            self.stderr.write(f"Warning: running on {connection.vendor}; the benchmark is meant for PostgreSQL.")
        report = {
            "database": connection.vendor,
            "attempts_per_patient": attempts,
            "repeat": repeat,
            "template_debug": False,
            "sizes": [],
        }
        # Templates rendered as in production (DEBUG off: no per-node debug bookkeeping); the rest of the
        # settings stay as they are, so the test client's plain-http requests are still served.
        templates = [{**engine, "OPTIONS": {**engine.get("OPTIONS", {}), "debug": False}} for engine in settings.TEMPLATES]
        with override_settings(TEMPLATES=templates):
            for size in patients:
                try:
                    with transaction.atomic():
                        report["sizes"].append(self._run(patients=size, attempts=attempts, repeat=repeat, runs=runs))
                        raise Rollback
                except Rollback:
                    pass
        report["rolled_back"] = True
        self.stdout.write(json.dumps(report, indent=2))

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
        """Server time of each URL, `repeat` times, interleaved (baseline, call list, baseline, ...) so both
        pages see the same machine load; then each page's query count and size."""
        samples = {url: [] for url in urls}
        for _ in range(2):
            for url in urls:
                assert client.get(url).status_code == 200
        for _ in range(repeat):
            for url in urls:
                started = time.perf_counter()
                response = client.get(url)
                samples[url].append(time.perf_counter() - started)
                assert response.status_code == 200
        result = {}
        for url in urls:
            with CaptureQueriesContext(connection) as ctx:
                response = client.get(url)
            result[url] = {
                "ms": _spread(samples[url], scale=1000),
                "queries": len(ctx.captured_queries),
                "bytes": len(response.content),
                "rows": response.content.count(b'class="call-row'),
            }
        return result

    def _run(self, *, patients, attempts, repeat, runs):
        started = time.perf_counter()
        pwp = self._build(patients=patients, attempts=attempts)
        if connection.vendor == "postgresql":
            # Planner statistics as autovacuum keeps them on a live database (it cannot see rows not yet
            # committed, so without this every plan would be made for empty tables).
            with connection.cursor() as cursor:
                cursor.execute("ANALYZE")
        self.stderr.write(
            f"Built {patients} patients x {attempts} attempts in {time.perf_counter() - started:.1f} s on {connection.vendor}"
        )
        client = Client()
        client.force_login(pwp)
        baseline_url = reverse("caseload:referral_list") + "?q=no-such-patient"
        calls_url = reverse("calls:today")
        measured = []
        for _ in range(runs):
            m = self._measure(client, [baseline_url, calls_url], repeat)
            base, calls = m[baseline_url], m[calls_url]
            measured.append(
                {
                    "minimal_page": base,
                    "call_list": calls,
                    "ratio_min": round(calls["ms"]["min"] / base["ms"]["min"], 2),
                    "ratio_median": round(calls["ms"]["median"] / base["ms"]["median"], 2),
                }
            )
            self.stderr.write(
                f"{patients} patients: ratio min {measured[-1]['ratio_min']}, median {measured[-1]['ratio_median']}"
            )
        return {
            "patients": patients,
            "runs": measured,
            "ratio_min": _spread([run["ratio_min"] for run in measured]),
            "ratio_median": _spread([run["ratio_median"] for run in measured]),
        }


def _spread(values, *, scale: float = 1) -> dict:
    return {"min": round(min(values) * scale, 2), "median": round(statistics.median(values) * scale, 2), "max": round(max(values) * scale, 2)}
