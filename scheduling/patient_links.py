"""The patient's self-service link: a short, signed, single-patient address to a page that needs no login.

A base module, so the reminders layer can put a link into a text and the self-service page can resolve one;
it imports no capability (its foreign keys are lazy references and the appointment is passed in).

The token is 28 URL-safe characters: 12 random bytes (96 bits, from `secrets`) then the first 9 bytes of an
HMAC-SHA256 of them keyed from SECRET_KEY (django.utils.crypto.salted_hmac), base64url without padding.
The signature is checked before any database read, so a guessed or altered token costs no query and is
refused the same way. The database keeps only a SHA-256 of the random part: someone reading the table cannot
rebuild a link (they would need SECRET_KEY too). Rotating SECRET_KEY ends every link.

A link names one patient and one purpose: an appointment (expiring at its end), or one patient's offer of a
sooner slot (Purpose.OFFER, naming the OfferInvitation by a lazy reference, expiring when the offer does).
Three wrong dates of birth lock it (held on the row, so across processes and devices); it is never deleted."""

import base64
import binascii
import hashlib
import secrets
from dataclasses import dataclass

from django.conf import settings
from django.db import models, transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.crypto import constant_time_compare, salted_hmac

RANDOM_BYTES = 12  # 96 bits
SIGNATURE_BYTES = 9
TOKEN_LENGTH = 28  # base64url of 21 bytes, no padding
PATH_PREFIX = "/s/"  # the short link is SMS_PUBLIC_BASE_URL + "/s/" + token
MAX_WRONG_TRIES = 3
_SALT = "scheduling.patient_links"


class PatientLink(models.Model):
    class Purpose(models.TextChoices):
        APPOINTMENT = "appointment", "An appointment"
        OFFER = "offer", "An offered time"  # a sooner-slot offer (scheduling.offers)

    patient = models.ForeignKey("scheduling.Patient", on_delete=models.PROTECT, related_name="self_service_links")
    appointment = models.ForeignKey(
        "scheduling.Appointment", on_delete=models.PROTECT, related_name="self_service_links", null=True, blank=True
    )
    # A lazy reference: this base module imports no capability.
    offer = models.ForeignKey(
        "scheduling.OfferInvitation", on_delete=models.PROTECT, related_name="self_service_links", null=True, blank=True
    )
    purpose = models.CharField(max_length=20, choices=Purpose.choices, default=Purpose.APPOINTMENT)
    # SHA-256 (hex) of the token's random part; the token itself is never stored.
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    expires_at = models.DateTimeField()
    wrong_tries = models.PositiveSmallIntegerField(default=0)
    locked_at = models.DateTimeField(null=True, blank=True)
    verified_at = models.DateTimeField(null=True, blank=True)  # the last right date of birth
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["appointment", "created_at"], name="patient_link_appt_idx")]
        constraints = [
            models.CheckConstraint(
                condition=~Q(purpose="appointment") | Q(appointment__isnull=False), name="patient_link_appointment_named"
            ),
            models.CheckConstraint(condition=~Q(purpose="offer") | Q(offer__isnull=False), name="patient_link_offer_named"),
        ]

    def __str__(self):
        # No token, no patient: __str__ reaches logs and admin pages.
        return f"Self-service link {self.pk} ({self.purpose})"

    @property
    def is_locked(self) -> bool:
        return self.locked_at is not None


class LinkRefused(Exception):
    """The token leads nowhere. `reason` is for tests and logs only; the patient sees one plain page for all
    but an expired or locked link (which name what to do next)."""

    def __init__(self, reason: str, link: PatientLink | None = None):
        self.reason = reason  # malformed, tampered, unknown, expired, locked, wrong_patient
        self.link = link
        super().__init__(reason)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _signature(random_part: bytes) -> bytes:
    return salted_hmac(_SALT, random_part, algorithm="sha256").digest()[:SIGNATURE_BYTES]


def _hash(random_part: bytes) -> str:
    return hashlib.sha256(random_part).hexdigest()


def new_token() -> tuple[str, str]:
    """(token, token_hash) for a new link."""
    random_part = secrets.token_bytes(RANDOM_BYTES)
    return _b64(random_part + _signature(random_part)), _hash(random_part)


