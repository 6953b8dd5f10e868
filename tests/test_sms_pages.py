"""The staff SMS pages: outbox, message history, replies (admin staff and managers read them);
settings, reminder rules and wording (managers change them, through the services)."""

import datetime as dt

import pytest
from django.urls import reverse

from scheduling.reminders import sending
from scheduling.reminders.replies import handle_inbound
from scheduling.reminders.content import DEFAULT_TEMPLATES
from scheduling.reminders.models import MessageTemplate, OutboundMessage, ReminderRule, SmsSettings
from tests.factories import london

pytestmark = pytest.mark.django_db
S = OutboundMessage.Status
UTC = dt.timezone.utc


def reminder(appointment, days_before=2):
    return OutboundMessage.objects.get(appointment=appointment, kind=f"reminder_{days_before}d")


def page(client, name, *args, **query):
    response = client.get(reverse(name, args=args), query)
    assert response.status_code == 200, response.status_code
    return response.content.decode()


@pytest.fixture
def reply(appointment):
    """The patient texts back asking to rearrange, through the real reply handler."""
    return handle_inbound(
        provider_sid="SMfake0001", from_number=appointment.referral.patient.mobile_phone, to_number="+447700900500",
        body="R", received_at=london(2026, 6, 8, 11, 5),
    )


# --- Who may do what -------------------------------------------------------------------------

READ_PAGES = [("sms:outbox", []), ("sms:message_detail", ["M"]), ("sms:replies", [])]
MANAGER_PAGES = [("sms:settings", []), ("sms:edit_template", ["reminder"]), ("sms:new_rule", []), ("sms:edit_rule", ["R"])]


def url_for(name, args, message, rule):
    return reverse(name, args=[{"M": message.pk, "R": rule.pk}.get(a, a) for a in args])


@pytest.mark.parametrize("name,args", READ_PAGES + MANAGER_PAGES)
def test_a_pwp_is_refused_every_sms_page(client, pwp, appointment, name, args):
    url = url_for(name, args, reminder(appointment), ReminderRule.objects.first())
    client.force_login(pwp)
    assert client.get(url).status_code == 403
    assert client.post(url, {}).status_code == 403


@pytest.mark.parametrize("name,args", READ_PAGES + MANAGER_PAGES)
def test_someone_not_signed_in_is_sent_to_the_sign_in_page(client, appointment, name, args):
    url = url_for(name, args, reminder(appointment), ReminderRule.objects.first())
    response = client.get(url)
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


@pytest.mark.parametrize("name,args", READ_PAGES)
def test_admin_staff_and_managers_can_read_the_outbox_history_and_replies(client, admin_user, manager, appointment, name, args):
    url = url_for(name, args, reminder(appointment), ReminderRule.objects.first())
    for user in (admin_user, manager):
        client.force_login(user)
        assert client.get(url).status_code == 200


@pytest.mark.parametrize("name,args", MANAGER_PAGES)
def test_admin_staff_cannot_change_settings_rules_or_wording(client, admin_user, appointment, name, args):
    rule = ReminderRule.objects.first()
    url = url_for(name, args, reminder(appointment), rule)
    client.force_login(admin_user)
    assert client.get(url).status_code == 403
    posted = {"body": "Hi {first_name}. Reply STOP to end texts.", "save": "1", "appointment_type": "assessment",
              "days_before": "3", "send_at": "09:00", "active": "on", "quiet_hours_start": "21:00",
              "quiet_hours_end": "07:00", "minimum_notice_minutes": "30", "max_send_attempts": "2"}
    assert client.post(url, posted).status_code == 403
    assert MessageTemplate.objects.get(key="reminder").body == DEFAULT_TEMPLATES["reminder"]
    assert not ReminderRule.objects.filter(days_before=3).exists()
    assert SmsSettings.current().quiet_hours_start == dt.time(20, 0)


@pytest.mark.parametrize("name,args", MANAGER_PAGES)
def test_a_manager_can_open_every_editing_page(client, manager, name, args, appointment):
    client.force_login(manager)
    assert client.get(url_for(name, args, reminder(appointment), ReminderRule.objects.first())).status_code == 200


