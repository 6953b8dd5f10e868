"""Real headless Chromium: the booking safeguards as admin staff click through them, at desktop width
(1366 px) and at phone width (390 px, nothing wider than the screen). Moving an appointment never offers
its own time and lands on the record naming the new one; a course after reviews books no more reviews;
a Saturday typed by hand is refused, then booked with an override and a reason; a late cancellation
is announced on the cancel page before it is confirmed."""

import pytest
import time_machine
from django.urls import reverse

from scheduling import roles
from scheduling.booking.models import Appointment
from scheduling.booking.services import record_appointment_outcome
from scheduling.audit import AuditEntry
from tests.booking_helpers import book
from tests.browser_helpers import wait_for
from tests.factories import london, make_referral, make_user

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
WIDTHS = [1366, 390]
# A working Tuesday morning (the default working week is Mon-Fri 09:00-17:00); the clock ticks on from here.
MORNING = london(2030, 3, 12, 9, 30)


class Person:
    """An admin at a browser of the given width."""

    def __init__(self, browser, live_server, width):
        self.browser, self.live_server, self.width = browser, live_server, width
        browser.set_window_size(width, 1000)

    def by(self):
        from selenium.webdriver.common.by import By

        return By

    def fits(self):
        if self.width <= 390:
            assert self.browser.execute_script("return window.innerWidth;") <= 390
            overflow = self.browser.execute_script(
                "return [...document.querySelectorAll('*')].filter(e => e.getBoundingClientRect().right > "
                "document.documentElement.clientWidth).map(e => e.tagName + '.' + e.className).slice(0, 10);"
            )
            assert self.browser.execute_script(
                "return document.documentElement.scrollWidth <= document.documentElement.clientWidth;"
            ), overflow

    def sign_in(self, user):
        By = self.by()
        self.browser.get(self.live_server.url + reverse("login"))
        self.browser.find_element(By.ID, "id_username").send_keys(user.username)
        self.browser.find_element(By.ID, "id_password").send_keys("test-pass-123")
        self.browser.find_element(By.CSS_SELECTOR, "form.stack button[type=submit]").click()
        wait_for(self.browser, lambda d: reverse("login") not in d.current_url)

    def open_record(self, referral):
        By = self.by()
        self.browser.get(self.live_server.url + reverse("caseload:referral_detail", args=[referral.pk]))
        wait_for(self.browser, lambda d: d.find_elements(By.LINK_TEXT, "Book, rearrange or cancel"))
        self.fits()

    def click_link(self, text, *, lands_on):
        By = self.by()
        self.browser.find_element(By.PARTIAL_LINK_TEXT, text).click()
        wait_for(self.browser, lambda d: d.current_url.split("?")[0].endswith(lands_on))
        self.fits()

    def click_button(self, text, within=None):
        By = self.by()
        scope = within or self.browser
        button = scope.find_element(By.XPATH, f".//button[starts-with(normalize-space(), '{text}')]")
        self.browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", button)
        button.click()

    def set_value(self, element_id, value):
        # Date and time inputs take typed keys in the browser's locale order; setting the value is
        # what the picker does once a person has chosen.
        By = self.by()
        field = self.browser.find_element(By.ID, element_id)
        self.browser.execute_script("arguments[0].value = arguments[1];", field, value)

    def message(self) -> str:
        By = self.by()
        wait_for(self.browser, lambda d: d.find_elements(By.CSS_SELECTOR, ".messages"))
        return self.browser.find_element(By.CSS_SELECTOR, ".messages").text

    def on_record_of(self, referral):
        record = reverse("caseload:referral_detail", args=[referral.pk])
        try:
            wait_for(self.browser, lambda d: d.current_url.endswith(record))
        except Exception:
            By = self.by()
            raise AssertionError(f"not on {record}: {self.browser.current_url}\n{self.browser.find_element(By.TAG_NAME, 'main').text[:1500]}")


@pytest.fixture
def staff(db):
    return {"pwp": make_user("pwp.safe", roles.PWP), "admin": make_user("admin.safe", roles.ADMIN_STAFF)}


