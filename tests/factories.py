"""Plain helpers that build test data through the service functions (fictional phones, 999 NHS numbers)."""

import itertools
from datetime import date, datetime

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from scheduling import roles
from scheduling.caseload.models import Patient, PractitionerProfile, Team
from scheduling.caseload.nhs_number import check_digit
from scheduling.caseload.services import create_referral, register_patient
from scheduling.uktime import LONDON

_counter = itertools.count(1)


def london(year, month, day, hour=0, minute=0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=LONDON)


def next_nhs_number() -> str:
    """The next valid test-range number no patient has: the demo seed draws from the same 999 range at
    random, and a test that seeds it and then makes patients must not collide with one of them."""
    while True:
        first_nine = f"999{next(_counter):06d}"
        digit = check_digit(first_nine)
        if digit is not None and not Patient.objects.filter(nhs_number=f"{first_nine}{digit}").exists():
            return f"{first_nine}{digit}"


def make_user(username: str, role: str | None = None, *, practitioner: bool = False, **extra):
    user = get_user_model().objects.create_user(
        username=username, password="test-pass-123", first_name=username.title(), last_name="Tester", **extra
    )
    if role:
        user.groups.add(Group.objects.get(name=role))
    if practitioner or role == roles.PWP:
        team, _ = Team.objects.get_or_create(name="Test team")
        PractitionerProfile.objects.create(user=user, team=team)
    return user


def make_patient(**overrides):
    n = next(_counter) % 1000
    values = dict(
        nhs_number=next_nhs_number(),
        given_name="Test",
        family_name=f"Patient{n}",
        date_of_birth=date(1970, 5, 17),
        mobile_phone=f"07700 900{n:03d}",
        sms_consent=True,
        voicemail_allowed=True,
    )
    values.update(overrides)
    return register_patient(**values)


def make_referral(practitioner=None, *, patient=None, received_on=None, actor=None, **overrides):
    from django.utils import timezone

    values = dict(
        patient=patient or make_patient(),
        source="A1",
        received_on=received_on or timezone.localdate(),
        reason="Chronic widespread pain",
        assigned_practitioner=practitioner,
        actor=actor,
    )
    values.update(overrides)
    return create_referral(**values)
