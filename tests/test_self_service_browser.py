"""Real headless Chromium with JavaScript off, at phone width (390 px): the patient opens the link from their
text, enters their date of birth and confirms, picks another time, cancels with the notice shown; three wrong
dates of birth lock the link; an expired or altered link gets a clear page. Nothing is wider than the screen
and every field has a label."""

import datetime as dt

import pytest
from django.urls import reverse
from django.utils import timezone

from scheduling import patient_links
from scheduling.audit import AuditEntry
from scheduling.booking.models import Appointment, Rearrangement
from scheduling.codes import AttendanceOutcome, TaskKind
from scheduling.worklist.models import AdminTask
from tests.booking_helpers import book
from tests.browser_helpers import assert_fits, wait_for
from tests.factories import make_patient, make_referral

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
WIDTH = 390


@pytest.fixture
def phone(browser_without_js):
    browser_without_js.set_window_size(WIDTH, 900)
    return browser_without_js


def booked_in(pwp, admin_user, hours: float) -> Appointment:
    start = (timezone.now() + dt.timedelta(hours=hours)).replace(second=0, microsecond=0)
    patient = make_patient(given_name="Sam", family_name="Rivers")
    return book(make_referral(pwp, patient=patient), pwp, start, actor=admin_user)


def open_link(driver, live_server, token):
    driver.get(live_server.url + reverse("selfservice:start", args=[token]))
    wait_for(driver, lambda d: d.find_elements("tag name", "h1"))
    assert_fits(driver, WIDTH)
    unlabelled = driver.execute_script(
        "return [...document.querySelectorAll('input:not([type=hidden])')]"
        ".filter(i => !document.querySelector('label[for=\"' + i.id + '\"]')).map(i => i.name);"
    )
    assert unlabelled == []
    return driver.find_element("tag name", "h1").text


def enter_date_of_birth(driver, day, month="", year=""):
    from selenium.webdriver.common.by import By

    for name, value in (("day", day), ("month", month), ("year", year)):
        box = driver.find_element(By.ID, f"id_{name}")
        box.clear()
        box.send_keys(value)
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait_for(driver, lambda d: d.execute_script("return document.readyState") == "complete")
    assert_fits(driver, WIDTH)


def click(driver, text):
    from selenium.webdriver.common.by import By

    element = driver.find_element(By.XPATH, f"//*[self::a or self::button][normalize-space()='{text}']")
    element.click()
    wait_for(driver, lambda d: d.execute_script("return document.readyState") == "complete")
    assert_fits(driver, WIDTH)


def body(driver):
    return driver.find_element("tag name", "body").text


def test_the_patient_confirms_then_picks_another_time_without_javascript(phone, live_server, pwp, admin_user):
    appointment = booked_in(pwp, admin_user, hours=24 * 9)
    token = patient_links.issue_appointment_link(appointment=appointment).token

    assert open_link(phone, live_server, token) == "Hello Sam"
    assert "Rivers" not in body(phone) and "phone you on" not in body(phone)
    # Keyboard focus is visible: a thick outline on the focused box.
    outline = phone.execute_script(
        "var box = document.getElementById('id_day'); box.focus(); var s = getComputedStyle(box);"
        "return [s.outlineStyle, s.outlineWidth];"
    )
    assert outline[0] != "none" and outline[1] == "3px", outline
    enter_date_of_birth(phone, "17", "5", "1970")
    assert "We will phone you on" in body(phone)

    click(phone, "Yes, I will be there")
    wait_for(phone, lambda d: "You have confirmed your phone call" in body(d))
    assert Appointment.objects.get().confirmed_at is not None

    click(phone, "Pick another time")
    assert phone.find_element("tag name", "h1").text == "Pick another time"
    first = phone.find_element("css selector", "input[type=radio]")
    picked = first.get_attribute("value")
    phone.find_element("css selector", f"label[for={first.get_attribute('id')}]").click()
    click(phone, "Move my phone call to this time")
    wait_for(phone, lambda d: "Your phone call is now on" in body(d))
    moved = Rearrangement.objects.get()
    assert moved.asked_by == "patient" and moved.replacement.start == dt.datetime.fromisoformat(picked)
    assert AuditEntry.objects.filter(via=AuditEntry.Via.SELF_SERVICE).count() == 3  # confirmed, cancelled, booked


