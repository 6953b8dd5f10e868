"""The outbox's "Needs attention" link lists exactly the messages its number counted, whatever filter is set."""

import re
from html import unescape
from urllib.parse import urlencode

import pytest
from django.urls import reverse

from scheduling.reminders import sending
from scheduling.reminders.models import OutboundMessage
from tests.factories import london
from tests.test_sms_pages import reminder

pytestmark = pytest.mark.django_db


@pytest.fixture
def outbox(new_booking):
    """Three appointments' reminders: one failed, one not delivered, the rest scheduled."""
    first = new_booking(start=london(2026, 6, 10, 14), booked_at=london(2026, 6, 1, 9))
    second = new_booking(start=london(2026, 6, 11, 15), booked_at=london(2026, 6, 1, 9))
    new_booking(start=london(2026, 6, 24, 11), booked_at=london(2026, 6, 1, 9))
    sending.apply_delivery_report(message_id=reminder(first).pk, reported_status="undelivered", error_code="30003",
                                  now=london(2026, 6, 8, 10, 1))
    sending.apply_delivery_report(message_id=reminder(second).pk, reported_status="failed", error_code="30006")
    return OutboundMessage.objects.filter(status__in=["failed", "undelivered"])


def attention(client, query: str):
    html = client.get(reverse("sms:outbox") + query).content.decode()
    count = int(re.search(r"Needs attention: <strong>(\d+)</strong>", html).group(1))
    href = unescape(re.search(r'<p class="attention[^"]*">\s*<a href="([^"]+)"', html).group(1))
    return count, href


@pytest.mark.parametrize("query", [
    {},
    {"status": "scheduled"},
    {"status": "delivered"},
    {"kind": "reminder_2d"},
    {"kind": "reminder_0d"},
    {"due_from": "2026-06-08", "due_to": "2026-06-09"},
    {"status": "failed", "kind": "reminder_2d", "due_from": "2026-06-01"},
    {"status": "attention"},
    {"page": "2"},
    {"status": "", "kind": "", "due_from": "", "due_to": ""},  # as the filter form submits when left blank
])
def test_the_needs_attention_link_lists_the_messages_it_counted(client, admin_user, outbox, query):
    client.force_login(admin_user)
    count, href = attention(client, "?" + urlencode(query))
    assert href.startswith("?")
    landed = client.get(reverse("sms:outbox") + href)
    assert landed.status_code == 200
    rows = list(landed.context["page"].object_list)
    assert len(rows) == count
    assert {m.status for m in rows} <= {"failed", "undelivered"}
    # Following the link again shows the same number: the link is stable.
    assert attention(client, href)[0] == count