@pytest.mark.parametrize("width", WIDTHS)
def test_an_admin_moves_an_appointment_and_its_own_time_is_never_offered(browser, live_server, staff, width):
    with time_machine.travel(MORNING, tick=True):
        referral = make_referral(staff["pwp"], actor=staff["admin"])
        appointment = book(referral, staff["pwp"], london(2030, 3, 14, 10), actor=staff["admin"])
        person = Person(browser, live_server, width)
        By = person.by()
        person.sign_in(staff["admin"])
        person.open_record(referral)
        person.click_link("Book, rearrange or cancel", lands_on=reverse("booking:find_slots", args=[referral.pk]))
        person.click_link("Rearrange", lands_on=reverse("booking:rearrange", args=[appointment.pk]))

        current = f"{staff['pwp'].pk}|{appointment.start.isoformat()}"
        offered = [r.get_attribute("value") for r in browser.find_elements(By.CSS_SELECTOR, "input[name=slot]")]
        assert offered and current not in offered
        assert "Its current time is not offered" in browser.find_element(By.TAG_NAME, "main").text

        first = browser.find_elements(By.CSS_SELECTOR, "li.slot")[0]
        shown = first.find_element(By.CLASS_NAME, "slot-time").text
        first.find_element(By.CSS_SELECTOR, "input[name=slot]").click()
        person.click_button("Rearrange")
        person.on_record_of(referral)
        message = person.message()
        replacement = Appointment.objects.not_cancelled().get(referral=referral)
        assert replacement.start != appointment.start
        assert f"Rearranged for {referral.patient.full_name}: now {replacement.get_appointment_type_display()}" in message
        assert f"{replacement.start.astimezone(MORNING.tzinfo):%a %d %b %Y %H:%M}" in message
        assert f"with {staff['pwp'].get_full_name()}" in message and "a confirmation text will be sent" in message
        assert shown.split("–")[0].endswith(f"{replacement.start.astimezone(MORNING.tzinfo):%H:%M}")
        person.fits()


@pytest.mark.parametrize("width", WIDTHS)
def test_an_admin_plans_a_course_after_the_reviews_were_booked_and_no_review_is_booked_twice(browser, live_server, staff, width):
    pwp, admin = staff["pwp"], staff["admin"]
    with time_machine.travel(london(2030, 3, 4, 11), tick=False):
        referral = make_referral(pwp, actor=admin)
        assessment = book(referral, pwp, london(2030, 3, 5, 10), actor=admin)
    with time_machine.travel(london(2030, 3, 5, 11), tick=False):
        record_appointment_outcome(appointment=assessment, outcome="5", actor=pwp)
    with time_machine.travel(MORNING, tick=True):
        book(referral, pwp, london(2030, 7, 2, 10), actor=admin, kind="review")
        book(referral, pwp, london(2030, 10, 1, 10), actor=admin, kind="review")
        person = Person(browser, live_server, width)
        By = person.by()
        person.sign_in(admin)
        person.open_record(referral)
        person.click_link("Book, rearrange or cancel", lands_on=reverse("booking:find_slots", args=[referral.pk]))
        first = wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "ol.slots li.slot"))[0]
        person.click_button("Plan course from here", within=first)

        wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "table.course-plan"))
        assert reverse("booking:course", args=[referral.pk]) in browser.current_url
        person.fits()
        page = browser.find_element(By.TAG_NAME, "main").text
        assert "Already booked or held: 0 of 7 treatment sessions and 2 reviews" in page
        rows = browser.find_elements(By.CSS_SELECTOR, "table.course-plan tbody tr")
        assert len(rows) == 7 and not [r for r in rows if r.text.startswith("Review")]
        person.click_button("Book all 7 sessions")

        person.on_record_of(referral)
        assert "Booked 7 sessions" in person.message()
        assert Appointment.objects.filter(referral=referral, appointment_type="review").count() == 2
        treatments = Appointment.objects.filter(referral=referral, appointment_type="treatment")
        assert sorted(treatments.values_list("session_number", flat=True)) == [2, 3, 4, 5, 6, 7, 8]
        person.fits()


