"""Planning reminders from bookings: due times in UK local time, quiet hours, skips, cancellation."""

import datetime as dt

import pytest
import time_machine
from django.db import IntegrityError, transaction

from scheduling.caseload.services import record_sms_opt_out
from scheduling.booking.services import cancel_appointment, rearrange_appointment
from scheduling.reminders.content import clinical_words_in, sms_length
from scheduling.reminders.models import MessageEvent, OutboundMessage, ReminderRule, SmsSettings
from scheduling.reminders.services import end_of_quiet_hours, plan_reminders, save_reminder_rule
from scheduling.uktime import LONDON, lenient_local_datetime
from tests.booking_helpers import book
from tests.factories import london, make_patient, make_referral

pytestmark = pytest.mark.django_db
S = OutboundMessage.Status


def reminders_for(appointment):
    return list(OutboundMessage.objects.filter(appointment=appointment, kind__startswith="reminder_").order_by("due_at"))


def test_it_plans_one_reminder_two_days_before_at_ten_and_one_at_eight_on_the_day(pwp, admin_user):
    referral = make_referral(pwp)
    with time_machine.travel(london(2026, 6, 1, 9), tick=False):
        appointment = book(referral, pwp, london(2026, 6, 10, 14), actor=admin_user)
    early, same_day = reminders_for(appointment)
    assert (early.kind, early.due_at, early.status) == ("reminder_2d", london(2026, 6, 8, 10), S.SCHEDULED)
    assert (same_day.kind, same_day.due_at, same_day.status) == ("reminder_0d", london(2026, 6, 10, 8), S.SCHEDULED)
    assert "Wednesday 10 June at 2pm" in early.body
    assert early.body.startswith("Hi Test,")
    assert all(e.new_status == S.SCHEDULED for e in MessageEvent.objects.filter(message=early))


@pytest.mark.parametrize(
    "appointment_start, expected_early_due",
    [
        # Spring forward (29 March 2026): the 2-day reminder is on Friday 27 March at 10:00 GMT.
        (london(2026, 3, 29, 11), dt.datetime(2026, 3, 27, 10, tzinfo=dt.timezone.utc)),
        # Appointment on the Tuesday after: the reminder on Sunday 29 March at 10:00 BST = 09:00 UTC.
        (london(2026, 3, 31, 11), dt.datetime(2026, 3, 29, 9, tzinfo=dt.timezone.utc)),
        # Fall back (25 October 2026): Sunday 25 at 10:00 GMT = 10:00 UTC, although Friday 23 was BST.
        (london(2026, 10, 27, 11), dt.datetime(2026, 10, 25, 10, tzinfo=dt.timezone.utc)),
    ],
)
def test_reminders_go_at_ten_local_time_across_both_clock_changes(pwp, appointment_start, expected_early_due):
    referral = make_referral(pwp)
    with time_machine.travel(london(2026, 3, 1, 9), tick=False):
        appointment = book(referral, pwp, appointment_start)
    assert reminders_for(appointment)[0].due_at == expected_early_due


def test_the_message_shows_the_local_time_not_utc_in_summer(pwp):
    with time_machine.travel(london(2026, 7, 1, 9), tick=False):
        appointment = book(make_referral(pwp), pwp, london(2026, 7, 15, 9, 30))
    assert "at 9:30am" in reminders_for(appointment)[0].body


def test_a_reminder_due_in_quiet_hours_moves_to_their_end(pwp, manager):
    save_reminder_rule(actor=manager, appointment_type="assessment", days_before=1, send_at=dt.time(21, 0))
    with time_machine.travel(london(2026, 6, 1, 9), tick=False):
        appointment = book(make_referral(pwp), pwp, london(2026, 6, 10, 14))
    due = {m.kind: m.due_at for m in reminders_for(appointment)}
    assert due["reminder_1d"] == london(2026, 6, 10, 8)


def test_a_quiet_hours_reminder_that_would_be_too_late_is_skipped_and_says_why(pwp, manager):
    save_reminder_rule(actor=manager, appointment_type="assessment", days_before=1, send_at=dt.time(22, 0))
    with time_machine.travel(london(2026, 6, 1, 9), tick=False):
        appointment = book(make_referral(pwp), pwp, london(2026, 6, 10, 8, 30))
    skipped = OutboundMessage.objects.get(appointment=appointment, kind="reminder_1d")
    assert skipped.status == S.SKIPPED
    assert "too close" in skipped.status_reason


