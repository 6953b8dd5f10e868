"""Writes from the self-service page: counting requests (rate limits), checking the date of birth (three wrong
lock the link and tell the worklist), the patient's own confirm, cancel and move, and taking an offered time.
Each change is audited as done by the patient, self-service (AuditEntry.Via.SELF_SERVICE, no staff actor)."""

import datetime as dt
import hashlib
import hmac

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from scheduling import patient_links
from scheduling.audit import AuditEntry, record_change
from scheduling.booking.models import Rearrangement
from scheduling.booking.services import (
    AlreadyCancelled, AlreadyRearranged, cancel_appointment, confirm_appointment, rearrange_appointment,
)
from scheduling.codes import TaskKind, TaskSource
from scheduling.offers.services import Acceptance, accept_offer
from scheduling.patient_links import PatientLink
from scheduling.selfservice import selectors
from scheduling.selfservice.models import RateCounter
from scheduling.worklist.services import raise_admin_task

VIA = AuditEntry.Via.SELF_SERVICE
SOURCE_WORDS = "self-service"  # how confirm_appointment's "by ..." names this page

# --- Rate limits ----------------------------------------------------------------------------------

RATE_WINDOW = dt.timedelta(minutes=10)
# Per link: a patient going through every step twice uses about 20; a script trying dates uses them fast.
LINK_REQUESTS_PER_WINDOW = 40
# Per client address: several people in one household or behind one mobile network address share it.
ADDRESS_REQUESTS_PER_WINDOW = 100
COUNTERS_KEPT = dt.timedelta(days=1)


class RateLimited(Exception):
    pass


def _window_start(now: dt.datetime) -> dt.datetime:
    seconds = int(RATE_WINDOW.total_seconds())
    stamp = int(now.timestamp())
    return dt.datetime.fromtimestamp(stamp - stamp % seconds, tz=dt.timezone.utc)


def _count(key: str, *, now) -> int:
    """Add one request to `key`'s current window and return the window's total (one UPDATE, or an INSERT for
    the window's first request; two first requests at once meet the unique constraint and the loser updates)."""
    start = _window_start(now)
    with transaction.atomic():
        if RateCounter.objects.filter(key=key, window_start=start).update(hits=F("hits") + 1) == 0:
            try:
                with transaction.atomic():
                    RateCounter.objects.create(key=key, window_start=start, hits=1)
                RateCounter.objects.filter(window_start__lt=now - COUNTERS_KEPT).delete()
            except IntegrityError:
                RateCounter.objects.filter(key=key, window_start=start).update(hits=F("hits") + 1)
        return RateCounter.objects.filter(key=key, window_start=start).values_list("hits", flat=True).first() or 0


def address_key(address: str) -> str:
    """The client's address, keyed-hashed: counters never hold an address itself."""
    digest = hmac.new(settings.SECRET_KEY.encode(), f"selfservice-addr:{address}".encode(), hashlib.sha256)
    return "addr:" + digest.hexdigest()[:40]


def count_address_request(*, address: str, now=None) -> None:
    if _count(address_key(address or "unknown"), now=now or timezone.now()) > ADDRESS_REQUESTS_PER_WINDOW:
        raise RateLimited


def count_link_request(*, token_hash: str, now=None) -> None:
    # Counted by the token's hash, known after the signature check and before any read of the link.
    if _count(f"link:{token_hash[:40]}", now=now or timezone.now()) > LINK_REQUESTS_PER_WINDOW:
        raise RateLimited


# --- The date of birth ----------------------------------------------------------------------------


