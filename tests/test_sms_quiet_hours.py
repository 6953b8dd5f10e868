"""Quiet hours that start and end at the same time are refused: the sender would read them as none at all."""

import datetime as dt

import pytest
from django.urls import reverse

from scheduling.reminders.models import SmsSettings

pytestmark = pytest.mark.django_db


def post(client, **overrides):
    data = {"quiet_hours_start": "21:00", "quiet_hours_end": "07:00", "minimum_notice_minutes": "60", "max_send_attempts": "4"}
    data.update(overrides)
    return client.post(reverse("sms:settings"), data)


def test_quiet_hours_that_start_and_end_at_the_same_time_are_refused_beside_the_end_field(client, manager):
    client.force_login(manager)
    response = post(client, quiet_hours_start="22:00", quiet_hours_end="22:00")
    assert response.status_code == 400
    errors = response.context["form"].errors
    assert list(errors) == ["quiet_hours_end"]
    assert "cannot start and end at the same time (22:00)" in errors["quiet_hours_end"][0]
    assert 'href="#id_quiet_hours_end">Quiet hours end: Quiet hours cannot start and end' in response.content.decode()
    current = SmsSettings.current()
    assert (current.quiet_hours_start, current.quiet_hours_end, current.updated_by) == (dt.time(20), dt.time(8), None)


def test_every_settings_problem_is_shown_at_once(client, manager):
    client.force_login(manager)
    response = post(client, quiet_hours_start="06:00", quiet_hours_end="06:00", max_send_attempts="11")
    assert set(response.context["form"].errors) == {"quiet_hours_end", "max_send_attempts"}
