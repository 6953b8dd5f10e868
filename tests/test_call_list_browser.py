"""Real headless Chromium: a demo PWP records "No answer" on the call list, with and without JavaScript, and a
call from start to finish (call back, wrong number, decline, then the admin worklist)."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from scheduling.calls.models import ContactAttempt
from scheduling.reminders.models import OutboundMessage
from scheduling.demo import DEMO_PASSWORD, DemoBuilder
from tests.browser_helpers import no_horizontal_overflow, wait_for, wider_than_the_screen
from tests.factories import make_referral

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def demo_pwp_with_a_referral(db):
    """A small demo service (its PWPs sign in with the demo password) plus one known person to reach."""
    builder = DemoBuilder(seed=7, referrals=6, now=timezone.now())
    staff = builder.build()
    alex = next(u for u in staff["PWP"] if u.username == "pwp.alex")
    referral = make_referral(alex, actor=builder.admin)
    return alex, referral


def sign_in(driver, live_server, username):
    from selenium.webdriver.common.by import By

    driver.get(live_server.url + "/")  # login required: redirected to the sign-in page
    driver.find_element(By.ID, "id_username").send_keys(username)
    driver.find_element(By.ID, "id_password").send_keys(DEMO_PASSWORD)
    driver.find_element(By.CSS_SELECTOR, "form.stack button[type=submit]").click()


def test_no_answer_updates_the_row_in_place_with_javascript(browser, live_server, demo_pwp_with_a_referral):
    from selenium.webdriver.common.by import By

    alex, referral = demo_pwp_with_a_referral
    sign_in(browser, live_server, alex.username)
    wait_for(browser, lambda d: "/calls/" in d.current_url and d.find_elements(By.ID, f"referral-{referral.pk}"))
    browser.execute_script("window.__sameDocument = 'still here';")
    row = browser.find_element(By.ID, f"referral-{referral.pk}")
    row.find_element(By.CSS_SELECTOR, "button[value=no_answer]").click()
    wait_for(browser, lambda d: "Recorded: No answer." in d.find_element(By.ID, f"referral-{referral.pk}").text)
    # The same document: no full reload happened, only the row was swapped.
    assert browser.execute_script("return window.__sameDocument;") == "still here"
    row_text = browser.find_element(By.ID, f"referral-{referral.pk}").text
    assert "1 of 3 policy attempts failed" in row_text and "Undo" in row_text
    assert browser.switch_to.active_element.get_attribute("id") == f"referral-{referral.pk}-title"
    attempt = ContactAttempt.objects.get(referral=referral)
    assert (attempt.outcome, attempt.practitioner_id) == ("no_answer", alex.pk)


def test_no_answer_works_as_a_plain_form_post_without_javascript(
    browser_without_js, live_server, demo_pwp_with_a_referral
):
    from selenium.webdriver.common.by import By

    driver = browser_without_js
    alex, referral = demo_pwp_with_a_referral
    sign_in(driver, live_server, alex.username)
    wait_for(driver, lambda d: d.find_elements(By.ID, f"referral-{referral.pk}"))
    driver.find_element(By.ID, f"referral-{referral.pk}").find_element(
        By.CSS_SELECTOR, "button[value=no_answer]"
    ).click()
    wait_for(driver, lambda d: "Recorded: No answer." in d.find_element(By.CSS_SELECTOR, ".messages").text)
    assert f"#referral-{referral.pk}" in driver.current_url
    row_text = driver.find_element(By.ID, f"referral-{referral.pk}").text
    assert "1 of 3 policy attempts failed" in row_text
    # The result is where the browser jumped to: inside the row, not only at the top of the page.
    assert "Recorded: No answer." in row_text
    assert ContactAttempt.objects.filter(referral=referral, outcome="no_answer", practitioner=alex).count() == 1


def test_a_pwps_call_from_call_back_to_wrong_number_to_decline_reaches_the_admin_worklist(
    browser, live_server, demo_pwp_with_a_referral
):
    from selenium.webdriver.common.by import By

    alex, referral = demo_pwp_with_a_referral
    row_id = f"referral-{referral.pk}"
    sign_in(browser, live_server, alex.username)
    wait_for(browser, lambda d: d.find_elements(By.ID, row_id))

    # "Call back requested" for 18:00 tomorrow (always in the future, whenever the test runs).
    tomorrow = timezone.localdate() + timedelta(days=1)
    row = browser.find_element(By.ID, row_id)
    row.find_element(By.CSS_SELECTOR, ".callback-form summary").click()
    picker = row.find_element(By.CSS_SELECTOR, "input[name=callback_at]")
    browser.execute_script("arguments[0].value = arguments[1];", picker, f"{tomorrow:%Y-%m-%d}T18:00")
    row.find_element(By.CSS_SELECTOR, "button[value=callback]").click()
    wait_for(browser, lambda d: "Recorded: Call back requested." in d.find_element(By.ID, row_id).text)
    request = ContactAttempt.objects.get(referral=referral, outcome="callback_requested")
    assert f"Call back requested for {tomorrow:%a} {tomorrow.day} {tomorrow:%b} 18:00" in browser.find_element(
        By.ID, row_id
    ).text

    # That day's list has the person at 18:00, labelled "Call back".
    browser.find_element(By.CSS_SELECTOR, ".day-nav a[rel=next]").click()
    wait_for(browser, lambda d: d.find_elements(By.ID, f"callback-{request.pk}"))
    callback_title = browser.find_element(By.ID, f"callback-{request.pk}-title").text
    assert "18:00" in callback_title and "Call back" in callback_title and referral.patient.full_name in callback_title

    # Back to today: "Wrong number" and the row says so; nothing is queued to that number.
    browser.find_element(By.CSS_SELECTOR, ".day-nav a[rel=prev]").click()
    wait_for(browser, lambda d: d.find_elements(By.ID, row_id))
    browser.find_element(By.ID, row_id).find_element(By.CSS_SELECTOR, "button[value=wrong_number]").click()
    wait_for(browser, lambda d: "Number wrong: waiting for a new number." in d.find_element(By.ID, row_id).text)
    assert not OutboundMessage.objects.filter(patient=referral.patient, status="scheduled").exists()

    # "Patient declined": admin staff see "discharge: declined" on the worklist.
    browser.find_element(By.ID, row_id).find_element(By.CSS_SELECTOR, "button[value=declined]").click()
    wait_for(browser, lambda d: "Recorded: Patient declined." in d.find_element(By.ID, row_id).text)
    browser.delete_all_cookies()
    sign_in(browser, live_server, "admin.sam")
    wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "main, body"))
    browser.get(live_server.url + reverse("worklist:index"))
    wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "table.worklist"))
    items = [tr.text for tr in browser.find_elements(By.CSS_SELECTOR, "tr.worklist-item") if referral.patient.full_name in tr.text]
    assert len([text for text in items if "discharge: declined" in text]) == 1, items
    assert not [text for text in items if "book the assessment" in text], items




def on_page(number):
    from selenium.webdriver.common.by import By

    return lambda d: any(f"Page {number} of" in e.text for e in d.find_elements(By.CSS_SELECTOR, "nav.pager"))


@pytest.mark.parametrize("width", [1366, 390])
def test_a_pwp_follows_next_25_and_logs_a_call_on_the_second_page(browser, live_server, demo_pwp_with_a_referral, width):
    from selenium.webdriver.common.by import By

    alex, _ = demo_pwp_with_a_referral
    for _ in range(30):
        make_referral(alex, actor=alex)
    browser.set_window_size(width, 1000)
    sign_in(browser, live_server, alex.username)
    wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "a.pager-next"))
    first_page = {e.get_attribute("id") for e in browser.find_elements(By.CSS_SELECTOR, "#reach-heading ~ ol > li")}
    assert len(first_page) == 25
    browser.find_element(By.CSS_SELECTOR, "a.pager-next").click()
    wait_for(browser, on_page(2))
    assert "page=2" in browser.current_url
    assert f"date={timezone.localdate():%Y-%m-%d}" in browser.current_url
    rows = browser.find_elements(By.CSS_SELECTOR, "#reach-heading ~ ol > li")
    assert rows and not {e.get_attribute("id") for e in rows} & first_page
    assert "Page 2 of" in browser.find_element(By.CSS_SELECTOR, "nav.pager").text
    if width <= 390:
        assert no_horizontal_overflow(browser), wider_than_the_screen(browser)
    row_id = rows[0].get_attribute("id")
    rows[0].find_element(By.CSS_SELECTOR, "button[value=no_answer]").click()
    wait_for(browser, lambda d: "Recorded: No answer." in d.find_element(By.ID, row_id).text)
    assert "page=2" in browser.current_url
    assert ContactAttempt.objects.filter(referral_id=int(row_id.split("-")[1]), outcome="no_answer").count() == 1
    browser.find_element(By.CSS_SELECTOR, "a.pager-previous").click()
    wait_for(browser, on_page(1))
    assert "page=" not in browser.current_url


def test_without_javascript_a_call_logged_on_the_second_page_comes_back_to_it(
    browser_without_js, live_server, demo_pwp_with_a_referral
):
    from selenium.webdriver.common.by import By

    driver = browser_without_js
    alex, _ = demo_pwp_with_a_referral
    for _ in range(30):
        make_referral(alex, actor=alex)
    sign_in(driver, live_server, alex.username)
    wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "a.pager-next"))
    driver.find_element(By.CSS_SELECTOR, "a.pager-next").click()
    wait_for(driver, on_page(2))
    row_id = driver.find_elements(By.CSS_SELECTOR, "#reach-heading ~ ol > li")[0].get_attribute("id")
    driver.find_element(By.ID, row_id).find_element(By.CSS_SELECTOR, "button[value=no_answer]").click()
    wait_for(driver, lambda d: "Recorded: No answer." in d.find_element(By.CSS_SELECTOR, ".messages").text)
    assert "page=2" in driver.current_url and driver.current_url.endswith(f"#{row_id}")
    assert "Recorded: No answer." in driver.find_element(By.ID, row_id).text
