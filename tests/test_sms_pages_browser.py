"""Real headless Chromium: the template editor's live length counter, under the strict CSP."""

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from scheduling import roles
from scheduling.reminders.content import DEFAULT_TEMPLATES
from scheduling.reminders.models import MessageTemplate
from tests.browser_helpers import sign_in, wait_for
from tests.factories import make_user

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Records every Content-Security-Policy violation on every page, before the page's own scripts run.
CSP_WATCH = """
window.__cspViolations = [];
document.addEventListener('securitypolicyviolation', function (e) {
  window.__cspViolations.push(e.violatedDirective + ' ' + e.blockedURI);
});
"""


def live_text(driver) -> str:
    return driver.find_element(By.ID, "sms-length").text


def csp_problems(driver) -> list[str]:
    violations = driver.execute_script("return window.__cspViolations || [];")
    console = [entry["message"] for entry in driver.get_log("browser") if "Content Security Policy" in entry["message"]]
    return violations + console


@pytest.fixture
def manager_in_browser(browser, live_server):
    make_user("manager.browser", roles.MANAGER, is_staff=True)
    browser.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": CSP_WATCH})
    sign_in(browser, live_server, "manager.browser")
    return browser


def test_the_live_counter_switches_to_ucs2_when_a_character_outside_gsm7_is_typed(manager_in_browser, live_server):
    driver = manager_in_browser
    driver.get(live_server.url + "/sms/templates/reminder/")
    # The script has run: the page loaded it from our own origin, and it has the counter's figures.
    wait_for(driver, lambda d: "Sample message:" in live_text(d))
    assert driver.execute_script("return window.__cspViolations !== undefined;")
    body = driver.find_element(By.ID, "id_body")
    body.send_keys(Keys.CONTROL, "a")
    body.send_keys(Keys.DELETE)
    body.send_keys("Hi {first_name}, see you at {time}. Reply STOP to end texts.")
    gsm = "Hi Alexandra, see you at 2:45pm. Reply STOP to end texts."
    wait_for(driver, lambda d: f"Sample message: {len(gsm)} characters, GSM-7, 1 SMS part." in live_text(d))

    body.send_keys(" ✓")
    wait_for(driver, lambda d: "UCS-2" in live_text(d))
    assert f"Sample message: {len(gsm) + 2} characters, UCS-2, 1 SMS part." in live_text(driver)
    assert "Not in GSM-7: ✓" in live_text(driver)
    assert driver.find_element(By.ID, "sms-length").get_attribute("aria-live") == "polite"

    # A curly apostrophe is not GSM-7 either, but saving (and sending) turns it into a plain one:
    # the counter says so and counts what will be sent.
    body.send_keys(Keys.BACKSPACE, Keys.BACKSPACE, " We’ll ring.")
    wait_for(driver, lambda d: "’ becomes '" in live_text(d))
    assert "GSM-7, 1 SMS part." in live_text(driver) and "UCS-2" not in live_text(driver)

    # Clinical words are named while typing (saving them is refused).
    body.send_keys(" Therapy.")
    wait_for(driver, lambda d: "Remove: therapy." in live_text(d))
    assert MessageTemplate.objects.get(key="reminder").body == DEFAULT_TEMPLATES["reminder"]  # typing saves nothing
    assert csp_problems(driver) == []


def test_the_live_count_matches_the_servers_preview(manager_in_browser, live_server):
    driver = manager_in_browser
    driver.get(live_server.url + "/sms/templates/reminder_same_day/")
    wait_for(driver, lambda d: "Sample message:" in live_text(d))
    body = driver.find_element(By.ID, "id_body")
    body.send_keys(Keys.CONTROL, "a")
    body.send_keys(Keys.DELETE)
    # Extension characters (€, [, ]) count two septets each; 170 characters need two parts.
    body.send_keys("Hi {first_name} [{day} {date}, {time}] costs €0. " + "z" * 100 + " Reply STOP to end texts.")
    wait_for(driver, lambda d: "2 SMS parts" in live_text(d))
    typed = live_text(driver).splitlines()[0].removeprefix("Sample message: ")
    driver.find_element(By.CSS_SELECTOR, "button[name=preview]").click()
    wait_for(driver, lambda d: "Preview (not saved)" in d.page_source)
    server = driver.find_element(By.CSS_SELECTOR, ".template-preview blockquote + p").text
    assert server == typed
    assert "GSM-7" in server
    assert csp_problems(driver) == []


def test_without_javascript_the_preview_button_gives_the_length(browser_without_js, live_server):
    driver = browser_without_js
    make_user("manager.nojs", roles.MANAGER, is_staff=True)
    sign_in(driver, live_server, "manager.nojs")
    driver.get(live_server.url + "/sms/templates/reminder/")
    body = driver.find_element(By.ID, "id_body")
    body.clear()
    body.send_keys("Hi {first_name} ✓ Reply STOP to end texts.")
    driver.find_element(By.CSS_SELECTOR, "button[name=preview]").click()
    wait_for(driver, lambda d: "Preview (not saved)" in d.page_source)
    assert "UCS-2" in live_text(driver) and "Not in GSM-7: ✓" in live_text(driver)
    assert driver.find_element(By.ID, "id_body").get_attribute("value") == "Hi {first_name} ✓ Reply STOP to end texts."
    driver.find_element(By.CSS_SELECTOR, "button[name=save]").click()
    wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, ".message-success"))
    assert MessageTemplate.objects.get(key="reminder").body == "Hi {first_name} ✓ Reply STOP to end texts."
