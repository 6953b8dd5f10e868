"""The patient's self-service link and page: the link is unguessable and tamper-proof, refuses what is not
live or not the patient's, shows nothing but the first name before the date of birth, locks after three wrong
ones (telling the worklist), is rate-limited; confirm, cancel and move are audited as the patient's own."""

import datetime as dt

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from scheduling import patient_links
from scheduling.audit import AuditEntry
from scheduling.booking.models import Appointment, Rearrangement
from scheduling.codes import AttendanceOutcome, TaskKind
from scheduling.patient_links import LinkRefused, PatientLink
from scheduling.selfservice import services as selfservice
from scheduling.selfservice.forms import parse_date_of_birth
from scheduling.selfservice.models import RateCounter
from scheduling.worklist.models import AdminTask
from tests.booking_helpers import book, give_pattern
from tests.factories import london, make_patient, make_referral

NOW = london(2026, 6, 1, 9)  # Monday 1 June 2026, 09:00
DOB = dt.date(1970, 5, 17)  # tests.factories.make_patient's


@pytest.fixture
def booked(pwp, admin_user, frozen):
    """Wednesday 10 June 2026 at 14:00 for patient "Test" (born 17 May 1970), with `pwp` working Mon-Fri."""
    give_pattern(pwp, weekdays=(0, 1, 2, 3, 4))
    return book(make_referral(pwp, patient=make_patient(given_name="Sam", family_name="Rivers")), pwp, london(2026, 6, 10, 14), actor=admin_user)


@pytest.fixture
def issued(booked):
    return patient_links.issue_appointment_link(appointment=booked)


def url(token, name="start"):
    return reverse(f"selfservice:{name}", args=[token])


def verify(client, token, dob=DOB):
    return client.post(url(token), {"day": str(dob.day), "month": str(dob.month), "year": str(dob.year)})


# --- The link ------------------------------------------------------------------------------------


def test_it_makes_a_28_character_token_from_96_random_bits_and_stores_only_a_hash(issued):
    assert len(issued.token) == patient_links.TOKEN_LENGTH == 28
    assert patient_links.RANDOM_BYTES * 8 >= 96
    link = PatientLink.objects.get()
    assert issued.token not in link.token_hash and len(link.token_hash) == 64
    other = patient_links.issue_appointment_link(appointment=issued.link.appointment)
    assert other.token != issued.token


def test_it_builds_the_short_link_from_sms_public_base_url(settings, issued):
    settings.SMS_PUBLIC_BASE_URL = "https://pp.example.org/"
    assert issued.url == f"https://pp.example.org/s/{issued.token}"
    settings.SMS_PUBLIC_BASE_URL = ""
    assert issued.url == "" and not patient_links.links_available()


def test_it_refuses_a_tampered_token_before_any_database_read(issued):
    changed = issued.token[:5] + ("A" if issued.token[5] != "A" else "B") + issued.token[6:]
    with CaptureQueriesContext(connection) as queries:
        with pytest.raises(LinkRefused) as refused:
            patient_links.resolve_token(changed)
    assert refused.value.reason == "tampered" and len(queries) == 0


@pytest.mark.parametrize("token", ["", "x", "A" * 27, "A" * 29, "é" * 28, "A" * 27 + "=", "../../etc/passwd"])
def test_it_refuses_a_malformed_token(db, token):
    with pytest.raises(LinkRefused) as refused:
        patient_links.resolve_token(token)
    assert refused.value.reason == "malformed"


def test_it_refuses_a_correctly_signed_token_it_never_issued(db):
    token, _ = patient_links.new_token()
    with pytest.raises(LinkRefused) as refused:
        patient_links.resolve_token(token)
    assert refused.value.reason == "unknown"


def test_it_expires_the_link_when_the_appointment_ends(issued, freeze):
    appointment = issued.link.appointment
    assert patient_links.resolve_token(issued.token, now=appointment.end - dt.timedelta(seconds=1))
    with pytest.raises(LinkRefused) as refused:
        patient_links.resolve_token(issued.token, now=appointment.end)
    assert refused.value.reason == "expired"


