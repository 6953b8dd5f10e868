"""Reads for the staff SMS pages: the outbox with its filters and counts, one message's history,
replies, the manager's settings, and a template previewed with sample values."""

import datetime
import string
from dataclasses import dataclass, field
from types import SimpleNamespace

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db.models import Count
from django.utils import timezone

from scheduling import patient_links
from scheduling.caseload.models import ServiceSettings
from scheduling.codes import AppointmentType
from scheduling.reminders import content
from scheduling.reminders.models import InboundMessage, MessageTemplate, OutboundMessage, ReminderRule
from scheduling.reminders.rules import sms_refusal_reason, template_body
from scheduling.uktime import lenient_local_datetime

Status = OutboundMessage.Status

# The outbox's "Needs attention" preset: what admin staff must act on (check the number, call instead).
NEEDS_ATTENTION = "attention"
ATTENTION_STATUSES = (Status.FAILED, Status.UNDELIVERED)


# --- Outbox ----------------------------------------------------------------------------------

def _in_period(qs, *, due_from: datetime.date | None, due_to: datetime.date | None):
    """Messages due on local (UK) days `due_from` to `due_to`, both included."""
    if due_from:
        qs = qs.filter(due_at__gte=lenient_local_datetime(due_from, datetime.time(0)))
    if due_to:
        qs = qs.filter(due_at__lt=lenient_local_datetime(due_to + datetime.timedelta(days=1), datetime.time(0)))
    return qs


def outbox_messages(*, status: str = "", kind: str = "", due_from=None, due_to=None):
    """Outbox rows, newest due first. `status` is one status, NEEDS_ATTENTION or "" for all."""
    qs = _in_period(OutboundMessage.objects.all(), due_from=due_from, due_to=due_to)
    if kind:
        qs = qs.filter(kind=kind)
    if status == NEEDS_ATTENTION:
        qs = qs.filter(status__in=ATTENTION_STATUSES)
    elif status:
        qs = qs.filter(status=status)
    return qs.select_related("patient", "appointment", "opt_in_invitation").order_by("-due_at", "-id")


@dataclass
class StatusCount:
    status: str
    label: str
    count: int


def outbox_status_counts(*, kind: str = "", due_from=None, due_to=None) -> list[StatusCount]:
    """How many messages of each status are due in the period (every status listed, zeros too)."""
    qs = _in_period(OutboundMessage.objects.all(), due_from=due_from, due_to=due_to)
    if kind:
        qs = qs.filter(kind=kind)
    counts = dict(qs.order_by().values_list("status").annotate(n=Count("id")))
    return [StatusCount(value, label, counts.get(value, 0)) for value, label in Status.choices]


def outbox_kind_choices() -> list[tuple[str, str]]:
    """Kinds that exist in the outbox or that the rules produce, labelled as the outbox shows them."""
    kinds = set(OutboundMessage.objects.order_by().values_list("kind", flat=True).distinct())
    kinds |= {OutboundMessage.reminder_kind(d) for d in ReminderRule.objects.values_list("days_before", flat=True)}
    kinds.add(OutboundMessage.OPT_IN_INVITATION)
    kinds.update(OutboundMessage.CONFIRMATION_KINDS)

    def order(kind):
        # Confirmations (sent first), reminders furthest ahead first, then the invitation.
        if kind in OutboundMessage.CONFIRMATION_KINDS:
            return (0, OutboundMessage.CONFIRMATION_KINDS.index(kind))
        if kind.startswith("reminder_"):
            return (1, -int(kind.removeprefix("reminder_").removesuffix("d") or 0))
        return (2, 0)

    return [(kind, OutboundMessage(kind=kind).kind_display) for kind in sorted(kinds, key=order)]


def referral_id_for(message: OutboundMessage) -> int | None:
    """The referral a message belongs to (through its appointment or its opt-in invitation)."""
    if message.appointment_id is not None:
        return message.appointment.referral_id
    if message.opt_in_invitation_id is not None:
        return message.opt_in_invitation.referral_id
    return None


def message_with_events(pk: int) -> OutboundMessage:
    return (
        OutboundMessage.objects.select_related("patient", "appointment__practitioner", "opt_in_invitation", "created_by")
        .prefetch_related("events__actor")
        .get(pk=pk)
    )


# --- Replies ---------------------------------------------------------------------------------

def inbound_messages():
    return InboundMessage.objects.select_related("patient", "appointment", "admin_task").order_by("-received_at", "-id")


# --- Manager's settings ----------------------------------------------------------------------

def rules_by_appointment_type() -> list[tuple[str, str, list[ReminderRule]]]:
    """(type, label, its rules furthest ahead first) for every appointment type, rules or not."""
    rules = {}
    for rule in ReminderRule.objects.order_by("-days_before", "send_at"):
        rules.setdefault(rule.appointment_type, []).append(rule)
    return [(value, label, rules.get(value, [])) for value, label in AppointmentType.choices]


def message_templates() -> list[SimpleNamespace]:
    """Every template (its default wording if never saved)."""
    saved = {t.key: t for t in MessageTemplate.objects.select_related("updated_by")}
    return [
        SimpleNamespace(key=key, label=label, body=template_body(key), saved=saved.get(key))
        for key, label in MessageTemplate.Key.choices
    ]


