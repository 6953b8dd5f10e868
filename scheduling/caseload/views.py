from django import forms
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse

from scheduling.caseload.models import ClinicalNote, Referral
from scheduling.caseload.note_forms import NoteForm
from scheduling.caseload.patient_details import may_change_details_on_a_viewed_referral
from scheduling.caseload.record import appointment_choices, referral_record
from scheduling.caseload.selectors import can_book_for_referral, can_cancel_appointments, can_view_referral, search_referrals
from scheduling.caseload.services import discharge_referral
from scheduling.codes import EndOfCare
from scheduling.errors import add_service_errors
from scheduling.params import id_param
from scheduling.roles import is_admin_staff


def referral_list(request):
    if not (request.user.has_perm("scheduling.view_referral")):
        raise PermissionDenied
    referrals = search_referrals(
        user=request.user,
        query=request.GET.get("q", ""),
        status=request.GET.get("status", ""),
        practitioner_id=id_param(request.GET, "practitioner", label="practitioner"),
    )
    page = Paginator(referrals, 50).get_page(request.GET.get("page"))
    practitioners = get_user_model().objects.filter(practitioner__isnull=False).order_by("first_name")
    return render(
        request,
        "caseload/referral_list.html",
        {"page": page, "statuses": Referral.Status.choices, "practitioners": practitioners, "q": request.GET.get("q", "")},
    )


def referral_detail(request, pk: int):
    referral = get_object_or_404(Referral.objects.select_related("patient", "assigned_practitioner"), pk=pk)
    if not can_view_referral(request.user, referral):
        raise PermissionDenied
    return render_record(request, referral)


def render_record(request, referral, *, note_form=None, amend_form=None, amend_note_pk=None, status=200):
    """The referral page; the note views re-show it with their form's errors."""
    record = referral_record(referral=referral, user=request.user)
    choices = appointment_choices(row.appointment for row in record.appointments)
    if note_form is None:
        note_form = NoteForm(appointment_choices=choices, auto_id="note_%s")
    else:
        note_form.fields["appointment"].choices = choices
    return render(
        request,
        "caseload/referral_detail.html",
        {
            "record": record,
            "referral": referral,
            "patient": referral.patient,
            "note_form": note_form,
            "amend_form": amend_form,
            "amend_note_pk": amend_note_pk,
            "note_max_length": ClinicalNote.MAX_LENGTH,
            "may_book": can_book_for_referral(request.user, referral),
            "may_cancel": can_cancel_appointments(request.user),
            "may_change_details": may_change_details_on_a_viewed_referral(request.user),
        },
        status=status,
    )


class DischargeForm(forms.Form):
    end_code = forms.ChoiceField(label="End of care (NHS code)", choices=EndOfCare.choices)
    reason = forms.CharField(label="Reason", max_length=200)


def discharge(request, pk: int):
    """Discharge a referral with an NHS end-of-care code (e.g. the contact policy's "unable to contact")."""
    if not request.user.has_perm("scheduling.discharge_referral"):
        raise PermissionDenied
    referral = get_object_or_404(Referral.objects.select_related("patient"), pk=pk)
    if not can_view_referral(request.user, referral):
        raise PermissionDenied
    if request.method == "POST":
        form = DischargeForm(request.POST)
        if form.is_valid():
            try:
                discharge_referral(
                    referral=referral, end_code=form.cleaned_data["end_code"], reason=form.cleaned_data["reason"],
                    actor=request.user,
                )
            except ValidationError as exc:
                add_service_errors(form, exc)
            else:
                messages.success(request, f"{referral.patient.full_name} was discharged ({referral.get_end_code_display()}).")
                return redirect("worklist:index" if is_admin_staff(request.user) else referral_url(referral))
    else:
        form = DischargeForm(initial={"end_code": request.GET.get("end_code", ""), "reason": request.GET.get("reason", "")})
    return render(request, "caseload/discharge.html", {"referral": referral, "form": form})


def referral_url(referral) -> str:
    return reverse("caseload:referral_detail", args=[referral.pk])
