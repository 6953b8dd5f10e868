"""Forms for the booking screens. They only parse input; the services validate and write."""

import datetime as dt

from django import forms
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError

from scheduling import params
from scheduling.booking.availability import local_datetime
from scheduling.booking.models import Appointment, Rearrangement
from scheduling.caseload.models import TimeOfDay
from scheduling.codes import AppointmentType, ReferralSource
from scheduling.formparts import DateInput, DateTimeLocalInput, NamedErrorsMixin


def practitioner_choices():
    return get_user_model().objects.filter(practitioner__is_active_clinician=True, is_active=True).order_by("first_name", "last_name")


class PractitionerField(forms.ModelChoiceField):
    def label_from_instance(self, obj):
        return obj.get_full_name() or obj.get_username()


def read_instant(value, *, label: str = "start") -> dt.datetime:
    """A slot's start as the finder gave it (ISO 8601 with offset), inside the service's dates."""
    try:
        return params.parse_instant((value or "").strip(), label=label)
    except params.InvalidParameter as exc:
        raise ValidationError(f"{exc} Choose a slot again.") from None


def _in_bounds(value, *, label: str):
    """Dates far outside what the service works with are refused here, before any date arithmetic."""
    if value is None:
        return value
    try:
        params.check_date_bounds(value.date() if isinstance(value, dt.datetime) else value, label=label)
    except params.InvalidParameter as exc:
        raise ValidationError(str(exc)) from None
    return value


ON_PHONE_LABEL = "The patient agreed this time on the phone just now"


class SlotChoiceForm(forms.Form):
    """A slot picked from the finder's list (hidden fields on each slot's button)."""

    practitioner = PractitionerField(queryset=practitioner_choices())
    appointment_type = forms.ChoiceField(choices=AppointmentType.choices)
    start = forms.CharField()
    on_phone = forms.BooleanField(label=ON_PHONE_LABEL, required=False)

    def clean_start(self):
        return read_instant(self.cleaned_data["start"])


class LocalTimeForm(forms.Form):
    """A time typed in Europe/London wall-clock time. Times that do not exist or happen twice on a
    clock-change night are refused with a message saying why."""

    practitioner = PractitionerField(queryset=practitioner_choices())
    appointment_type = forms.ChoiceField(choices=AppointmentType.choices)
    day = forms.DateField(label="Date", widget=DateInput())
    at = forms.TimeField(label="Time", widget=forms.TimeInput(attrs={"type": "time"}))
    override = forms.BooleanField(
        label="Book outside the practitioner's availability", required=False,
        help_text="Only when agreed: outside working hours, on leave or a bank holiday.",
    )
    override_reason = forms.CharField(label="Reason for booking outside availability", max_length=200, required=False)
    on_phone = forms.BooleanField(
        label=ON_PHONE_LABEL, required=False,
        help_text="Then the booking lead time does not apply (recorded in the history); the time must still be ahead.",
    )

    def clean_day(self):
        return _in_bounds(self.cleaned_data["day"], label="Date")

    def clean(self):
        data = super().clean()
        if data.get("override") and not (data.get("override_reason") or "").strip():
            self.add_error("override_reason", "Say why this time is booked outside the practitioner's availability.")
        if not data.get("override"):
            data["override_reason"] = ""
        if data.get("day") and data.get("at"):
            try:
                data["start"] = local_datetime(data["day"], data["at"])
            except ValidationError as exc:
                self.add_error("at", exc)
        return data


class RearrangeTimeForm(LocalTimeForm):
    """A new time typed on the rearrange page: the same wall-clock and availability rules as booking one.
    The appointment keeps its type; the phone tick travels with the page's other fields."""

    appointment_type = None
    on_phone = None
    override_reason = forms.CharField(label="Reason for moving it outside availability", max_length=200, required=False)


class _AskedAtMixin:
    def clean_asked_at(self):
        return _in_bounds(self.cleaned_data["asked_at"], label="When they asked")


class AskedForm(_AskedAtMixin, forms.Form):
    asked_by = forms.ChoiceField(label="Who asked", choices=Rearrangement.AskedBy.choices, widget=forms.RadioSelect)
    reason = forms.CharField(max_length=200, required=False)
    asked_at = forms.DateTimeField(
        label="When they asked", required=False, help_text="Leave blank for now.",
        widget=DateTimeLocalInput(),
    )


class CancelForm(_AskedAtMixin, forms.Form):
    cancelled_by = forms.ChoiceField(label="Who cancelled", choices=Appointment.CancelledBy.choices, widget=forms.RadioSelect)
    reason = forms.CharField(max_length=200)
    asked_at = forms.DateTimeField(
        label="When they asked", required=False, help_text="Leave blank for now.",
        widget=DateTimeLocalInput(),
    )


class NhsLookupForm(forms.Form):
    nhs_number = forms.CharField(label="NHS number", max_length=12)


class NewReferralForm(NamedErrorsMixin, forms.Form):
    nhs_number = forms.CharField(label="NHS number", max_length=12)
    given_name = forms.CharField(label="First name", max_length=100, required=False)
    family_name = forms.CharField(label="Last name", max_length=100, required=False)
    date_of_birth = forms.DateField(
        label="Date of birth", required=False, widget=DateInput(), help_text="Adults: 16 to 120 on the date received."
    )
    mobile_phone = forms.CharField(
        label="Mobile for texts", max_length=20, required=False, help_text="A UK mobile (07...); texts go only to UK mobiles."
    )
    other_phone = forms.CharField(max_length=20, required=False, help_text="Landline or any other number.")
    sms_consent = forms.BooleanField(label="Consents to text messages", required=False)
    voicemail_allowed = forms.BooleanField(label="Voicemail may be left", required=False)
    preferred_days = forms.MultipleChoiceField(
        choices=[(str(i), d) for i, d in enumerate(["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"])],
        required=False, widget=forms.CheckboxSelectMultiple,
    )
    preferred_times = forms.MultipleChoiceField(choices=TimeOfDay.choices, required=False, widget=forms.CheckboxSelectMultiple)
    source = forms.ChoiceField(label="Source of referral", choices=ReferralSource.choices)
    received_on = forms.DateField(
        label="Date received", widget=DateInput(),
        help_text="Today or earlier, within the last two years.",
    )
    reason = forms.CharField(label="Reason for referral", max_length=200)
    assigned_practitioner = PractitionerField(queryset=practitioner_choices(), required=False)
