from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse
from django.utils import timezone

from scheduling import roles
from scheduling.audit import AuditEntry
from scheduling.caseload.models import CaseloadCover, ClinicalNote
from scheduling.caseload.patient_details import change_patient_details, details_version
from tests.factories import make_referral

NOTE_TEXT = "Sleep poor; pacing plan discussed."


@pytest.fixture
def note(referral, pwp):
    return ClinicalNote.objects.create(referral=referral, author=pwp, text=NOTE_TEXT)


@pytest.mark.parametrize("url", ["/", "/referrals/", "/referrals/1/"])
def test_every_page_needs_a_login(client, db, url):
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_a_pwp_opens_a_referral_on_their_own_caseload(client, pwp, referral):
    client.force_login(pwp)
    assert client.get(reverse("caseload:referral_detail", args=[referral.pk])).status_code == 200


def test_a_pwp_cannot_open_another_pwps_patient(client, other_pwp, referral):
    client.force_login(other_pwp)
    assert client.get(reverse("caseload:referral_detail", args=[referral.pk])).status_code == 403


def test_a_pwp_covering_a_caseload_can_open_it_only_while_covering(client, pwp, other_pwp, referral, manager):
    today = timezone.localdate()
    cover = CaseloadCover.objects.create(
        covering=other_pwp, covered=pwp, starts_on=today - timedelta(days=1), ends_on=today, created_by=manager
    )
    client.force_login(other_pwp)
    url = reverse("caseload:referral_detail", args=[referral.pk])
    assert client.get(url).status_code == 200
    CaseloadCover.objects.filter(pk=cover.pk).update(ends_on=today - timedelta(days=1))
    assert client.get(url).status_code == 403


def test_a_pwps_referral_list_shows_only_their_caseload(client, pwp, other_pwp, admin_user):
    mine = make_referral(pwp, actor=admin_user)
    theirs = make_referral(other_pwp, actor=admin_user)
    client.force_login(pwp)
    page = client.get(reverse("caseload:referral_list")).content.decode()
    assert mine.patient.family_name in page
    assert theirs.patient.family_name not in page


def test_admin_staff_open_any_referral_but_never_read_clinical_notes(client, admin_user, referral, note):
    client.force_login(admin_user)
    response = client.get(reverse("caseload:referral_detail", args=[referral.pk]))
    assert response.status_code == 200
    assert NOTE_TEXT not in response.content.decode()
    assert not admin_user.has_perm("scheduling.view_clinicalnote")


@pytest.mark.parametrize("who", ["pwp", "manager"])
def test_clinicians_and_managers_read_clinical_notes(client, request, referral, note, who):
    client.force_login(request.getfixturevalue(who))
    assert NOTE_TEXT in client.get(reverse("caseload:referral_detail", args=[referral.pk])).content.decode()


def test_admin_staff_cannot_read_clinical_notes_in_django_admin_either(client, admin_user, note):
    admin_user.is_staff = True
    admin_user.save()
    client.force_login(admin_user)
    assert client.get(reverse("admin:scheduling_clinicalnote_changelist")).status_code == 403


def test_the_roles_carry_the_permissions_the_service_expects(db):
    def perms(role):
        return set(Group.objects.get(name=role).permissions.values_list("codename", flat=True))

    assert {"log_contact", "view_clinicalnote"} <= perms(roles.PWP)
    assert "book_appointments" not in perms(roles.PWP)
    assert {"book_appointments", "view_all_caseloads", "add_referral"} <= perms(roles.ADMIN_STAFF)
    assert "view_clinicalnote" not in perms(roles.ADMIN_STAFF)
    assert {"view_reports", "view_all_caseloads", "view_clinicalnote", "manage_service_settings"} <= perms(roles.MANAGER)


def test_call_records_cannot_be_deleted_or_changed_in_django_admin(client, manager, referral, pwp):
    from scheduling.calls.services import log_contact_attempt

    attempt = log_contact_attempt(referral=referral, practitioner=pwp, outcome="no_answer", actor=pwp)
    client.force_login(manager)
    assert client.get(reverse("admin:scheduling_contactattempt_delete", args=[attempt.pk])).status_code == 403
    response = client.post(reverse("admin:scheduling_contactattempt_change", args=[attempt.pk]), {"outcome": "answered"})
    assert response.status_code == 403
    attempt.refresh_from_db()
    assert attempt.outcome == "no_answer"


def test_managers_read_patient_detail_changes_and_worklist_claims_in_django_admin_without_the_numbers(
    client, manager, referral, admin_user
):
    patient = referral.patient
    change_patient_details(
        patient=patient, actor=admin_user, version=details_version(patient), given_name=patient.given_name,
        family_name=patient.family_name, date_of_birth=patient.date_of_birth, mobile_phone="07700 900456",
        other_phone=patient.other_phone, sms_consent=patient.sms_consent, voicemail_allowed=patient.voicemail_allowed,
        preferred_days=patient.preferred_days, preferred_times=patient.preferred_times,
    )
    client.force_login(manager)
    listing = client.get(reverse("admin:scheduling_auditentry_changelist"), {"subject_type": "patient"})
    assert listing.status_code == 200 and "mobile_phone" in listing.content.decode()
    assert "900456" not in listing.content.decode()
    change = AuditEntry.objects.get(patient=patient, field="mobile_phone")
    entry_page = client.get(reverse("admin:scheduling_auditentry_change", args=[change.pk]))
    assert entry_page.status_code == 200 and "900456" not in entry_page.content.decode()
    assert client.get(reverse("admin:scheduling_auditentry_delete", args=[change.pk])).status_code == 403
    assert client.get(reverse("admin:scheduling_worklistclaim_changelist")).status_code == 200


def _every_route_path(patterns=None, prefix="", namespace=""):
    """(route name, a path that reaches it) for every route, with each <converter:name> given a plain value."""
    import re as _re

    from django.urls import URLPattern, URLResolver, get_resolver

    for entry in get_resolver().url_patterns if patterns is None else patterns:
        here = prefix + str(entry.pattern)
        if isinstance(entry, URLResolver):
            if here.startswith("admin/"):
                continue  # Django's admin has its own login (a redirect to admin:login)
            inner = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
            yield from _every_route_path(entry.url_patterns, here, inner)
        elif isinstance(entry, URLPattern):
            path = _re.sub(r"<int:\w+>", "1", here)
            path = _re.sub(r"<(str|slug):\w+>", "x", path)
            yield f"{namespace}{entry.name}", "/" + path.lstrip("^").rstrip("$")


ANONYMOUS_ROUTES = {
    "login", "healthz", "selfservice:start", "selfservice:confirm", "selfservice:cancel", "selfservice:move", "selfservice:take",
}


def test_only_the_patient_self_service_page_login_and_healthz_open_without_a_login(client, db):
    opened = set()
    for name, path in _every_route_path():
        response = client.get(path)
        if not (response.status_code == 302 and response["Location"].startswith(reverse("login"))):
            opened.add(name)
    # Webhooks check Twilio's signature instead of a login (their own tests); everything else is login-only.
    assert opened - {"sms:twilio_status", "sms:twilio_inbound", "logout", "healthz"} == ANONYMOUS_ROUTES - {"healthz"}, opened
