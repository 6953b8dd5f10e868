import pytest
import time_machine
from django.urls import reverse

from scheduling.booking.models import Appointment, Rearrangement
from scheduling.caseload.models import Patient, Referral
from scheduling.worklist.models import AdminTask
from scheduling.worklist.services import raise_admin_task
from scheduling.booking.services import record_appointment_outcome
from tests.booking_helpers import book, give_pattern
from tests.factories import london, make_patient, make_referral, next_nhs_number

NOW = london(2026, 3, 2, 9, 0)


@pytest.mark.parametrize("name,args", [
    ("worklist:index", []), ("booking:new_referral", []), ("booking:cancel", ["A"]),
])
def test_a_pwp_cannot_use_the_admin_only_booking_screens_even_on_their_own_caseload(client, pwp, referral, admin_user, name, args):
    appt = book(referral, pwp, london(2030, 1, 7, 10), actor=admin_user)
    client.force_login(pwp)
    url = reverse(name, args=[{"R": referral.pk, "A": appt.pk}[a] for a in args])
    assert client.get(url).status_code == 403
    assert client.post(url, {}).status_code == 403


def test_admin_staff_land_on_the_worklist(admin_client):
    response = admin_client.get("/")
    assert response.status_code == 302 and response["Location"] == reverse("worklist:index")
    page = admin_client.get(reverse("worklist:index")).content.decode()
    assert "Worklist" in page and "Nothing to act on." in page


def test_the_worklist_page_lists_items_with_their_actions(admin_client, referral, pwp):
    task = raise_admin_task(kind=AdminTask.Kind.SMS_FAILED, source=AdminTask.Source.SMS, referral=referral, detail="Landline")
    page = admin_client.get(reverse("worklist:index")).content.decode()
    assert "Text message could not be delivered" in page and "New referral: no assessment booked" in page
    assert reverse("booking:find_slots", args=[referral.pk]) in page
    assert reverse("worklist:task_resolve", args=[task.pk]) in page
    response = admin_client.post(reverse("worklist:task_resolve", args=[task.pk]), {"resolution": "Asked GP for a mobile"})
    assert response.status_code == 302
    assert reverse("worklist:task_resolve", args=[task.pk]) not in admin_client.get(reverse("worklist:index")).content.decode()


def test_an_admin_sees_the_next_free_slots_and_books_one(frozen, admin_client, referral, pwp):
    give_pattern(pwp)
    page = admin_client.get(reverse("booking:find_slots", args=[referral.pk]) + "?type=assessment").content.decode()
    assert "Tue 3 Mar 2026, 09:00–10:00" in page
    response = admin_client.post(reverse("booking:book", args=[referral.pk]), {
        "practitioner": pwp.pk, "appointment_type": "assessment", "start": london(2026, 3, 3, 9).isoformat(),
    })
    assert response.status_code == 302
    appt = Appointment.objects.get(referral=referral)
    assert appt.start == london(2026, 3, 3, 9) and appt.duration_minutes == 60
    referral.refresh_from_db()
    assert referral.status == Referral.Status.ASSESSMENT_BOOKED


def test_booking_a_taken_slot_shows_a_clear_message_and_the_next_free_slots(frozen, admin_client, referral, pwp, admin_user):
    give_pattern(pwp)
    book(make_referral(pwp, actor=admin_user), pwp, london(2026, 3, 3, 9), actor=admin_user)
    response = admin_client.post(reverse("booking:book", args=[referral.pk]), {
        "practitioner": pwp.pk, "appointment_type": "assessment", "start": london(2026, 3, 3, 9).isoformat(),
    })
    assert response.status_code == 409
    page = response.content.decode()
    assert "already has an appointment at 09:00 on Tue 03 Mar 2026" in page
    assert "Tue 3 Mar 2026, 10:00–11:00" in page


def test_a_slot_inside_the_lead_time_is_refused(frozen, admin_client, referral, pwp):
    response = admin_client.post(reverse("booking:book", args=[referral.pk]), {
        "practitioner": pwp.pk, "appointment_type": "assessment", "start": london(2026, 3, 2, 15).isoformat(),
    })
    assert response.status_code == 400
    assert "at least 24 hours ahead" in response.content.decode()
    assert not Appointment.objects.exists()


