"""Real headless Chromium: a demo PWP records "No answer" on the call list, with and without JavaScript."""

import pytest
from django.utils import timezone

from scheduling.calls.models import ContactAttempt
from scheduling.demo import DEMO_PASSWORD, DemoBuilder
from tests.factories import make_referral

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
WAIT_SECONDS = 15


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


def wait_for(driver, condition):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT_SECONDS).until(condition)


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
    assert "1 of 3 policy attempts failed" in driver.find_element(By.ID, f"referral-{referral.pk}").text
    assert ContactAttempt.objects.filter(referral=referral, outcome="no_answer", practitioner=alex).count() == 1
