"""PWPs book on the caseloads they work (own and covered): assessments, sessions, courses, rearranging;
cancelling stays with admin staff and managers. With the patient on the phone the lead time gives way,
audited. Every link followed is asserted by where it lands."""

import html
import re

import pytest
import time_machine
from django.urls import reverse

from scheduling.booking.models import Appointment
from scheduling.booking.services import ON_THE_PHONE, record_appointment_outcome
from scheduling.calls.models import ContactAttempt
from scheduling.audit import AuditEntry
from scheduling.caseload.models import CaseloadCover, Referral
from tests.booking_helpers import book, give_pattern
from tests.factories import london, make_referral

NOW = london(2026, 3, 2, 9, 0)  # a Monday


@pytest.fixture
def others_referral(other_pwp, admin_user):
    give_pattern(other_pwp)
    return make_referral(other_pwp, actor=admin_user)


@pytest.fixture
def covering(pwp, other_pwp, manager):
    return CaseloadCover.objects.create(
        covering=pwp, covered=other_pwp, starts_on=NOW.date(), ends_on=NOW.date(), created_by=manager
    )


def link(page: str, text: str) -> str:
    """The href of the link whose text starts with `text` (fails if there is none)."""
    match = re.search(r'<a [^>]*href="([^"]+)"[^>]*>\s*' + re.escape(text), page)
    assert match, f"no link “{text}” on the page"
    return html.unescape(match.group(1))


def slot_forms(page: str) -> list[dict]:
    """Each free slot's form on the slot finder: its action, hidden fields and the time shown."""
    found = []
    for action, body in re.findall(r'<li class="slot">\s*<form method="post" action="([^"]+)">(.*?)</form>', page, re.S):
        fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', body))
        fields.pop("csrfmiddlewaretoken", None)
        fields.pop("form_token", None)
        shown = re.search(r'<span class="slot-time">([^<]+)</span>', body).group(1)
        found.append({"action": html.unescape(action), "fields": {k: html.unescape(v) for k, v in fields.items()}, "shown": shown})
    return found


def slot_at(page: str, shown_prefix: str) -> dict:
    for form in slot_forms(page):
        if form["shown"].startswith(shown_prefix):
            return form
    raise AssertionError(f"no slot at {shown_prefix}: {[f['shown'] for f in slot_forms(page)]}")


# --- Who may book ------------------------------------------------------------------------------


def test_a_pwp_books_an_assessment_on_their_own_caseload_from_the_referral_page(frozen, client, pwp, referral):
    give_pattern(pwp)
    client.force_login(pwp)
    record = client.get(reverse("caseload:referral_detail", args=[referral.pk])).content.decode()
    finder_url = link(record, "Book or rearrange")
    assert "Book, rearrange or cancel" not in record
    finder = client.get(finder_url)
    assert finder.status_code == 200 and finder.request["PATH_INFO"] == reverse("booking:find_slots", args=[referral.pk])
    slot = slot_at(finder.content.decode(), "Tue 3 Mar 2026, 09:00")
    response = client.post(slot["action"], slot["fields"])
    assert response.status_code == 302 and response["Location"] == reverse("caseload:referral_detail", args=[referral.pk])
    appointment = Appointment.objects.get(referral=referral)
    assert (appointment.start, appointment.booked_by_id, appointment.appointment_type) == (london(2026, 3, 3, 9), pwp.pk, "assessment")
    landed = client.get(response["Location"]).content.decode()
    assert f"Booked for {referral.patient.full_name}: Initial assessment Tue 03 Mar 2026 09:00" in landed
    assert f'id="appointment-{appointment.pk}"' in landed


