"""The offers on the pages: admin staff see them on the worklist and the booking pages and can stop a wave;
PWPs see no panel and cannot stop one; managers change the settings (audited); staff mark an appointment
as "wants an earlier time"."""

import datetime as dt

import pytest
from django.urls import reverse

from scheduling.audit import AuditEntry
from scheduling.booking.services import cancel_appointment
from scheduling.offers import services
from scheduling.offers.models import OfferedSlot, OfferInvitation, OfferSettings
from tests.booking_helpers import book
from tests.factories import london, make_referral
from tests.offer_helpers import give_pattern, offers_on, waiting

NOW = london(2026, 6, 1, 9)
START = london(2026, 6, 10, 14)


@pytest.fixture
def offered(pwp, admin_user, freeze):
    freeze(NOW)
    give_pattern(pwp)
    offers_on()
    booked = book(make_referral(pwp), pwp, START, actor=admin_user)
    queue = [waiting(pwp, dt.date(2026, 1, day)) for day in (5, 6)]
    cancel_appointment(appointment=booked, cancelled_by="patient", reason="Away", actor=admin_user)
    services.advance_offers()
    return OfferedSlot.objects.get(), queue


def test_admin_staff_see_offers_on_the_worklist_and_stop_a_wave(offered, admin_client, admin_user):
    slot, queue = offered
    page = admin_client.get(reverse("worklist:index")).content.decode()
    assert "Earlier times offered by text" in page and "Stop offering this slot" in page
    assert queue[0].patient.full_name in page and "offered (wave 1)" in page
    response = admin_client.post(reverse("offers:stop", args=[slot.pk]), {"next": reverse("worklist:index")})
    assert response.status_code == 302 and response.url == reverse("worklist:index")
    slot.refresh_from_db()
    assert slot.status == OfferedSlot.Status.STOPPED and slot.closed_by == admin_user
    again = admin_client.post(reverse("offers:stop", args=[slot.pk]), {"next": "https://evil.example/"}, follow=True)
    assert "already closed" in again.content.decode() and again.redirect_chain[-1][0] == reverse("worklist:index")


def test_the_booking_page_shows_the_referrals_offers(offered, admin_client):
    slot, queue = offered
    page = admin_client.get(reverse("booking:find_slots", args=[queue[0].pk])).content.decode()
    assert "Offers to or freed by this referral" in page and "Offered" in page


def test_a_pwp_sees_no_offers_panel_and_cannot_stop_one(offered, client, pwp):
    slot, _ = offered
    client.force_login(pwp)
    assert "Earlier times offered" not in client.get(reverse("booking:find_slots", args=[offered[1][0].pk])).content.decode()
    assert client.post(reverse("offers:stop", args=[slot.pk])).status_code == 403
    slot.refresh_from_db()
    assert slot.status == OfferedSlot.Status.OPEN


def test_a_manager_changes_the_offer_settings_and_it_is_audited(client, manager, admin_user):
    client.force_login(manager)
    assert client.get(reverse("offers:settings")).status_code == 200
    response = client.post(reverse("offers:settings"), {
        "enabled": "on", "minimum_notice_hours": "12", "wave_size": "4", "minutes_between_waves": "20", "scope": "team",
    })
    assert response.status_code == 302
    current = OfferSettings.current()
    assert (current.enabled, current.minimum_notice_hours, current.wave_size, current.scope) == (True, 12, 4, "team")
    assert AuditEntry.objects.filter(subject_type=AuditEntry.Subject.OFFER_SETTINGS, actor=manager).exists()
    bad = client.post(reverse("offers:settings"), {"minimum_notice_hours": "-1", "wave_size": "0",
                                                   "minutes_between_waves": "1", "scope": "everyone"})
    assert bad.status_code == 400 and OfferSettings.current().wave_size == 4
    client.force_login(admin_user)
    assert client.get(reverse("offers:settings")).status_code == 403


def test_admin_staff_mark_an_appointment_as_wanting_an_earlier_time(pwp, admin_client, admin_user, freeze):
    freeze(NOW)
    appointment = book(make_referral(pwp), pwp, START, actor=admin_user)
    response = admin_client.post(reverse("booking:wants_sooner", args=[appointment.pk]), {"wants_sooner": "yes"})
    assert response.status_code == 302
    appointment.refresh_from_db()
    assert appointment.wants_sooner
    page = admin_client.get(reverse("booking:find_slots", args=[appointment.referral_id])).content.decode()
    assert "Asked for sooner." in page
    assert admin_client.post(reverse("booking:wants_sooner", args=[appointment.pk]), {"wants_sooner": "maybe"}).status_code == 400
    assert AuditEntry.objects.filter(appointment=appointment, field="wants_sooner").count() == 1
    assert not OfferInvitation.objects.exists()