def test_it_refuses_a_link_whose_appointment_is_not_the_patients(issued, pwp):
    PatientLink.objects.filter(pk=issued.link.pk).update(patient=make_patient())
    with pytest.raises(LinkRefused) as refused:
        patient_links.resolve_token(issued.token)
    assert refused.value.reason == "wrong_patient"


def test_it_shows_a_clear_page_with_no_details_for_refused_links(client, issued, freeze):
    token = issued.token
    tampered = token[:-1] + ("A" if token[-1] != "A" else "B")
    for bad in (tampered, "nonsense", patient_links.new_token()[0]):
        response = client.get(url(bad))
        assert response.status_code == 404
        assert "This link does not work" in response.content.decode()
        assert "Sam" not in response.content.decode()
    freeze(issued.link.appointment.end + dt.timedelta(minutes=1))
    response = client.get(url(token))
    assert response.status_code == 410 and "This link has expired" in response.content.decode()
    assert "Sam" not in response.content.decode()


# --- Before the date of birth ---------------------------------------------------------------------


def test_it_shows_only_the_first_name_before_the_date_of_birth(client, issued):
    response = client.get(url(issued.token))
    page = response.content.decode()
    assert response.status_code == 200
    assert "Hello Sam" in page
    for secret in ("Rivers", "10 June", "2pm", "14:00", "Wednesday", issued.link.appointment.practitioner.first_name or "Pat"):
        assert secret not in page
    assert response["Cache-Control"] == "no-store" and response["Referrer-Policy"] == "same-origin"


def test_it_does_not_let_an_action_through_before_the_date_of_birth(client, issued):
    for name in ("confirm", "cancel", "move"):
        response = client.post(url(issued.token, name))
        assert response.status_code == 302 and response["Location"] == url(issued.token)
    appointment = Appointment.objects.get()
    assert appointment.confirmed_at is None and not appointment.is_cancelled


@pytest.mark.parametrize("typed", [
    ("17", "5", "1970"), ("17", "05", "1970"), ("17/05/1970", "", ""), ("", "", "17-5-1970"), ("17.05.1970", "", ""),
    ("17", "May", "1970"), ("17 may 1970", "", ""), ("17051970", "", ""), (" 17 ", " 5 ", " 1970 "),
])
def test_it_is_lenient_on_how_the_date_of_birth_is_written(typed):
    assert parse_date_of_birth(*typed) == DOB


@pytest.mark.parametrize("typed", [("31", "2", "1970"), ("17", "5", "70"), ("17", "13", "1970"), ("x", "y", "z"),
                                   ("17", "5", "2999"), ("1/2", "", "")])
def test_it_is_strict_on_the_value_of_the_date_of_birth(typed):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError):
        parse_date_of_birth(*typed)


def test_an_unreadable_date_of_birth_is_not_counted_as_a_wrong_one(client, issued):
    response = client.post(url(issued.token), {"day": "31", "month": "2", "year": "1970"})
    assert response.status_code == 400 and "not a real date" in response.content.decode()
    assert PatientLink.objects.get().wrong_tries == 0


def test_it_opens_the_page_after_the_right_date_of_birth(client, issued):
    response = verify(client, issued.token)
    assert response.status_code == 302
    page = client.get(url(issued.token)).content.decode()
    assert "Wednesday 10 June at 2pm" in page and "Rivers" not in page


