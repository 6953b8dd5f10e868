"""Recovered capacity: released slots (cancelled or moved with notice) booked again, worked out by hand."""

import datetime

import pytest
import time_machine
from django.urls import reverse

from scheduling import roles
from scheduling.audit import AuditEntry
from scheduling.booking.models import Appointment
from scheduling.booking.services import book_appointment, cancel_appointment, rearrange_appointment
from scheduling.offers import services as offers
from scheduling.offers.models import OfferInvitation
from scheduling.reports.selectors import ReportParams, build_report, recovered_figures
from tests.booking_helpers import book as book_call
from tests.factories import london, make_referral, make_user
from tests.offer_helpers import give_pattern, offers_on, reply, waiting

PERIOD = ReportParams(date_from=datetime.date(2026, 3, 23), date_to=datetime.date(2026, 3, 29))


@pytest.fixture
def service(db):
    """In the week of 23 March (clocks go forward on the 29th):
    - A (60 min, Mon 10:00) cancelled by the patient 3 days ahead: released 60; re-filled in full by D,
      booked 26 h after the release (staff).
    - B (60 min, Tue 14:00) moved by the patient 4 days ahead to the next week: released 60; its own
      replacement is elsewhere; E, moved forward from Fri 3 Apr 14:00 into Tue 14:30-15:00, re-fills 30 of it
      (10 days brought forward), booked 2 h after the release.
    - C (60 min, Wed 09:00) cancelled 2 h before: short notice, not released.
    - F (60 min, Thu 11:00) cancelled by the service 5 days ahead: released 60, never re-filled.
    Released 180 minutes in 3 slots; re-filled 90 (50%); median hours to re-fill of 26 and 2: 14."""
    admin = make_user("admin.one", roles.ADMIN_STAFF)
    pwp = make_user("pwp.one", roles.PWP)
    people = {name: make_referral(pwp, received_on=datetime.date(2026, 2, 1), actor=admin) for name in "ABCDEF"}

    def book(name, start, minutes, kind="assessment"):
        return book_appointment(referral=people[name], practitioner=pwp, appointment_type=kind, start=start,
                                duration_minutes=minutes, actor=admin)

    with time_machine.travel(london(2026, 3, 9, 9), tick=False):
        a = book("A", london(2026, 3, 23, 10), 60)
        b = book("B", london(2026, 3, 24, 14), 60)
        c = book("C", london(2026, 3, 25, 9), 60)
        e = book("E", london(2026, 4, 3, 14), 30)
        f = book("F", london(2026, 3, 26, 11), 60)
    with time_machine.travel(london(2026, 3, 20, 10), tick=False):
        cancel_appointment(appointment=a, cancelled_by="patient", reason="", asked_at=london(2026, 3, 20, 10), actor=admin)
        rearrange_appointment(appointment=b, new_start=london(2026, 3, 31, 14), asked_by="patient",
                              asked_at=london(2026, 3, 20, 10), actor=admin)
    with time_machine.travel(london(2026, 3, 20, 12), tick=False):
        moved = rearrange_appointment(appointment=e, new_start=london(2026, 3, 24, 14, 30), asked_by="patient",
                                      asked_at=london(2026, 3, 20, 12), actor=admin).replacement
    with time_machine.travel(london(2026, 3, 21, 12), tick=False):
        cancel_appointment(appointment=f, cancelled_by="service", reason="", asked_at=london(2026, 3, 21, 12), actor=admin)
        d = book("D", london(2026, 3, 23, 10), 60)
    with time_machine.travel(london(2026, 3, 25, 7), tick=False):
        cancel_appointment(appointment=c, cancelled_by="patient", reason="", asked_at=london(2026, 3, 25, 7), actor=admin)
    return {"d": d, "moved": moved}


def test_it_counts_released_and_refilled_minutes_as_worked_out_by_hand(service):
    figures = recovered_figures(PERIOD)
    assert figures["released_slots"] == 3
    assert figures["released_minutes"] == 180
    assert figures["refilled_minutes"] == 90
    assert figures["refilled_pct"] == 50.0
    assert figures["refilled_minutes_by"] == {"offer": 0, "self_service": 0, "staff": 90}
    assert figures["slots_refilled"] == 2
    assert figures["median_hours_to_refill"] == 14.0
    assert figures["patients_brought_forward"] == 1
    assert figures["days_brought_forward"] == 10


