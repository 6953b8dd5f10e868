"""Real headless Chromium: admin staff open a "wrong number" item on the worklist, follow "Correct the number",
enter the new mobile on the patient details page and save; the item is resolved and the reminders the wrong
number stopped are planned again and go to the new number. At desktop width (1366 px) and phone width
(390 px, nothing wider than the screen)."""

import pytest
import time_machine
from django.urls import reverse

from scheduling import roles
from scheduling.booking.services import book_appointment
from scheduling.calls.services import CallButton, record_call_outcome
from scheduling.audit import AuditEntry
from scheduling.worklist.models import AdminTask
from scheduling.reminders import sending
from scheduling.reminders.models import OutboundMessage
from scheduling.reminders.rules import WRONG_NUMBER_REASON
from tests.browser_helpers import assert_fits, sign_in, wait_for
from tests.factories import london, make_referral, make_user

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
MORNING = london(2030, 3, 12, 9, 30)
S = OutboundMessage.Status


@pytest.mark.parametrize("width", [1366, 390])
def test_admin_staff_correct_a_wrong_number_from_the_worklist_and_the_reminders_go_to_the_new_number(
    browser, live_server, admin_user, width
):
    from selenium.webdriver.common.by import By

    with time_machine.travel(MORNING, tick=True):
        pwp = make_user("pwp.morning", roles.PWP)
        referral = make_referral(pwp, actor=admin_user)
        patient = referral.patient
        appointment = book_appointment(
            referral=referral, practitioner=pwp, appointment_type="assessment", start=london(2030, 3, 20, 14), actor=admin_user
        )
        # The PWP's call found the number wrong: the reminders are cancelled and admin staff get the item.
        record_call_outcome(referral=referral, button=CallButton.WRONG_NUMBER, actor=pwp)
        cancelled = list(OutboundMessage.objects.filter(appointment=appointment))
        assert {(m.status, m.status_reason) for m in cancelled} == {(S.CANCELLED, WRONG_NUMBER_REASON)}
        task = AdminTask.objects.get(kind=AdminTask.Kind.WRONG_NUMBER, patient=patient)
        details_url = reverse("caseload:patient_details", args=[patient.pk])
        browser.set_window_size(width, 1000)

        sign_in(browser, live_server, admin_user.username)

        # The worklist: the item offers "Correct the number".
        browser.get(live_server.url + reverse("worklist:index"))
        wait_for(browser, lambda d: d.find_elements(By.LINK_TEXT, "Correct the number"))
        assert_fits(browser, width)
        [link] = [a for a in browser.find_elements(By.LINK_TEXT, "Correct the number") if a.get_attribute("href").endswith(details_url)]
        link.click()

        # The details page, with the open item.
        wait_for(browser, lambda d: d.current_url.endswith(details_url))
        assert browser.find_element(By.TAG_NAME, "h1").text == f"Details: {patient.full_name}"
        assert "Phone number wrong or not in service" in browser.find_element(By.ID, f"task-{task.pk}").text
        assert_fits(browser, width)
        mobile = browser.find_element(By.ID, "id_mobile_phone")
        mobile.clear()
        mobile.send_keys("07700 900456")
        browser.find_element(By.ID, "id_reason").send_keys("Patient rang with a new number")
        browser.find_element(By.CSS_SELECTOR, "#patient-details-form button[type=submit]").click()

        wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, ".messages"))
        message = browser.find_element(By.CSS_SELECTOR, ".messages").text
        assert "Saved: Mobile for texts changed." in message
        assert "2 reminders planned again; they go to the new number." in message
        assert "Worklist item resolved: phone number wrong or not in service." in message
        assert not browser.find_elements(By.ID, f"task-{task.pk}")
        pending = browser.find_element(By.CSS_SELECTOR, ".pending-texts").text
        assert "Reminder 2 days before" in pending and "Reminder on the day" in pending
        history = browser.find_element(By.CSS_SELECTOR, ".history").text
        assert "→ 07700 900456 – Patient rang with a new number, by Admin.One Tester" in history
        assert_fits(browser, width)

        # Stored: the item resolved in words, one audited change, the reminders planned again.
        task.refresh_from_db()
        assert task.resolved_by == admin_user and "mobile number was corrected" in task.resolution
        assert AuditEntry.objects.filter(patient=patient, field="mobile_phone").count() == 1
        replanned = list(OutboundMessage.objects.filter(appointment=appointment, status=S.SCHEDULED).order_by("due_at"))
        assert [m.kind for m in replanned] == ["reminder_2d", "reminder_0d"]
        assert {m.status for m in OutboundMessage.objects.filter(pk__in=[m.pk for m in cancelled])} == {S.CANCELLED}
        # When it is due, the reminder goes to the new number.
        early = replanned[0]
        assert sending.send_message(message_id=early.pk, now=early.due_at) == S.DELIVERED
        early.refresh_from_db()
        assert early.to_number == "+447700900456"

        # Back on the worklist, the item is gone.
        browser.get(live_server.url + reverse("worklist:index"))
        wait_for(browser, lambda d: d.find_elements(By.TAG_NAME, "h1"))
        assert not [
            a for a in browser.find_elements(By.LINK_TEXT, "Correct the number") if a.get_attribute("href").endswith(details_url)
        ]
        assert_fits(browser, width)