def test_the_texts_link_is_shown_to_admin_staff_and_managers_but_not_to_pwps(client, pwp, admin_user, manager):
    link = f'href="{reverse("sms:outbox")}"'
    for user, shown in ((pwp, False), (admin_user, True), (manager, True)):
        client.force_login(user)
        html = client.get(reverse("caseload:referral_list")).content.decode()
        assert (link in html) is shown, user.username


def test_admin_staff_are_not_offered_the_settings_tab(client, admin_user, manager):
    client.force_login(admin_user)
    assert reverse("sms:settings") not in page(client, "sms:outbox")
    client.force_login(manager)
    assert reverse("sms:settings") in page(client, "sms:outbox")


# --- Outbox ----------------------------------------------------------------------------------

def test_the_outbox_lists_messages_newest_due_first_with_patient_appointment_and_status(client, admin_user, appointment):
    client.force_login(admin_user)
    html = page(client, "sms:outbox")
    patient = appointment.referral.patient
    same_day, early = "Wed 10 Jun 2026 08:00", "Mon 8 Jun 2026 10:00"
    assert html.index(same_day) < html.index(early)
    assert "Reminder on the day" in html and "Reminder 2 days before" in html
    assert f'href="{reverse("caseload:referral_detail", args=[appointment.referral_id])}">{patient.full_name}</a>' in html
    assert "Wed 10 Jun 2026 14:00" in html  # the appointment
    assert '<span class="status-word">Scheduled</span>' in html
    assert reverse("sms:message_detail", args=[reminder(appointment).pk]) in html


def test_times_are_shown_in_uk_time_a_message_due_at_nine_utc_in_july_shows_ten(client, admin_user, new_booking):
    summer = new_booking(start=london(2026, 7, 15, 14), booked_at=london(2026, 7, 1, 9))
    message = reminder(summer)
    assert message.due_at == dt.datetime(2026, 7, 13, 9, 0, tzinfo=UTC)
    client.force_login(admin_user)
    assert "Mon 13 Jul 2026 10:00" in page(client, "sms:outbox")
    assert "Mon 13 Jul 2026 10:00" in page(client, "sms:message_detail", message.pk)


def undelivered(appointment, code="30003"):
    message = reminder(appointment)
    assert sending.apply_delivery_report(message_id=message.pk, reported_status="undelivered", error_code=code,
                                         now=london(2026, 6, 8, 10, 1))
    return message


def test_needs_attention_shows_failed_and_undelivered_messages_with_their_error_described(client, admin_user, appointment, new_booking):
    other = new_booking(start=london(2026, 6, 11, 15), booked_at=london(2026, 6, 1, 9))
    failed = reminder(other)
    sending.apply_delivery_report(message_id=failed.pk, reported_status="failed", error_code="30006")
    not_delivered = undelivered(appointment)
    client.force_login(admin_user)
    html = page(client, "sms:outbox", status="attention")
    assert "Needs attention: <strong>2</strong>" in html
    assert "2 messages, newest due first" in html
    assert "the phone was switched off or unreachable (error 30003)" in html
    assert "the number is a landline or cannot receive texts (error 30006)" in html
    assert '<span class="status-word">Not delivered</span>' in html and '<span class="status-word">Failed</span>' in html
    assert "Scheduled</span>" not in html.split("<table")[1]
    assert {not_delivered.pk, failed.pk} == {
        m.pk for m in OutboundMessage.objects.filter(status__in=[S.FAILED, S.UNDELIVERED])
    }


