"""Helpers for the browser tests (real headless Chromium through Selenium): waiting, signing in, and
checking that a page fits the screen."""

from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

WAIT_SECONDS = 15


def wait_for(driver, condition):
    # A submit reloads the page, htmx swaps a row: an element read meanwhile is gone or stale; look again.
    ignored = (NoSuchElementException, StaleElementReferenceException)
    return WebDriverWait(driver, WAIT_SECONDS, ignored_exceptions=ignored).until(condition)


def sign_in(driver, live_server, username):
    """Through the login page, with the test users' password (tests.factories); waits until it is left."""
    driver.get(live_server.url + "/login/")
    driver.find_element(By.ID, "id_username").send_keys(username)
    driver.find_element(By.ID, "id_password").send_keys("test-pass-123")
    driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    wait_for(driver, lambda d: "/login/" not in d.current_url)


def no_horizontal_overflow(driver) -> bool:
    return driver.execute_script("return document.documentElement.scrollWidth <= document.documentElement.clientWidth;")


def wider_than_the_screen(driver) -> list:
    """Up to ten elements reaching past the right edge, to say what overflows when a page does not fit."""
    return driver.execute_script(
        "return [...document.querySelectorAll('*')].filter(e => e.getBoundingClientRect().right > "
        "document.documentElement.clientWidth).map(e => e.tagName + '.' + e.className).slice(0, 10);"
    )


def assert_fits(driver, width):
    """At phone width (390 px or less), nothing on the page is wider than the screen."""
    if width <= 390:
        assert driver.execute_script("return window.innerWidth;") <= 390
        assert no_horizontal_overflow(driver), wider_than_the_screen(driver)
