#!/usr/bin/env python3
"""Load run: 50 concurrent PWPs working their call lists against the production-mode stack on loopback.

Starts the same stack as deploy/stack_smoke.py (PostgreSQL, Redis, gunicorn x2, qcluster), creates
50 PWPs with 20 people each still to reach, runs locust headless: first one user alone (the
baseline, default 30 s), then 50 users for a bounded time (default 2 minutes, at most
LOAD_MAX_REQUESTS_PER_USER requests per user). Reports p50/p95 latency of both and their ratio,
the error count, and whether every outcome the server said it recorded is in the database (none
lost, none extra). Exits non-zero on any error or mismatch. Sends traffic to 127.0.0.1 only.

    .venv/bin/pip install -e ".[load]" && .venv/bin/python deploy/load_test.py [--users 50] [--minutes 2]
"""

import argparse
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import stack_smoke  # noqa: E402

SETUP = """
from datetime import date, timedelta
from django.contrib.auth.models import Group, User
from django.utils import timezone
from scheduling.caseload.models import PractitionerProfile, Team
from scheduling.caseload.nhs_number import check_digit
from scheduling.caseload.services import create_referral, register_patient
team = Team.objects.create(name="Load team")
pwp_group = Group.objects.get(name="PWP")
numbers = (f"999{i:06d}" for i in range(100000, 999999))
def nhs():
    for first_nine in numbers:
        d = check_digit(first_nine)
        if d is not None:
            return f"{first_nine}{d}"
n = 0
for p in range(1, USERS + 1):
    user = User.objects.create_user(f"load.pwp{p:02d}", password="load-test-password-1", first_name=f"Load{p}", last_name="PWP")
    user.groups.add(pwp_group)
    PractitionerProfile.objects.create(user=user, team=team)
    for r in range(20):
        patient = register_patient(nhs_number=nhs(), given_name="Load", family_name=f"Patient{n}",
            date_of_birth=date(1970, 1, 1), mobile_phone=f"07700 900{n % 1000:03d}", sms_consent=False)
        create_referral(patient=patient, source="A1", received_on=timezone.localdate() - timedelta(days=3),
            reason="Chronic widespread pain", assigned_practitioner=user)
        n += 1
print(n)
"""

COUNT = "from scheduling.calls.models import ContactAttempt; print(ContactAttempt.objects.count())"


def run_locust(stack, *, users: int, seconds: int, name: str, first_user: int = 1) -> tuple[dict, dict]:
    """One headless locust run; returns (its stats rows by endpoint, its recorded/refused counts)."""
    results = stack.logs / name
    locust = str(Path(stack_smoke.PYTHON).parent / "locust")
    env = dict(stack.env, LOAD_RESULT_FILE=str(results.with_suffix(".json")), LOAD_FIRST_USER=str(first_user))
    # Requests in flight when the time is up may finish (90 s, for a saturated machine): one cut off would
    # be stored without its answer being counted, and the check below would call it extra.
    subprocess.run(
        [locust, "-f", "deploy/locustfile.py", "--headless", "-u", str(users), "-r", "10",
         "--run-time", f"{seconds}s", "--stop-timeout", "90",
         "--host", f"http://127.0.0.1:{stack.web_port}", "--csv", str(results), "--only-summary"],
        cwd=stack_smoke.ROOT, env=env, check=False, timeout=seconds + 240,
        stdout=subprocess.DEVNULL, stderr=open(stack.logs / f"{name}-locust.log", "w"),
    )
    rows = {row["Name"]: row for row in csv.DictReader(open(f"{results}_stats.csv"))}
    return rows, json.loads(results.with_suffix(".json").read_text())


def print_table(title: str, rows: dict) -> None:
    print(f"\n{title}\nendpoint          requests  failures  p50 ms  p95 ms  max ms")
    for name in ["/calls/", "/calls/log/", "/login/", "Aggregated"]:
        row = rows.get(name)
        if row:
            print(f"{name:16} {row['Request Count']:>9} {row['Failure Count']:>9} {row['50%']:>7} "
                  f"{row['95%']:>7} {float(row['Max Response Time']):>7.0f}")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--minutes", type=float, default=2)
    parser.add_argument("--baseline-seconds", type=int, default=30,
                        help="first, one user alone for this long: the latencies below are also given as ratios to it")
    parser.add_argument("--workers", type=int, default=2 * (os.cpu_count() or 1) + 1,
                        help="gunicorn workers (default 2 x cores + 1, as the README advises for production)")
    parser.add_argument("--threads", type=int, default=2, help="gunicorn threads per worker")
    args = parser.parse_args()
    stack_smoke.ensure_services()
    stack_smoke.reset_database()
    stack = stack_smoke.Stack()
    # Processes rather than many threads per process: a short POST in a thread waits for the GIL behind
    # the threads rendering pages in the same process; separate processes share the cores through the OS.
    stack.env["GUNICORN_THREADS"] = str(args.threads)
    # The load patients have no SMS consent; nothing is texted, and nothing may leave the machine.
    stack.env["SMS_BACKEND"] = "console"
    try:
        stack.manage("migrate", "--noinput", "-v", "0")
        stack.manage("collectstatic", "--noinput", "-v", "0")
        # One PWP more than the load run has users: the baseline's own.
        stack.manage("shell", stdin=f"USERS = {args.users + 1}\n" + SETUP)
        stack.start_web_and_workers(workers=args.workers)
        print(f"gunicorn: {args.workers} workers x {args.threads} threads on {os.cpu_count()} cores")
        before = int(stack.manage("shell", "-c", COUNT).strip().splitlines()[-1])
        base_rows, base_counts = run_locust(
            stack, users=1, seconds=args.baseline_seconds, name="load-baseline", first_user=args.users + 1
        )
        rows, counts = run_locust(stack, users=args.users, seconds=int(args.minutes * 60), name="load")
        after = int(stack.manage("shell", "-c", COUNT).strip().splitlines()[-1])
        print_table(f"baseline: 1 user for {args.baseline_seconds} s", base_rows)
        print_table(f"load: {args.users} users for {args.minutes:g} min", rows)
        for name in ["/calls/", "/calls/log/", "Aggregated"]:
            base, load = base_rows.get(name), rows.get(name)
            if base and load and float(base["50%"]) and float(base["95%"]):
                print(f"{name:16} p50 x{float(load['50%']) / float(base['50%']):.1f}  "
                      f"p95 x{float(load['95%']) / float(base['95%']):.1f}  (load / baseline, same stack)")
        failures = int(rows["Aggregated"]["Failure Count"]) + int(base_rows["Aggregated"]["Failure Count"])
        recorded = counts["ok"] + base_counts["ok"]
        stored = after - before
        print(f"\noutcomes the server said it recorded: {recorded} "
              f"(refused with a reason: {counts['refused'] + base_counts['refused']})")
        print(f"contact attempts stored in the database: {stored}")
        lost = recorded - stored
        print(f"errors: {failures}; attempts lost: {lost}")
        return 0 if failures == 0 and lost == 0 and recorded > 0 else 1
    finally:
        stack.stop_all()
        stack_smoke.drop_database()


if __name__ == "__main__":
    sys.exit(main())
