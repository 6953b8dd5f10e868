"""What an SMS says: default templates, placeholders, GSM-7 length and the no-clinical-words rule.

Templates use {placeholders} filled by `render`. A lock screen can be read by anyone, so the
defaults name no service, condition or treatment (DOMAIN.md), and they stay in GSM-7: one stray
character outside it (a curly quote, an en dash) makes every part cost the same as 70 characters.
"""

import re
import string
import unicodedata
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.utils import timezone

from scheduling.caseload.models import ServiceSettings

DEFAULT_TEMPLATES = {
    "reminder": (
        "Hi {first_name}, a reminder that we will phone you on {day} {date} at {time}. "
        "Reply C to confirm, R to rearrange, STOP to end texts."
    ),
    "reminder_same_day": (
        "Hi {first_name}, we will phone you today, {day} {date}, at {time}. "
        "Reply C to confirm, R to rearrange, STOP to end texts."
    ),
    "opt_in_invitation": (
        "Hi {first_name}, we could not reach you by phone. Please call us on {service_phone} "
        "by {deadline} to arrange a time. Reply STOP to end texts."
    ),
    "confirmation": (
        "Hi {first_name}, we have booked a phone call with you on {day} {date} at {time}. "
        "Reply R to rearrange, STOP to end texts."
    ),
    "confirmation_moved": (
        "Hi {first_name}, your phone call has moved to {day} {date} at {time}. "
        "Reply R to rearrange, STOP to end texts."
    ),
}

PLACEHOLDERS = {
    "first_name": "The patient's first name",
    "day": "Weekday of the appointment, e.g. Tuesday",
    "date": "Date of the appointment, e.g. 3 March",
    "time": "Local (UK) time of the appointment, e.g. 2:30pm",
    "practitioner_first_name": "First name of the practitioner who will phone",
    "service_phone": "The number patients call back on (service settings)",
    "deadline": "For invitations: the last day to get in touch, e.g. Monday 16 March",
}

# Words that must not appear on a lock screen by default (DOMAIN.md), and stigmatising wording.
CLINICAL_WORDS = (
    "cbt", "pain", "chronic", "mental", "health", "therapy", "therapist", "therapies", "psychological",
    "psychology", "counselling", "counsellor", "depression", "anxiety", "clinic", "clinical", "treatment",
    "diagnosis", "wellbeing", "nhs talking", "iapt", "psychiatric", "disorder", "condition",
    "missed", "failed", "non-attendance", "dna",
)

# GSM 03.38 basic character set; the extension table costs two septets per character.
GSM7_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = "^{}\\[~]|€\f"
SINGLE_SMS_GSM7 = 160
SINGLE_SMS_UCS2 = 70

# Common look-alikes pasted from word processors, and the GSM-7 character to use instead.
GSM7_REPLACEMENTS = {"‘": "'", "’": "'", "“": '"', "”": '"', "–": "-", "—": "-", "…": "...", "\u00a0": " "}


@dataclass(frozen=True)
class SmsLength:
    characters: int
    encoding: str  # "GSM-7" or "UCS-2"
    parts: int
    non_gsm_characters: tuple[str, ...]

    @property
    def fits_one_sms(self) -> bool:
        return self.parts == 1


def sms_length(text: str) -> SmsLength:
    non_gsm = tuple(sorted({c for c in text if c not in GSM7_BASIC and c not in GSM7_EXTENSION}))
    if non_gsm:
        units = len(text.encode("utf-16-le")) // 2
        parts = 1 if units <= SINGLE_SMS_UCS2 else -(-units // 67)
        return SmsLength(characters=units, encoding="UCS-2", parts=parts, non_gsm_characters=non_gsm)
    septets = sum(2 if c in GSM7_EXTENSION else 1 for c in text)
    parts = 1 if septets <= SINGLE_SMS_GSM7 else -(-septets // 153)
    return SmsLength(characters=septets, encoding="GSM-7", parts=parts, non_gsm_characters=())


def clinical_words_in(text: str) -> list[str]:
    lowered = text.lower()
    return [w for w in CLINICAL_WORDS if re.search(rf"(?<![a-z]){re.escape(w)}(?![a-z])", lowered)]


def placeholders_in(body: str) -> list[str]:
    try:
        fields = [(name, spec, conversion) for _, name, spec, conversion in string.Formatter().parse(body) if name is not None]
    except ValueError as exc:
        raise ValidationError({"body": f"The template has an unmatched brace: {exc}."}) from exc
    formatted = [name for name, spec, conversion in fields if spec or conversion]
    if formatted:
        # {first_name:>9999} or {first_name!r} would build huge or odd texts when reminders are planned.
        raise ValidationError(
            {"body": f"Placeholders take no formatting: write {{{formatted[0]}}} without ':' or '!'."}
        )
    return [name for name, _, _ in fields]


def validate_template_body(body: str) -> None:
    """Refuse what would go wrong at send time, or on a lock screen, naming it. Non-GSM
    characters are a warning shown when editing (they cost more but do no harm), not an error."""
    if not body.strip():
        raise ValidationError({"body": "The message cannot be empty."})
    clinical = clinical_words_in(body)
    if clinical:
        raise ValidationError(
            {"body": f"Texts can be read on a locked phone, so they must not mention care or conditions: "
                     f"remove {', '.join(repr(w) for w in clinical)}."}
        )
    unknown = sorted({p for p in placeholders_in(body) if p not in PLACEHOLDERS})
    if unknown:
        raise ValidationError(
            {"body": f"Unknown placeholder(s): {', '.join('{' + p + '}' for p in unknown)}. "
                     f"Use only: {', '.join('{' + p + '}' for p in PLACEHOLDERS)}."}
        )
    if "STOP" not in body:
        raise ValidationError({"body": "Every message must tell people they can reply STOP."})


def _hour(local) -> str:
    hour = local.hour % 12 or 12
    minutes = f":{local.minute:02d}" if local.minute else ""
    return f"{hour}{minutes}{'am' if local.hour < 12 else 'pm'}"


def appointment_placeholders(*, appointment, patient) -> dict[str, str]:
    local = timezone.localtime(appointment.start)
    practitioner = appointment.practitioner
    return {
        "first_name": patient.given_name,
        "day": f"{local:%A}",
        "date": f"{local.day} {local:%B}",
        "time": _hour(local),
        "practitioner_first_name": practitioner.first_name or "your practitioner",
    }


def to_gsm7(text: str) -> str:
    """Replace characters outside GSM-7 with their nearest GSM-7 form where one exists
    (curly quotes, dashes, the ellipsis, and accents GSM-7 lacks: Zoë -> Zoe); others are kept."""
    out = []
    for c in text:
        if c in GSM7_REPLACEMENTS:
            out.append(GSM7_REPLACEMENTS[c])
            continue
        if c not in GSM7_BASIC and c not in GSM7_EXTENSION:
            # Drop combining accents; keep the result only if all of it is GSM-7 (ﬁ -> fi).
            plain = "".join(ch for ch in unicodedata.normalize("NFKD", c) if not unicodedata.combining(ch))
            if plain and all(ch in GSM7_BASIC for ch in plain):
                c = plain
        out.append(c)
    return "".join(out)


def render(body: str, values: dict[str, str]) -> str:
    filled = {name: "" for name in PLACEHOLDERS}
    filled["service_phone"] = ServiceSettings.current().service_phone
    filled.update(values)
    # Names typed with curly apostrophes (O’Brien) would otherwise force UCS-2.
    return to_gsm7(body.format(**filled)).strip()
