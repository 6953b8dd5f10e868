"""Text replies (POST /sms/twilio/inbound/): confirm, rearrange, STOP/START, and everything staff
must read, never guessed between patients."""

import logging
import threading

import pytest
import time_machine
from django.db import connection
from django.test import Client
from django.urls import reverse

from devtools.fake_twilio import FakeTwilioServer
from scheduling.worklist.selectors import admin_worklist
from scheduling.calls.selectors import booked_calls
from scheduling.audit import AuditEntry
from scheduling.caseload.models import Patient
from scheduling.worklist.models import AdminTask
from scheduling.codes import AttendanceOutcome
from scheduling.reminders import replies, sending
from scheduling.reminders.models import InboundMessage, OutboundMessage
from tests.booking_helpers import book
from tests.factories import london, make_patient, make_referral
from scheduling.reminders.webhooks import EMPTY_TWIML
from tests.twilio_webhook_helpers import PUBLIC_BASE, TOKEN, inbound_params, new_sid, post_webhook

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("twilio_settings")]
Meaning = InboundMessage.Meaning
Handling = InboundMessage.Handling
S = OutboundMessage.Status
BOOKED_AT = london(2026, 6, 1, 9)
START = london(2026, 6, 10, 14)
REPLIED_AT = london(2026, 6, 8, 10, 5)  # just after the two-day reminder
INBOUND = "/sms/twilio/inbound/"


@pytest.fixture
def patient(appointment):
    return appointment.referral.patient


def reply(client, from_number, body, *, at=REPLIED_AT, sid=None, **kwargs):
    with time_machine.travel(at, tick=False):
        return post_webhook(client, INBOUND, inbound_params(from_number=from_number, body=body, sid=sid), **kwargs)


def stored(response_or_sid=None) -> InboundMessage:
    return InboundMessage.objects.get() if response_or_sid is None else InboundMessage.objects.get(provider_sid=response_or_sid)


def number_on_no_record() -> str:
    used = set(Patient.objects.values_list("mobile_phone", flat=True)) | set(Patient.objects.values_list("other_phone", flat=True))
    return next(f"+447700900{n:03d}" for n in range(500, 999) if f"+447700900{n:03d}" not in used)


def open_tasks():
    return list(AdminTask.objects.filter(resolved_at__isnull=True))


# -- what a reply means ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "meaning"),
    [
        ("C", Meaning.CONFIRM), ("yes", Meaning.CONFIRM), ("Confirm.", Meaning.CONFIRM), (" y ", Meaning.CONFIRM),
        ("Yes, see you then", Meaning.CONFIRM),
        ("R", Meaning.REARRANGE), ("change", Meaning.REARRANGE), ("CANCEL", Meaning.REARRANGE),
        ("No.", Meaning.REARRANGE), ("Reschedule please", Meaning.REARRANGE), ("rearrange", Meaning.REARRANGE),
        ("STOP", Meaning.OPT_OUT), ("stop all", Meaning.OPT_OUT), ("Unsubscribe", Meaning.OPT_OUT),
        ("opt-out", Meaning.OPT_OUT), ("quit!", Meaning.OPT_OUT),
        ("START", Meaning.OPT_IN), ("unstop", Meaning.OPT_IN),
        ("Can you ring me after 5?", Meaning.OTHER), ("", Meaning.OTHER), ("Yesterday was fine", Meaning.OTHER),
    ],
)
def test_the_first_word_decides_what_a_reply_means(body, meaning):
    assert replies.meaning_of(body) == meaning


def test_the_senders_number_is_stored_in_e164():
    assert replies.normalise_number("07700 900123") == "+447700900123"
    assert replies.normalise_number("+447700900123") == "+447700900123"
    assert replies.normalise_number("NHSTEST") == "NHSTEST"


# -- confirming -----------------------------------------------------------------------------------


