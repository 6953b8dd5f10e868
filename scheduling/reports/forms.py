import datetime
from datetime import timedelta

from django import forms
from django.contrib.auth import get_user_model
from django.utils import timezone

from scheduling.caseload.models import Team
from scheduling.codes import AppointmentType, ReferralSource
from scheduling.params import validate_date_bounds
from scheduling.reports.selectors import ReportParams
from scheduling.formparts import DateInput

DEFAULT_WEEKS = 12


class PractitionerChoice(forms.ModelChoiceField):
    def label_from_instance(self, obj):
        return obj.get_full_name() or obj.get_username()


class ReportFilterForm(forms.Form):
    date_from = forms.DateField(label="From", widget=DateInput(), validators=[validate_date_bounds])
    date_to = forms.DateField(label="To", widget=DateInput(), validators=[validate_date_bounds])
    team = forms.ModelChoiceField(Team.objects.order_by("name"), required=False, empty_label="All teams")
    practitioner = PractitionerChoice(
        get_user_model().objects.filter(practitioner__isnull=False).order_by("first_name", "last_name"),
        required=False,
        empty_label="All practitioners",
    )
    source = forms.ChoiceField(choices=[("", "All sources")] + list(ReferralSource.choices), required=False, label="Referral source")
    type = forms.ChoiceField(choices=[("", "All types")] + list(AppointmentType.choices), required=False, label="Appointment type")

    def __init__(self, data=None, **kwargs):
        today = timezone.localdate()
        defaults = {"date_from": today - timedelta(weeks=DEFAULT_WEEKS) + timedelta(days=1), "date_to": today}
        data = data.copy() if data is not None else {}
        # Short names in links and exports: from, to.
        for short, name in (("from", "date_from"), ("to", "date_to")):
            if short in data and name not in data:
                data[name] = data[short]
            if not data.get(name):
                data[name] = defaults[name].isoformat()
        super().__init__(data, **kwargs)

    def clean(self):
        cleaned = super().clean()
        start, end = cleaned.get("date_from"), cleaned.get("date_to")
        if start and end and end < start:
            raise forms.ValidationError("The end of the period is before its start.")
        if start and end and (end - start).days > 3 * 366:
            raise forms.ValidationError("Choose a period of at most three years.")
        return cleaned

    def params(self) -> ReportParams:
        c = self.cleaned_data
        return ReportParams(
            date_from=c["date_from"],
            date_to=c["date_to"],
            team_id=c["team"].pk if c.get("team") else None,
            practitioner_id=c["practitioner"].pk if c.get("practitioner") else None,
            source=c.get("source") or "",
            appointment_type=c.get("type") or "",
        )


def parse_date(value: str) -> datetime.date:
    return datetime.date.fromisoformat(value)