def test_three_wrong_dates_of_birth_lock_the_link_and_tell_the_worklist(client, issued):
    for tries_left in (2, 1):
        response = verify(client, issued.token, dt.date(1971, 1, 1))
        assert f"try {tries_left} more time" in response.content.decode()
    response = verify(client, issued.token, dt.date(1971, 1, 1))
    assert response.status_code == 403 and "This link is locked" in response.content.decode()
    link = PatientLink.objects.get()
    assert link.locked_at is not None and link.wrong_tries == 3
    task = AdminTask.objects.get()
    assert task.kind == TaskKind.SELF_SERVICE_LOCKED and task.appointment_id == link.appointment_id
    assert task.resolved_at is None
    # Locked for everyone, the right date of birth included, from any browser.
    from django.test import Client

    response = verify(Client(), issued.token)
    assert response.status_code == 403 and "Sam" not in response.content.decode()
    assert AdminTask.objects.count() == 1
    entry = AuditEntry.objects.get(field="self_service_link")
    assert entry.via == AuditEntry.Via.SELF_SERVICE and entry.new_value == "locked"


def test_the_lock_holds_on_the_row_whatever_the_session(issued):
    for _ in range(5):
        selfservice.check_date_of_birth(link=issued.link, date_of_birth=dt.date(1999, 1, 1))
    link = PatientLink.objects.get()
    assert link.wrong_tries == 3 and link.is_locked
    assert AdminTask.objects.count() == 1


def test_a_patient_with_no_date_of_birth_on_record_cannot_pass(issued):
    patient = issued.link.patient
    type(patient).objects.filter(pk=patient.pk).update(date_of_birth=None)
    issued.link.refresh_from_db()
    assert not selfservice.check_date_of_birth(link=issued.link, date_of_birth=DOB)


def test_it_refuses_too_many_requests_for_one_link(client, issued, settings):
    for _ in range(selfservice.LINK_REQUESTS_PER_WINDOW):
        assert client.get(url(issued.token)).status_code == 200
    response = client.get(url(issued.token))
    assert response.status_code == 429 and "Too many tries" in response.content.decode()
    assert RateCounter.objects.filter(key__startswith="link:").get().hits == selfservice.LINK_REQUESTS_PER_WINDOW + 1
    # The counters hold no address.
    assert not RateCounter.objects.filter(key__contains="127.0.0.1").exists()


def test_it_refuses_too_many_requests_from_one_address_even_for_nonsense_links(client, db, monkeypatch):
    monkeypatch.setattr(selfservice, "ADDRESS_REQUESTS_PER_WINDOW", 5)
    for _ in range(5):
        assert client.get(url("nonsense")).status_code == 404
    assert client.get(url("nonsense")).status_code == 429


# --- What the patient does -------------------------------------------------------------------------


def test_it_confirms_as_the_patient_self_service_and_says_so_twice(client, issued):
    verify(client, issued.token)
    response = client.post(url(issued.token, "confirm"), follow=True)
    assert "You have confirmed your phone call" in response.content.decode()
    response = client.post(url(issued.token, "confirm"), follow=True)
    assert "already confirmed" in response.content.decode()
    entry = AuditEntry.objects.get(field="confirmed")
    assert entry.actor_id is None and entry.via == AuditEntry.Via.SELF_SERVICE and entry.new_value == "by self-service"
    assert Appointment.objects.get().confirmed_at is not None


def test_it_shows_the_notice_before_cancelling_and_records_a_late_cancellation(client, issued, freeze):
    freeze(london(2026, 6, 9, 18))  # 20 hours before: under the default 24 hours' notice
    verify(client, issued.token)
    page = client.get(url(issued.token, "cancel")).content.decode()
    assert "less than 24 hours" in page and "late cancellation" in page
    response = client.post(url(issued.token, "cancel"), follow=True)
    assert "Your phone call is cancelled" in response.content.decode()
    appointment = Appointment.objects.get()
    assert appointment.outcome == AttendanceOutcome.CANCELLED_BY_PATIENT
    assert appointment.cancelled_by == "patient" and appointment.cancellation_recorded_by is None
    from scheduling.booking.services import is_late_cancellation

    assert is_late_cancellation(appointment)
    entry = AuditEntry.objects.get(field="outcome")
    assert entry.via == AuditEntry.Via.SELF_SERVICE
    # Again: nothing changes.
    response = client.post(url(issued.token, "cancel"), follow=True)
    assert Appointment.objects.filter(outcome=AttendanceOutcome.CANCELLED_BY_PATIENT).count() == 1
    assert "is cancelled" in response.content.decode()


