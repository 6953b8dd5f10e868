"""Demo-like data for the hostile-input sweep and the concurrency pack: two PWPs each with their
own referrals, appointments, call attempts, worklist tasks and texts; a third PWP whose caseload the
first covers; an unassigned referral; admin staff and a manager.

Every patient's family name is distinctive, so a response that names someone a PWP may not see is
found by a plain substring search."""

import datetime as dt
from dataclasses import dataclass, field

from django.utils import timezone

from scheduling import roles
from scheduling.booking.models import Appointment
from scheduling.booking.selectors import next_free_slots_for_referral
from scheduling.calls.services import CallButton, record_call_outcome
from scheduling.caseload.models import CaseloadCover
from scheduling.offers import services as offers
from scheduling.worklist.models import AdminTask
from scheduling.worklist.services import raise_admin_task
from scheduling.reminders.models import OutboundMessage
from tests.booking_helpers import book, give_pattern
from tests.factories import make_patient, make_referral, make_user
from tests.offer_helpers import offers_on


@dataclass
class Caseload:
    pwp: object
    booked: object  # a referral with a future assessment booked
    waiting: object  # a referral still to be reached, with one failed call logged
    appointment: object
    attempt: object
    task: object
    message: object | None
    today: object  # an appointment on today's call list
    patients: list = field(default_factory=list)

    def markers(self) -> list[str]:
        """Strings that identify this caseload's patients on a page: family names and NHS numbers."""
        found = []
        for patient in self.patients:
            found += [patient.family_name, patient.nhs_number, patient.nhs_number_display]
        return found


@dataclass
class World:
    own: Caseload  # pwp_one's caseload
    other: Caseload  # pwp_two's: pwp_one may not see it
    covered: Caseload  # pwp_three's: pwp_one covers it this week
    unassigned: object
    admin: object
    manager: object

    @property
    def users(self):
        return {"pwp": self.own.pwp, "admin": self.admin, "manager": self.manager}


def _first_future_start(referral, practitioner):
    slots = next_free_slots_for_referral(referral=referral, appointment_type="assessment", respect_preferences=False)
    mine = [s for s in slots if s.practitioner_id == practitioner.pk]
    if mine:
        return mine[0].start
    local = timezone.localtime(timezone.now() + dt.timedelta(days=5)).replace(hour=10, minute=0, second=0, microsecond=0)
    return local


def _caseload(tag: str, pwp, admin) -> Caseload:
    give_pattern(pwp, weekdays=range(7))
    booked_patient = make_patient(given_name=f"Sweep{tag}", family_name=f"Zbooked{tag}")
    waiting_patient = make_patient(given_name=f"Sweep{tag}", family_name=f"Zwaiting{tag}")
    booked = make_referral(pwp, patient=booked_patient, actor=admin)
    waiting = make_referral(pwp, patient=waiting_patient, actor=admin)
    appointment = book(booked, pwp, _first_future_start(booked, pwp), actor=admin)
    attempt = record_call_outcome(referral=waiting, button=CallButton.NO_ANSWER, actor=pwp)
    if not hasattr(attempt, "pk"):  # the service may return an effect or a tuple; find the row
        attempt = waiting.contact_attempts.order_by("-id").first()
    task = raise_admin_task(
        kind=AdminTask.Kind.REARRANGE_REQUEST, source=AdminTask.Source.CALL_LIST, referral=booked, appointment=appointment,
        detail="Wants a later time", actor=pwp,
    )
    message = OutboundMessage.objects.filter(appointment=appointment).order_by("id").first()
    # A session on today's call list (09:00 today, past or not), so the list has a booked row and its forms.
    today_patient = make_patient(given_name=f"Sweep{tag}", family_name=f"Ztoday{tag}")
    today_referral = make_referral(pwp, patient=today_patient, actor=admin)
    nine = timezone.localtime().replace(hour=9, minute=0, second=0, microsecond=0)
    today_appointment = book(today_referral, pwp, nine, actor=admin)
    return Caseload(
        pwp=pwp, booked=booked, waiting=waiting, appointment=appointment, attempt=attempt, task=task, message=message,
        today=today_appointment, patients=[booked_patient, waiting_patient, today_patient],
    )


def build_world() -> World:
    admin = make_user("sweep.admin", roles.ADMIN_STAFF)
    manager = make_user("sweep.manager", roles.MANAGER, is_staff=True)
    pwp_one = make_user("sweep.pwpone", roles.PWP)
    pwp_two = make_user("sweep.pwptwo", roles.PWP)
    pwp_three = make_user("sweep.pwpthree", roles.PWP)
    today = timezone.localdate()
    CaseloadCover.objects.create(
        covering=pwp_one, covered=pwp_three, starts_on=today - dt.timedelta(days=2), ends_on=today + dt.timedelta(days=12),
        created_by=manager,
    )
    own = _caseload("Own", pwp_one, admin)
    other = _caseload("Other", pwp_two, admin)
    covered = _caseload("Covered", pwp_three, admin)
    unassigned = make_referral(None, patient=make_patient(given_name="Sweep", family_name="Zunassigned"), actor=admin)
    assert Appointment.objects.count() == 6
    # A slot on offer (offers on), so the worklist and booking pages show the offers panel and its stop button.
    offers_on()
    ten_days = timezone.localtime(timezone.now() + dt.timedelta(days=10)).replace(hour=10, minute=0, second=0, microsecond=0)
    slot = offers.release_slot(practitioner=pwp_one, start=ten_days, duration_minutes=60, appointment_type="assessment",
                               released_by="availability")
    offers.advance_offers(slot_id=slot.pk)
    return World(own=own, other=other, covered=covered, unassigned=unassigned, admin=admin, manager=manager)
