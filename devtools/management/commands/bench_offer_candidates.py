"""Benchmark: the sooner-slot candidate search for one freed assessment slot, in a service with 10,000 open
referrals, as a ratio to one indexed query over the same referrals (the first three waiting longest, by the
(status, received_on) index), measured in the same run with the samples interleaved.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/pp_bench python manage.py migrate
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/pp_bench python manage.py bench_offer_candidates

The service: a team of practitioners; open referrals spread over them (a fifth unassigned), most waiting for
an assessment, the rest assessed or in treatment; a fifth of patients cannot be texted (no consent, opted
out) and a third keep to some days or times; some booked patients asked for sooner. Everything it creates
is rolled back at the end, but run it on a throwaway database anyway.
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
from scheduling.booking.models import Appointment
from scheduling.caseload.models import Patient, PractitionerProfile, Referral, Team
from scheduling.caseload.nhs_number import check_digit
from scheduling.codes import AppointmentType, ReferralSource
from scheduling.offers.models import OfferedSlot, OfferSettings
from scheduling.offers.selectors import offer_candidates
from scheduling.uktime import lenient_local_datetime

WAITING = [Referral.Status.AWAITING_CONTACT, Referral.Status.CONTACTED]


class Rollback(Exception):
    pass


class Command(BaseCommand):
    help = "Time the sooner-slot candidate search against one indexed referral query (10,000 open referrals)."

    def add_arguments(self, parser):
        parser.add_argument("--referrals", type=int, default=10_000)
        parser.add_argument("--practitioners", type=int, default=12)
        parser.add_argument("--repeat", type=int, default=30)
        parser.add_argument("--seed", type=int, default=7)

    def handle(self, *args, **opts):
        try:
            with transaction.atomic():
                self.run(**opts)
                raise Rollback
        except Rollback:
            pass

    def _nhs_numbers(self, count, rng):
        base, n, found = rng.randrange(0, 400_000), 0, []
        taken = set(Patient.objects.values_list("nhs_number", flat=True))
        while len(found) < count:
            first_nine = f"999{base + n:06d}"
            n += 1
            digit = check_digit(first_nine)
            if digit is not None and f"{first_nine}{digit}" not in taken:
                found.append(f"{first_nine}{digit}")
        return found

    def run(self, *, referrals, practitioners, repeat, seed, **_):
        rng = random.Random(seed)
        User = get_user_model()
        team = Team.objects.create(name=f"Benchmark team {time.time_ns()}")
        users = []
        for i in range(practitioners):
            user = User(username=f"bench.offer.{time.time_ns()}.{i}", first_name="Bench", last_name=f"PWP {i}")
            user.set_unusable_password()
            user.save()
            PractitionerProfile.objects.create(user=user, team=team)
            users.append(user)
        patients = []
        for i, nhs in enumerate(self._nhs_numbers(referrals, rng)):
            textable = rng.random() >= 0.2
            patients.append(Patient(
                nhs_number=nhs, given_name="Bench", family_name=f"Patient {i}", date_of_birth=dt.date(1970, 1, 1),
                mobile_phone=f"+447700900{i % 1000:03d}", mobile_is_mobile=True, sms_consent=textable or rng.random() < 0.5,
                sms_opted_out=not textable and rng.random() < 0.5,
                preferred_days=sorted(rng.sample(range(5), rng.randint(1, 4))) if rng.random() < 0.33 else [],
                preferred_times=[rng.choice(["morning", "afternoon"])] if rng.random() < 0.33 else [],
            ))
        patients = Patient.objects.bulk_create(patients, batch_size=2000)
        today = timezone.localdate()
        rows = []
        for patient in patients:
            status = rng.choices(
                [Referral.Status.AWAITING_CONTACT, Referral.Status.CONTACTED, Referral.Status.ASSESSED, Referral.Status.IN_TREATMENT],
                weights=[45, 25, 10, 20],
            )[0]
            rows.append(Referral(
                patient=patient, source=ReferralSource.GP, received_on=today - dt.timedelta(days=rng.randrange(0, 400)),
                reason="Benchmark", status=status, assigned_practitioner=None if rng.random() < 0.2 else rng.choice(users),
            ))
        made = Referral.objects.bulk_create(rows, batch_size=2000)
        # Some patients in treatment are booked later and asked for sooner (the second group searched).
        later, per_practitioner = [], {}
        for r in made:
            if r.status != Referral.Status.IN_TREATMENT or not r.assigned_practitioner_id:
                continue
            k = per_practitioner.get(r.assigned_practitioner_id, 0)  # each practitioner's own free hours, no overlaps
            per_practitioner[r.assigned_practitioner_id] = k + 1
            begins = lenient_local_datetime(today + dt.timedelta(days=20 + k // 8), dt.time(9 + k % 8))
            later.append(Appointment(
                referral=r, practitioner_id=r.assigned_practitioner_id, appointment_type=AppointmentType.TREATMENT,
                start=begins, end=begins + dt.timedelta(minutes=45), duration_minutes=45, wants_sooner=k % 3 == 0,
            ))
        Appointment.objects.bulk_create(later, batch_size=2000)
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("ANALYZE scheduling_referral; ANALYZE scheduling_patient; ANALYZE scheduling_appointment")

        practitioner = users[0]
        start = lenient_local_datetime(today + dt.timedelta(days=10), dt.time(14))
        slot = OfferedSlot(practitioner=practitioner, start=start, duration_minutes=60, appointment_type=AppointmentType.ASSESSMENT,
                           released_by=OfferedSlot.ReleasedBy.CANCELLED, expires_at=start - dt.timedelta(hours=24))
        caseload = OfferSettings(enabled=True, scope=OfferSettings.Scope.CASELOAD, wave_size=3)
        whole_team = OfferSettings(enabled=True, scope=OfferSettings.Scope.TEAM, wave_size=3)

        def baseline():
            return list(Referral.objects.filter(status__in=WAITING).order_by("received_on", "id").values_list("pk", "patient_id")[:3])

        def search_caseload():
            return offer_candidates(slot=slot, limit=3, offer_settings=caseload)

        def search_team():
            return offer_candidates(slot=slot, limit=3, offer_settings=whole_team)

        samples, values = interleaved({"baseline": baseline, "caseload": search_caseload, "team": search_team}, repeat=repeat)
        result = {
            "database": connection.vendor,
            "open_referrals": referrals,
            "waiting_for_assessment": sum(1 for r in made if r.status in WAITING),
            "practitioners": practitioners,
            "repeat": repeat,
            "candidates_found": len(values["caseload"]),
            "baseline_single_indexed_query_seconds": spread(samples["baseline"], 5),
            "candidate_search_caseload_seconds": spread(samples["caseload"], 5),
            "candidate_search_caseload_ratio": ratio_spread(samples["caseload"], samples["baseline"]),
            "candidate_search_whole_team_seconds": spread(samples["team"], 5),
            "candidate_search_whole_team_ratio": ratio_spread(samples["team"], samples["baseline"]),
        }
        self.stdout.write(json.dumps(result, indent=2))