def test_a_typed_time_in_the_spring_gap_is_refused_with_a_reason(admin_client, referral, pwp):
    with time_machine.travel(london(2026, 3, 20, 9), tick=False):
        response = admin_client.post(reverse("booking:book", args=[referral.pk]), {
            "practitioner": pwp.pk, "appointment_type": "assessment", "day": "2026-03-29", "at": "01:30",
        })
    assert response.status_code == 400
    assert "does not exist on Sun 29 Mar 2026" in response.content.decode()


def test_a_typed_local_time_is_stored_in_utc(admin_client, referral, pwp):
    with time_machine.travel(london(2026, 3, 20, 9), tick=False):
        response = admin_client.post(reverse("booking:book", args=[referral.pk]), {
            "practitioner": pwp.pk, "appointment_type": "assessment", "day": "2026-03-30", "at": "10:00",
        })
    assert response.status_code == 302
    assert Appointment.objects.get().start.isoformat() == "2026-03-30T09:00:00+00:00"


def test_an_admin_previews_a_course_then_books_it_all(admin_client, referral, pwp, admin_user):
    give_pattern(pwp, weekdays=range(5))
    with time_machine.travel(london(2026, 2, 2, 11), tick=False):
        a = book(referral, pwp, london(2026, 2, 2, 10), actor=admin_user)
        record_appointment_outcome(appointment=a, outcome="5", actor=pwp)
    with time_machine.travel(NOW, tick=False):
        response = admin_client.post(reverse("booking:book", args=[referral.pk]), {
            "practitioner": pwp.pk, "appointment_type": "treatment", "start": london(2026, 3, 30, 10).isoformat(), "course": "1",
        })
        assert response.status_code == 302
        preview = admin_client.get(response["Location"])
        page = preview.content.decode()
        assert "Mon 30 Mar 2026, 10:00" in page and "Skipped Mon 06 Apr: bank holiday (Easter Monday)" in page
        assert not Appointment.objects.filter(appointment_type="treatment").exists()
        plan = preview.context["plan"]
        confirm = admin_client.post(reverse("booking:course", args=[referral.pk]), {
            "practitioner": pwp.pk, "start": london(2026, 3, 30, 10).isoformat(), "reviews": "1",
            "expected": [p.start.isoformat() for p in plan],
        })
    assert confirm.status_code == 302
    assert Appointment.objects.filter(referral=referral, appointment_type="treatment").count() == 7
    assert Appointment.objects.filter(referral=referral, appointment_type="review").count() == 2


def test_a_course_preview_with_a_clash_offers_no_booking_button(frozen, admin_client, referral, pwp, admin_user):
    give_pattern(pwp, weekdays=range(5))
    book(make_referral(pwp, actor=admin_user), pwp, london(2026, 3, 17, 10), actor=admin_user, kind="treatment")
    page = admin_client.get(
        reverse("booking:course", args=[referral.pk]) + f"?practitioner={pwp.pk}&start={london(2026, 3, 10, 10).isoformat().replace('+', '%2B')}"
    ).content.decode()
    assert "Conflict:" in page and "cannot be booked at this time" in page and "Book all" not in page


def test_an_admin_rearranges_from_the_worklist_link(frozen, admin_client, referral, pwp, admin_user):
    give_pattern(pwp)
    # Booked last week: the patient's request (yesterday evening) came after the booking.
    appt = book(referral, pwp, london(2026, 3, 4, 10), actor=admin_user, booked_at=london(2026, 2, 24, 12))
    raise_admin_task(kind=AdminTask.Kind.REARRANGE_REQUEST, source=AdminTask.Source.CALL_LIST, appointment=appt)
    page = admin_client.get(reverse("booking:rearrange", args=[appt.pk])).content.decode()
    # Its own time is never offered (that would record a cancellation and an identical booking), but
    # times overlapping it are: the move may be by a quarter of an hour.
    assert "Wed 4 Mar 2026, 10:00–11:00" not in page and "Wed 4 Mar 2026, 11:00–12:00" in page
    response = admin_client.post(reverse("booking:rearrange", args=[appt.pk]), {
        "asked_by": "patient", "reason": "Work", "asked_at": "2026-03-01T18:00",
        "slot": f"{pwp.pk}|{london(2026, 3, 5, 14, 30).isoformat()}",
    })
    assert response.status_code == 302
    r = Rearrangement.objects.get()
    assert r.asked_at == london(2026, 3, 1, 18) and r.replacement.start == london(2026, 3, 5, 14, 30)
    assert not AdminTask.objects.filter(resolved_at__isnull=True).exists()


