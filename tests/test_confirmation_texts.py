"""Confirmation texts: one when a call is booked, one for the new time when it is moved, under the
same rules as reminders (consent, STOP, a mobile, no number marked wrong, quiet hours), never after
the appointment was cancelled or moved, never twice."""

import datetime as dt
import threading

import pytest
import time_machine
from django.db import connection
from django.urls import reverse

from scheduling.booking.services import AlreadyBooked, book_appointment, cancel_appointment, rearrange_appointment
from scheduling.calls.services import CallButton, record_call_outcome
from scheduling.caseload.services import record_sms_opt_out
from scheduling.reminders import sending
from scheduling.reminders.models import MessageEvent, MessageTemplate, OutboundMessage, SmsSettings
from scheduling.reminders.services import plan_confirmation, update_template
from tests.booking_helpers import book
from tests.factories import london, make_patient, make_referral

pytestmark = pytest.mark.django_db
S = OutboundMessage.Status

BOOKED_AT = london(2026, 6, 1, 11)  # a Monday morning
START = london(2026, 6, 10, 14)  # Wednesday 10 June, 2pm


def confirmations(appointment) -> list[OutboundMessage]:
    return list(OutboundMessage.objects.filter(appointment=appointment, kind__in=OutboundMessage.CONFIRMATION_KINDS))


def booked(pwp, admin_user, *, at=BOOKED_AT, start=START, patient=None, **kw):
    with time_machine.travel(at, tick=False):
        return book(make_referral(pwp, patient=patient), pwp, start, actor=admin_user, **kw)


def test_a_booking_plans_one_confirmation_due_at_once_naming_the_day_and_time(pwp, admin_user):
    appointment = booked(pwp, admin_user)
    [message] = confirmations(appointment)
    assert (message.kind, message.status, message.due_at) == ("confirmation", S.SCHEDULED, BOOKED_AT)
    assert message.kind_display == "Booking confirmation"
    assert message.appointment_start == START and message.created_by == admin_user
    assert message.body == (
        "Hi Test, we have booked a phone call with you on Wednesday 10 June at 2pm. "
        "Reply R to rearrange, STOP to end texts."
    )
    assert [(e.source, e.new_status) for e in message.events.all()] == [(MessageEvent.Source.PLANNER, S.SCHEDULED)]
    # The reminders are planned beside it, as before.
    assert set(OutboundMessage.objects.filter(appointment=appointment).values_list("kind", flat=True)) == {
        "confirmation", "reminder_2d", "reminder_0d",
    }


def test_a_due_confirmation_is_sent_once_however_often_its_task_runs(pwp, admin_user):
    [message] = confirmations(booked(pwp, admin_user))
    assert sending.send_message(message_id=message.pk, now=BOOKED_AT + dt.timedelta(seconds=30)) == S.DELIVERED
    assert sending.send_message(message_id=message.pk, now=BOOKED_AT + dt.timedelta(minutes=1)) == S.DELIVERED
    message.refresh_from_db()
    assert message.attempts == 1 and message.provider_sid.startswith("CONSOLE")


@pytest.mark.parametrize(
    "make_unreachable, reason",
    [
        (lambda patient, pwp: None, "no SMS consent recorded"),
        (lambda patient, pwp: record_sms_opt_out(patient=patient, at=london(2026, 5, 30, 9)), "patient replied STOP (opted out)"),
        (
            lambda patient, pwp: record_call_outcome(
                referral=patient.referrals.get(), button=CallButton.WRONG_NUMBER, actor=pwp,
            ),
            "the number was marked wrong on a call: waiting for a new number",
        ),
    ],
    # No mobile is covered by consent (consent needs a mobile) and the mobile field holds UK mobiles only.
    ids=["no_consent", "opted_out", "number_marked_wrong"],
)
def test_a_patient_who_cannot_be_texted_gets_a_skipped_confirmation_saying_why(
    make_unreachable, reason, pwp, admin_user
):
    overrides = {"no SMS consent recorded": {"sms_consent": False}}
    patient = make_patient(**overrides.get(reason, {}))
    referral = make_referral(pwp, patient=patient)
    with time_machine.travel(london(2026, 5, 31, 10), tick=False):
        make_unreachable(patient, pwp)
    patient.refresh_from_db()
    with time_machine.travel(BOOKED_AT, tick=False):
        appointment = book(referral, pwp, START, actor=admin_user)
    [message] = confirmations(appointment)
    assert (message.status, message.status_reason) == (S.SKIPPED, reason)
    assert message.finished_at == BOOKED_AT
    assert sending.send_message(message_id=message.pk, now=BOOKED_AT) == S.SKIPPED


