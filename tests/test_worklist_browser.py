"""Real headless Chromium, two people at once: one admin takes a worklist item and the other sees it taken
by name; the second (JavaScript off, plain form posts) is politely refused an item the first took while
their page was open, filters by kind, searches by NHS number with spaces and follows the record link.
At desktop width (1366 px) and phone width (390 px, nothing wider than the screen)."""

import pytest
from django.urls import reverse
from django.utils import timezone

from scheduling import roles
from scheduling.worklist.models import WorklistClaim
from scheduling.worklist.models import AdminTask
from scheduling.worklist.services import raise_admin_task
from tests.browser_helpers import wait_for
from tests.factories import make_patient, make_referral, make_user

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]




def sign_in(driver, live_server, username):
    from selenium.webdriver.common.by import By

    driver.get(live_server.url + reverse("login"))
    driver.find_element(By.ID, "id_username").send_keys(username)
    driver.find_element(By.ID, "id_password").send_keys("test-pass-123")
    driver.find_element(By.CSS_SELECTOR, "form.stack button[type=submit]").click()
    # Admin staff land on the worklist.
    wait_for(driver, lambda d: d.current_url.endswith(reverse("worklist:index")) and d.find_elements(By.CSS_SELECTOR, "table.worklist"))


def fits_the_screen(driver, width):
    if width > 390:
        return
    assert driver.execute_script("return window.innerWidth;") <= 390
    wider = driver.execute_script(
        "return [...document.querySelectorAll('*')].filter(e => e.getBoundingClientRect().right > "
        "document.documentElement.clientWidth + 1).map(e => e.tagName + '.' + e.className).slice(0, 10);"
    )
    assert driver.execute_script(
        "return document.documentElement.scrollWidth <= document.documentElement.clientWidth;"
    ), wider