@pytest.mark.parametrize("body", ["C", "yes", "Confirm."])
def test_a_confirming_reply_confirms_the_next_appointment(client, appointment, patient, body):
    response = reply(client, patient.mobile_phone, body)

    assert response.status_code == 200
    assert response["Content-Type"] == "text/xml"
    assert response.content.decode() == EMPTY_TWIML
    appointment.refresh_from_db()
    assert appointment.confirmed_at == REPLIED_AT
    audit = AuditEntry.objects.get(appointment=appointment, field="confirmed")
    assert (audit.old_value, audit.new_value) == ("", "by SMS")
    message = stored()
    assert (message.meaning, message.handling) == (Meaning.CONFIRM, Handling.APPLIED)
    assert (message.patient, message.appointment, message.admin_task) == (patient, appointment, None)
    assert message.from_number == patient.mobile_phone and message.body == body
    assert open_tasks() == []


def test_the_call_list_shows_the_appointment_confirmed_by_sms(client, appointment, patient, pwp):
    reply(client, patient.mobile_phone, "C")

    [row] = booked_calls(practitioner=pwp, day=START.date(), now=REPLIED_AT)
    assert row.confirmed_by_sms and not row.rearrange_requested
    client.force_login(pwp)
    with time_machine.travel(REPLIED_AT, tick=False):
        page = client.get(reverse("calls:today") + "?date=2026-06-10")
    assert "Confirmed by SMS" in page.content.decode()


def test_only_the_next_appointment_is_confirmed_not_a_later_one(client, appointment, patient, pwp, admin_user):
    with time_machine.travel(BOOKED_AT, tick=False):
        later = book(appointment.referral, pwp, london(2026, 6, 17, 14), actor=admin_user, kind="treatment")

    reply(client, patient.mobile_phone, "C")

    appointment.refresh_from_db()
    later.refresh_from_db()
    assert appointment.confirmed_at is not None and later.confirmed_at is None


def test_a_second_confirmation_keeps_the_first_time_and_audits_once(client, appointment, patient):
    reply(client, patient.mobile_phone, "C")
    reply(client, patient.mobile_phone, "Yes", at=london(2026, 6, 9, 9))

    appointment.refresh_from_db()
    assert appointment.confirmed_at == REPLIED_AT
    assert AuditEntry.objects.filter(appointment=appointment, field="confirmed").count() == 1
    assert InboundMessage.objects.filter(handling=Handling.APPLIED).count() == 2


def test_a_confirmation_that_says_more_is_applied_and_the_text_passed_to_staff(client, appointment, patient):
    reply(client, patient.mobile_phone, "Yes but could you ring after 3 instead")

    appointment.refresh_from_db()
    assert appointment.confirmed_at is not None
    message = stored()
    assert message.handling == Handling.APPLIED
    assert message.admin_task.kind == AdminTask.Kind.SMS_REPLY
    assert "ring after 3" in message.admin_task.detail


def test_a_polite_confirmation_gives_staff_nothing_to_read(client, appointment, patient):
    reply(client, patient.mobile_phone, "Yes thank you, see you then x")

    assert stored().handling == Handling.APPLIED
    assert open_tasks() == []


def test_a_reply_from_the_patients_other_number_is_matched(client, pwp, admin_user):
    other = "+447700900998"
    patient = make_patient(other_phone="07700 900998")
    with time_machine.travel(BOOKED_AT, tick=False):
        appointment = book(make_referral(pwp, patient=patient), pwp, START, actor=admin_user)

    reply(client, other, "C")

    appointment.refresh_from_db()
    assert appointment.confirmed_at is not None
    assert stored().patient == patient


# -- rearranging ----------------------------------------------------------------------------------


@pytest.mark.parametrize("body", ["R", "CHANGE", "Cancel please, I'm at the hospital"])
def test_a_rearrange_reply_asks_admin_staff_and_cancels_nothing(client, appointment, patient, pwp, body):
    response = reply(client, patient.mobile_phone, body)

    assert response.status_code == 200
    message = stored()
    assert (message.meaning, message.handling, message.appointment) == (Meaning.REARRANGE, Handling.FOR_STAFF, appointment)
    task = message.admin_task
    assert (task.kind, task.source, task.appointment, task.patient) == (
        AdminTask.Kind.REARRANGE_REQUEST, AdminTask.Source.SMS, appointment, patient,
    )
    assert task.detail.startswith("Replied by text: ") and body in task.detail
    [item] = [item for item in admin_worklist(now=REPLIED_AT) if item.task_id == task.pk]
    assert item.action_label == "Rearrange"
    appointment.refresh_from_db()
    assert appointment.outcome == AttendanceOutcome.NOT_APPLICABLE and appointment.confirmed_at is None
    assert OutboundMessage.objects.filter(appointment=appointment, status=S.SCHEDULED).exists()
    [row] = booked_calls(practitioner=pwp, day=START.date(), now=REPLIED_AT)
    assert row.rearrange_requested