def test_a_pwp_books_and_rearranges_on_a_caseload_they_cover(frozen, client, pwp, others_referral, covering, admin_user):
    client.force_login(pwp)
    finder = client.get(reverse("booking:find_slots", args=[others_referral.pk]) + "?type=assessment")
    assert finder.status_code == 200
    slot = slot_at(finder.content.decode(), "Tue 3 Mar 2026, 10:00")
    assert client.post(slot["action"], slot["fields"]).status_code == 302
    appointment = Appointment.objects.get(referral=others_referral)
    moved = client.post(reverse("booking:rearrange", args=[appointment.pk]), {
        "asked_by": "patient", "slot": f"{appointment.practitioner_id}|{london(2026, 3, 4, 14).isoformat()}",
    })
    assert moved.status_code == 302
    assert Appointment.objects.not_cancelled().get(referral=others_referral).start == london(2026, 3, 4, 14)
    assert "Rearranged for" in client.get(moved["Location"]).content.decode()


def test_a_pwp_rearranges_their_own_appointment_from_the_slot_finder(frozen, client, pwp, referral, admin_user):
    give_pattern(pwp)
    appointment = book(referral, pwp, london(2026, 3, 10, 10), actor=admin_user)
    client.force_login(pwp)
    finder = client.get(reverse("booking:find_slots", args=[referral.pk])).content.decode()
    rearrange_url = link(finder, "Rearrange")
    assert rearrange_url == reverse("booking:rearrange", args=[appointment.pk])
    assert reverse("booking:cancel", args=[appointment.pk]) not in finder
    page = client.get(rearrange_url)
    assert page.status_code == 200 and "Cancel it instead" not in page.content.decode()
    response = client.post(rearrange_url, {"asked_by": "patient", "slot": f"{pwp.pk}|{london(2026, 3, 11, 10).isoformat()}"})
    assert response.status_code == 302 and response["Location"] == reverse("caseload:referral_detail", args=[referral.pk])
    assert "now Initial assessment Wed 11 Mar 2026 10:00" in client.get(response["Location"]).content.decode()


def test_a_pwp_plans_and_books_a_course_on_their_own_caseload(client, pwp, referral, admin_user):
    give_pattern(pwp, weekdays=range(5))
    with time_machine.travel(london(2026, 2, 2, 11), tick=False):
        held = book(referral, pwp, london(2026, 2, 2, 10), actor=admin_user)
        record_appointment_outcome(appointment=held, outcome="5", actor=pwp)
    client.force_login(pwp)
    with time_machine.travel(NOW, tick=False):
        finder = client.get(reverse("booking:find_slots", args=[referral.pk]) + "?type=treatment").content.decode()
        slot = slot_at(finder, "Tue 3 Mar 2026, 09:00")
        preview = client.get(client.post(slot["action"], {**slot["fields"], "course": "1"})["Location"])
        assert preview.status_code == 200 and "Book all 9 sessions" in preview.content.decode()
        confirm = client.post(reverse("booking:course", args=[referral.pk]), {
            "practitioner": pwp.pk, "start": slot["fields"]["start"], "reviews": "1",
            "expected": [p.start.isoformat() for p in preview.context["plan"]],
        })
    assert confirm.status_code == 302
    assert Appointment.objects.filter(referral=referral, appointment_type="treatment", booked_by=pwp).count() == 7


@pytest.mark.parametrize("method,name,kind", [
    ("get", "booking:find_slots", "R"), ("post", "booking:book", "R"), ("get", "booking:course", "R"),
    ("get", "booking:rearrange", "A"), ("post", "booking:rearrange", "A"), ("get", "booking:cancel", "A"),
    ("post", "booking:cancel", "A"),
])
def test_a_pwp_on_another_pwps_caseload_is_refused_without_the_patients_name(
    frozen, client, pwp, other_pwp, others_referral, admin_user, method, name, kind
):
    appointment = book(others_referral, other_pwp, london(2026, 3, 10, 10), actor=admin_user)
    client.force_login(pwp)
    url = reverse(name, args=[others_referral.pk if kind == "R" else appointment.pk])
    data = {
        "practitioner": other_pwp.pk, "appointment_type": "assessment", "start": london(2026, 3, 11, 10).isoformat(),
        "asked_by": "patient", "slot": f"{other_pwp.pk}|{london(2026, 3, 11, 10).isoformat()}",
        "cancelled_by": "patient", "reason": "Asked", "on_phone": "1",
    }
    response = client.post(url, data) if method == "post" else client.get(url, {"practitioner": other_pwp.pk})
    assert response.status_code == 403
    page = response.content.decode()
    assert others_referral.patient.family_name not in page and others_referral.patient.given_name + " " not in page
    assert list(Appointment.objects.values_list("pk", "outcome")) == [(appointment.pk, "0")]