@pytest.fixture
def second_browser(chrome_options_factory):
    """Another person's own browser, with JavaScript off (the page works as plain forms)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    from tests.conftest import chromium_paths

    _, driver_path = chromium_paths()
    driver = webdriver.Chrome(service=Service(driver_path), options=chrome_options_factory(javascript=False))
    yield driver
    driver.quit()


@pytest.mark.parametrize("width", [1366, 390])
def test_one_admin_takes_an_item_and_the_other_sees_it_taken_filters_searches_and_opens_the_record(
    browser, second_browser, live_server, width
):
    from selenium.webdriver.common.by import By

    pwp = make_user("pwp.one", roles.PWP)
    sam, jo = make_user("sam", roles.ADMIN_STAFF), make_user("jo", roles.ADMIN_STAFF)
    for user, first, last in ((sam, "Sam", "Okafor"), (jo, "Jo", "Patel")):
        user.first_name, user.last_name = first, last
        user.save(update_fields=["first_name", "last_name"])
    ada = make_referral(pwp, actor=sam, patient=make_patient(given_name="Ada", family_name="Smithson", nhs_number="9434765919"))
    bryn = make_referral(pwp, actor=sam, patient=make_patient(given_name="Bryn", family_name="Jones"))
    raise_admin_task(kind=AdminTask.Kind.WRONG_NUMBER, source=AdminTask.Source.CALL_LIST, referral=bryn, detail="Not in service")
    ada_row, bryn_row = f"item-no_assessment-referral-{ada.pk}", f"item-no_assessment-referral-{bryn.pk}"
    for driver in (browser, second_browser):
        driver.set_window_size(width, 1000)

    # Sam takes Ada's item.
    sign_in(browser, live_server, sam.username)
    fits_the_screen(browser, width)
    browser.find_element(By.ID, ada_row).find_element(By.CSS_SELECTOR, "button.take").click()
    wait_for(browser, lambda d: "Taken by you at" in d.find_element(By.ID, ada_row).text)
    assert "Taken: colleagues now see this item as taken by you" in browser.find_element(By.CSS_SELECTOR, ".messages").text
    claim = WorklistClaim.objects.get(released_at__isnull=True)
    at = f"{timezone.localtime(claim.taken_at):%H:%M}"
    assert (claim.item_key, claim.taken_by) == (f"no_assessment:referral:{ada.pk}", sam)

    # Jo, in another browser, sees it taken by Sam, with the time, and may only take it over knowingly.
    sign_in(second_browser, live_server, jo.username)
    fits_the_screen(second_browser, width)
    row = second_browser.find_element(By.ID, ada_row)
    assert f"Taken by Sam Okafor at {at}" in row.text
    assert not row.find_elements(By.CSS_SELECTOR, "button.take")
    assert row.find_element(By.CSS_SELECTOR, "button.take-over").text == "Take over from Sam Okafor"

    # Sam takes Bryn's item while Jo's page still offers "Take": Jo is refused, politely, by name.
    browser.find_element(By.ID, bryn_row).find_element(By.CSS_SELECTOR, "button.take").click()
    wait_for(browser, lambda d: "Taken by you at" in d.find_element(By.ID, bryn_row).text)
    second_browser.find_element(By.ID, bryn_row).find_element(By.CSS_SELECTOR, "button.take").click()
    wait_for(second_browser, lambda d: d.find_elements(By.CSS_SELECTOR, ".messages"))
    message = second_browser.find_element(By.CSS_SELECTOR, ".messages").text
    assert "Sam Okafor took this item at" in message and "Take over from Sam Okafor" in message
    assert f"#{bryn_row}" in second_browser.current_url
    assert "Taken by Sam Okafor at" in second_browser.find_element(By.ID, bryn_row).text
    assert WorklistClaim.objects.filter(taken_by=jo).count() == 0
    fits_the_screen(second_browser, width)

    # Jo filters to one kind with its chip: the counts are shown on the chips.
    chip = second_browser.find_element(By.CSS_SELECTOR, ".worklist-kind-wrong_number a")
    assert chip.text.endswith("1")
    chip.click()
    wait_for(second_browser, lambda d: "kind=wrong_number" in d.current_url)
    rows = second_browser.find_elements(By.CSS_SELECTOR, "tr.worklist-item")
    assert [r.get_attribute("class").split()[1] for r in rows] == ["worklist-wrong_number"]
    assert "Bryn Jones" in rows[0].text
    fits_the_screen(second_browser, width)

    # Back to everything, then search by the NHS number as it is read out, with spaces.
    second_browser.find_element(By.CSS_SELECTOR, ".worklist-kind-all a").click()
    wait_for(second_browser, lambda d: "kind=" not in d.current_url and len(d.find_elements(By.CSS_SELECTOR, "tr.worklist-item")) == 3)
    search = second_browser.find_element(By.ID, "worklist-q")
    search.send_keys("943 476 5919")
    second_browser.find_element(By.CSS_SELECTOR, "form.worklist-search button[type=submit]").click()
    wait_for(second_browser, lambda d: "q=943+476+5919" in d.current_url)
    [row] = second_browser.find_elements(By.CSS_SELECTOR, "tr.worklist-item")
    assert row.get_attribute("id") == ada_row and f"Taken by Sam Okafor at {at}" in row.text
    fits_the_screen(second_browser, width)

    # The record link lands on Ada's referral page.
    row.find_element(By.CSS_SELECTOR, "a.worklist-record").click()
    wait_for(second_browser, lambda d: reverse("caseload:referral_detail", args=[ada.pk]) in d.current_url)
    assert second_browser.find_element(By.TAG_NAME, "h1").text == "Ada Smithson"

    # Sam releases Ada's item; Jo's next look shows it free to take.
    browser.find_element(By.ID, ada_row).find_element(By.CSS_SELECTOR, "button.release").click()
    wait_for(browser, lambda d: "Released" in d.find_element(By.CSS_SELECTOR, ".messages").text)
    second_browser.get(live_server.url + reverse("worklist:index"))
    row = second_browser.find_element(By.ID, ada_row)
    assert "Taken by" not in row.text and row.find_elements(By.CSS_SELECTOR, "button.take")
    assert WorklistClaim.objects.count() == 2
