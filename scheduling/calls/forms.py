from django import forms

from scheduling.calls.services import CallButton


class CallOutcomeForm(forms.Form):
    referral = forms.IntegerField(widget=forms.HiddenInput)
    appointment = forms.IntegerField(required=False, widget=forms.HiddenInput)
    button = forms.ChoiceField(choices=CallButton.choices)
    callback_at = forms.DateTimeField(
        required=False, input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"], label="Call back at"
    )
    note = forms.CharField(required=False, max_length=300)


class UndoForm(forms.Form):
    attempt = forms.IntegerField(widget=forms.HiddenInput)