def test_a_pwp_cannot_cancel_even_their_own_appointment(frozen, client, pwp, referral, admin_user):
    appointment = book(referral, pwp, london(2026, 3, 10, 10), actor=admin_user)
    client.force_login(pwp)
    url = reverse("booking:cancel", args=[appointment.pk])
    assert client.get(url).status_code == 403
    assert client.post(url, {"cancelled_by": "patient", "reason": "Asked"}).status_code == 403
    appointment.refresh_from_db()
    assert appointment.outcome == "0" and not appointment.is_cancelled
    assert url not in client.get(reverse("caseload:referral_detail", args=[referral.pk])).content.decode()


@pytest.mark.parametrize("who", ["admin_user", "manager"])
def test_admin_staff_and_managers_still_book_rearrange_and_cancel_on_any_caseload(frozen, client, request, pwp, referral, who):
    give_pattern(pwp)
    user = request.getfixturevalue(who)
    client.force_login(user)
    record = client.get(reverse("caseload:referral_detail", args=[referral.pk])).content.decode()
    finder = client.get(link(record, "Book, rearrange or cancel")).content.decode()
    slot = slot_at(finder, "Tue 3 Mar 2026, 09:00")
    assert client.post(slot["action"], slot["fields"]).status_code == 302
    appointment = Appointment.objects.get(referral=referral)
    finder = client.get(reverse("booking:find_slots", args=[referral.pk])).content.decode()
    assert link(finder, "Cancel") == reverse("booking:cancel", args=[appointment.pk])
    moved = client.post(link(finder, "Rearrange"), {"asked_by": "service", "slot": f"{pwp.pk}|{london(2026, 3, 4, 9).isoformat()}"})
    assert moved.status_code == 302
    replacement = Appointment.objects.not_cancelled().get(referral=referral)
    cancelled = client.post(reverse("booking:cancel", args=[replacement.pk]), {"cancelled_by": "patient", "reason": "Moving away"})
    assert cancelled.status_code == 302
    assert not Appointment.objects.not_cancelled().filter(referral=referral).exists()
    assert client.get(reverse("worklist:index")).status_code == 200


# --- The patient on the phone ------------------------------------------------------------------


def test_without_the_tick_the_lead_time_stays(frozen, client, pwp, referral):
    give_pattern(pwp)
    client.force_login(pwp)
    page = client.get(reverse("booking:find_slots", args=[referral.pk]) + "?type=assessment").content.decode()
    assert slot_forms(page)[0]["shown"].startswith("Tue 3 Mar 2026, 09:00")
    assert not any(f["shown"].startswith("Mon 2 Mar") for f in slot_forms(page))
    response = client.post(reverse("booking:book", args=[referral.pk]), {
        "practitioner": pwp.pk, "appointment_type": "assessment", "start": london(2026, 3, 2, 11).isoformat(),
    })
    assert response.status_code == 400 and "at least 24 hours ahead" in response.content.decode()
    assert not Appointment.objects.exists()


