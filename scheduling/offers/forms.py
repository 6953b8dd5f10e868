from django import forms

from scheduling.offers.models import OfferSettings


class OfferSettingsForm(forms.Form):
    enabled = forms.BooleanField(required=False, label="Offer released slots by text")
    minimum_notice_hours = forms.IntegerField(
        min_value=0, max_value=14 * 24, label="Minimum notice (hours)",
        help_text="Only time at least this far ahead is offered; an offer expires this long before its slot.",
    )
    wave_size = forms.IntegerField(min_value=1, max_value=20, label="Patients texted at a time")
    minutes_between_waves = forms.IntegerField(
        min_value=5, max_value=24 * 60, label="Minutes before the next patients are texted"
    )
    scope = forms.ChoiceField(choices=OfferSettings.Scope.choices, label="Offer to")
    include_link = forms.BooleanField(
        required=False, label="Add the patient's self-service link to offer texts",
        help_text="The patient can take the time on the page too (after their date of birth). Only added when the "
        "site's public address (SMS_PUBLIC_BASE_URL) is set.",
    )
