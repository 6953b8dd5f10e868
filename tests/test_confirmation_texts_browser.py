"""Real headless Chromium at desktop (1366 px) and phone (390 px) width: admin staff open Texts from the
menu, see a booking's confirmation in the outbox by its readable kind, filter on it and open it; the PWP
sees the patient's free-text answer on their call-list row. Nothing is wider than the screen."""

import datetime as dt

import pytest
from django.urls import reverse
from django.utils import timezone
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from scheduling import roles
from scheduling.reminders import sending
from scheduling.reminders.models import OutboundMessage
from scheduling.reminders.replies import handle_inbound
from tests.booking_helpers import book
from tests.browser_helpers import no_horizontal_overflow, sign_in, wait_for
from tests.factories import make_referral, make_user

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def booked_and_confirmed(db):
    pwp = make_user("pwp.texts", roles.PWP, practitioner=True)
    admin = make_user("admin.texts", roles.ADMIN_STAFF)
    # Far enough ahead that the confirmation goes whatever the time of day the test runs (quiet hours
    # at most delay it; no reminder is due near it).
    start = timezone.make_aware(dt.datetime.combine(timezone.localdate() + dt.timedelta(days=5), dt.time(14)))
    appointment = book(make_referral(pwp, actor=admin), pwp, start, actor=admin)
    message = OutboundMessage.objects.get(appointment=appointment, kind="confirmation")
    assert sending.send_message(message_id=message.pk, now=message.due_at) == OutboundMessage.Status.DELIVERED
    message.refresh_from_db()
    return pwp, admin, appointment, message


@pytest.mark.parametrize("width", [1366, 390])
def test_admin_staff_find_the_booking_confirmation_in_the_outbox(width, browser, live_server, booked_and_confirmed):
    _, admin, appointment, message = booked_and_confirmed
    browser.set_window_size(width, 1000)
    sign_in(browser, live_server, admin.username)
    browser.get(live_server.url + reverse("home"))
    browser.find_element(By.LINK_TEXT, "Texts").click()
    wait_for(browser, lambda d: d.current_url.endswith(reverse("sms:outbox")))

    Select(browser.find_element(By.ID, "id_kind")).select_by_visible_text(message.kind_display)
    browser.find_element(By.CSS_SELECTOR, "form.filters button[type=submit]").click()
    wait_for(browser, lambda d: f"kind={message.kind}" in d.current_url)
    table = browser.find_element(By.CSS_SELECTOR, "table.outbox")
    assert "1 message, newest due first" in table.text
    [row] = table.find_elements(By.CSS_SELECTOR, "tbody tr")
    assert "Booking confirmation" in row.text and "Delivered" in row.text
    assert row.is_displayed() and no_horizontal_overflow(browser)
    if width <= 390:
        assert browser.execute_script("return window.innerWidth;") <= 390

    row.find_element(By.CSS_SELECTOR, "td[data-label=Due] a").click()
    wait_for(browser, lambda d: d.current_url.endswith(reverse("sms:message_detail", args=[message.pk])))
    page = browser.find_element(By.TAG_NAME, "main").text
    assert message.kind_display in page and message.body in page
    wide = browser.execute_script("""
      var w = document.documentElement.clientWidth, out = [];
      document.querySelectorAll('body *').forEach(function (e) { var r = e.getBoundingClientRect();
        if (r.right > w + 1) out.push(e.tagName + '.' + e.className + '#' + e.id + ' ' + Math.round(r.right)); });
      return out.slice(0, 15);""")
    assert no_horizontal_overflow(browser), wide


@pytest.mark.parametrize("width", [1366, 390])
def test_the_pwp_sees_the_patients_free_text_answer_on_the_call_list_row(width, browser, live_server, booked_and_confirmed):
    pwp, _, appointment, _ = booked_and_confirmed
    patient = appointment.referral.patient
    handle_inbound(provider_sid=f"SMbrowser{width:05d}", from_number=patient.mobile_phone, to_number="+447700900999",
                   body="Please ring after 3pm")
    browser.set_window_size(width, 1000)
    sign_in(browser, live_server, pwp.username)
    day = timezone.localdate(appointment.start).isoformat()
    browser.get(live_server.url + reverse("calls:today") + f"?date={day}")
    row = wait_for(browser, lambda d: d.find_element(By.ID, f"appointment-{appointment.pk}"))
    reply = row.find_element(By.CSS_SELECTOR, "dd.patient-reply")
    assert reply.is_displayed() and "Please ring after 3pm" in reply.text and "received" in reply.text
    assert no_horizontal_overflow(browser)