def test_a_number_marked_wrong_after_booking_cancels_the_pending_confirmation(pwp, admin_user):
    appointment = booked(pwp, admin_user)
    with time_machine.travel(BOOKED_AT, tick=False):
        record_call_outcome(referral=appointment.referral, button=CallButton.WRONG_NUMBER, actor=pwp)
    [message] = confirmations(appointment)
    assert message.status == S.CANCELLED and "marked wrong" in message.status_reason


def test_a_confirmation_held_up_for_more_than_a_day_is_skipped_and_the_reminders_still_go(pwp, admin_user):
    appointment = booked(pwp, admin_user)
    [message] = confirmations(appointment)
    late = BOOKED_AT + dt.timedelta(days=1, minutes=1)
    assert sending.send_message(message_id=message.pk, now=late) == S.SKIPPED
    message.refresh_from_db()
    assert message.status_reason == "too late to confirm the booking: the reminders will tell the patient"
    early = OutboundMessage.objects.get(appointment=appointment, kind="reminder_2d")
    assert sending.send_message(message_id=early.pk, now=early.due_at) == S.DELIVERED


def test_a_booking_made_in_quiet_hours_is_confirmed_when_they_end(pwp, admin_user):
    appointment = booked(pwp, admin_user, at=london(2026, 6, 1, 21, 30))
    [message] = confirmations(appointment)
    assert (message.status, message.due_at) == (S.SCHEDULED, london(2026, 6, 2, 8))
    # The worker holds it too if it is handed over early.
    assert sending.send_message(message_id=message.pk, now=london(2026, 6, 1, 23)) == S.SCHEDULED
    assert sending.send_message(message_id=message.pk, now=london(2026, 6, 2, 8, 0)) == S.DELIVERED


def test_an_appointment_too_soon_for_the_confirmation_to_arrive_before_it_gets_none_sent(pwp, admin_user):
    # Booked at 21:00 for 08:30 the next morning: quiet hours end at 08:00, within the hour's notice.
    appointment = booked(pwp, admin_user, at=london(2026, 6, 1, 21), start=london(2026, 6, 2, 8, 30))
    [message] = confirmations(appointment)
    assert (message.status, message.status_reason) == (S.SKIPPED, "would arrive too close to the appointment")


def test_a_booking_for_later_today_gets_the_reminder_and_no_confirmation_beside_it(pwp, admin_user):
    appointment = booked(pwp, admin_user, at=london(2026, 6, 10, 9), start=START)
    [message] = confirmations(appointment)
    assert (message.status, message.status_reason) == (S.SKIPPED, "a reminder goes at about the same time")
    [going] = OutboundMessage.objects.filter(appointment=appointment, status=S.SCHEDULED)
    assert going.kind.startswith("reminder_") and going.due_at == london(2026, 6, 10, 9)


def test_a_cancellation_before_the_confirmation_goes_cancels_it_and_nothing_is_sent(pwp, admin_user):
    appointment = booked(pwp, admin_user)
    with time_machine.travel(BOOKED_AT + dt.timedelta(seconds=20), tick=False):
        cancel_appointment(appointment=appointment, cancelled_by="patient", reason="Changed mind", actor=admin_user)
    [message] = confirmations(appointment)
    assert (message.status, message.status_reason) == (S.CANCELLED, "the appointment was cancelled or moved")
    assert message.events.filter(new_status=S.CANCELLED, actor=admin_user).count() == 1
    assert sending.send_message(message_id=message.pk, now=BOOKED_AT + dt.timedelta(minutes=1)) == S.CANCELLED
    message.refresh_from_db()
    assert message.attempts == 0 and message.provider_sid == ""


