"""A realistic, deterministic demo service, built through the same service functions staff use.

Everything is relative to "now": referrals over the last 12 weeks, call attempts (many unanswered),
assessments, weekly T-CBT courses, DNAs (more at first appointments), rearrangements, cancellations,
and appointments for today and the next two weeks. Only fictional phone numbers (Ofcom drama range)
and NHS numbers from the 999 test range are used.
"""

import random
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction
from django.utils import timezone

from scheduling import roles
from scheduling.booking.models import Appointment, BookingSettings
from scheduling.booking.services import (
    set_wants_sooner,
    book_appointment,
    cancel_appointment,
    rearrange_appointment,
    record_appointment_outcome,
)
from scheduling.calls.models import ContactAttempt
from scheduling.calls.services import log_contact_attempt
from scheduling.caseload.models import CaseloadCover, Patient, PractitionerProfile, Referral, Team, TimeOfDay
from scheduling.caseload.nhs_number import check_digit
from scheduling.caseload.services import create_referral, discharge_referral, register_patient
from scheduling.codes import AppointmentType, AttendanceOutcome, EndOfCare, ReferralSource
from scheduling.offers import services as offers
from scheduling.offers.models import OfferedSlot, OfferSettings
from scheduling.reminders.models import MessageEvent, OutboundMessage
from scheduling.reminders.replies import handle_inbound
from scheduling.reminders.sending import apply_delivery_report
from scheduling.reminders.services import plan_reminders
from scheduling.uktime import LONDON

DEMO_PASSWORD = "painplatform-demo"
Outcome = ContactAttempt.Outcome

GIVEN_NAMES = [
    "Aisha", "Ben", "Catherine", "David", "Eleanor", "Farhan", "Grace", "Harry", "Imogen", "Jack", "Kiran", "Laura",
    "Mohammed", "Niamh", "Oliver", "Priya", "Quentin", "Rachel", "Samuel", "Tanya", "Usman", "Victoria", "William",
    "Yasmin", "Zoe", "Amira", "Bethan", "Callum", "Deborah", "Emeka", "Fiona", "Gareth", "Hannah", "Ian", "Joanna",
    "Karen", "Liam", "Margaret", "Nadia", "Owen", "Patricia", "Rhys", "Sandra", "Tom", "Una", "Wendy",
]
FAMILY_NAMES = [
    "Ahmed", "Baker", "Clarke", "Davies", "Evans", "Fletcher", "Green", "Hughes", "Iqbal", "Jones", "Khan", "Lewis",
    "Morgan", "Nowak", "O'Brien", "Patel", "Roberts", "Singh", "Thomas", "Walker", "Wright", "Young", "Begum",
    "Campbell", "Edwards", "Hall", "Jackson", "Kaur", "Murphy", "Price", "Shaw", "Turner", "Ward", "Wood",
]
REASONS = [
    "Chronic widespread pain", "Fibromyalgia", "Chronic widespread pain with low mood", "Chronic back and joint pain",
    "Fibromyalgia, poor sleep", "Persistent pain affecting work",
]
# Referral sources and how often each refers.
SOURCES = [
    (ReferralSource.GP.value, 45), (ReferralSource.SECONDARY_CARE.value, 25), (ReferralSource.SELF.value, 12),
    (ReferralSource.OTHER_PRIMARY_CARE.value, 8), (ReferralSource.SINGLE_POINT_OF_ACCESS.value, 6),
    (ReferralSource.STEPPED_DOWN.value, 2), (ReferralSource.INTERNAL.value, 2),
]
STAFF = {
    roles.PWP: [("pwp.alex", "Alex", "Morgan"), ("pwp.bea", "Bea", "Okafor"), ("pwp.chris", "Chris", "Hughes"),
                ("pwp.dana", "Dana", "Kowalski"), ("pwp.ed", "Ed", "Fraser"), ("pwp.farah", "Farah", "Siddiqui")],
    roles.ADMIN_STAFF: [("admin.sam", "Sam", "Taylor"), ("admin.jo", "Jo", "Bennett")],
    roles.MANAGER: [("manager.pat", "Pat", "Reid")],
}
SLOT_TIMES = [time(9, 0), time(10, 0), time(11, 0), time(13, 30), time(14, 30), time(15, 30)]
ATTEMPT_HOURS = {TimeOfDay.MORNING: [9, 10, 11], TimeOfDay.AFTERNOON: [13, 14, 15, 16], TimeOfDay.EVENING: [17, 18]}