def test_booking_after_the_early_reminders_time_skips_it_and_keeps_the_same_day_one(pwp):
    with time_machine.travel(london(2026, 6, 9, 9), tick=False):
        appointment = book(make_referral(pwp), pwp, london(2026, 6, 10, 14))
    early, same_day = reminders_for(appointment)
    assert early.status == S.SKIPPED and "later reminder" in early.status_reason
    assert same_day.status == S.SCHEDULED


def test_booking_on_the_day_sends_one_reminder_straight_away(pwp):
    with time_machine.travel(london(2026, 6, 10, 9), tick=False):
        appointment = book(make_referral(pwp), pwp, london(2026, 6, 10, 14))
        scheduled = [m for m in reminders_for(appointment) if m.status == S.SCHEDULED]
    assert len(scheduled) == 1
    assert scheduled[0].due_at == london(2026, 6, 10, 9)


@pytest.mark.parametrize(
    "patient_overrides, reason",
    [
        ({"sms_consent": False}, "no SMS consent"),
        ({"mobile_phone": "", "other_phone": "01632 960123", "sms_consent": False}, "no SMS consent"),
        ({"opted_out": True}, "STOP"),
    ],
)
def test_no_reminder_is_scheduled_for_patients_who_cannot_be_texted(pwp, patient_overrides, reason):
    opted_out = patient_overrides.pop("opted_out", False)
    patient = make_patient(**patient_overrides)
    if opted_out:
        record_sms_opt_out(patient=patient)
    referral = make_referral(pwp, patient=patient)
    with time_machine.travel(london(2026, 6, 1, 9), tick=False):
        appointment = book(referral, pwp, london(2026, 6, 10, 14))
    assert {m.status for m in reminders_for(appointment)} == {S.SKIPPED}
    assert all(reason in m.status_reason for m in reminders_for(appointment))


def test_a_second_reminder_of_the_same_kind_for_the_same_occurrence_is_impossible(pwp):
    with time_machine.travel(london(2026, 6, 1, 9), tick=False):
        appointment = book(make_referral(pwp), pwp, london(2026, 6, 10, 14))
        assert plan_reminders(appointment=appointment) == []
    first = reminders_for(appointment)[0]
    with pytest.raises(IntegrityError), transaction.atomic():
        OutboundMessage.objects.create(
            patient=first.patient, appointment=appointment, appointment_start=appointment.start, kind=first.kind,
            body="again", due_at=first.due_at,
        )
    assert OutboundMessage.objects.filter(appointment=appointment, kind__startswith="reminder_").count() == 2


def test_cancelling_cancels_pending_reminders_in_the_same_transaction(pwp, admin_user):
    with time_machine.travel(london(2026, 6, 1, 9), tick=False):
        appointment = book(make_referral(pwp), pwp, london(2026, 6, 10, 14))
        cancel_appointment(appointment=appointment, cancelled_by="patient", reason="Away", actor=admin_user)
    assert {m.status for m in reminders_for(appointment)} == {S.CANCELLED}
    # Both reminders and the booking confirmation.
    assert MessageEvent.objects.filter(message__appointment=appointment, new_status=S.CANCELLED, actor=admin_user).count() == 3


def test_rearranging_cancels_the_old_reminders_and_plans_new_ones(pwp, admin_user):
    with time_machine.travel(london(2026, 6, 1, 9), tick=False):
        appointment = book(make_referral(pwp), pwp, london(2026, 6, 10, 14))
        moved = rearrange_appointment(appointment=appointment, new_start=london(2026, 6, 17, 11), asked_by="patient",
                                      actor=admin_user)
    assert {m.status for m in reminders_for(appointment)} == {S.CANCELLED}
    new = reminders_for(moved.replacement)
    assert [m.due_at for m in new] == [london(2026, 6, 15, 10), london(2026, 6, 17, 8)]
    assert "Wednesday 17 June at 11am" in new[0].body