def test_the_outbox_filters_by_status_kind_and_due_dates_and_counts_statuses_for_the_period(client, admin_user, new_booking, appointment):
    later = new_booking(start=london(2026, 6, 24, 11), booked_at=london(2026, 6, 1, 9))
    undelivered(appointment)
    client.force_login(admin_user)

    html = page(client, "sms:outbox", kind="reminder_0d")
    assert "2 messages" in html and "Reminder 2 days before</td>" not in html

    html = page(client, "sms:outbox", status="scheduled")
    # The same-day one for June 10, both for June 24, and the two booking confirmations due on 1 June.
    assert "5 messages" in html

    html = page(client, "sms:outbox", due_from="2026-06-20", due_to="2026-06-24")
    assert "2 messages" in html and "Mon 22 Jun 2026 10:00" in html and "Wed 24 Jun 2026 08:00" in html
    assert "Mon 8 Jun 2026" not in html
    # Counts are for the period: the undelivered June 8 message is outside it.
    assert '<span class="status-label">Scheduled</span> <strong>2</strong>' in html
    assert '<span class="status-label">Not delivered</span> <strong>0</strong>' in html
    assert "Needs attention: <strong>0</strong>" in html

    html = page(client, "sms:outbox", due_from="2026-06-08", due_to="2026-06-08")
    assert '<span class="status-label">Not delivered</span> <strong>1</strong>' in html
    # The count links keep the period and change only the status.
    assert "?due_from=2026-06-08&amp;due_to=2026-06-08&amp;status=undelivered" in html
    assert later  # used above through its reminders


def test_a_due_date_range_that_ends_before_it_starts_is_refused_naming_the_field(client, admin_user, appointment):
    client.force_login(admin_user)
    response = client.get(reverse("sms:outbox"), {"due_from": "2026-06-10", "due_to": "2026-06-01"})
    assert response.status_code == 400
    assert "Due to: The &#x27;due to&#x27; date is before the &#x27;due from&#x27; date." in response.content.decode()


def test_the_outbox_is_paginated_fifty_to_a_page(client, admin_user, appointment, django_assert_max_num_queries):
    patient = appointment.referral.patient
    OutboundMessage.objects.bulk_create(
        OutboundMessage(patient=patient, kind="opt_in_invitation", body="Hi", due_at=london(2026, 5, 1, 10) + dt.timedelta(hours=i),
                        status=S.SKIPPED, status_reason="test row")
        for i in range(55)
    )
    client.force_login(admin_user)
    with django_assert_max_num_queries(15):  # not one query per row
        first = page(client, "sms:outbox", kind="opt_in_invitation")
    assert "55 messages" in first and "Page 1 of 2" in first
    assert first.count("<tr class=\"status-skipped\">") == 50
    second = page(client, "sms:outbox", kind="opt_in_invitation", page="2")
    assert second.count("<tr class=\"status-skipped\">") == 5
    assert "kind=opt_in_invitation&amp;page=1" in second


# --- Message detail --------------------------------------------------------------------------

def test_the_message_page_shows_body_length_number_sid_and_every_event(client, admin_user, appointment):
    message = reminder(appointment)
    assert sending.send_message(message_id=message.pk, now=london(2026, 6, 8, 10)) == S.DELIVERED
    # A late report: recorded, not applied.
    sending.apply_delivery_report(message_id=message.pk, reported_status="sent", now=london(2026, 6, 8, 10, 2))
    message.refresh_from_db()
    client.force_login(admin_user)
    html = page(client, "sms:message_detail", message.pk)
    assert message.body.replace("'", "&#x27;") in html
    assert f"{len(message.body)} characters, GSM-7, 1 SMS part." in html
    assert f"07700 {message.to_number[-6:]}" in html
    assert message.provider_sid in html
    events_table = html.split('<table class="data events">')[1]
    assert events_table.count("<tr>") == 1 + 4  # header, planned, claimed, handed over, late report
    assert "Planned" in events_table and "Queue worker" in events_table and "Twilio delivery report" in events_table
    assert 'Scheduled <span aria-hidden="true">→</span><span class="visually-hidden">to</span> Sending' in events_table
    assert ">sent</td>" in events_table and '"Applied">No</td>' in events_table
    assert "already at or past this status; recorded only" in events_table
    assert "Mon 8 Jun 2026 10:02:00" in events_table


def test_the_message_page_describes_a_delivery_error(client, admin_user, appointment):
    message = undelivered(appointment, code="30005")
    client.force_login(admin_user)
    html = page(client, "sms:message_detail", message.pk)
    assert html.count("the number is unknown or no longer in use (error 30005)") == 2  # the message, and its event


def test_an_unknown_message_is_not_found(client, admin_user):
    client.force_login(admin_user)
    assert client.get(reverse("sms:message_detail", args=[999999])).status_code == 404


# --- Replies ---------------------------------------------------------------------------------

