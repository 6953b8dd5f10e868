"""Replay: what sooner-slot offers would have won back on the demo service over the last 12 weeks. An
ESTIMATE from a stated patient-response model, deterministic for --seed; it only reads the database.

    python manage.py seed_demo && python manage.py replay_offers --seed 1

Every release with notice (a patient's cancellation, or any move, asked at least the late-cancellation
threshold before the start; booking.rules) is offered as the service would offer it now: the part of the slot
beyond the minimum notice, to the practitioner's caseload and unassigned referrals whose patients may be
texted now and whose preferred days and times fit; waiting referrals longest wait first for an assessment slot,
courses waiting to start for a treatment slot. A referral is a candidate when, at the release, it was waiting
and, in what really happened, it was first seen (or is booked) later than the slot: the days between are the
waiting days a taken offer saves. Referrals still waiting with nothing booked count days up to today (a lower
bound). Patients who asked for sooner are not replayed (the flag is new: no history), nor are chains (a taken
offer freeing the taker's later slot), so the figure errs low.

Patient-response model: each texted patient takes the offer with probability --accept (default 0.35),
independently, replying within the wave; waves of --wave-size texts every --wave-minutes, only 08:00-20:00
UK time, until the offer expires (the slot minus the minimum notice). The first to say yes gets it.
"""

import datetime as dt
import json
import random

from django.core.management.base import BaseCommand
from django.db.models import Q
from django.utils import timezone

from scheduling.booking.models import Appointment, BookingSettings
from scheduling.booking.rules import is_short_notice
from scheduling.booking.selectors import preference_windows
from scheduling.caseload.models import Referral, ServiceSettings
from scheduling.codes import AppointmentType, AttendanceOutcome
from scheduling.offers.models import OfferSettings
from scheduling.reminders.rules import sms_refusal_reason
from scheduling.uktime import LONDON, local_date

DAY_STARTS, DAY_ENDS = dt.time(8), dt.time(20)