def verified_hash(token: str) -> str:
    """The stored hash the token names, if its signature is right; LinkRefused otherwise. No database read."""
    if not isinstance(token, str) or len(token) != TOKEN_LENGTH or not token.isascii():
        raise LinkRefused("malformed")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        raise LinkRefused("malformed") from None
    if len(raw) != RANDOM_BYTES + SIGNATURE_BYTES or _b64(raw) != token:
        raise LinkRefused("malformed")
    random_part, signature = raw[:RANDOM_BYTES], raw[RANDOM_BYTES:]
    if not constant_time_compare(signature, _signature(random_part)):
        raise LinkRefused("tampered")
    return _hash(random_part)


def link_url(token: str) -> str:
    """The short link to text, or "" when SMS_PUBLIC_BASE_URL is not set (no public address to point at)."""
    base = (getattr(settings, "SMS_PUBLIC_BASE_URL", "") or "").rstrip("/")
    return f"{base}{PATH_PREFIX}{token}" if base else ""


def links_available() -> bool:
    return bool((getattr(settings, "SMS_PUBLIC_BASE_URL", "") or "").strip())


@dataclass(frozen=True)
class IssuedLink:
    link: PatientLink
    token: str

    @property
    def url(self) -> str:
        return link_url(self.token)


def issue_appointment_link(*, appointment, now=None) -> IssuedLink:
    """A new link to `appointment` for its patient, expiring when the appointment ends. Each text gets its
    own link; all of them stay valid until they expire or lock."""
    token, token_hash = new_token()
    link = PatientLink.objects.create(
        patient_id=appointment.referral.patient_id,
        appointment=appointment,
        purpose=PatientLink.Purpose.APPOINTMENT,
        token_hash=token_hash,
        expires_at=appointment.end,
        created_at=now or timezone.now(),
    )
    return IssuedLink(link=link, token=token)


def issue_offer_link(*, invitation, token: str, expires_at, now=None) -> IssuedLink:
    """A link to one patient's offer (an OfferInvitation), expiring when the offer does. The token is made first
    (new_token) because the offer's text, which carries it, is written before the invitation row exists."""
    link = PatientLink.objects.create(
        patient_id=invitation.patient_id,
        offer=invitation,
        purpose=PatientLink.Purpose.OFFER,
        token_hash=verified_hash(token),
        expires_at=expires_at,
        created_at=now or timezone.now(),
    )
    return IssuedLink(link=link, token=token)


def resolve_token(token: str, *, now=None) -> PatientLink:
    """The live link this token names, or LinkRefused. Checks, in order: shape and signature (no database
    read), that a link has this hash, that it has not expired or locked, and that its appointment (or offer)
    belongs to its patient."""
    token_hash = verified_hash(token)
    link = (
        PatientLink.objects.select_related("patient", "appointment__referral", "offer")
        .filter(token_hash=token_hash)
        .first()
    )
    if link is None:
        raise LinkRefused("unknown")
    if link.is_locked:
        raise LinkRefused("locked", link)
    if (now or timezone.now()) >= link.expires_at:
        raise LinkRefused("expired", link)
    if link.appointment is not None and link.appointment.referral.patient_id != link.patient_id:
        raise LinkRefused("wrong_patient", link)
    if link.purpose == PatientLink.Purpose.OFFER and (link.offer is None or link.offer.patient_id != link.patient_id):
        raise LinkRefused("wrong_patient", link)
    return link


def record_wrong_date_of_birth(*, link: PatientLink, now=None) -> PatientLink:
    """Count a wrong date of birth on the row (atomically, so two devices cannot get a fourth try); the third
    locks the link. Returns the link as it now is: `just_locked` says this try locked it."""
    now = now or timezone.now()
    with transaction.atomic():
        PatientLink.objects.filter(pk=link.pk, locked_at__isnull=True).update(wrong_tries=F("wrong_tries") + 1)
        locked = PatientLink.objects.filter(
            pk=link.pk, locked_at__isnull=True, wrong_tries__gte=MAX_WRONG_TRIES
        ).update(locked_at=now)
        link.refresh_from_db()
    link.just_locked = bool(locked)
    return link


def record_right_date_of_birth(*, link: PatientLink, now=None) -> None:
    PatientLink.objects.filter(pk=link.pk).update(verified_at=now or timezone.now())


def follow_link_to(*, link: PatientLink, appointment) -> None:
    """The patient moved the appointment through the page: the link now leads to the new time and lasts until
    it ends, sooner or later (the row keeps the appointment it was sent for)."""
    PatientLink.objects.filter(pk=link.pk).update(expires_at=appointment.end)
    link.refresh_from_db()
