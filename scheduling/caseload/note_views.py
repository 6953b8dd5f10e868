"""Writing and amending clinical notes from the referral page (POST only; the page itself is views.referral_detail)."""

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_POST

from scheduling.caseload.models import ClinicalNote, Referral
from scheduling.caseload.note_forms import AmendNoteForm, NoteForm
from scheduling.caseload.notes import amend_note, can_write_notes, write_note
from scheduling.caseload.record import appointment_choices
from scheduling.caseload.views import render_record
from scheduling.errors import add_service_errors


def _referral_for_writing(request, pk: int) -> Referral:
    # The refusal is the plain 403 page: it never names the patient.
    referral = get_object_or_404(Referral.objects.select_related("patient", "assigned_practitioner"), pk=pk)
    if not can_write_notes(request.user, referral):
        raise PermissionDenied
    return referral


@sensitive_post_parameters("text")  # note text stays out of error reports
@require_POST
def write(request, pk: int):
    referral = _referral_for_writing(request, pk)
    choices = appointment_choices(referral.appointments.order_by("start", "id"))
    form = NoteForm(request.POST, appointment_choices=choices, auto_id="note_%s")
    if form.is_valid():
        appointment_pk = form.cleaned_data["appointment"]
        appointment = referral.appointments.get(pk=appointment_pk) if appointment_pk else None
        try:
            note = write_note(referral=referral, author=request.user, text=form.cleaned_data["text"], appointment=appointment)
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, "Note saved.")
            return redirect(f"{reverse('caseload:referral_detail', args=[referral.pk])}#note-{note.pk}")
    return render_record(request, referral, note_form=form, status=400)


@sensitive_post_parameters("text")
@require_POST
def amend(request, pk: int, note_pk: int):
    referral = _referral_for_writing(request, pk)
    note = get_object_or_404(ClinicalNote, pk=note_pk, referral=referral)
    form = AmendNoteForm(request.POST, auto_id=f"amend-{note.pk}_%s")
    if form.is_valid():
        try:
            version = amend_note(note=note, author=request.user, text=form.cleaned_data["text"])
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, "Note amended. The earlier version is kept.")
            return redirect(f"{reverse('caseload:referral_detail', args=[referral.pk])}#note-{version.pk}")
    return render_record(request, referral, amend_form=form, amend_note_pk=note.pk, status=400)