def test_it_says_when_the_notice_is_enough(client, issued):
    verify(client, issued.token)
    page = client.get(url(issued.token, "cancel")).content.decode()
    assert "which is enough notice" in page


def test_it_moves_to_one_of_the_offered_times_as_the_patient_asked(client, issued):
    verify(client, issued.token)
    page = client.get(url(issued.token, "move")).content.decode()
    from scheduling.selfservice.selectors import times_to_move_to

    slots = times_to_move_to(issued.link.appointment)
    assert slots and slots[0].start.isoformat() in page
    response = client.post(url(issued.token, "move"), {"start": slots[0].start.isoformat()}, follow=True)
    assert "Your phone call is now on" in response.content.decode()
    moved = Rearrangement.objects.get()
    assert moved.asked_by == "patient" and moved.replacement.start == slots[0].start
    assert AuditEntry.objects.filter(appointment=moved.replacement, field="booking", via=AuditEntry.Via.SELF_SERVICE).exists()
    # The link now leads to the new time, and the same pick again changes nothing.
    assert "already moved to" in client.post(url(issued.token, "move"), {"start": slots[0].start.isoformat()}, follow=True).content.decode()
    assert Rearrangement.objects.count() == 1
    assert PatientLink.objects.get().expires_at == moved.replacement.end


def test_it_refuses_a_time_it_did_not_offer(client, issued):
    verify(client, issued.token)
    for start in (london(2026, 6, 13, 3).isoformat(), "2026-06-11T10:00:00", "not a time", ""):
        response = client.post(url(issued.token, "move"), {"start": start})
        assert response.status_code == 400
    assert not Rearrangement.objects.exists()


def test_the_offered_times_keep_to_the_patients_preferred_windows(issued):
    from scheduling.selfservice.selectors import times_to_move_to

    patient = issued.link.patient
    type(patient).objects.filter(pk=patient.pk).update(preferred_days=[3], preferred_times=["afternoon"])
    appointment = Appointment.objects.select_related("referral__patient").get()
    slots = times_to_move_to(appointment)
    assert slots
    for slot in slots:
        local = slot.local_start
        assert local.weekday() == 3 and 12 <= local.hour < 17
        assert slot.practitioner_id == appointment.practitioner_id


def test_a_verified_session_does_not_open_another_link(client, issued, pwp, admin_user):
    verify(client, issued.token)
    other = book(make_referral(pwp), pwp, london(2026, 6, 11, 10), actor=admin_user)
    other_link = patient_links.issue_appointment_link(appointment=other)
    page = client.get(url(other_link.token)).content.decode()
    assert "What is your date of birth" in page and "11 June" not in page


def test_self_service_actions_show_on_the_record_and_the_call_list(client, issued, pwp, admin_user):
    verify(client, issued.token)
    client.post(url(issued.token, "confirm"))
    appointment = Appointment.objects.get()
    client.force_login(admin_user)
    record = client.get(reverse("caseload:referral_detail", args=[appointment.referral_id])).content.decode()
    assert "Confirmed by the patient (self-service)" in record
    from scheduling.calls.selectors import booked_calls

    rows = booked_calls(practitioner=pwp, day=dt.date(2026, 6, 10))
    assert rows[0].self_service == "Confirmed on the self-service page"