def test_end_of_quiet_hours_handles_evening_and_small_hours():
    settings = SmsSettings.current()
    assert end_of_quiet_hours(london(2026, 6, 1, 21), settings) == london(2026, 6, 2, 8)
    assert end_of_quiet_hours(london(2026, 6, 2, 3), settings) == london(2026, 6, 2, 8)
    assert end_of_quiet_hours(london(2026, 6, 2, 12), settings) == london(2026, 6, 2, 12)


def test_a_time_skipped_by_the_spring_clock_change_is_read_as_the_time_after_it():
    moment = lenient_local_datetime(dt.date(2026, 3, 29), dt.time(1, 30))
    assert moment.astimezone(LONDON).utcoffset() == dt.timedelta(hours=1)
    assert moment.astimezone(LONDON).time() == dt.time(2, 30)
    assert moment.astimezone(dt.timezone.utc) == dt.datetime(2026, 3, 29, 1, 30, tzinfo=dt.timezone.utc)


@pytest.mark.parametrize("given_name", ["Mo", "Alexandra-Josephine", "Siobhan", "Zoë"])
def test_every_default_message_fits_one_gsm7_sms_for_typical_names(pwp, given_name):
    referral = make_referral(pwp, patient=make_patient(given_name=given_name))
    with time_machine.travel(london(2026, 6, 1, 9), tick=False):
        appointment = book(referral, pwp, london(2026, 9, 30, 12, 45))  # a long weekday and month
    for message in reminders_for(appointment):
        length = sms_length(message.body)
        assert length.encoding == "GSM-7", length
        assert length.fits_one_sms, (len(message.body), message.body)


def test_no_default_template_contains_a_clinical_word():
    from scheduling.reminders.content import DEFAULT_TEMPLATES

    for key, body in DEFAULT_TEMPLATES.items():
        assert clinical_words_in(body) == [], key


def test_the_clinical_word_check_finds_words_but_not_parts_of_words():
    assert clinical_words_in("Your CBT session about pain") == ["cbt", "pain"]
    assert clinical_words_in("Spain and painting") == []


def test_default_rules_exist_for_every_appointment_type():
    assert set(ReminderRule.objects.values_list("appointment_type", "days_before")) == {
        (t, d) for t in ("assessment", "treatment", "review") for d in (2, 0)
    }


def test_a_template_with_a_clinical_word_is_refused_and_nothing_changes(manager):
    from django.core.exceptions import ValidationError

    from scheduling.reminders.models import MessageTemplate
    from scheduling.reminders.services import update_template

    before = MessageTemplate.objects.get(key="reminder").body
    with pytest.raises(ValidationError, match="'therapy'"):
        update_template(key="reminder", body="Hi {first_name}, your therapy call is at {time}. Reply STOP to end texts.", actor=manager)
    assert MessageTemplate.objects.get(key="reminder").body == before


def test_a_template_with_an_unknown_placeholder_is_refused_naming_it(manager):
    from django.core.exceptions import ValidationError

    from scheduling.reminders.services import update_template

    with pytest.raises(ValidationError, match=r"\{surname\}"):
        update_template(key="reminder", body="Hi {surname}. Reply STOP to end texts.", actor=manager)


def test_curly_quotes_typed_into_a_template_are_stored_as_plain_gsm7(manager):
    from scheduling.reminders.services import update_template

    template = update_template(key="reminder", body="Hi {first_name}, we’ll phone you at {time} – reply STOP to end texts.", actor=manager)
    assert "'" in template.body and "-" in template.body
    assert sms_length(template.body).encoding == "GSM-7"


def test_placeholders_with_formatting_are_refused(manager):
    from django.core.exceptions import ValidationError

    from scheduling.reminders.services import update_template

    for body in ("Hi {first_name:>999999}. Reply STOP to end texts.", "Hi {first_name!r}. Reply STOP to end texts."):
        with pytest.raises(ValidationError, match="no formatting"):
            update_template(key="reminder", body=body, actor=manager)


def test_typographic_characters_become_their_gsm7_spelling():
    from scheduling.reminders.content import to_gsm7

    assert to_gsm7("Wait… it’s “fine” – ﬁne, Zoë") == 'Wait... it\'s "fine" - fine, Zoe'