def sms_backend_description() -> dict:
    """Whether texts really leave the machine, read from settings (no secrets)."""
    backend = settings.SMS_BACKEND
    if backend == "twilio":
        test_server = settings.TWILIO_API_BASE_URL
        return {
            "name": "twilio",
            "leaves_machine": not test_server,
            "summary": (
                f"Twilio test server at {test_server}: texts do not reach real phones."
                if test_server else "Twilio: texts are sent to patients' phones."
            ),
            "sender": "Messaging service" if settings.TWILIO_MESSAGING_SERVICE_SID else (settings.TWILIO_FROM_NUMBER or "Not set"),
            "delivery_reports": bool(settings.SMS_PUBLIC_BASE_URL),
        }
    return {
        "name": backend,
        "leaves_machine": False,
        "summary": "Console: texts are written to the server log and do not leave this machine.",
        "sender": "",
        "delivery_reports": False,
    }


# --- Template preview ------------------------------------------------------------------------

SAMPLE_FIRST_NAME = "Alexandra"
SAMPLE_PRACTITIONER_FIRST_NAME = "Sam"
SAMPLE_APPOINTMENT_START = datetime.datetime(2026, 9, 30, 14, 45)  # a Wednesday, UK time
SAMPLE_DEADLINE = datetime.date(2026, 10, 14)


def sample_values() -> dict[str, str]:
    """Every placeholder filled as a real message would be, for an example appointment on
    Wednesday 30 September at 2:45pm (the same formatting code the planner uses)."""
    start = lenient_local_datetime(SAMPLE_APPOINTMENT_START.date(), SAMPLE_APPOINTMENT_START.time())
    values = content.appointment_placeholders(
        appointment=SimpleNamespace(start=start, practitioner=SimpleNamespace(first_name=SAMPLE_PRACTITIONER_FIRST_NAME)),
        patient=SimpleNamespace(given_name=SAMPLE_FIRST_NAME),
    )
    deadline = SAMPLE_DEADLINE
    values["deadline"] = f"{deadline:%A} {deadline.day} {deadline:%B}"
    values["service_phone"] = ServiceSettings.current().service_phone
    return values


@dataclass
class TemplatePreview:
    body: str  # as it would be saved
    text: str | None  # the sample message, or None when the placeholders cannot be filled
    length: content.SmsLength | None
    replaced: list[tuple[str, str]] = field(default_factory=list)  # (typed, saved as)
    non_gsm: tuple[str, ...] = ()  # kept after saving: the message goes as UCS-2
    clinical_words: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # what Save would refuse


def _plain_placeholders(body: str) -> bool:
    """True if every {placeholder} is a known name with no format spec or conversion, so the
    sample can be filled safely ({first_name:>999999999} would build a huge string)."""
    try:
        parsed = list(string.Formatter().parse(body))
    except ValueError:
        return False
    return all(
        name is None or (name in content.PLACEHOLDERS and not spec and conversion is None)
        for _, name, spec, conversion in parsed
    )


def preview_template(body: str, *, include_link: bool = False) -> TemplatePreview:
    """What `body` would be saved as and what a sample message from it looks like, with its length,
    the characters that will be replaced or cost extra, and what Save would refuse."""
    typed = body.replace("\r\n", "\n")
    # As services.update_template stores it.
    saved = content.to_gsm7(typed).strip()
    replaced = sorted({(c, content.to_gsm7(c)) for c in typed if content.to_gsm7(c) != c})
    problems = []
    try:
        content.validate_template_body(saved)
    except ValidationError as exc:
        problems = exc.messages
    text = length = None
    if saved and _plain_placeholders(saved):
        text = content.render(saved, sample_values())
        if include_link and patient_links.links_available():
            # A link is as long as any other: the length counted is the real one.
            text = f"{text} {patient_links.link_url('x' * patient_links.TOKEN_LENGTH)}"
        length = content.sms_length(text)
    return TemplatePreview(
        body=saved,
        text=text,
        length=length,
        replaced=replaced,
        non_gsm=content.sms_length(saved).non_gsm_characters,
        clinical_words=content.clinical_words_in(saved),
        problems=problems,
    )


def sms_length_script_data() -> dict:
    """What static/js/sms-length.js needs to count exactly as content.sms_length does."""
    return {
        "gsm7_basic": content.GSM7_BASIC,
        "gsm7_extension": content.GSM7_EXTENSION,
        "replacements": content.GSM7_REPLACEMENTS,
        "sample_values": sample_values(),
        "single_gsm7": content.SINGLE_SMS_GSM7,
        "single_ucs2": content.SINGLE_SMS_UCS2,
        # Each part of a longer message carries a header, as content.sms_length counts.
        "part_gsm7": 153,
        "part_ucs2": 67,
        "clinical_words": content.CLINICAL_WORDS,
    }


def booking_text_note(*, appointment, now=None) -> str:
    """What a booking means for the patient's texts, read back from the outbox's own row, so the
    words follow what will really happen: for the booking pages' "Booked ..." message."""
    now = now or timezone.now()
    confirmation = (
        appointment.outbound_messages.filter(appointment_start=appointment.start, kind__in=OutboundMessage.CONFIRMATION_KINDS)
        .order_by("-id").first()
    )
    if confirmation is None:
        why = sms_refusal_reason(appointment.referral.patient)
        return f"no text: {why}" if why else "no confirmation text (confirmations are off in SMS settings)"
    if confirmation.status == OutboundMessage.Status.SKIPPED:
        return f"no confirmation text: {confirmation.status_reason}"
    if confirmation.due_at > now + datetime.timedelta(minutes=1):
        return f"a confirmation text will be sent at {timezone.localtime(confirmation.due_at):%a %d %b %Y %H:%M} (after quiet hours)"
    return "a confirmation text will be sent"