def test_replies_are_listed_newest_first_with_meaning_handling_and_follow_up(client, admin_user, reply, appointment):
    unknown = handle_inbound(provider_sid="SMfake0002", from_number="+447700900999", to_number="+447700900500",
                             body="who is this?", received_at=london(2026, 6, 9, 12))
    assert reply.appointment == appointment and reply.admin_task is not None and unknown.admin_task is not None
    client.force_login(admin_user)
    html = page(client, "sms:replies")
    assert html.index("who is this?") < html.index(">R</td>")
    assert "Unknown number" in html and "07700 900999" in html
    assert appointment.referral.patient.full_name in html
    assert "Asked to rearrange" in html and "Number not recognised" in html and "Other message" in html
    assert reverse("worklist:task_resolve", args=[reply.admin_task_id]) in html
    assert reverse("worklist:task_resolve", args=[unknown.admin_task_id]) in html
    assert f'{reverse("caseload:referral_detail", args=[appointment.referral_id])}">Appointment Wed 10 Jun 14:00' in html


# --- Settings --------------------------------------------------------------------------------

def test_the_settings_page_shows_the_backend_rules_and_templates(client, manager, settings):
    client.force_login(manager)
    html = page(client, "sms:settings")
    assert "Console: texts are written to the server log and do not leave this machine." in html
    assert html.count("<td>2 days before</td>") == 3 and html.count("<td>On the day</td>") == 3
    assert "10:00" in html and "08:00" in html
    for key in MessageTemplate.Key.values:
        assert reverse("sms:edit_template", args=[key]) in html
    assert reverse("sms:edit_rule", args=[ReminderRule.objects.first().pk]) in html
    settings.SMS_BACKEND = "twilio"
    settings.TWILIO_API_BASE_URL = ""
    settings.SMS_PUBLIC_BASE_URL = ""
    html = page(client, "sms:settings")
    assert "Twilio: texts are sent to patients&#x27; phones." in html
    assert "Off: SMS_PUBLIC_BASE_URL is not set" in html


def test_a_manager_changes_quiet_hours_and_sending_settings(client, manager):
    client.force_login(manager)
    response = client.post(reverse("sms:settings"), {
        "quiet_hours_start": "21:30", "quiet_hours_end": "07:45", "minimum_notice_minutes": "90", "max_send_attempts": "3",
    })
    assert response.status_code == 302 and response["Location"] == reverse("sms:settings")
    current = SmsSettings.current()
    assert (current.quiet_hours_start, current.quiet_hours_end) == (dt.time(21, 30), dt.time(7, 45))
    assert (current.minimum_notice_minutes, current.max_send_attempts, current.updated_by) == (90, 3, manager)
    assert "Saved the SMS settings." in client.get(response["Location"]).content.decode()


@pytest.mark.parametrize("field,value,error", [
    ("max_send_attempts", "11", "Maximum send attempts: Tries must be between 1 and 10."),
    ("minimum_notice_minutes", "2000", "Minimum notice in minutes: Minimum notice cannot be more than a day (1440 minutes)."),
    ("quiet_hours_start", "25:00", "Quiet hours start: Enter the quiet hours start as a 24-hour time, for example 20:00."),
    ("minimum_notice_minutes", "-5", "Minimum notice in minutes: The minimum notice in minutes cannot be less than 0."),
])
def test_bad_settings_are_refused_naming_the_field_and_nothing_changes(client, manager, field, value, error):
    client.force_login(manager)
    posted = {"quiet_hours_start": "21:00", "quiet_hours_end": "07:00", "minimum_notice_minutes": "60", "max_send_attempts": "4"}
    posted[field] = value
    response = client.post(reverse("sms:settings"), posted)
    assert response.status_code == 400
    assert error in response.content.decode()
    assert SmsSettings.current().quiet_hours_start == dt.time(20, 0)


# --- Reminder rules --------------------------------------------------------------------------

def test_a_manager_adds_a_reminder_rule(client, manager):
    client.force_login(manager)
    assert 'value="review" selected' in page(client, "sms:new_rule", type="review")
    response = client.post(reverse("sms:new_rule"), {
        "appointment_type": "review", "days_before": "5", "send_at": "11:15", "active": "on",
    })
    assert response.status_code == 302 and response["Location"] == reverse("sms:settings")
    rule = ReminderRule.objects.get(appointment_type="review", days_before=5)
    assert (rule.send_at, rule.active, rule.template, rule.updated_by) == (dt.time(11, 15), True, "reminder", manager)
    assert "Saved the reminder: Review: 5 days before at 11:15." in client.get(response["Location"]).content.decode()