def test_with_the_patient_on_the_phone_todays_slots_are_offered_booked_and_audited(frozen, client, pwp, referral):
    give_pattern(pwp)
    client.force_login(pwp)
    page = client.get(reverse("booking:find_slots", args=[referral.pk]) + "?type=assessment&on_phone=1").content.decode()
    shown = [f["shown"] for f in slot_forms(page)]
    assert shown[0].startswith("Mon 2 Mar 2026, 09:15")  # now + 15 minutes, on the quarter hour
    assert "Tue 3 Mar 2026, 09:00–10:00" in shown  # and tomorrow's, before the lead time would allow
    slot = slot_at(page, "Mon 2 Mar 2026, 10:15")
    assert slot["fields"]["on_phone"] == "1"
    response = client.post(slot["action"], slot["fields"])
    assert response.status_code == 302
    appointment = Appointment.objects.get(referral=referral)
    assert appointment.start == london(2026, 3, 2, 10, 15)
    entry = AuditEntry.objects.get(appointment=appointment, field="lead_time")
    assert (entry.new_value, entry.reason, entry.actor_id) == ("waived", ON_THE_PHONE, pwp.pk)
    record = client.get(response["Location"]).content.decode()
    assert "booked with the patient on the phone" in record


def test_a_typed_time_today_is_booked_with_the_tick_on_the_manual_form(frozen, client, pwp, referral):
    give_pattern(pwp)
    client.force_login(pwp)
    response = client.post(reverse("booking:book", args=[referral.pk]), {
        "practitioner": pwp.pk, "appointment_type": "assessment", "day": "2026-03-02", "at": "14:00", "on_phone": "on",
    })
    assert response.status_code == 302
    assert AuditEntry.objects.filter(appointment__start=london(2026, 3, 2, 14), reason=ON_THE_PHONE).count() == 1


def test_a_time_already_passed_is_refused_even_with_the_patient_on_the_phone(frozen, client, pwp, referral):
    give_pattern(pwp)
    client.force_login(pwp)
    response = client.post(reverse("booking:book", args=[referral.pk]), {
        "practitioner": pwp.pk, "appointment_type": "assessment", "start": london(2026, 3, 2, 8, 45).isoformat(), "on_phone": "1",
    })
    assert response.status_code == 400 and "has already passed" in response.content.decode()
    assert not Appointment.objects.exists() and not AuditEntry.objects.filter(field="lead_time").exists()


def test_the_tick_is_not_recorded_as_a_waiver_when_the_time_is_outside_the_lead_time_anyway(frozen, client, pwp, referral):
    give_pattern(pwp)
    client.force_login(pwp)
    response = client.post(reverse("booking:book", args=[referral.pk]), {
        "practitioner": pwp.pk, "appointment_type": "assessment", "start": london(2026, 3, 4, 10).isoformat(), "on_phone": "1",
    })
    assert response.status_code == 302 and Appointment.objects.count() == 1
    assert not AuditEntry.objects.filter(field="lead_time").exists()


def test_a_rearrangement_to_today_with_the_patient_on_the_phone_is_allowed_and_audited(frozen, client, pwp, referral, admin_user):
    give_pattern(pwp)
    appointment = book(referral, pwp, london(2026, 3, 10, 10), actor=admin_user)
    client.force_login(pwp)
    page = client.get(reverse("booking:rearrange", args=[appointment.pk]) + "?on_phone=1").content.decode()
    assert "Mon 2 Mar 2026, 09:15" in page and '<input type="hidden" name="on_phone" value="1">' in page
    refused = client.post(reverse("booking:rearrange", args=[appointment.pk]), {
        "asked_by": "patient", "slot": f"{pwp.pk}|{london(2026, 3, 2, 15).isoformat()}",
    })
    assert refused.status_code == 400 and "at least 24 hours ahead" in refused.content.decode()
    response = client.post(reverse("booking:rearrange", args=[appointment.pk]), {
        "asked_by": "patient", "slot": f"{pwp.pk}|{london(2026, 3, 2, 15).isoformat()}", "on_phone": "1",
    })
    assert response.status_code == 302
    replacement = Appointment.objects.not_cancelled().get(referral=referral)
    assert replacement.start == london(2026, 3, 2, 15)
    assert AuditEntry.objects.filter(appointment=replacement, field="lead_time", reason=ON_THE_PHONE).exists()


