"""Benchmark: next-free-slot search for a team of 20 PWPs with 8 weeks of bookings, as a ratio to a
single indexed query fetching the same appointments, measured in the same run.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/pp_bench python manage.py migrate
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/pp_bench python manage.py bench_slot_finder

Everything it creates is rolled back at the end, but run it on a throwaway database anyway.
"""

import datetime as dt
import json
import random
import time

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import connection, transaction
from django.utils import timezone

from devtools.timing import interleaved, ratio_spread, spread
from scheduling.booking.availability import LONDON, lenient_local_datetime
from scheduling.booking.models import Appointment, AvailabilityException, WorkingHours
from scheduling.booking.selectors import find_free_slots, next_free_slots_for_referral
from scheduling.caseload.models import Patient, PractitionerProfile, Referral, Team
from scheduling.caseload.nhs_number import check_digit


class Rollback(Exception):
    pass


class Command(BaseCommand):
    help = "Time the next-free-slot search against one indexed appointment query (team of 20, 8 weeks)."

    def add_arguments(self, parser):
        parser.add_argument("--practitioners", type=int, default=20)
        parser.add_argument("--weeks", type=int, default=8)
        parser.add_argument("--fill", type=float, default=0.85, help="Share of working slots already booked.")
        parser.add_argument("--repeat", type=int, default=30)
        parser.add_argument("--seed", type=int, default=4)

    def handle(self, *args, **opts):
        try:
            with transaction.atomic():
                self.run(**opts)
                raise Rollback
        except Rollback:
            pass

    def run(self, *, practitioners, weeks, fill, repeat, seed, **_):
        rng = random.Random(seed)
        User = get_user_model()
        team = Team.objects.create(name=f"Benchmark team {time.time_ns()}")
        users = []
        for i in range(practitioners):
            user = User(username=f"bench.pwp.{time.time_ns()}.{i}", first_name="Bench", last_name=f"PWP {i}")
            user.set_unusable_password()
            user.save()
            PractitionerProfile.objects.create(user=user, team=team)
            users.append(user)
        WorkingHours.objects.bulk_create([
            WorkingHours(practitioner=u, weekday=d, starts=s, ends=e)
            for u in users for d in range(5) for s, e in ((dt.time(9), dt.time(12, 30)), (dt.time(13, 30), dt.time(17)))
        ])
        base = rng.randrange(100_000, 900_000)
        patients = []
        n = 0
        while len(patients) < practitioners:
            first_nine = f"999{base + n:06d}"
            n += 1
            digit = check_digit(first_nine)
            if digit is not None and not Patient.objects.filter(nhs_number=f"{first_nine}{digit}").exists():
                patients.append(Patient.objects.create(
                    nhs_number=f"{first_nine}{digit}", given_name="Bench", family_name="Patient", date_of_birth=dt.date(1970, 1, 1)
                ))
        referrals = [
            Referral.objects.create(patient=p, source="A1", received_on=timezone.localdate(), reason="Benchmark", assigned_practitioner=u)
            for p, u in zip(patients, users)
        ]
        today = timezone.localdate()
        rows = []
        for user, referral in zip(users, referrals):
            for offset in range(weeks * 7 + 7):
                day = today + dt.timedelta(days=offset)
                if day.weekday() >= 5:
                    continue
                for hour, minute in ((9, 0), (9, 45), (10, 30), (11, 15), (13, 30), (14, 15), (15, 0), (15, 45)):
                    if rng.random() < fill:
                        start = lenient_local_datetime(day, dt.time(hour, minute))
                        rows.append(Appointment(
                            referral=referral, practitioner=user, appointment_type="treatment", start=start,
                            end=start + dt.timedelta(minutes=45), duration_minutes=45,
                        ))
        Appointment.objects.bulk_create(rows, batch_size=2000)
        # A week's leave for a quarter of the team, as in real life.
        AvailabilityException.objects.bulk_create([
            AvailabilityException(practitioner=u, kind="leave", starts_at=lenient_local_datetime(today + dt.timedelta(days=14), dt.time(0)),
                                  ends_at=lenient_local_datetime(today + dt.timedelta(days=21), dt.time(0)))
            for u in users[: practitioners // 4]
        ])
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("ANALYZE scheduling_appointment")
        ids = [u.pk for u in users]
        earliest = timezone.now() + dt.timedelta(hours=24)
        first_day = earliest.astimezone(LONDON).date()
        range_start = lenient_local_datetime(first_day, dt.time(0))
        range_end = lenient_local_datetime(first_day + dt.timedelta(weeks=weeks, days=1), dt.time(0))

        def baseline():
            return list(
                Appointment.objects.not_cancelled()
                .filter(practitioner_id__in=ids, start__lt=range_end, end__gt=range_start)
                .values_list("practitioner_id", "start", "end")
            )

        def next_ten_for_team():
            return next_free_slots_for_referral(referral=referrals[0], appointment_type="assessment", whole_team=True, limit=10)

        def every_slot_in_eight_weeks():
            return find_free_slots(practitioner_ids=ids, duration_minutes=60, earliest=earliest, weeks=weeks, limit=10**6)

        fetched = len(baseline())
        # Each ratio from samples interleaved with the baseline's (baseline, search, baseline, search, ...).
        team, _ = interleaved({"baseline": baseline, "search": next_ten_for_team}, repeat=repeat)
        every, values = interleaved({"baseline": baseline, "search": every_slot_in_eight_weeks}, repeat=max(3, repeat // 5))
        result = {
            "database": connection.vendor,
            "practitioners": practitioners,
            "weeks": weeks,
            "appointments_in_range": fetched,
            "free_60min_slots_in_range": len(values["search"]),
            "repeat": repeat,
            "baseline_single_indexed_query_seconds": spread(team["baseline"] + every["baseline"], 5),
            "next_10_free_slots_whole_team_seconds": spread(team["search"], 5),
            "next_10_free_slots_whole_team_ratio": ratio_spread(team["search"], team["baseline"]),
            "every_free_slot_8_weeks_whole_team_seconds": spread(every["search"], 5),
            "every_free_slot_8_weeks_whole_team_ratio": ratio_spread(every["search"], every["baseline"]),
        }
        self.stdout.write(json.dumps(result, indent=2))
