"""Real headless Chromium: admin staff see a slot on offer on the worklist, with who was texted, and stop
the wave with its button; the page then says it was stopped. At desktop and phone widths."""

import datetime as dt

import pytest
from django.utils import timezone

from scheduling import roles
from scheduling.offers import services
from scheduling.offers.models import OfferedSlot
from tests.browser_helpers import assert_fits, sign_in, wait_for
from tests.factories import make_user
from tests.offer_helpers import give_pattern, offers_on, waiting

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.mark.parametrize("width", [1366, 390])
def test_admin_staff_stop_a_wave_from_the_worklist(browser, live_server, width):
    from selenium.webdriver.common.by import By

    pwp = make_user("pwp.offers", roles.PWP)
    make_user("admin.offers", roles.ADMIN_STAFF)
    give_pattern(pwp, weekdays=range(7), blocks=((dt.time(0), dt.time(23, 59)),))
    offers_on()
    patient_name = waiting(pwp, dt.date(2026, 1, 5)).patient.full_name
    start = timezone.localtime(timezone.now() + dt.timedelta(days=6)).replace(hour=10, minute=0, second=0, microsecond=0)
    slot = services.release_slot(practitioner=pwp, start=start, duration_minutes=60, appointment_type="assessment",
                                 released_by="cancelled")
    services.advance_offers(slot_id=slot.pk, now=timezone.now().replace(hour=12))  # a wave outside quiet hours

    browser.set_window_size(width, 900)
    sign_in(browser, live_server, "admin.offers")
    browser.get(live_server.url + "/booking/")
    row = wait_for(browser, lambda d: d.find_element(By.ID, f"offer-{slot.pk}"))
    assert patient_name in row.text and "Offered" in row.text
    assert_fits(browser, width)
    row.find_element(By.CSS_SELECTOR, "button.stop-offer").click()
    wait_for(browser, lambda d: "Stopped: nobody else" in d.page_source)
    row = browser.find_element(By.ID, f"offer-{slot.pk}")
    assert "Stopped by staff" in row.text and not row.find_elements(By.CSS_SELECTOR, "button.stop-offer")
    assert OfferedSlot.objects.get(pk=slot.pk).status == OfferedSlot.Status.STOPPED