# --- From the call list ------------------------------------------------------------------------


def test_the_call_lists_book_the_assessment_link_leads_to_booking_and_back_to_the_call_list(frozen, client, pwp, referral):
    give_pattern(pwp)
    client.force_login(pwp)
    client.post(reverse("calls:log"), {"referral": referral.pk, "button": "spoke", "date": "2026-03-02"})
    assert ContactAttempt.objects.filter(referral=referral, practitioner=pwp).count() == 1
    call_list = client.get(reverse("calls:today")).content.decode()
    book_url = link(call_list, "Book the assessment")
    finder = client.get(book_url)
    assert finder.status_code == 200
    assert finder.request["PATH_INFO"] == reverse("booking:find_slots", args=[referral.pk])
    assert f"Book: {referral.patient.full_name}" in finder.content.decode()
    assert finder.context["appointment_type"] == "assessment"
    # The person booking ticks "the patient agreed this time on the phone just now" and looks again.
    page = client.get(book_url + "&on_phone=1").content.decode()
    slot = slot_at(page, "Mon 2 Mar 2026, 11:15")
    assert slot["fields"]["back"] == "calls"
    response = client.post(slot["action"], slot["fields"])
    assert response.status_code == 302
    assert response["Location"] == reverse("calls:today") + f"?practitioner={pwp.pk}"
    landed = client.get(response["Location"]).content.decode()
    appointment = Appointment.objects.get(referral=referral)
    assert f"Booked for {referral.patient.full_name}: Initial assessment Mon 02 Mar 2026 11:15" in landed
    assert f'id="appointment-{appointment.pk}"' in landed  # today's booked call, on the list
    referral.refresh_from_db()
    assert referral.status == Referral.Status.ASSESSMENT_BOOKED


def test_a_course_can_start_today_with_the_patient_on_the_phone_and_is_audited_once(client, pwp, referral, admin_user):
    give_pattern(pwp, weekdays=range(5))
    with time_machine.travel(london(2026, 2, 2, 11), tick=False):
        held = book(referral, pwp, london(2026, 2, 2, 10), actor=admin_user)
        record_appointment_outcome(appointment=held, outcome="5", actor=pwp)
    client.force_login(pwp)
    with time_machine.travel(NOW, tick=False):
        without = client.post(reverse("booking:book", args=[referral.pk]), {
            "practitioner": pwp.pk, "appointment_type": "treatment", "start": london(2026, 3, 2, 14).isoformat(), "course": "1",
        })
        refused = client.post(without["Location"].replace("?", "?reviews=1&"), {
            "practitioner": pwp.pk, "start": london(2026, 3, 2, 14).isoformat(), "reviews": "1",
        })
        assert refused.status_code == 400 and "at least 24 hours ahead" in refused.content.decode()
        page = client.get(reverse("booking:find_slots", args=[referral.pk]) + "?type=treatment&on_phone=1").content.decode()
        slot = slot_at(page, "Mon 2 Mar 2026, 14:15")
        preview = client.get(client.post(slot["action"], {**slot["fields"], "course": "1"})["Location"])
        assert preview.status_code == 200
        assert '<input type="hidden" name="on_phone" value="1">' in preview.content.decode()
        confirm = client.post(reverse("booking:course", args=[referral.pk]), {
            "practitioner": pwp.pk, "start": slot["fields"]["start"], "reviews": "1", "on_phone": "1",
            "expected": [p.start.isoformat() for p in preview.context["plan"]],
        })
    assert confirm.status_code == 302
    first = Appointment.objects.filter(referral=referral, appointment_type="treatment").order_by("start").first()
    assert first.start == london(2026, 3, 2, 14, 15)
    assert list(AuditEntry.objects.filter(field="lead_time").values_list("appointment_id", flat=True)) == [first.pk]