def test_a_move_cancels_the_pending_confirmation_and_plans_one_for_the_new_time(pwp, admin_user):
    appointment = booked(pwp, admin_user)
    new_start = london(2026, 6, 17, 11)
    with time_machine.travel(BOOKED_AT + dt.timedelta(minutes=5), tick=False):
        moved = rearrange_appointment(
            appointment=appointment, new_start=new_start, asked_by="patient", reason="Working", actor=admin_user
        )
    [old] = confirmations(appointment)
    assert old.status == S.CANCELLED
    [new] = confirmations(moved.replacement)
    assert (new.kind, new.status, new.appointment_start) == ("confirmation_moved", S.SCHEDULED, new_start)
    assert new.kind_display == "Confirmation of the new time"
    assert new.due_at == BOOKED_AT + dt.timedelta(minutes=5)
    assert "moved to Wednesday 17 June at 11am" in new.body
    assert sending.send_message(message_id=old.pk, now=new.due_at) == S.CANCELLED
    assert sending.send_message(message_id=new.pk, now=new.due_at) == S.DELIVERED


def test_a_move_after_the_first_confirmation_went_leaves_it_as_sent_and_confirms_the_new_time(pwp, admin_user):
    appointment = booked(pwp, admin_user)
    [first] = confirmations(appointment)
    assert sending.send_message(message_id=first.pk, now=BOOKED_AT) == S.DELIVERED
    with time_machine.travel(london(2026, 6, 3, 10), tick=False):
        moved = rearrange_appointment(appointment=appointment, new_start=london(2026, 6, 11, 10), asked_by="service",
                                      actor=admin_user)
    first.refresh_from_db()
    assert first.status == S.DELIVERED
    [new] = confirmations(moved.replacement)
    assert new.status == S.SCHEDULED and "Thursday 11 June at 10am" in new.body


def test_planning_the_confirmation_again_writes_nothing(pwp, admin_user):
    appointment = booked(pwp, admin_user)
    with time_machine.travel(BOOKED_AT, tick=False):
        assert plan_confirmation(appointment=appointment, actor=admin_user) is None
    assert len(confirmations(appointment)) == 1


@pytest.mark.parametrize(
    "how",
    ["in_the_past", "demo", "recorded_after_the_fact", "switched_off"],
)
def test_no_confirmation_for_the_past_the_demo_history_recorded_later_or_when_switched_off(how, pwp, admin_user):
    kw = {}
    start = START
    if how == "in_the_past":
        start = london(2026, 5, 20, 10)
    elif how == "demo":
        kw["is_demo"] = True
    elif how == "recorded_after_the_fact":
        kw["booked_at"] = BOOKED_AT - dt.timedelta(days=3)
    else:
        SmsSettings.objects.update_or_create(pk=1, defaults={"send_confirmations": False})
    appointment = booked(pwp, admin_user, start=start, **kw)
    assert confirmations(appointment) == []