def nhs_test_numbers(rng: random.Random):
    """Valid NHS numbers from the 999 test range, in a seed-dependent order, never repeated."""
    seen = set()
    while True:
        first_nine = f"999{rng.randrange(0, 1_000_000):06d}"
        digit = check_digit(first_nine)
        # 9999999999 passes modulus 11 but is refused as never issued (one repeated digit).
        if digit is None or first_nine in seen or first_nine == "999999999":
            continue
        seen.add(first_nine)
        yield f"{first_nine}{digit}"


def local(day: date, at: time) -> datetime:
    return datetime.combine(day, at, tzinfo=LONDON)


def next_working_day(day: date, skip: int = 1) -> date:
    while skip > 0:
        day += timedelta(days=1)
        if day.weekday() < 5:
            skip -= 1
    return day


@dataclass
class Diary:
    """Which practitioner slots the generator has used, so demo bookings never overlap."""

    taken: dict = field(default_factory=dict)

    def free(self, user_id, start: datetime, minutes: int) -> bool:
        end = start + timedelta(minutes=minutes)
        return all(not (s < end and start < e) for s, e in self.taken.get((user_id, start.date()), []))

    def take(self, user_id, start: datetime, minutes: int):
        self.taken.setdefault((user_id, start.date()), []).append((start, start + timedelta(minutes=minutes)))

    def find(self, rng, user_id, earliest: date, minutes: int, *, preferred_time: time | None = None):
        day = earliest if earliest.weekday() < 5 else next_working_day(earliest)
        for _ in range(60):
            options = ([preferred_time] if preferred_time else []) + rng.sample(SLOT_TIMES, len(SLOT_TIMES))
            for at in options:
                start = local(day, at)
                if self.free(user_id, start, minutes):
                    return start
            day = next_working_day(day)
        raise RuntimeError("The demo diary is full")