def check_date_of_birth(*, link: PatientLink, date_of_birth: dt.date | None, now=None) -> bool:
    """True if it is the patient's. A wrong one counts against the link (a patient with no date of birth on
    record cannot pass: the page tells them to phone); the third wrong one locks the link, raises a worklist
    task and puts a line on the record, in one transaction."""
    now = now or timezone.now()
    patient = link.patient
    if date_of_birth is not None and patient.date_of_birth is not None and date_of_birth == patient.date_of_birth:
        patient_links.record_right_date_of_birth(link=link, now=now)
        return True
    with transaction.atomic():
        link = patient_links.record_wrong_date_of_birth(link=link, now=now)
        if link.just_locked:
            appointment = link.appointment  # None for an offer's link: its referral is the offer's
            referral = appointment.referral if appointment is not None else link.offer.referral
            raise_admin_task(
                kind=TaskKind.SELF_SERVICE_LOCKED, source=TaskSource.SELF_SERVICE, appointment=appointment,
                referral=referral, patient=patient,
                detail="Three wrong dates of birth were entered on the patient's self-service link, so it is locked. "
                "Check with the patient; texts after this carry a new link.",
            )
            record_change(
                referral=referral, appointment=appointment, field="self_service_link", old="open",
                new="locked", reason="three wrong dates of birth", at=now, via=VIA,
            )
    return False


# --- What the patient does ------------------------------------------------------------------------


def _actionable(link: PatientLink, *, now):
    state = selectors.page_state(link, now=now)
    if state.cancelled:
        raise ValidationError("This phone call was already cancelled.", code="already_cancelled")
    if state.over:
        raise ValidationError("This phone call has already happened or started.", code="over")
    return state.appointment


def confirm(*, link: PatientLink, now=None) -> bool:
    """The patient says they will be there. Confirming again changes nothing (returns False)."""
    now = now or timezone.now()
    appointment = selectors.live_appointment(link)
    if appointment.confirmed_at is not None:
        return False
    appointment = _actionable(link, now=now)
    return confirm_appointment(appointment=appointment, at=now, source=SOURCE_WORDS, via=VIA)


def cancel(*, link: PatientLink, now=None):
    """The patient cancels: recorded as cancelled by the patient, asked now, so the notice and whether it was
    late are worked out and counted as for any cancellation. Cancelling again raises AlreadyCancelled."""
    now = now or timezone.now()
    appointment = selectors.live_appointment(link)
    if appointment.is_cancelled and not Rearrangement.objects.filter(original=appointment).exists():
        raise AlreadyCancelled("This phone call was already cancelled.", appointment=appointment, code="already_cancelled")
    appointment = _actionable(link, now=now)
    return cancel_appointment(
        appointment=appointment, cancelled_by="patient", reason="Cancelled by the patient on the self-service page",
        asked_at=now, via=VIA,
    )


def move(*, link: PatientLink, new_start: dt.datetime, now=None) -> Rearrangement:
    """The patient picks one of the times the page offers: a rearrangement asked by the patient (a late one
    counts as a late cancellation, as always), with the lead time and the diary enforced. A time not offered
    now (taken meanwhile, or made up) is refused. The link then leads to, and lasts until, the new time."""
    now = now or timezone.now()
    live = selectors.live_appointment(link)
    if live.pk != link.appointment_id and live.start == new_start and not live.is_cancelled:
        # The same pick sent twice: it was moved there already.
        raise AlreadyRearranged("Already moved to that time.", appointment=live, code="already_rearranged")
    appointment = _actionable(link, now=now)
    offered = {slot.start for slot in selectors.times_to_move_to(appointment, now=now)}
    if new_start not in offered:
        raise ValidationError("That time is no longer free. Please pick another.", code="not_offered")
    rearrangement = rearrange_appointment(
        appointment=appointment, new_start=new_start, asked_by=Rearrangement.AskedBy.PATIENT,
        reason="The patient picked a new time on the self-service page", asked_at=now, enforce_lead_time=True,
        enforce_availability=True, via=VIA,
    )
    patient_links.follow_link_to(link=link, appointment=rearrangement.replacement)
    return rearrangement


def take_offer(*, link: PatientLink, now=None) -> Acceptance:
    """The patient takes the time their offer link names: offers' one accept_offer, as a "YES <code>" reply
    is, audited as by the patient, self-service. Nothing is texted when it has gone: the page says so."""
    if link.purpose != PatientLink.Purpose.OFFER:
        raise ValidationError("This link is not for an offered time.", code="not_an_offer")
    return accept_offer(invitation=link.offer, at=now or timezone.now(), via=VIA)
