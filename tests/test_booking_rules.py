"""Late cancellation is one rule written twice, for a page (Python) and for the capacity report (SQL):
booking/rules.py. These tests hold the two to the same answer on either side of the threshold, at it
exactly, for either party, and when the notice spans a clock change."""

from datetime import UTC, timedelta

import pytest
import time_machine

from scheduling.booking.models import Appointment
from scheduling.booking.rules import is_late_cancellation, late_cancellation_q
from scheduling.booking.services import cancel_appointment
from scheduling.caseload.models import ServiceSettings
from tests.booking_helpers import book
from tests.factories import london, make_referral

pytestmark = pytest.mark.django_db

THRESHOLD_MINUTES = 48 * 60


@pytest.fixture
def service_settings():
    settings = ServiceSettings.current()
    settings.late_cancellation_notice_hours = THRESHOLD_MINUTES // 60
    settings.save()
    return settings


def _cancelled(pwp, admin_user, *, start, notice_minutes: int, by: str) -> Appointment:
    # In UTC: arithmetic on a London time is by wall clock, an hour out across the clock change.
    asked = start.astimezone(UTC) - timedelta(minutes=notice_minutes)
    with time_machine.travel(asked - timedelta(days=7), tick=False):
        appointment = book(make_referral(pwp), pwp, start, actor=admin_user)
    with time_machine.travel(asked, tick=False):
        cancel_appointment(appointment=appointment, cancelled_by=by, reason="test", actor=admin_user, asked_at=asked)
    appointment.refresh_from_db()
    return appointment


@pytest.mark.parametrize("by", ["patient", "service"])
@pytest.mark.parametrize("notice_minutes", [THRESHOLD_MINUTES - 1, THRESHOLD_MINUTES, THRESHOLD_MINUTES + 1])
@pytest.mark.parametrize(
    "start",
    [london(2026, 6, 10, 14), london(2026, 10, 26, 14)],  # an ordinary week; the Monday after the clocks go back
    ids=["summer", "after-the-clocks-go-back"],
)
def test_the_cancel_page_and_the_report_agree_on_what_is_a_late_cancellation(
    pwp, admin_user, service_settings, start, notice_minutes, by
):
    appointment = _cancelled(pwp, admin_user, start=start, notice_minutes=notice_minutes, by=by)

    in_python = is_late_cancellation(appointment, service_settings=service_settings)
    in_sql = Appointment.objects.filter(late_cancellation_q(service_settings=service_settings), pk=appointment.pk).exists()

    assert in_python == in_sql
    assert in_python == (by == "patient" and notice_minutes < THRESHOLD_MINUTES)
