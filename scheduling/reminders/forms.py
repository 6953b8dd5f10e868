"""Forms for the staff SMS pages. They only parse input; the services validate and write."""

from django import forms

from scheduling.codes import AppointmentType
from scheduling.params import validate_date_bounds
from scheduling.reminders.models import OutboundMessage
from scheduling.reminders.selectors import NEEDS_ATTENTION, outbox_kind_choices
from scheduling.formparts import DateInput


def _time_field(label: str, example: str, **kwargs) -> forms.TimeField:
    return forms.TimeField(
        label=label,
        widget=forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
        error_messages={
            "required": f"Enter the {label.lower()} (for example {example}).",
            "invalid": f"Enter the {label.lower()} as a 24-hour time, for example {example}.",
        },
        **kwargs,
    )


def _number_field(label: str, **kwargs) -> forms.IntegerField:
    return forms.IntegerField(
        label=label,
        error_messages={
            "required": f"Enter the {label.lower()}.",
            "invalid": f"Enter the {label.lower()} as a whole number.",
            "min_value": f"The {label.lower()} cannot be less than %(limit_value)s.",
        },
        **kwargs,
    )


class OutboxFilterForm(forms.Form):
    status = forms.ChoiceField(required=False, label="Status")
    kind = forms.ChoiceField(required=False, label="Kind")
    due_from = forms.DateField(
        required=False, label="Due from", widget=DateInput(),
        validators=[validate_date_bounds], error_messages={"invalid": "Enter the 'due from' date as a date, for example 2026-09-30."},
    )
    due_to = forms.DateField(
        required=False, label="Due to", widget=DateInput(),
        validators=[validate_date_bounds], error_messages={"invalid": "Enter the 'due to' date as a date, for example 2026-09-30."},
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["status"].choices = (
            [("", "Any status"), (NEEDS_ATTENTION, "Needs attention (failed or not delivered)")]
            + list(OutboundMessage.Status.choices)
        )
        self.fields["kind"].choices = [("", "Any kind")] + outbox_kind_choices()

    def clean(self):
        cleaned = super().clean()
        start, end = cleaned.get("due_from"), cleaned.get("due_to")
        if start and end and end < start:
            self.add_error("due_to", "The 'due to' date is before the 'due from' date.")
        return cleaned


class SmsSettingsForm(forms.Form):
    quiet_hours_start = _time_field("Quiet hours start", "20:00", help_text="Nothing is sent from this UK time…")
    quiet_hours_end = _time_field("Quiet hours end", "08:00", help_text="…until this UK time.")
    minimum_notice_minutes = _number_field(
        "Minimum notice in minutes", min_value=0,
        help_text="A reminder that would arrive closer to the appointment than this is skipped. At most 1440 (a day).",
    )
    max_send_attempts = _number_field(
        "Maximum send attempts", min_value=0,
        help_text="Tries (the first included) after temporary Twilio errors before a message is marked failed. 1 to 10.",
    )
    send_confirmations = forms.BooleanField(
        label="Send a confirmation text when a call is booked or moved", required=False,
        help_text="Wording under “Booking confirmation” and “Confirmation of a new time” below.",
    )


class ReminderRuleForm(forms.Form):
    appointment_type = forms.ChoiceField(
        label="Appointment type", choices=AppointmentType.choices,
        error_messages={"invalid_choice": "Choose an appointment type from the list."},
    )
    days_before = _number_field(
        "Days before", min_value=0, help_text="0 sends it on the day of the appointment; at most 14.",
    )
    send_at = _time_field("Send at", "10:00", help_text="UK time of day. Moved out of quiet hours if it falls in them.")
    active = forms.BooleanField(label="Active (new bookings get this reminder)", required=False)


class TemplateForm(forms.Form):
    # Not required here: an empty message is refused by the service, with its own wording.
    body = forms.CharField(
        label="Message",
        required=False,
        strip=False,
        max_length=1600,
        widget=forms.Textarea(attrs={"rows": 6, "cols": 60, "spellcheck": "true"}),
        error_messages={"max_length": "The message can be at most %(limit_value)d characters (it has %(show_value)d)."},
    )
    include_link = forms.BooleanField(
        label="Add the patient's self-service link at the end of the text",
        required=False,
        help_text="A short link to a page where the patient can confirm, cancel or pick another time, after "
        "entering their date of birth. It adds about 30 characters plus the site's address.",
    )
