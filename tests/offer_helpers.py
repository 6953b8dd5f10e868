"""Helpers for the sooner-slot offer tests: offers on, a PWP's diary, waiting referrals, replies by text."""

import datetime as dt
import itertools

from scheduling.offers.models import OfferSettings
from scheduling.reminders.replies import handle_inbound
from tests.booking_helpers import give_pattern
from tests.factories import make_patient, make_referral

_sids = itertools.count(1)


def offers_on(**values) -> OfferSettings:
    values = {"enabled": True, "minimum_notice_hours": 24, "wave_size": 3, "minutes_between_waves": 30, **values}
    OfferSettings.objects.update_or_create(pk=1, defaults=values)
    return OfferSettings.current()


def waiting(pwp, received_on: dt.date, **patient):
    """A referral on `pwp`'s caseload, waiting for its assessment since `received_on`."""
    return make_referral(pwp, patient=make_patient(**patient), received_on=received_on)


def reply(patient, body: str, *, at=None):
    return handle_inbound(provider_sid=f"SMoffer{next(_sids):06d}", from_number=patient.mobile_phone, to_number="+447700900000",
                          body=body, received_at=at)


__all__ = ["give_pattern", "offers_on", "reply", "waiting"]
