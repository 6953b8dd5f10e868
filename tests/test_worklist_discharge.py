"""The contact policy's "unable to contact" suggestion reaches admin staff and is acted on there."""

import time_machine
from django.urls import reverse

from scheduling.worklist.selectors import admin_worklist
from scheduling.audit import AuditEntry
from scheduling.caseload.models import Referral
from tests.factories import london, make_referral
from tests.test_call_list_outcomes import _policy_sequence

AFTER_DEADLINE = london(2026, 3, 27, 9, 0)


def unreachable_referral(pwp, admin_user):
    with time_machine.travel(london(2026, 3, 9, 12, 0), tick=False):
        referral = make_referral(pwp, actor=admin_user)
    _policy_sequence(referral, pwp, received=referral.received_on)
    return referral


def test_a_suggested_discharge_is_listed_once_on_the_worklist_with_its_end_code(pwp, admin_user):
    referral = unreachable_referral(pwp, admin_user)
    with time_machine.travel(AFTER_DEADLINE, tick=False):
        items = [i for i in admin_worklist() if i.referral_id == referral.pk]
    assert [i.kind for i in items] == ["suggest_discharge"]
    assert items[0].label == "Suggest discharge: unable to contact (end of care: not assessed (including unable to contact))"
    assert "end_code=50" in items[0].action_url and "reason=Unable+to+contact" in items[0].action_url


def test_admin_staff_discharge_from_the_worklist_and_the_item_clears(client, pwp, admin_user):
    referral = unreachable_referral(pwp, admin_user)
    client.force_login(admin_user)
    with time_machine.travel(AFTER_DEADLINE, tick=False):
        [item] = [i for i in admin_worklist() if i.referral_id == referral.pk]
        page = client.get(item.action_url).content.decode()
        assert 'value="50" selected' in page and 'value="Unable to contact"' in page
        response = client.post(
            reverse("caseload:discharge", args=[referral.pk]), {"end_code": "50", "reason": "Unable to contact"}
        )
        assert response.status_code == 302 and response["Location"] == reverse("worklist:index")
        assert not [i for i in admin_worklist() if i.referral_id == referral.pk]
    referral.refresh_from_db()
    assert (referral.status, referral.end_code) == (Referral.Status.DISCHARGED, "50")
    assert AuditEntry.objects.filter(referral=referral, field="end_code", new_value="50", actor=admin_user).exists()


def test_a_pwp_cannot_discharge(client, pwp, referral):
    client.force_login(pwp)
    response = client.post(reverse("caseload:discharge", args=[referral.pk]), {"end_code": "50", "reason": "x"})
    assert response.status_code == 403
    referral.refresh_from_db()
    assert referral.status == Referral.Status.AWAITING_CONTACT


def test_a_refused_discharge_shows_why_and_changes_nothing(client, admin_user, referral):
    client.force_login(admin_user)
    response = client.post(reverse("caseload:discharge", args=[referral.pk]), {"end_code": "46", "reason": "Done"})
    assert response.status_code == 200
    assert "for people who started treatment" in response.content.decode()
    referral.refresh_from_db()
    assert referral.status == Referral.Status.AWAITING_CONTACT