class Command(BaseCommand):
    help = "Estimate the minutes re-filled and waiting days saved had sooner-slot offers run for the last 12 weeks."

    def add_arguments(self, parser):
        parser.add_argument("--seed", type=int, default=1)
        parser.add_argument("--weeks", type=int, default=12)
        parser.add_argument("--accept", type=float, default=0.35, help="Chance a texted patient takes the offer.")
        parser.add_argument("--wave-size", type=int, default=None, help="Default: the offer settings' (3).")
        parser.add_argument("--wave-minutes", type=int, default=None, help="Default: the offer settings' (30).")
        parser.add_argument("--minimum-notice-hours", type=int, default=None, help="Default: the offer settings' (24).")

    def handle(self, *args, seed, weeks, accept, wave_size, wave_minutes, minimum_notice_hours, **_):
        offer_settings = OfferSettings.read()
        wave_size = wave_size or offer_settings.wave_size
        wave_minutes = wave_minutes or offer_settings.minutes_between_waves
        notice = dt.timedelta(hours=offer_settings.minimum_notice_hours if minimum_notice_hours is None else minimum_notice_hours)
        service_settings, lengths = ServiceSettings.current(), BookingSettings.current()
        rng = random.Random(seed)
        now = timezone.now()
        today = local_date(now)
        since = now - dt.timedelta(weeks=weeks)

        releases = list(
            Appointment.objects.filter(cancelled_at__gte=since, cancelled_at__lte=now)
            .filter(Q(outcome=AttendanceOutcome.CANCELLED_BY_PATIENT) | Q(rearranged_to__isnull=False))
            .select_related("referral").order_by("cancelled_at", "id")
        )
        releases = [a for a in releases if not is_short_notice(a.notice_given, service_settings=service_settings)]
        first_seen = self._first_seen()
        referrals = {
            r.pk: r for r in Referral.objects.select_related("patient").filter(
                pk__in={pk for pk, _ in first_seen} | set(Referral.objects.filter(status__in=Referral.OPEN_STATUSES).values_list("pk", flat=True))
            )
        }
        taken_referrals: set[int] = set()
        released_minutes = offered_minutes = refilled_minutes = 0
        offered = filled = texted = 0
        days_saved = lower_bound_days = 0
        for appointment in releases:
            released_minutes += appointment.duration_minutes
            length = lengths.minutes_for(appointment.appointment_type)
            start = max(appointment.start, appointment.cancelled_at + notice)
            minutes = int((appointment.end - start).total_seconds() // 60)
            if minutes < length or appointment.start < start:
                continue  # too close to offer any of it whole (the service offers whole slots on its grid)
            offered += 1
            offered_minutes += appointment.duration_minutes
            kind = "assessment" if appointment.appointment_type == AppointmentType.ASSESSMENT else "treatment"
            if appointment.appointment_type == AppointmentType.REVIEW:
                continue
            pool = self._pool(appointment, kind, first_seen, referrals, taken_referrals, length)
            waves = self._waves(appointment.cancelled_at, appointment.start - notice, wave_minutes)
            winner = None
            for wave in range(waves):
                group = pool[wave * wave_size:(wave + 1) * wave_size]
                if not group:
                    break
                texted += len(group)
                yes = [c for c in group if rng.random() < accept]
                if yes:
                    winner = rng.choice(yes)
                    break
            if winner is None:
                continue
            referral_id, later = winner
            taken_referrals.add(referral_id)
            filled += 1
            refilled_minutes += length
            if later is None:
                lower_bound_days += max(0, (today - local_date(appointment.start)).days)
            else:
                days_saved += (local_date(later) - local_date(appointment.start)).days
        result = {
            "estimate": True,
            "label": "ESTIMATE from a patient-response model, not a measurement",
            "patient_response_model": (
                f"each texted patient takes the offer with probability {accept}, independently, within the wave; "
                f"waves of {wave_size} every {wave_minutes} minutes, 08:00-20:00 UK time, until the slot minus "
                f"{notice.total_seconds() / 3600:g} hours; first yes wins; no chains; 'asked for sooner' not replayed"
            ),
            "seed": seed,
            "weeks": weeks,
            "releases_with_notice": len(releases),
            "released_minutes": released_minutes,
            "offered_slots": offered,
            "texts_sent": texted,
            "filled_slots": filled,
            "refilled_minutes": refilled_minutes,
            "share_of_released_minutes_refilled": round(refilled_minutes / released_minutes, 3) if released_minutes else 0.0,
            "waiting_days_saved": days_saved,
            "waiting_days_saved_lower_bound_still_waiting": lower_bound_days,
            "waiting_days_saved_per_filled_slot": round((days_saved + lower_bound_days) / filled, 1) if filled else 0.0,
        }
        self.stdout.write(json.dumps(result, indent=2))

    @staticmethod
    def _first_seen():
        """{(referral_id, kind): start of its first assessment / treatment that was not cancelled}."""
        seen = {}
        rows = (Appointment.objects.not_cancelled().filter(appointment_type__in=[AppointmentType.ASSESSMENT, AppointmentType.TREATMENT])
                .order_by("start").values_list("referral_id", "appointment_type", "start", "booked_at"))
        for referral_id, kind, start, booked_at in rows:
            seen.setdefault((referral_id, "assessment" if kind == AppointmentType.ASSESSMENT else "treatment"), (start, booked_at))
        return seen

    @staticmethod
    def _pool(appointment, kind, first_seen, referrals, taken, length):
        """(referral id, its real first-seen start or None) in offer order, for this release."""
        slot_start, released_at = appointment.start, appointment.cancelled_at
        slot_end = slot_start + dt.timedelta(minutes=length)
        day = local_date(slot_start)
        pool = []
        for referral in sorted(referrals.values(), key=lambda r: (r.received_on, r.pk)):
            if referral.pk in taken or referral.pk == appointment.referral_id:
                continue
            if referral.assigned_practitioner_id not in (None, appointment.practitioner_id):
                continue
            if referral.received_on > local_date(released_at):  # (created_at is when the demo was loaded)
                continue
            if kind == "treatment":
                assessed = first_seen.get((referral.pk, "assessment"))
                if assessed is None or assessed[0] >= released_at:
                    continue  # not yet assessed when the slot came free
            seen = first_seen.get((referral.pk, kind))
            if seen is not None and seen[0] <= slot_start:
                continue  # already seen by then
            if seen is None and referral.status not in Referral.OPEN_STATUSES:
                continue
            if sms_refusal_reason(referral.patient, wrong_number=False):
                continue
            windows = preference_windows(day, referral.patient.preferred_days, referral.patient.preferred_times)
            if windows is not None and not any(ws <= slot_start and slot_end <= we for ws, we in windows):
                continue
            pool.append((referral.pk, seen[0] if seen else None))
        return pool

    @staticmethod
    def _waves(released_at, expires_at, wave_minutes) -> int:
        """Waves that fit between the release and the expiry, in daytime (08:00-20:00 UK time)."""
        count, moment = 0, released_at
        step = dt.timedelta(minutes=wave_minutes)
        while moment < expires_at and count < 48:
            local = moment.astimezone(LONDON)
            if DAY_STARTS <= local.time() < DAY_ENDS:
                count += 1
                moment += step
            else:
                next_day = local.date() + (dt.timedelta(days=1) if local.time() >= DAY_ENDS else dt.timedelta())
                moment = dt.datetime.combine(next_day, DAY_STARTS, tzinfo=LONDON)
        return count