def test_rearranging_the_appointment_resolves_the_texted_request(client, appointment, patient, admin_user):
    from scheduling.booking.services import rearrange_appointment

    reply(client, patient.mobile_phone, "R")
    with time_machine.travel(london(2026, 6, 8, 11), tick=False):
        rearrange_appointment(appointment=appointment, new_start=london(2026, 6, 11, 10), asked_by="patient",
                              actor=admin_user)

    assert stored().admin_task.resolved_at is not None


# -- STOP and START -------------------------------------------------------------------------------


def test_stop_opts_the_patient_out_and_cancels_their_pending_reminders(client, appointment, patient, pwp, admin_user):
    reminders = list(OutboundMessage.objects.filter(appointment=appointment, status=S.SCHEDULED))
    assert reminders

    response = reply(client, patient.mobile_phone, "STOP")

    assert response.status_code == 200 and response.content.decode() == EMPTY_TWIML
    patient.refresh_from_db()
    assert patient.sms_opted_out and patient.sms_opted_out_at == REPLIED_AT
    for reminder in reminders:
        reminder.refresh_from_db()
        assert (reminder.status, reminder.status_reason) == (S.CANCELLED, "patient replied STOP")
        assert sending.send_message(message_id=reminder.pk, now=london(2026, 6, 10, 8)) == S.CANCELLED
    message = stored()
    assert (message.meaning, message.handling, message.admin_task) == (Meaning.OPT_OUT, Handling.APPLIED, None)
    # Later texts are refused too: a new booking gets its reminders skipped, saying why.
    with time_machine.travel(london(2026, 6, 9, 9), tick=False):
        later = book(appointment.referral, pwp, london(2026, 6, 17, 14), actor=admin_user, kind="treatment")
    assert set(OutboundMessage.objects.filter(appointment=later).values_list("status", "status_reason")) == {
        (S.SKIPPED, "patient replied STOP (opted out)"),
    }


def test_stop_from_a_number_two_patients_share_opts_both_out(client, appointment, patient):
    sibling = make_patient(mobile_phone=patient.mobile_phone)

    reply(client, patient.mobile_phone, "Stop")

    assert set(Patient.objects.filter(pk__in=[patient.pk, sibling.pk]).values_list("sms_opted_out", flat=True)) == {True}
    assert stored().handling == Handling.APPLIED


def test_a_stop_that_says_more_opts_out_and_passes_the_text_to_staff(client, appointment, patient):
    reply(client, patient.mobile_phone, "Stop, I have moved to another service")

    patient.refresh_from_db()
    assert patient.sms_opted_out
    task = stored().admin_task
    assert (task.kind, task.patient) == (AdminTask.Kind.SMS_REPLY, patient)
    assert task.detail.startswith("Reply applied (asked to stop texts)") and "moved to another service" in task.detail


def test_stop_from_a_number_on_no_record_is_kept_without_a_task(client, appointment):
    reply(client, number_on_no_record(), "STOP")

    message = stored()
    assert (message.meaning, message.handling, message.patient) == (Meaning.OPT_OUT, Handling.UNKNOWN_SENDER, None)
    assert open_tasks() == []


def test_start_opts_the_patient_back_in(client, appointment, patient):
    reply(client, patient.mobile_phone, "STOP")
    reply(client, patient.mobile_phone, "START", at=london(2026, 6, 8, 12))

    patient.refresh_from_db()
    assert not patient.sms_opted_out
    assert [(m.meaning, m.handling) for m in InboundMessage.objects.all()] == [
        (Meaning.OPT_OUT, Handling.APPLIED), (Meaning.OPT_IN, Handling.APPLIED),
    ]


# -- never guessed --------------------------------------------------------------------------------


