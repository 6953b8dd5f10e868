from django import forms

from scheduling.caseload.models import TimeOfDay

DAY_CHOICES = [(str(i), d) for i, d in enumerate(["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"])]


class PatientDetailsForm(forms.Form):
    """The fields as registration asks them (booking.forms.NewReferralForm); the service checks the values."""

    given_name = forms.CharField(label="First name", max_length=100, required=False)
    family_name = forms.CharField(label="Last name", max_length=100, required=False)
    date_of_birth = forms.DateField(
        required=False, widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
        help_text="Adults: 16 to 120.",
    )
    mobile_phone = forms.CharField(
        label="Mobile for texts", max_length=20, required=False, help_text="A UK mobile (07...); texts go only to UK mobiles."
    )
    other_phone = forms.CharField(max_length=20, required=False, help_text="Landline or any other number.")
    sms_consent = forms.BooleanField(label="Consents to text messages", required=False)
    voicemail_allowed = forms.BooleanField(label="Voicemail may be left", required=False)
    preferred_days = forms.MultipleChoiceField(choices=DAY_CHOICES, required=False, widget=forms.CheckboxSelectMultiple)
    preferred_times = forms.MultipleChoiceField(choices=TimeOfDay.choices, required=False, widget=forms.CheckboxSelectMultiple)
    reason = forms.CharField(
        label="Why (optional)", max_length=200, required=False,
        help_text="For example: new number given by the patient on the phone.",
    )
    # The id of the latest change the page showed: a field changed since is not silently overwritten.
    version = forms.IntegerField(
        label="Page version", min_value=0, widget=forms.HiddenInput,
        error_messages={
            "required": "This page is incomplete: reload it and enter the change again.",
            "invalid": "This page is incomplete: reload it and enter the change again.",
            "min_value": "This page is incomplete: reload it and enter the change again.",
        },
    )