class DemoBuilder:
    def __init__(self, *, seed: int, referrals: int, now: datetime, out=None):
        self.rng = random.Random(seed)
        self.count = referrals
        self.now = now
        self.today = timezone.localtime(now).date()
        self.out = out or (lambda msg: None)
        self.diary = Diary()
        self.nhs_numbers = nhs_test_numbers(self.rng)
        self.phone_suffixes = self.rng.sample(range(1000), 1000)

    # --- staff -----------------------------------------------------------------------------
    def create_staff(self):
        User = get_user_model()
        team, _ = Team.objects.get_or_create(name="Pain Platform step 2")
        created = {}
        for role, people in STAFF.items():
            group = Group.objects.get(name=role)
            for username, first, last in people:
                user = User.objects.create_user(
                    username=username, password=DEMO_PASSWORD, first_name=first, last_name=last,
                    is_staff=(role == roles.MANAGER),
                )
                user.groups.add(group)
                if role == roles.PWP:
                    PractitionerProfile.objects.create(user=user, team=team)
                created.setdefault(role, []).append(user)
        self.pwps = created[roles.PWP]
        manager = created[roles.MANAGER][0]
        # Bea covers Ed's caseload this fortnight (Ed is on leave), as happens every week somewhere.
        CaseloadCover.objects.create(
            covering=self.pwps[1], covered=self.pwps[4], starts_on=self.today - timedelta(days=3),
            ends_on=self.today + timedelta(days=11), created_by=manager,
        )
        self.admin = created[roles.ADMIN_STAFF][0]
        return created

    # --- patients and referrals --------------------------------------------------------------
    def new_patient(self, index: int) -> Patient:
        rng = self.rng
        age_days = rng.randint(19 * 365, 78 * 365)
        has_mobile = rng.random() < 0.9
        days_pref = rng.choice([[], [], [0, 1, 2, 3, 4], [0, 1, 3, 4], [1, 3], [0, 2, 4]])
        times_pref = rng.choice([[], [], [TimeOfDay.MORNING], [TimeOfDay.AFTERNOON], [TimeOfDay.MORNING, TimeOfDay.AFTERNOON], [TimeOfDay.EVENING]])
        return register_patient(
            nhs_number=next(self.nhs_numbers),
            given_name=rng.choice(GIVEN_NAMES),
            family_name=rng.choice(FAMILY_NAMES),
            date_of_birth=self.today - timedelta(days=age_days),
            mobile_phone=f"07700 900{self.phone_suffixes[index]:03d}" if has_mobile else "",
            other_phone="01632 960" + f"{rng.randrange(1000):03d}" if rng.random() < 0.3 else "",
            sms_consent=has_mobile and rng.random() < 0.85,
            voicemail_allowed=rng.random() < 0.7,
            preferred_days=days_pref,
            preferred_times=times_pref,
            is_demo=True,
        )

    def pick_source(self) -> str:
        codes, weights = zip(*SOURCES)
        return self.rng.choices(codes, weights)[0]

    def build(self):
        # Slot lengths and the course as the service has set them (the demo's diary must match what is booked).
        self.booking = BookingSettings.current()
        self.out("Creating demo staff")
        staff = self.create_staff()
        for i in range(self.count):
            with transaction.atomic():
                self.build_referral(i)
            if (i + 1) % 25 == 0 or i + 1 == self.count:
                self.out(f"Referrals: {i + 1}/{self.count}")
        self.out("Texts of the last fortnight")
        with transaction.atomic():
            self.build_sms_history()
        self.out("Earlier times offered by text")
        with transaction.atomic():
            self.build_offers()
        return staff

    # --- Sooner-slot offers --------------------------------------------------------------------
    def build_offers(self):
        """Offers on, a patient who asked for sooner, and two upcoming calls cancelled with notice just now,
        each offered to its first wave (texts due now, or when quiet hours end), so the worklist and
        booking pages show offers in flight."""
        OfferSettings.objects.update_or_create(pk=1, defaults={"enabled": True})
        upcoming = list(
            Appointment.objects.not_cancelled()
            .filter(outcome=AttendanceOutcome.NOT_APPLICABLE, start__gt=self.now + timedelta(days=3))
            .order_by("start", "id")[:6]
        )
        if not upcoming:
            return
        set_wants_sooner(appointment=upcoming[-1], wants_sooner=True, actor=self.admin)
        for appointment in upcoming[:2]:
            cancel_appointment(appointment=appointment, cancelled_by="patient", reason="Away that week", actor=self.admin,
                               asked_at=self.now)
        for slot in OfferedSlot.objects.filter(status=OfferedSlot.Status.OPEN).order_by("start"):
            offers.send_wave(slot=slot, now=self.now)

    # --- SMS ---------------------------------------------------------------------------------
    def build_sms_history(self):
        """Reminders for the last fortnight's appointments, as the console backend would have left
        them (delivered), and one that a carrier could not deliver (which raises a worklist task).
        Future appointments got their reminders planned when they were booked."""
        Status = OutboundMessage.Status
        recent = Appointment.objects.filter(
            is_demo=True, start__gte=self.now - timedelta(days=14), start__lt=self.now,
        ).select_related("referral__patient", "practitioner").order_by("start")
        planned = []
        for appointment in recent:
            planned += plan_reminders(appointment=appointment, actor=self.admin, now=appointment.booked_at)
        undeliverable = None
        for message in planned:
            if message.status != Status.SCHEDULED:
                continue
            if message.due_at > self.now or (message.appointment.is_cancelled and message.appointment.cancelled_at < message.due_at):
                OutboundMessage.objects.filter(pk=message.pk).update(
                    status=Status.CANCELLED, status_reason="the appointment was cancelled or moved", finished_at=message.due_at,
                )
                continue
            sent = message.due_at + timedelta(seconds=20)
            OutboundMessage.objects.filter(pk=message.pk).update(
                status=Status.SENT, to_number=message.patient.mobile_phone, backend="console", attempts=1,
                provider_sid=f"CONSOLEDEMO{message.pk:08d}", claimed_at=message.due_at, sent_at=sent, updated_at=sent,
            )
            MessageEvent.objects.bulk_create([
                MessageEvent(message=message, source=MessageEvent.Source.WORKER, old_status=Status.SCHEDULED,
                             new_status=Status.SENDING, at=message.due_at),
                MessageEvent(message=message, source=MessageEvent.Source.WORKER, old_status=Status.SENDING,
                             new_status=Status.SENT, at=sent),
            ])
            if undeliverable is None and self.rng.random() < 0.02:
                undeliverable = message
                apply_delivery_report(message_id=message.pk, reported_status="undelivered", error_code="30005", now=sent)
            else:
                apply_delivery_report(message_id=message.pk, reported_status="delivered", now=sent + timedelta(seconds=5))
        self.build_sms_replies()

    def build_sms_replies(self):
        """A few replies from the last day: confirmations (shown on the call list), a rearrangement
        request and a question (on the admin worklist), and a text from a number on no record."""
        upcoming = list(
            Appointment.objects.filter(
                is_demo=True, start__gt=self.now, start__lt=self.now + timedelta(days=3), outcome=AttendanceOutcome.NOT_APPLICABLE,
            ).exclude(referral__patient__mobile_phone="").select_related("referral__patient").order_by("start")
        )
        replies = ["C", "Yes thanks", "C", "R", "Can you ring after 3pm instead please? Thanks", "Confirm"]
        seen = set()
        for appointment in upcoming:
            patient = appointment.referral.patient
            if patient.pk in seen or not patients_share_no_number(patient):
                continue
            seen.add(patient.pk)
            body = replies[len(seen) - 1]
            handle_inbound(
                provider_sid=f"SMDEMO{len(seen):026d}", from_number=patient.mobile_phone, to_number="+447700900999",
                body=body, received_at=self.now - timedelta(hours=len(seen)),
            )
            if len(seen) == len(replies):
                break
        in_use = set(Patient.objects.values_list("mobile_phone", flat=True)) | set(Patient.objects.values_list("other_phone", flat=True))
        stranger = next(f"+447700900{n:03d}" for n in range(998, 0, -1) if f"+447700900{n:03d}" not in in_use)
        handle_inbound(
            provider_sid=f"SMDEMO{99:026d}", from_number=stranger, to_number="+447700900999",
            body="Hi is this the right number to call about my appointment?", received_at=self.now - timedelta(minutes=40),
        )

    def attempt_time(self, day: date, part: str) -> datetime:
        return local(day, time(self.rng.choice(ATTEMPT_HOURS[part]), self.rng.choice([0, 10, 25, 40])))

    def build_referral(self, index: int):
        rng = self.rng
        patient = self.new_patient(index)
        # More recent referrals are more common (a growing service), received on working days.
        days_ago = int(rng.triangular(0, 84, 10))
        received = self.today - timedelta(days=days_ago)
        while received.weekday() >= 5:
            received -= timedelta(days=1)
        pwp = rng.choice(self.pwps)
        referral = create_referral(
            patient=patient, source=self.pick_source(), received_on=received, reason=rng.choice(REASONS),
            assigned_practitioner=pwp, actor=self.admin, is_demo=True,
        )
        # First contact: up to three attempts on different working days and times of day.
        day = next_working_day(received, rng.randint(1, 3))
        parts = rng.sample(list(TimeOfDay.values), 3)
        contacted_at = None
        for attempt_number in range(3):
            when = self.attempt_time(day, parts[attempt_number])
            if when > self.now:
                return
            answered = rng.random() < (0.35 if attempt_number == 0 else 0.45)
            outcome = Outcome.ANSWERED if answered else rng.choice(
                [Outcome.NO_ANSWER, Outcome.NO_ANSWER, Outcome.VOICEMAIL, Outcome.BUSY]
            )
            if not answered and rng.random() < 0.02:
                outcome = Outcome.WRONG_NUMBER
            log_contact_attempt(
                referral=referral, practitioner=pwp, outcome=outcome, actor=pwp, attempted_at=when,
                minutes_spent=rng.randint(8, 20) if answered else rng.randint(1, 4), is_demo=True,
            )
            if answered:
                contacted_at = when
                break
            if outcome == Outcome.WRONG_NUMBER:
                break
            day = next_working_day(day, rng.randint(1, 3))
        if contacted_at is None:
            # Unreached: after the opt-in period, most are discharged as unable to contact.
            if (self.today - day).days > 16 and rng.random() < 0.8:
                discharge_referral(
                    referral=referral, end_code=EndOfCare.NOT_ASSESSED, actor=self.admin,
                    reason="Unable to contact", ended_on=day + timedelta(days=15),
                )
            return
        if rng.random() < 0.06:
            discharge_referral(referral=referral, end_code=EndOfCare.DECLINED_TREATMENT, actor=pwp, reason="Declined")
            return
        self.book_assessment(referral, pwp, after=contacted_at, first=True)

    def book_assessment(self, referral, pwp, *, after: datetime, first: bool):
        rng = self.rng
        earliest = next_working_day(timezone.localtime(after).date(), rng.randint(2, 7))
        minutes = self.booking.assessment_minutes
        start = self.diary.find(rng, pwp.pk, earliest, minutes)
        self.diary.take(pwp.pk, start, minutes)
        appointment = book_appointment(
            referral=referral, practitioner=pwp, appointment_type=AppointmentType.ASSESSMENT, start=start,
            actor=self.admin, booked_at=after + timedelta(minutes=5), is_demo=True,
        )
        self.play_out(appointment, pwp, dna_rate=0.35 if first else 0.2, on_attended=self.book_course)

    def play_out(self, appointment, pwp, *, dna_rate: float, on_attended=None):
        """Decide what happened at an appointment that is already in the past (or will be cancelled)."""
        rng = self.rng
        start = appointment.start
        roll = rng.random()
        # Cancellations and rearrangements are asked for before the appointment, some late.
        if roll < 0.08:
            asked = start - timedelta(hours=rng.choice([2, 6, 20, 30, 48, 72]))
            if asked > self.now:
                return
            if rng.random() < 0.6:
                new_start = self.diary.find(rng, pwp.pk, next_working_day(timezone.localtime(start).date(), 2), appointment.duration_minutes)
                self.diary.take(pwp.pk, new_start, appointment.duration_minutes)
                rearrangement = rearrange_appointment(
                    appointment=appointment, new_start=new_start, asked_by=rng.choice(["patient", "patient", "service"]),
                    reason="Not available at that time", actor=self.admin, asked_at=asked,
                )
                self.play_out(rearrangement.replacement, pwp, dna_rate=dna_rate, on_attended=on_attended)
            else:
                cancel_appointment(
                    appointment=appointment, cancelled_by="patient" if rng.random() < 0.8 else "service",
                    reason="Unwell" if rng.random() < 0.5 else "Work commitment", actor=self.admin, asked_at=asked,
                )
                if appointment.appointment_type == AppointmentType.ASSESSMENT:
                    self.book_assessment(appointment.referral, pwp, after=asked, first=False)
            return
        if start + timedelta(minutes=appointment.duration_minutes) > self.now:
            return  # still to come
        if roll < 0.08 + dna_rate:
            for minutes_after in (0, 7):
                log_contact_attempt(
                    referral=appointment.referral, appointment=appointment, practitioner=pwp,
                    outcome=rng.choice([Outcome.NO_ANSWER, Outcome.VOICEMAIL]), actor=pwp,
                    attempted_at=start + timedelta(minutes=minutes_after), minutes_spent=2, is_demo=True,
                )
            record_appointment_outcome(
                appointment=appointment, outcome=AttendanceOutcome.DID_NOT_ATTEND, actor=pwp,
                at=start + timedelta(minutes=15),
            )
            if appointment.appointment_type == AppointmentType.ASSESSMENT and rng.random() < 0.8:
                self.book_assessment(appointment.referral, pwp, after=start + timedelta(hours=3), first=False)
            return
        log_contact_attempt(
            referral=appointment.referral, appointment=appointment, practitioner=pwp, outcome=Outcome.ANSWERED,
            actor=pwp, attempted_at=start, minutes_spent=appointment.duration_minutes, is_demo=True,
        )
        outcome = AttendanceOutcome.ATTENDED_LATE if rng.random() < 0.05 else AttendanceOutcome.ATTENDED
        record_appointment_outcome(
            appointment=appointment, outcome=outcome, actor=pwp, at=start + timedelta(minutes=appointment.duration_minutes)
        )
        if on_attended:
            on_attended(appointment, pwp)

    def book_course(self, assessment, pwp):
        """The course's weekly treatment sessions at the same local time, then reviews at 3 and 6 months."""
        rng = self.rng
        referral = assessment.referral
        if rng.random() < 0.1:
            discharge_referral(referral=referral, end_code=EndOfCare.ADVICE_AND_SUPPORT, actor=pwp, reason="Advice given")
            return
        first_day = next_working_day(timezone.localtime(assessment.start).date(), rng.randint(3, 8))
        minutes = self.booking.treatment_minutes
        weekly = self.diary.find(rng, pwp.pk, first_day, minutes)
        booked_at = assessment.start + timedelta(minutes=70)
        sessions = []
        for week in range(self.booking.course_treatment_sessions):
            start = local(weekly.date() + timedelta(weeks=week), weekly.timetz().replace(tzinfo=None))
            if not self.diary.free(pwp.pk, start, minutes):
                continue
            self.diary.take(pwp.pk, start, minutes)
            sessions.append(book_appointment(
                referral=referral, practitioner=pwp, appointment_type=AppointmentType.TREATMENT, start=start,
                session_number=week + 2, actor=self.admin, booked_at=booked_at, is_demo=True,
            ))
        for months in (3, 6):
            start = self.diary.find(rng, pwp.pk, weekly.date() + timedelta(weeks=6, days=30 * months), self.booking.review_minutes)
            self.diary.take(pwp.pk, start, self.booking.review_minutes)
            book_appointment(
                referral=referral, practitioner=pwp, appointment_type=AppointmentType.REVIEW, start=start,
                session_number=None, actor=self.admin, booked_at=booked_at, is_demo=True,
            )
        for session in sessions:
            self.play_out(session, pwp, dna_rate=0.1)


def patients_share_no_number(patient) -> bool:
    return not Patient.objects.filter(mobile_phone=patient.mobile_phone).exclude(pk=patient.pk).exists()


def database_has_non_demo_data() -> bool:
    return Patient.objects.filter(is_demo=False).exists() or Referral.objects.filter(is_demo=False).exists()


def demo_data_present() -> bool:
    return Patient.objects.filter(is_demo=True).exists()