def test_logs_never_hold_a_link_token():
    from scheduling.logs import redact

    line = 'method=GET path="/s/Dnxg6eT1wvoe5kuI_B-bdb9Hfu9w/cancel" status=200 msg="Not Found: /s/abc"'
    assert redact(line) == 'method=GET path="/s/[redacted]/cancel" status=200 msg="Not Found: /s/[redacted]"'


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_wrong_dates_of_birth_sent_at_once_from_several_devices_lock_once_and_raise_one_task(pwp, admin_user):
    import threading

    from django.test import Client

    if connection.vendor != "postgresql":
        pytest.skip("Real concurrent connections are tested on PostgreSQL")
    give_pattern(pwp, weekdays=(0, 1, 2, 3, 4))
    start = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=5)).replace(microsecond=0)
    appointment = book(make_referral(pwp), pwp, start, actor=admin_user)
    token = patient_links.issue_appointment_link(appointment=appointment).token
    devices = 5
    ready = threading.Barrier(devices, timeout=30)
    statuses = [None] * devices

    def wrong(i):
        try:
            client = Client()
            ready.wait()
            statuses[i] = client.post(url(token), {"day": "1", "month": "1", "year": str(1950 + i)}).status_code
        finally:
            connection.close()

    threads = [threading.Thread(target=wrong, args=(i,)) for i in range(devices)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    link = PatientLink.objects.get()
    assert link.is_locked and link.wrong_tries == 3
    assert AdminTask.objects.count() == 1
    assert sorted(statuses) == [400, 400, 403, 403, 403]
    # Every request was counted, whoever created the window's counter row.
    assert RateCounter.objects.get(key__startswith="link:").hits == devices


def test_the_locked_link_is_on_the_worklist_for_admin_staff_to_review(client, issued, admin_user):
    for _ in range(3):
        selfservice.check_date_of_birth(link=issued.link, date_of_birth=dt.date(1999, 1, 1))
    task = AdminTask.objects.get()
    client.force_login(admin_user)
    page = client.get(reverse("worklist:index") + "?kind=self_service_locked").content.decode()
    assert "Self-service link locked after 3 wrong dates of birth" in page and "Rivers" in page
    assert reverse("worklist:task_resolve", args=[task.pk]) in page
    record = client.get(reverse("caseload:referral_detail", args=[issued.link.appointment.referral_id])).content.decode()
    assert "Self-service link: open → locked" in record and "by the patient, self-service" in record


def test_a_move_and_a_cancel_by_the_patient_read_as_such_on_the_record_and_the_call_list(client, issued, pwp, admin_user):
    from scheduling.calls.selectors import booked_calls
    from scheduling.selfservice.selectors import times_to_move_to

    slot = times_to_move_to(issued.link.appointment)[0]
    moved = selfservice.move(link=issued.link, new_start=slot.start)
    [row] = booked_calls(practitioner=pwp, day=slot.local_start.date())
    assert row.appointment == moved.replacement
    assert row.self_service == "Moved to this time by the patient (self-service page)"
    issued.link.refresh_from_db()
    selfservice.cancel(link=issued.link)
    assert booked_calls(practitioner=pwp, day=slot.local_start.date()) == []  # a cancelled call leaves the list
    client.force_login(admin_user)
    record = client.get(reverse("caseload:referral_detail", args=[moved.replacement.referral_id])).content.decode()
    assert record.count("by the patient, self-service") >= 3  # moved away from, booked, cancelled


def test_the_pages_use_no_clinical_words(client, issued, freeze):
    import re as _re

    from scheduling.reminders.content import clinical_words_in

    def words(response):
        text = _re.sub(r"<[^>]+>", " ", response.content.decode())
        return clinical_words_in(text)

    pages = [client.get(url(issued.token)), client.get(url("nonsense"))]
    verify(client, issued.token)
    pages += [client.get(url(issued.token, name)) for name in ("start", "cancel", "move")]
    for _ in range(3):
        pages.append(verify(client.__class__(), issued.token, dt.date(1990, 1, 1)))
    fresh = patient_links.issue_appointment_link(appointment=issued.link.appointment)
    freeze(issued.link.appointment.end)
    pages.append(client.get(url(fresh.token)))
    assert [p.status_code for p in pages] == [200, 404, 200, 200, 200, 400, 400, 403, 410]
    assert [words(p) for p in pages] == [[]] * len(pages)
