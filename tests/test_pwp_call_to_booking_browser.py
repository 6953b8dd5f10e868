"""Real headless Chromium: the PWP's morning as a person clicks it. On the call list they reach someone
("Spoke to patient"), follow "Book the assessment", tick that the patient agreed the time on the phone,
book a slot today, open the referral page, write a note, and see the appointment, the call and the note.
At desktop width and at phone width (390 px, nothing wider than the screen)."""

import pytest
import time_machine
from django.urls import reverse

from scheduling import roles
from scheduling.audit import AuditEntry
from scheduling.booking.models import Appointment
from scheduling.calls.models import ContactAttempt
from scheduling.caseload.models import ClinicalNote
from tests.browser_helpers import assert_fits, sign_in, wait_for
from tests.factories import london, make_referral, make_user

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
# A working Tuesday morning (the default working week is Mon-Fri 09:00-17:00), so today has free slots
# whatever the hour the suite runs; the clock ticks on from there.
MORNING = london(2030, 3, 12, 9, 30)
NOTE = "Agreed an assessment this morning; prefers calls before noon."


@pytest.mark.parametrize("width", [1280, 390])
def test_a_pwp_reaches_a_patient_books_the_assessment_today_and_writes_a_note(browser, live_server, admin_user, width):
    from selenium.webdriver.common.by import By

    with time_machine.travel(MORNING, tick=True):
        pwp = make_user("pwp.morning", roles.PWP)
        referral = make_referral(pwp, actor=admin_user)
        name = referral.patient.full_name
        browser.set_window_size(width, 1000)

        # Sign in: a PWP lands on their call list.
        sign_in(browser, live_server, pwp.username)
        row_id = f"referral-{referral.pk}"
        wait_for(browser, lambda d: reverse("calls:today") in d.current_url and d.find_elements(By.ID, row_id))
        assert_fits(browser, width)

        # "Spoke to patient": the row then offers "Book the assessment".
        browser.find_element(By.ID, row_id).find_element(By.CSS_SELECTOR, "button[value=spoke]").click()
        wait_for(browser, lambda d: d.find_element(By.ID, row_id).find_elements(By.LINK_TEXT, "Book the assessment"))
        attempt = ContactAttempt.objects.get(referral=referral)
        browser.find_element(By.ID, row_id).find_element(By.LINK_TEXT, "Book the assessment").click()

        # The slot finder for this referral.
        wait_for(browser, lambda d: reverse("booking:find_slots", args=[referral.pk]) in d.current_url)
        assert browser.find_element(By.TAG_NAME, "h1").text == f"Book: {name}"
        assert_fits(browser, width)
        browser.find_element(By.CSS_SELECTOR, "form.filters input[name=on_phone]").click()
        browser.find_element(By.CSS_SELECTOR, "form.filters button[type=submit]").click()
        wait_for(browser, lambda d: "on_phone=1" in d.current_url and d.find_elements(By.CSS_SELECTOR, "li.slot"))
        today = f"{MORNING:%a} {MORNING.day} {MORNING:%b %Y}"
        todays = [s for s in browser.find_elements(By.CSS_SELECTOR, "li.slot") if s.text.startswith(today)]
        assert todays, [s.text for s in browser.find_elements(By.CSS_SELECTOR, "li.slot")]
        assert_fits(browser, width)
        todays[0].find_element(By.CSS_SELECTOR, "button.primary").click()

        # Booked: back on the call list with a message naming the appointment.
        wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, ".messages"))
        appointment = Appointment.objects.get(referral=referral)
        assert appointment.start.astimezone(MORNING.tzinfo).date() == MORNING.date()
        assert reverse("calls:today") in browser.current_url
        message = browser.find_element(By.CSS_SELECTOR, ".messages").text
        assert f"Booked for {name}: {appointment}" in message
        assert browser.find_elements(By.ID, f"appointment-{appointment.pk}")  # today's booked call
        assert AuditEntry.objects.filter(appointment=appointment, field="lead_time", actor=pwp).exists()
        assert_fits(browser, width)

        # The referral page, from the call list (the patient's name, if the row links it).
        record_url = reverse("caseload:referral_detail", args=[referral.pk])
        links = browser.find_elements(By.CSS_SELECTOR, f'a[href="{record_url}"]')
        if links:
            links[0].click()
        else:
            browser.get(live_server.url + record_url)
        wait_for(browser, lambda d: d.find_elements(By.ID, "notes-heading"))
        browser.find_element(By.ID, "note_text").send_keys(NOTE)
        browser.find_element(By.CSS_SELECTOR, "form.note-form button[type=submit]").click()
        wait_for(browser, lambda d: "Note saved." in d.find_element(By.CSS_SELECTOR, ".messages").text)

        note = ClinicalNote.objects.get(referral=referral)
        assert NOTE in browser.find_element(By.ID, f"note-{note.pk}").text
        assert "Initial assessment" in browser.find_element(By.ID, f"appointment-{appointment.pk}").text
        assert attempt.get_outcome_display() in browser.find_element(By.ID, f"attempt-{attempt.pk}").text
        assert "booked with the patient on the phone" in browser.find_element(By.CSS_SELECTOR, "ul.history").text
        book_button = browser.find_element(By.LINK_TEXT, "Book or rearrange")
        assert book_button.get_attribute("href").endswith(reverse("booking:find_slots", args=[referral.pk]))
        assert_fits(browser, width)
