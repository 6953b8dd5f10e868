"""Real headless Chromium: an admin finds the next free slot and books a course."""

from datetime import timedelta

import pytest
from django.utils import timezone
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from scheduling import roles
from scheduling.booking.models import Appointment
from scheduling.booking.services import record_appointment_outcome
from tests.booking_helpers import book, give_pattern
from tests.factories import make_referral, make_user


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_an_admin_finds_the_next_free_slot_and_books_a_course(browser, live_server):
    pwp = make_user("pwp.browser", roles.PWP)
    give_pattern(pwp, weekdays=range(7))
    admin = make_user("admin.browser", roles.ADMIN_STAFF)
    referral = make_referral(pwp, actor=admin)
    assessment = book(referral, pwp, timezone.now() - timedelta(days=7), actor=admin)
    record_appointment_outcome(appointment=assessment, outcome="5", actor=pwp)

    wait = WebDriverWait(browser, 15)
    browser.get(live_server.url + "/login/")
    browser.find_element(By.NAME, "username").send_keys("admin.browser")
    browser.find_element(By.NAME, "password").send_keys("test-pass-123")
    browser.find_element(By.CSS_SELECTOR, "form button[type=submit], form input[type=submit]").click()
    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "table.worklist")))

    browser.get(f"{live_server.url}/booking/referrals/{referral.pk}/slots/")
    # The page opens on treatment for an assessed referral; the first listed slot is the next free one.
    first_slot = wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "ol.slots li.slot")))
    slot_text = first_slot.find_element(By.CLASS_NAME, "slot-time").text
    first_slot.find_element(By.XPATH, ".//button[starts-with(normalize-space(), 'Plan course from here')]").click()

    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "table.course-plan")))
    rows = browser.find_elements(By.CSS_SELECTOR, "table.course-plan tbody tr")
    assert len(rows) == 9  # seven weekly sessions and two reviews
    assert not Appointment.objects.filter(appointment_type="treatment").exists()  # nothing saved before confirming
    browser.find_element(By.XPATH, "//button[starts-with(normalize-space(), 'Book all')]").click()

    wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, ".message-success")))
    assert "Booked 9 sessions" in browser.find_element(By.CSS_SELECTOR, ".message-success").text
    sessions = list(Appointment.objects.filter(referral=referral, appointment_type="treatment").order_by("start"))
    assert [a.session_number for a in sessions] == [2, 3, 4, 5, 6, 7, 8]
    first_local = timezone.localtime(sessions[0].start)
    assert f"{first_local:%H:%M}" in slot_text
    assert {timezone.localtime(a.start).strftime("%H:%M") for a in sessions} == {f"{first_local:%H:%M}"}