def test_a_manager_changes_a_rule_time_and_switches_it_off(client, manager):
    rule = ReminderRule.objects.get(appointment_type="treatment", days_before=2)
    client.force_login(manager)
    html = page(client, "sms:edit_rule", rule.pk)
    assert 'value="10:00"' in html and 'value="2"' in html
    response = client.post(reverse("sms:edit_rule", args=[rule.pk]), {
        "appointment_type": "treatment", "days_before": "3", "send_at": "09:30",
    })
    assert response.status_code == 302
    rule.refresh_from_db()
    assert (rule.days_before, rule.send_at, rule.active) == (3, dt.time(9, 30), False)


def test_a_second_rule_for_the_same_days_before_is_refused_and_nothing_is_saved(client, manager):
    client.force_login(manager)
    response = client.post(reverse("sms:new_rule"), {
        "appointment_type": "assessment", "days_before": "2", "send_at": "15:00", "active": "on",
    })
    assert response.status_code == 400
    assert "Days before: There is already a reminder that many days before for this appointment type." in response.content.decode()
    assert ReminderRule.objects.get(appointment_type="assessment", days_before=2).send_at == dt.time(10, 0)
    assert ReminderRule.objects.filter(appointment_type="assessment").count() == 2


def test_days_before_beyond_two_weeks_is_refused_naming_the_field(client, manager):
    rule = ReminderRule.objects.get(appointment_type="assessment", days_before=2)
    client.force_login(manager)
    response = client.post(reverse("sms:edit_rule", args=[rule.pk]), {
        "appointment_type": "assessment", "days_before": "15", "send_at": "10:00", "active": "on",
    })
    assert response.status_code == 400
    assert "Days before: Days before must be between 0 (on the day) and 14." in response.content.decode()
    rule.refresh_from_db()
    assert rule.days_before == 2


# --- Template wording ------------------------------------------------------------------------

NEW_WORDING = "Hi {first_name}, we will ring you on {day} {date} at {time}. Reply C to confirm, R to rearrange, STOP to end texts."


def post_template(client, body, button="save", key="reminder"):
    return client.post(reverse("sms:edit_template", args=[key]), {"body": body, button: "1"})


def test_the_template_page_shows_placeholders_sample_preview_and_length(client, manager):
    client.force_login(manager)
    html = page(client, "sms:edit_template", "reminder")
    assert "{first_name}" in html and "The patient&#x27;s first name" in html
    sample = ("Hi Alexandra, a reminder that we will phone you on Wednesday 30 September at 2:45pm. "
              "Reply C to confirm, R to rearrange, STOP to end texts.")
    assert sample in html
    assert f"Sample message: {len(sample)} characters, GSM-7, 1 SMS part." in html
    assert 'aria-live="polite"' in html and "js/sms-length.js" in html
    assert "<script>" not in html  # the CSP forbids inline scripts


def test_a_manager_saves_new_wording(client, manager):
    client.force_login(manager)
    response = post_template(client, NEW_WORDING)
    assert response.status_code == 302 and response["Location"] == reverse("sms:settings")
    template = MessageTemplate.objects.get(key="reminder")
    assert (template.body, template.updated_by) == (NEW_WORDING, manager)
    assert "Saved the wording of" in client.get(response["Location"]).content.decode()


def test_preview_shows_the_sample_and_does_not_save(client, manager):
    client.force_login(manager)
    response = post_template(client, NEW_WORDING, button="preview")
    assert response.status_code == 200
    html = response.content.decode()
    assert "Hi Alexandra, we will ring you on Wednesday 30 September at 2:45pm." in html
    assert "Preview (not saved)" in html
    assert MessageTemplate.objects.get(key="reminder").body == DEFAULT_TEMPLATES["reminder"]