@pytest.mark.parametrize("width", WIDTHS)
def test_an_admin_types_a_saturday_is_refused_then_books_it_with_an_override_and_a_reason(browser, live_server, staff, width):
    with time_machine.travel(MORNING, tick=True):
        referral = make_referral(staff["pwp"], actor=staff["admin"])
        person = Person(browser, live_server, width)
        By = person.by()
        person.sign_in(staff["admin"])
        person.open_record(referral)
        person.click_link("Book, rearrange or cancel", lands_on=reverse("booking:find_slots", args=[referral.pk]))

        browser.find_element(By.CSS_SELECTOR, "details.manual-time summary").click()
        person.set_value("id_day", "2030-03-16")  # a Saturday
        person.set_value("id_at", "10:00")
        person.click_button("Book this time")
        alert = wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "[role=alert]"))[0]
        assert "not available at 10:00 on Sat 16 Mar 2030: not a working day (Saturday)" in alert.text
        assert "tick the override and say why" in alert.text
        assert not Appointment.objects.filter(referral=referral).exists()
        person.fits()

        # The page keeps what was typed; the person ticks the override and gives the reason.
        if not browser.find_element(By.ID, "id_override").is_displayed():
            browser.find_element(By.CSS_SELECTOR, "details.manual-time summary").click()
        assert browser.find_element(By.ID, "id_day").get_attribute("value") == "2030-03-16"
        browser.find_element(By.ID, "id_override").click()
        browser.find_element(By.ID, "id_override_reason").send_keys("Patient works every weekday")
        person.click_button("Book this time")

        person.on_record_of(referral)
        message = person.message()
        appointment = Appointment.objects.get(referral=referral)
        assert appointment.start == london(2030, 3, 16, 10)
        assert "Initial assessment Sat 16 Mar 2030 10:00" in message
        entry = AuditEntry.objects.get(appointment=appointment, field="availability_override")
        assert entry.actor == staff["admin"] and entry.reason == "Override: Patient works every weekday"
        person.fits()


@pytest.mark.parametrize("width", WIDTHS)
def test_an_admin_reads_the_late_cancellation_warning_before_confirming(browser, live_server, staff, width):
    with time_machine.travel(MORNING, tick=True):
        referral = make_referral(staff["pwp"], actor=staff["admin"])
        appointment = book(referral, staff["pwp"], london(2030, 3, 12, 15), actor=staff["admin"], patient_on_phone=True)
        person = Person(browser, live_server, width)
        By = person.by()
        person.sign_in(staff["admin"])
        person.open_record(referral)
        person.click_link("Book, rearrange or cancel", lands_on=reverse("booking:find_slots", args=[referral.pk]))
        upcoming = browser.find_element(By.CSS_SELECTOR, "ul.upcoming")
        upcoming.find_element(By.LINK_TEXT, "Cancel").click()
        wait_for(browser, lambda d: d.current_url.endswith(reverse("booking:cancel", args=[appointment.pk])))
        person.fits()

        warning = browser.find_element(By.ID, "cancel-notice").text
        assert "Late cancellation:" in warning and "less than the service's 24 hours" in warning
        assert "counts as lost capacity" in warning
        appointment.refresh_from_db()
        assert appointment.outcome == "0"  # reading the page changed nothing

        browser.find_element(By.CSS_SELECTOR, "input[name=cancelled_by][value=patient]").click()
        browser.find_element(By.ID, "id_reason").send_keys("Feeling unwell")
        person.click_button("Cancel the appointment")

        person.on_record_of(referral)
        message = person.message()
        assert f"Cancelled for {referral.patient.full_name}: Initial assessment Tue 12 Mar 2030 15:00" in message
        assert "A late cancellation (5 hours' notice, under 24 hours): it counts as lost capacity." in message
        appointment.refresh_from_db()
        assert appointment.outcome == "2"
        person.fits()