def test_a_text_from_a_number_on_no_record_is_kept_and_given_to_staff(client, appointment):
    stranger = number_on_no_record()

    response = reply(client, stranger, "C")

    assert response.status_code == 200
    message = stored()
    assert (message.handling, message.patient, message.appointment) == (Handling.UNKNOWN_SENDER, None, None)
    task = message.admin_task
    assert (task.kind, task.patient) == (AdminTask.Kind.SMS_REPLY, None)
    assert "a number not on our records" in task.detail and '"C"' in task.detail
    assert task.pk in {item.task_id for item in admin_worklist(now=REPLIED_AT)}
    appointment.refresh_from_db()
    assert appointment.confirmed_at is None


def test_a_number_shared_by_two_patients_confirms_nobodys_appointment(client, appointment, patient, pwp, admin_user):
    sibling = make_patient(mobile_phone=patient.mobile_phone)
    with time_machine.travel(BOOKED_AT, tick=False):
        siblings_appointment = book(make_referral(pwp, patient=sibling), pwp, london(2026, 6, 10, 15), actor=admin_user)

    reply(client, patient.mobile_phone, "C")

    message = stored()
    assert (message.handling, message.patient, message.appointment) == (Handling.SHARED_NUMBER, None, None)
    assert "shared by 2 patients" in message.admin_task.detail and message.admin_task.patient is None
    for each in (appointment, siblings_appointment):
        each.refresh_from_db()
        assert each.confirmed_at is None
    assert not AuditEntry.objects.filter(field="confirmed").exists()


def test_a_reply_after_the_appointment_time_is_passed_to_staff_not_applied(client, appointment, patient):
    reply(client, patient.mobile_phone, "C", at=london(2026, 6, 10, 14, 20))

    message = stored()
    assert (message.meaning, message.handling, message.appointment) == (
        Meaning.CONFIRM, Handling.NO_UPCOMING_APPOINTMENT, None,
    )
    task = message.admin_task
    assert task.kind == AdminTask.Kind.SMS_REPLY and task.patient == patient
    assert task.detail.startswith("Reply received after the appointment") and '"C"' in task.detail
    appointment.refresh_from_db()
    assert appointment.confirmed_at is None


def test_free_text_goes_to_admin_staff_with_the_text(client, appointment, patient):
    reply(client, patient.mobile_phone, "Can you ring my other number on Wednesday?")

    message = stored()
    assert (message.meaning, message.handling, message.appointment) == (Meaning.OTHER, Handling.FOR_STAFF, appointment)
    task = message.admin_task
    assert (task.kind, task.appointment, task.patient) == (AdminTask.Kind.SMS_REPLY, appointment, patient)
    assert "ring my other number on Wednesday" in task.detail
    assert task.pk in {item.task_id for item in admin_worklist(now=REPLIED_AT)}


def test_a_very_long_reply_is_kept_whole_and_shortened_in_the_task(client, appointment, patient):
    body = "Hello " + "word " * 200

    reply(client, patient.mobile_phone, body)

    assert stored().body == body
    assert len(stored().admin_task.detail) <= 500 and stored().admin_task.detail.endswith('…"')


# -- replays and forgeries ------------------------------------------------------------------------