def test_an_admin_cancels_for_the_service(frozen, admin_client, referral, pwp, admin_user):
    appt = book(referral, pwp, london(2026, 3, 4, 10), actor=admin_user)
    response = admin_client.post(reverse("booking:cancel", args=[appt.pk]), {"cancelled_by": "service", "reason": "PWP unwell"})
    assert response.status_code == 302
    appt.refresh_from_db()
    assert appt.outcome == "4" and appt.cancellation_recorded_by.username == "admin.one"


def test_a_new_referral_registers_a_new_patient(frozen, admin_client, pwp):
    nhs = next_nhs_number()
    response = admin_client.post(reverse("booking:new_referral"), {
        "nhs_number": nhs, "given_name": "Rowan", "family_name": "Example", "date_of_birth": "1980-02-01",
        "mobile_phone": "07700 900123", "sms_consent": "on", "preferred_days": ["1", "3"], "preferred_times": ["morning"],
        "source": "A1", "received_on": "2026-03-02", "reason": "Fibromyalgia", "assigned_practitioner": pwp.pk,
    })
    referral = Referral.objects.get(patient__nhs_number=nhs)
    assert response.status_code == 302 and response["Location"] == reverse("booking:find_slots", args=[referral.pk])
    assert referral.patient.preferred_days == [1, 3] and referral.created_by.username == "admin.one"


def test_a_new_referral_for_a_known_nhs_number_is_refused_with_a_link_to_the_patient(frozen, admin_client, pwp, admin_user):
    existing = make_patient()
    old = make_referral(pwp, patient=existing, actor=admin_user)
    response = admin_client.post(reverse("booking:new_referral"), {
        "nhs_number": existing.nhs_number, "given_name": "Someone", "family_name": "Else", "date_of_birth": "1980-02-01",
        "source": "A1", "received_on": "2026-03-02", "reason": "Fibromyalgia",
    })
    assert response.status_code == 400
    page = response.content.decode()
    assert "already exists" in page and reverse("caseload:referral_detail", args=[old.pk]) in page
    assert Patient.objects.count() == 1 and Referral.objects.count() == 1


def test_a_new_referral_can_be_added_for_a_patient_found_by_nhs_number(frozen, admin_client, pwp, admin_user):
    existing = make_patient()
    page = admin_client.get(reverse("booking:new_referral") + f"?nhs_number={existing.nhs_number}").content.decode()
    assert existing.full_name in page
    response = admin_client.post(reverse("booking:new_referral"), {
        "nhs_number": existing.nhs_number, "use_existing": "1", "source": "H2", "received_on": "2026-03-02",
        "reason": "Re-referral from rheumatology",
    })
    assert response.status_code == 302
    assert existing.referrals.count() == 1 and Patient.objects.count() == 1


def test_booking_an_assessment_for_an_unassigned_referral_puts_it_on_that_practitioners_caseload(frozen, admin_client, pwp, admin_user):
    referral = make_referral(None, actor=admin_user)
    response = admin_client.post(reverse("booking:book", args=[referral.pk]), {
        "practitioner": pwp.pk, "appointment_type": "assessment", "start": london(2026, 3, 3, 9).isoformat(),
    })
    assert response.status_code == 302
    referral.refresh_from_db()
    assert referral.assigned_practitioner == pwp


def test_the_referral_page_links_admin_staff_to_booking_and_the_booking_page_lists_what_is_booked(frozen, admin_client, referral, pwp, admin_user):
    appt = book(referral, pwp, london(2026, 3, 4, 10), actor=admin_user)
    detail = admin_client.get(reverse("caseload:referral_detail", args=[referral.pk])).content.decode()
    assert reverse("booking:find_slots", args=[referral.pk]) in detail
    page = admin_client.get(reverse("booking:find_slots", args=[referral.pk])).content.decode()
    assert reverse("booking:rearrange", args=[appt.pk]) in page and reverse("booking:cancel", args=[appt.pk]) in page