def test_the_patient_cancels_and_sees_first_that_it_is_late(phone, live_server, pwp, admin_user):
    appointment = booked_in(pwp, admin_user, hours=20)
    token = patient_links.issue_appointment_link(appointment=appointment).token
    open_link(phone, live_server, token)
    enter_date_of_birth(phone, "17/05/1970")  # the whole date in one box is read too
    click(phone, "Cancel this phone call")
    notice = phone.find_element("id", "notice").text
    assert "less than 24 hours' notice" in notice and "late cancellation" in notice
    click(phone, "Yes, cancel my phone call")
    wait_for(phone, lambda d: "Your phone call is cancelled" in body(d))
    appointment.refresh_from_db()
    assert appointment.outcome == AttendanceOutcome.CANCELLED_BY_PATIENT and appointment.cancelled_by == "patient"


def test_three_wrong_dates_of_birth_lock_the_link(phone, live_server, pwp, admin_user):
    appointment = booked_in(pwp, admin_user, hours=24 * 5)
    token = patient_links.issue_appointment_link(appointment=appointment).token
    open_link(phone, live_server, token)
    enter_date_of_birth(phone, "1", "1", "1980")
    assert "try 2 more times" in body(phone)
    enter_date_of_birth(phone, "2", "1", "1980")
    assert "try 1 more time" in body(phone)
    enter_date_of_birth(phone, "3", "1", "1980")
    assert phone.find_element("tag name", "h1").text == "This link is locked"
    assert "01632 960000" in body(phone)
    assert AdminTask.objects.get().kind == TaskKind.SELF_SERVICE_LOCKED
    # Opening it again, even to try the right date: still locked, and nothing about the patient.
    assert open_link(phone, live_server, token) == "This link is locked"
    assert "Sam" not in body(phone)


def test_an_expired_or_altered_link_gets_a_clear_page(phone, live_server, pwp, admin_user):
    past = booked_in(pwp, admin_user, hours=-3)
    expired = patient_links.issue_appointment_link(appointment=past).token
    assert open_link(phone, live_server, expired) == "This link has expired"
    assert "Sam" not in body(phone)

    live = patient_links.issue_appointment_link(appointment=booked_in(pwp, admin_user, hours=24 * 5)).token
    altered = live[:10] + ("a" if live[10] != "a" else "b") + live[11:]
    assert open_link(phone, live_server, altered) == "This link does not work"
    assert "Sam" not in body(phone)
    assert open_link(phone, live_server, live[:-3]) == "This link does not work"


def test_the_patient_takes_an_offered_earlier_time_through_the_link_without_javascript(phone, live_server, pwp, settings):
    from scheduling.offers import services as offers
    from scheduling.offers.models import OfferedSlot, OfferInvitation
    from scheduling.reminders.models import OutboundMessage
    from tests.offer_helpers import offers_on

    settings.SMS_PUBLIC_BASE_URL = live_server.url
    offers_on(include_link=True, wave_size=1)
    referral = make_referral(pwp, patient=make_patient(given_name="Sam", family_name="Rivers"))
    start = timezone.localtime(timezone.now() + dt.timedelta(days=6)).replace(hour=10, minute=0, second=0, microsecond=0)
    slot = offers.release_slot(practitioner=pwp, start=start, duration_minutes=60, appointment_type="assessment",
                               released_by=OfferedSlot.ReleasedBy.AVAILABILITY)
    offers.advance_offers(slot_id=slot.pk)
    invitation = OfferInvitation.objects.get(referral=referral)
    text = OutboundMessage.objects.get(pk=invitation.message_id).body
    link = text.split("open ", 1)[1].split(" ", 1)[0]
    assert link.startswith(live_server.url + "/s/") and f"or reply YES {invitation.code}" in text

    phone.get(link)
    wait_for(phone, lambda d: d.find_elements("tag name", "h1"))
    assert_fits(phone, WIDTH)
    assert phone.find_element("tag name", "h1").text == "Hello Sam"
    assert "Rivers" not in body(phone) and "Take this time" not in body(phone)
    enter_date_of_birth(phone, "17", "5", "1970")
    assert phone.find_element("tag name", "h1").text == "An earlier phone call"
    assert "by phone, for about 60 minutes" in body(phone)
    click(phone, "Take this time")
    wait_for(phone, lambda d: d.find_element("tag name", "h1").text.startswith("Booked: "))
    booked = Appointment.objects.get(referral=referral)
    assert booked.start == slot.start
    assert AuditEntry.objects.filter(appointment=booked, field="booking", via=AuditEntry.Via.SELF_SERVICE).exists()
    assert OfferedSlot.objects.get(pk=slot.pk).status == OfferedSlot.Status.FILLED
