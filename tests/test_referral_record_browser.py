"""Real headless Chromium at phone width (390 px): a PWP opens the referral page, writes a note, amends it
and reads both versions; nothing on the page is wider than the screen."""

import pytest
from django.urls import reverse

from scheduling import roles
from scheduling.booking.services import book_appointment, rearrange_appointment
from scheduling.calls.services import CallButton, record_call_outcome
from scheduling.caseload.models import ClinicalNote
from tests.browser_helpers import no_horizontal_overflow, wait_for, wider_than_the_screen
from tests.factories import london, make_referral, make_user

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
FIRST = "Pain 7/10 most days; agreed a pacing diary. " + "Walking-for-ten-minutes-before-lunch-every-weekday " * 3
SECOND = "Pain 6/10 most days; agreed a pacing diary and a sleep routine."




def test_a_pwp_writes_and_amends_a_note_on_a_phone_and_reads_both_versions(browser, live_server, admin_user):
    from selenium.webdriver.common.by import By

    pwp = make_user("pwp.browser", roles.PWP)
    referral = make_referral(pwp, actor=admin_user)
    appointment = book_appointment(
        referral=referral, practitioner=pwp, appointment_type="assessment", start=london(2030, 3, 12, 10), actor=admin_user
    )
    rearrange_appointment(appointment=appointment, new_start=london(2030, 3, 19, 14), asked_by="patient", actor=admin_user)
    record_call_outcome(referral=referral, button=CallButton.NO_ANSWER, actor=pwp, note="No voicemail set up on this phone")

    browser.set_window_size(390, 900)
    browser.get(live_server.url + reverse("login"))
    browser.find_element(By.ID, "id_username").send_keys(pwp.username)
    browser.find_element(By.ID, "id_password").send_keys("test-pass-123")
    browser.find_element(By.CSS_SELECTOR, "form.stack button[type=submit]").click()
    wait_for(browser, lambda d: "/login" not in d.current_url)

    browser.get(live_server.url + reverse("caseload:referral_detail", args=[referral.pk]))
    wait_for(browser, lambda d: d.find_elements(By.ID, "notes-heading"))
    assert browser.execute_script("return window.innerWidth;") <= 390
    assert no_horizontal_overflow(browser)

    browser.find_element(By.ID, "note_text").send_keys(FIRST)
    browser.find_element(By.CSS_SELECTOR, "form.note-form button[type=submit]").click()
    wait_for(browser, lambda d: "Note saved." in d.find_element(By.CSS_SELECTOR, ".messages").text)
    note = ClinicalNote.objects.get()
    article = browser.find_element(By.ID, f"note-{note.pk}")
    assert "Pain 7/10 most days" in article.text

    article.find_element(By.CSS_SELECTOR, "details.amend summary").click()
    box = article.find_element(By.CSS_SELECTOR, "details.amend textarea")
    box.clear()
    box.send_keys(SECOND)
    article.find_element(By.CSS_SELECTOR, "details.amend button[type=submit]").click()
    wait_for(browser, lambda d: "Note amended" in d.find_element(By.CSS_SELECTOR, ".messages").text)

    latest = ClinicalNote.objects.get(supersedes=note)
    article = browser.find_element(By.ID, f"note-{latest.pk}")
    assert SECOND in article.find_element(By.CSS_SELECTOR, ".note-text").text
    assert "Amended" in article.text
    article.find_element(By.CSS_SELECTOR, "details.earlier-versions summary").click()
    earlier = article.find_element(By.ID, f"note-{note.pk}")
    wait_for(browser, lambda d: earlier.is_displayed())
    assert "Pain 7/10 most days" in earlier.text
    assert no_horizontal_overflow(browser), wider_than_the_screen(browser)
    assert ClinicalNote.objects.count() == 2