def test_a_replayed_reply_is_stored_once_and_acted_on_once(client, appointment, patient):
    sid = new_sid()

    first = reply(client, patient.mobile_phone, "R", sid=sid)
    again = reply(client, patient.mobile_phone, "R", sid=sid, at=london(2026, 6, 8, 10, 6))

    assert first.status_code == again.status_code == 200
    assert again.content.decode() == EMPTY_TWIML
    assert InboundMessage.objects.count() == 1
    assert AdminTask.objects.count() == 1


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_the_same_reply_delivered_twice_at_the_same_moment_is_acted_on_once(settings, pwp, admin_user, monkeypatch):
    if connection.vendor != "postgresql":
        pytest.skip("Real concurrent connections are tested on PostgreSQL")
    settings.TWILIO_AUTH_TOKEN = TOKEN
    settings.SMS_PUBLIC_BASE_URL = PUBLIC_BASE
    with time_machine.travel(BOOKED_AT, tick=False):
        appointment = book(make_referral(pwp), pwp, START, actor=admin_user)
    # Both requests get past the "already stored?" check before either stores: only the database decides.
    real_lookup = replies.patients_with_number
    both_looked = threading.Barrier(2, timeout=20)

    def look_then_wait(number):
        found = real_lookup(number)
        both_looked.wait()
        return found

    monkeypatch.setattr(replies, "patients_with_number", look_then_wait)
    params = inbound_params(from_number=appointment.referral.patient.mobile_phone, body="R")
    responses = [None, None]

    def post(i):
        try:
            responses[i] = post_webhook(Client(), INBOUND, params)
        finally:
            connection.close()

    threads = [threading.Thread(target=post, args=(i,)) for i in range(2)]
    with time_machine.travel(REPLIED_AT, tick=False):
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)

    assert [r.status_code for r in responses] == [200, 200]
    assert InboundMessage.objects.get().handling == Handling.FOR_STAFF
    assert AdminTask.objects.filter(kind=AdminTask.Kind.REARRANGE_REQUEST).count() == 1
    assert AdminTask.objects.count() == 1


def test_a_forged_reply_is_refused_and_not_stored(client, appointment, patient):
    response = reply(client, patient.mobile_phone, "STOP", token="not-our-token")

    assert response.status_code == 403
    assert not InboundMessage.objects.exists()
    patient.refresh_from_db()
    assert not patient.sms_opted_out


def test_an_unsigned_reply_is_refused_and_get_is_not_allowed(client, appointment, patient):
    assert reply(client, patient.mobile_phone, "C", sign=False).status_code == 403
    assert client.get(INBOUND).status_code == 405
    assert not InboundMessage.objects.exists()


def test_a_reply_posted_by_the_fake_twilio_over_http_is_accepted(transactional_db, live_server, settings, pwp, admin_user):
    """The fake Twilio signs exactly as Twilio does (blank fields included) and posts over real HTTP."""
    with time_machine.travel(BOOKED_AT, tick=False):
        appointment = book(make_referral(pwp), pwp, START, actor=admin_user)
    with FakeTwilioServer() as fake:
        settings.TWILIO_AUTH_TOKEN = fake.auth_token
        settings.SMS_PUBLIC_BASE_URL = live_server.url
        with time_machine.travel(REPLIED_AT, tick=False):
            status, body = fake.send_inbound(live_server.url + INBOUND, from_=appointment.referral.patient.mobile_phone,
                                             body="Confirm")

    assert (status, body) == (200, EMPTY_TWIML)
    appointment.refresh_from_db()
    assert appointment.confirmed_at == REPLIED_AT


# -- logs -----------------------------------------------------------------------------------------


def test_no_log_line_carries_a_phone_number_or_what_was_texted(client, appointment, patient, caplog):
    caplog.set_level(logging.DEBUG)
    sibling = make_patient(mobile_phone="07700 900997")
    make_patient(mobile_phone="07700 900997")
    stranger = number_on_no_record()
    texts = {
        patient.mobile_phone: ["Confirmed thanks lovely", "Rearrange pls busy Tuesday", "Where is my letter", "Stop sending these please"],
        sibling.mobile_phone: ["Yes from the shared phone"],
        stranger: ["Who is this sending me texts"],
    }
    for number, bodies in texts.items():
        for body in bodies:
            assert reply(client, number, body).status_code == 200
    assert reply(client, patient.mobile_phone, "Forged secret words", token="wrong").status_code == 403
    assert reply(client, patient.mobile_phone, "Unsigned secret words", sign=False).status_code == 403

    assert caplog.records, "the webhook should log what it did"
    lines = [record.getMessage() for record in caplog.records]
    numbers = {patient.mobile_phone, sibling.mobile_phone, stranger}
    forbidden = set()
    for number in numbers:
        forbidden |= {number, number[1:], "0" + number[3:], f"0{number[3:7]} {number[7:]}"}
    forbidden |= {body for bodies in texts.values() for body in bodies} | {"Forged secret words", "Unsigned secret words"}
    for line in lines:
        for secret in forbidden:
            assert secret not in line, f"log line leaks patient data: {line!r}"