def test_an_unknown_placeholder_is_refused_naming_it_and_the_template_is_unchanged(client, manager):
    client.force_login(manager)
    response = post_template(client, "Hi {first_name} {surname}, we will phone at {time}. Reply STOP to end texts.")
    assert response.status_code == 400
    html = response.content.decode()
    assert "Unknown placeholder(s): {surname}." in html
    assert 'id="id_body_error"' in html and 'aria-invalid="true"' in html
    assert MessageTemplate.objects.get(key="reminder").body == DEFAULT_TEMPLATES["reminder"]


def test_a_message_without_stop_is_refused(client, manager):
    client.force_login(manager)
    response = post_template(client, "Hi {first_name}, we will phone you at {time}.")
    assert response.status_code == 400
    assert "Every message must tell people they can reply STOP." in response.content.decode()
    assert MessageTemplate.objects.get(key="reminder").body == DEFAULT_TEMPLATES["reminder"]


def test_an_empty_message_is_refused(client, manager):
    client.force_login(manager)
    response = post_template(client, "   ")
    assert response.status_code == 400
    assert "The message cannot be empty." in response.content.decode()


def test_clinical_words_are_named_in_the_preview_and_saving_them_is_refused(client, manager):
    """The service refuses clinical words (a lock screen can be read by anyone): the page warns
    while previewing and shows the refusal next to the field when saving; nothing changes."""
    body = "Hi {first_name}, your pain therapy call is on {day} at {time}. Reply STOP to end texts."
    client.force_login(manager)
    preview = post_template(client, body, button="preview")
    assert preview.status_code == 200
    html = preview.content.decode()
    assert "Remove: pain, therapy." in html
    assert "Hi Alexandra, your pain therapy call is on Wednesday at 2:45pm." in html
    saved = post_template(client, body)
    assert saved.status_code == 400
    assert "remove &#x27;pain&#x27;, &#x27;therapy&#x27;." in saved.content.decode()
    assert MessageTemplate.objects.get(key="reminder").body == DEFAULT_TEMPLATES["reminder"]


def test_characters_outside_gsm7_are_warnings_and_curly_quotes_are_saved_plain(client, manager):
    client.force_login(manager)
    body = "Hi {first_name}, we’ll phone you at {time} ✓ Reply STOP to end texts."
    html = post_template(client, body, button="preview").content.decode()
    assert "Not in the GSM-7 alphabet: ✓." in html
    assert "Saved as GSM-7: ’ becomes &#x27;." in html
    sample = "Hi Alexandra, we'll phone you at 2:45pm ✓ Reply STOP to end texts."
    assert f"Sample message: {len(sample)} characters, UCS-2, 1 SMS part." in html
    response = post_template(client, body)
    assert response.status_code == 302
    assert MessageTemplate.objects.get(key="reminder").body == "Hi {first_name}, we'll phone you at {time} ✓ Reply STOP to end texts."
    assert "which are not in the GSM-7 alphabet" in client.get(response["Location"]).content.decode()


def test_a_long_message_counts_its_parts(client, manager):
    client.force_login(manager)
    body = "Hi {first_name}. " + "x" * 150 + " Reply STOP to end texts."
    html = post_template(client, body, button="preview").content.decode()
    length = len("Hi Alexandra. ") + 150 + len(" Reply STOP to end texts.")
    assert f"Sample message: {length} characters, GSM-7, 2 SMS parts." in html


def test_a_placeholder_with_formatting_gets_no_preview_but_no_crash(client, manager):
    client.force_login(manager)
    response = post_template(client, "Hi {first_name:>999999999999}. Reply STOP to end texts.", button="preview")
    assert response.status_code == 200
    assert "No preview: a placeholder is not one of those listed below" in response.content.decode()


def test_an_unknown_template_key_is_not_found(client, manager):
    client.force_login(manager)
    assert client.get(reverse("sms:edit_template", args=["nonsense"])).status_code == 404


def test_the_rule_list_uses_the_saved_wording_for_new_bookings(client, manager, new_booking):
    client.force_login(manager)
    assert post_template(client, NEW_WORDING).status_code == 302
    appointment = new_booking(start=london(2026, 6, 10, 14), booked_at=london(2026, 6, 1, 9))
    assert reminder(appointment).body.startswith("Hi Test, we will ring you on Wednesday 10 June at 2pm.")