def test_the_confirmation_uses_the_wording_the_manager_saved(pwp, admin_user, manager):
    update_template(
        key=MessageTemplate.Key.CONFIRMATION, actor=manager,
        body="Hello {first_name}: {practitioner_first_name} will ring on {day} at {time}. Reply STOP to end texts.",
    )
    [message] = confirmations(booked(pwp, admin_user))
    assert message.body.startswith("Hello Test: ") and "on Wednesday at 2pm." in message.body


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_two_identical_bookings_at_once_give_one_appointment_and_one_confirmation(pwp, admin_user):
    if connection.vendor != "postgresql":
        pytest.skip("Real concurrent connections are tested on PostgreSQL")
    referral = make_referral(pwp, actor=admin_user)
    start = dt.datetime.now(dt.timezone.utc).replace(microsecond=0, second=0) + dt.timedelta(days=3)
    ready = threading.Barrier(2, timeout=20)
    results = [None, None]

    def submit(i):
        try:
            ready.wait()
            results[i] = book_appointment(
                referral=referral, practitioner=pwp, appointment_type="assessment", start=start, actor=admin_user
            )
        except AlreadyBooked as exc:
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    booked_ones = [r for r in results if not isinstance(r, Exception)]
    refused = [r for r in results if isinstance(r, AlreadyBooked)]
    assert len(booked_ones) == 1 and len(refused) == 1, results
    assert OutboundMessage.objects.filter(kind="confirmation").count() == 1
    assert confirmations(booked_ones[0])[0].status == S.SCHEDULED


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_the_confirmation_planned_twice_at_once_is_written_once(pwp, admin_user):
    if connection.vendor != "postgresql":
        pytest.skip("Real concurrent connections are tested on PostgreSQL")
    SmsSettings.objects.update_or_create(pk=1, defaults={"send_confirmations": False})
    appointment = book(make_referral(pwp), pwp, dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=3))
    ready = threading.Barrier(2, timeout=20)
    results = [None, None]

    def plan(i):
        try:
            ready.wait()
            results[i] = plan_confirmation(appointment=appointment, actor=admin_user)
        finally:
            connection.close()

    threads = [threading.Thread(target=plan, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sum(r is not None for r in results) == 1, results
    assert len(confirmations(appointment)) == 1


# --- Staff pages ------------------------------------------------------------------------------------


def test_the_outbox_shows_the_confirmation_by_its_readable_kind_and_filters_on_it(client, pwp, admin_user):
    appointment = booked(pwp, admin_user)
    client.force_login(admin_user)
    html = client.get(reverse("sms:outbox"), {"kind": "confirmation"}).content.decode()
    assert "1 message" in html and "Booking confirmation" in html
    assert "Reminder 2 days before</td>" not in html
    assert '<option value="confirmation" selected>Booking confirmation</option>' in html
    [message] = confirmations(appointment)
    detail = client.get(reverse("sms:message_detail", args=[message.pk])).content.decode()
    assert "Booking confirmation" in detail


def test_the_settings_page_links_to_the_confirmation_wording_and_clinical_words_are_refused(client, manager):
    client.force_login(manager)
    settings_html = client.get(reverse("sms:settings")).content.decode()
    link = reverse("sms:edit_template", args=["confirmation"])
    assert f'href="{link}"' in settings_html and "Booking confirmation (when a call is booked)" in settings_html
    page = client.get(link)
    assert page.status_code == 200 and "Booking confirmation" in page.content.decode()

    refused = client.post(link, {"body": "Hi {first_name}, your pain clinic call is on {day}. Reply STOP to end texts."})
    assert refused.status_code == 400
    assert "must not mention care or conditions: remove &#x27;pain&#x27;, &#x27;clinic&#x27;" in refused.content.decode()
    assert not MessageTemplate.objects.filter(key="confirmation", body__contains="pain").exists()

    saved = client.post(link, {"body": "Hi {first_name}, we will ring on {day} {date} at {time}. Reply STOP to end texts."})
    assert saved.status_code == 302 and saved["Location"] == reverse("sms:settings")
    template = MessageTemplate.objects.get(key="confirmation")
    assert template.body.startswith("Hi {first_name}, we will ring") and template.updated_by == manager


def test_a_manager_can_switch_confirmations_off_on_the_settings_page(client, manager):
    client.force_login(manager)
    current = SmsSettings.current()
    response = client.post(reverse("sms:settings"), {
        "quiet_hours_start": "20:00", "quiet_hours_end": "08:00", "minimum_notice_minutes": "60", "max_send_attempts": "4",
    })
    assert response.status_code == 302 and response["Location"] == reverse("sms:settings")
    current.refresh_from_db()
    assert current.send_confirmations is False and current.updated_by == manager
    client.post(reverse("sms:settings"), {
        "quiet_hours_start": "20:00", "quiet_hours_end": "08:00", "minimum_notice_minutes": "60", "max_send_attempts": "4",
        "send_confirmations": "on",
    })
    current.refresh_from_db()
    assert current.send_confirmations is True
