"""Forms for writing and amending clinical notes on the referral page (errors name the field)."""

from django import forms

from scheduling.caseload.models import ClinicalNote
from scheduling.caseload.notes import text_problem


class _NoteText(forms.CharField):
    """Checked by the same rule as the service (notes.text_problem), so the words are the same."""

    def __init__(self, **kwargs):
        super().__init__(required=False, widget=forms.Textarea(attrs={"rows": 5, "maxlength": ClinicalNote.MAX_LENGTH}), **kwargs)

    def validate(self, value):
        super().validate(value)
        problem = text_problem(value)
        if problem:
            raise forms.ValidationError(problem)


class NoteForm(forms.Form):
    text = _NoteText(label="Note")
    appointment = forms.TypedChoiceField(
        label="Session (optional)", required=False, coerce=int, empty_value=None,
        error_messages={"invalid_choice": "Session: choose one of this referral's appointments, or none."},
    )

    def __init__(self, *args, appointment_choices=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["appointment"].choices = appointment_choices


class AmendNoteForm(forms.Form):
    text = _NoteText(label="Amended note")
