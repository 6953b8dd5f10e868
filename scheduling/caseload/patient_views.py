"""The patient details page: staff correct a patient's names, date of birth, phones, SMS consent,
voicemail and preferred contact windows (scheduling.caseload.patient_details does the change)."""

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.debug import sensitive_post_parameters

from scheduling.caseload.models import Patient
from scheduling.caseload.patient_details import (
    CHANGED_MEANWHILE,
    EDITABLE_FIELDS,
    FIELD_WORDS,
    can_change_patient_details,
    change_patient_details,
    describe_detail_change,
    detail_changes,
    details_version,
)
from scheduling.caseload.patient_forms import PatientDetailsForm
from scheduling.caseload.phones import display_phone
from scheduling.caseload.record import user_name
from scheduling.caseload.selectors import referrals_visible_to
from scheduling.errors import add_service_errors


def _initial(patient: Patient) -> dict:
    return {
        "given_name": patient.given_name,
        "family_name": patient.family_name,
        "date_of_birth": patient.date_of_birth,
        # As people write them ("07700 900123"); the service stores E.164 again.
        "mobile_phone": display_phone(patient.mobile_phone),
        "other_phone": display_phone(patient.other_phone),
        "sms_consent": patient.sms_consent,
        "voicemail_allowed": patient.voicemail_allowed,
        "preferred_days": [str(d) for d in patient.preferred_days],
        "preferred_times": list(patient.preferred_times),
        "version": details_version(patient),
    }


def _saved_message(result) -> str:
    parts = [f"Saved: {', '.join(FIELD_WORDS[c.field] for c in result.changes)} changed."]
    parts += result.follow_ups
    if result.resolved_tasks:
        kinds = ", ".join(t.get_kind_display().lower() for t in result.resolved_tasks)
        parts.append(f"Worklist item{'s' if len(result.resolved_tasks) != 1 else ''} resolved: {kinds}.")
    return " ".join(parts)


# Names, numbers and dates stay out of error reports.
@sensitive_post_parameters("given_name", "family_name", "date_of_birth", "mobile_phone", "other_phone", "reason")
def patient_details(request, pk: int):
    patient = get_object_or_404(Patient, pk=pk)
    if not can_change_patient_details(request.user, patient):
        raise PermissionDenied  # the plain 403 page: it never names the patient
    status = 200
    if request.method == "POST":
        form = PatientDetailsForm(request.POST)
        if form.is_valid():
            data = form.cleaned_data
            try:
                result = change_patient_details(
                    patient=patient, actor=request.user, version=data["version"],
                    given_name=data["given_name"], family_name=data["family_name"], date_of_birth=data["date_of_birth"],
                    mobile_phone=data["mobile_phone"], other_phone=data["other_phone"], sms_consent=data["sms_consent"],
                    voicemail_allowed=data["voicemail_allowed"], preferred_days=data["preferred_days"],
                    preferred_times=data["preferred_times"], reason=data["reason"],
                )
            except ValidationError as exc:
                add_service_errors(form, exc)
                if any(form.has_error(name, CHANGED_MEANWHILE) for name in form.errors):
                    # The page now shows what is stored: saving again is a deliberate choice.
                    form.data = form.data.copy()
                    form.data["version"] = str(details_version(patient))
            else:
                if result.changes:
                    messages.success(request, _saved_message(result))
                else:
                    messages.info(request, "Nothing changed: the details were already as entered.")
                return redirect(reverse("caseload:patient_details", args=[patient.pk]))
        status = 400
    else:
        form = PatientDetailsForm(initial=_initial(patient))
    changes = list(detail_changes(patient).select_related("actor").order_by("-at", "-id"))
    names = {c.actor_id: user_name(c.actor) for c in changes if c.actor_id}
    return render(
        request,
        "caseload/patient_details.html",
        {
            "patient": patient,
            "form": form,
            "editable_fields": EDITABLE_FIELDS,
            "history": [(c.at, describe_detail_change(c, user_names=names)) for c in changes],
            "referrals": referrals_visible_to(request.user).filter(patient=patient).order_by("-received_on", "-id"),
            "open_tasks": patient.admin_tasks.filter(resolved_at__isnull=True).order_by("raised_at", "id"),
            # "scheduled" is the outbox's not-yet-sent status (read through the relation: caseload imports no reminders).
            "pending_texts": patient.outbound_messages.filter(status="scheduled").order_by("due_at", "id"),
        },
        status=status,
    )