def test_it_credits_a_slot_taken_by_an_offer_and_one_moved_into_on_the_self_service_page(pwp, admin_user, freeze):
    """Week of 8 June 2026. Wed 10 June 14:00 (60 min) cancelled 9 days ahead and offered: the second patient
    texted replies YES 5 minutes later (60 minutes by an offer). Thu 11 June 10:00 (60 min) cancelled too; a
    patient booked for Mon 22 June 10:00 moves into it on their self-service page (60 minutes by self-service,
    11 days brought forward)."""
    freeze(london(2026, 6, 1, 9))
    give_pattern(pwp)
    offers_on()
    wednesday = book_call(make_referral(pwp, received_on=datetime.date(2026, 5, 1)), pwp, london(2026, 6, 10, 14), actor=admin_user)
    thursday = book_call(make_referral(pwp, received_on=datetime.date(2026, 5, 1)), pwp, london(2026, 6, 11, 10), actor=admin_user)
    later = book_call(make_referral(pwp, received_on=datetime.date(2026, 5, 2)), pwp, london(2026, 6, 22, 10), actor=admin_user)
    for day in (5, 10, 15):
        waiting(pwp, datetime.date(2026, 1, day))
    cancel_appointment(appointment=wednesday, cancelled_by="patient", reason="Away", actor=admin_user)
    offers.advance_offers()
    freeze(london(2026, 6, 1, 9, 5))
    second = OfferInvitation.objects.order_by("id")[1]
    assert reply(second.patient, f"YES {second.code}").appointment is not None
    cancel_appointment(appointment=thursday, cancelled_by="patient", reason="Work", actor=admin_user)
    rearrange_appointment(appointment=later, new_start=london(2026, 6, 11, 10), asked_by="patient",
                          asked_at=london(2026, 6, 1, 9, 5), via=AuditEntry.Via.SELF_SERVICE)

    week = ReportParams(date_from=datetime.date(2026, 6, 8), date_to=datetime.date(2026, 6, 14))
    figures = recovered_figures(week)
    assert figures["released_minutes"] == 120
    assert figures["refilled_minutes_by"] == {"offer": 60, "self_service": 60, "staff": 0}
    assert figures["patients_brought_forward"] == 1 and figures["days_brought_forward"] == 11
    assert figures["median_hours_to_refill"] == 0.0  # 5 minutes and none: the median of 0.08 and 0.0 rounds to 0.0

    # Offers and self-service by when they happened (1 June), whatever week the slots are in.
    first_week = build_report(ReportParams(date_from=datetime.date(2026, 6, 1), date_to=datetime.date(2026, 6, 7)))
    assert first_week["recovered"]["offers"]["slots_offered"] == 3  # the moved appointment's old time too
    assert first_week["recovered"]["offers"]["slots_taken"] == 1
    assert first_week["recovered"]["offers"]["texts_taken"] == 1
    assert first_week["recovered"]["offers"]["texts_withdrawn"] == 2
    assert first_week["recovered"]["self_service"]["moved"] == 1
    assert first_week["recovered"]["self_service"]["cancelled"] == 0


def test_a_period_with_nothing_released_has_no_percentage(service):
    figures = recovered_figures(ReportParams(date_from=datetime.date(2026, 5, 4), date_to=datetime.date(2026, 5, 10)))
    assert figures["released_minutes"] == 0
    assert figures["refilled_pct"] is None
    assert figures["median_hours_to_refill"] is None


def test_the_capacity_page_and_exports_show_the_recovered_figures(service, client):
    manager = make_user("manager.one", roles.MANAGER)
    client.force_login(manager)
    query = {"from": "2026-03-23", "to": "2026-03-29"}
    page = client.get(reverse("reports:capacity"), query).content.decode()
    assert "Recovered capacity" in page
    assert "<strong>3</strong>, 180 minutes" in page and "<strong>90 minutes</strong> (50.0%)" in page
    assert "a median of 14.0 hours" in page
    csv = client.get(reverse("reports:export", args=["csv"]), query).content.decode()
    assert "recovered.refilled_minutes,90" in csv and "recovered.refilled_minutes_by.staff,90" in csv
    data = client.get(reverse("reports:export", args=["json"]), query).json()
    assert data["recovered"]["offers"]["slots_offered"] == 0 and data["recovered"]["self_service"]["links_locked"] == 0


def test_it_finds_refills_that_run_across_midnight(db):
    """Written directly (the diary would refuse these hours): January, so UTC is UK time.
    Released 23:30-00:30 (20-21 Jan) is re-filled 15 minutes by 23:00-23:45 (same day) and 30 by 00:00-00:30
    (the next day); released 00:00-00:45 on 22 Jan is re-filled 15 minutes by 23:30-00:15 (from the day before)."""
    pwp = make_user("pwp.one", roles.PWP)
    referral = make_referral(pwp, received_on=datetime.date(2026, 1, 2))

    def appointment(start, minutes, *, booked, cancelled=None):
        values = dict(outcome="4", cancelled_at=cancelled, cancelled_by="patient") if cancelled else {}
        return Appointment.objects.create(referral=referral, practitioner=pwp, appointment_type="review", start=start,
                                          duration_minutes=minutes, booked_at=booked, **values)

    early, late = london(2026, 1, 5, 9), london(2026, 1, 16, 9)
    appointment(london(2026, 1, 20, 23, 30), 60, booked=early, cancelled=late)
    appointment(london(2026, 1, 22, 0, 0), 45, booked=early, cancelled=late)
    appointment(london(2026, 1, 20, 23, 0), 45, booked=late)
    appointment(london(2026, 1, 21, 0, 0), 30, booked=late)
    appointment(london(2026, 1, 21, 23, 30), 45, booked=late)
    figures = recovered_figures(ReportParams(date_from=datetime.date(2026, 1, 18), date_to=datetime.date(2026, 1, 24)))
    assert figures["released_minutes"] == 105
    assert figures["refilled_minutes"] == 60
