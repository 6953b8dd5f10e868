"""Form widgets shared by the capabilities' forms."""

from django import forms


class DateInput(forms.DateInput):
    """A native date picker. Browsers accept only ISO yyyy-mm-dd in its value, whatever the locale's
    display format (en-GB would write 02/12/2026, which the picker drops, leaving the field empty)."""

    input_type = "date"

    def __init__(self, attrs=None):
        super().__init__(attrs=attrs, format="%Y-%m-%d")


class DateTimeLocalInput(forms.DateTimeInput):
    """A native date-and-time picker; its value must be yyyy-mm-ddThh:mm for the same reason."""

    input_type = "datetime-local"

    def __init__(self, attrs=None):
        super().__init__(attrs=attrs, format="%Y-%m-%dT%H:%M")


def _lower_first(label: str) -> str:
    # "Date received" -> "date received", but "NHS number" stays as written.
    return label[0].lower() + label[1:] if len(label) > 1 and label[1].islower() else label


class NamedErrorsMixin:
    """Django's own messages ("This field is required.") do not say which field; on a long form each
    message names its field, so it reads right in an error summary and to a screen reader."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name, field in self.fields.items():
            label = str(field.label or name.replace("_", " ").capitalize())
            named = _lower_first(label)
            choose = isinstance(field, (forms.ChoiceField, forms.ModelChoiceField))
            messages = {key: f"{label}: {str(text)[0].lower()}{str(text)[1:]}" for key, text in field.error_messages.items()}
            messages["required"] = f"{'Choose' if choose else 'Enter'} the {named}."
            if isinstance(field, forms.DateField):
                messages["invalid"] = f"Enter the {named} as a real date (day, month and year)."
            if choose:
                messages["invalid_choice"] = f"Choose the {named} from the list."
            field.error_messages = messages
