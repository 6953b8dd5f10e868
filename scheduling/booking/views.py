"""Admin booking screens. Thin: parse the form, call a selector or service, show the result."""

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.db import transaction
from django.utils import timezone

from scheduling.booking import forms
from scheduling.booking.models import Appointment
from scheduling.booking.selectors import (
    admin_worklist,
    next_free_slots_for_referral,
    plan_course,
    remaining_treatment_session_numbers,
)
from scheduling.booking.services import (
    CourseConflict,
    SlotTaken,
    book_appointment,
    book_course,
    cancel_appointment,
    rearrange_appointment,
)
from scheduling.caseload.models import AdminTask, Patient, Referral
from scheduling.caseload.services import (
    DuplicatePatient,
    assign_practitioner,
    create_referral,
    register_patient,
    resolve_admin_task,
)
from scheduling.caseload.nhs_number import normalise_nhs_number
from scheduling.codes import AppointmentType


def _require(request, *perms):
    if not all(request.user.has_perm(f"scheduling.{p}") for p in perms):
        raise PermissionDenied


def _errors(exc: ValidationError) -> list[str]:
    return exc.messages


def worklist(request):
    _require(request, "book_appointments", "view_admintask")
    return render(request, "booking/worklist.html", {"items": admin_worklist()})


def task_resolve(request, pk: int):
    _require(request, "change_admintask")
    task = get_object_or_404(AdminTask.objects.select_related("patient", "referral", "appointment"), pk=pk)
    form = forms.ResolveTaskForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            resolve_admin_task(task=task, actor=request.user, resolution=form.cleaned_data["resolution"])
        except ValidationError as exc:
            messages.error(request, " ".join(_errors(exc)))
        else:
            messages.success(request, "Done: removed from the worklist.")
        return redirect("booking:worklist")
    return render(request, "booking/task_resolve.html", {"task": task, "form": form})


def _referral_for_booking(request, pk: int) -> Referral:
    _require(request, "book_appointments")
    return get_object_or_404(Referral.objects.select_related("patient", "assigned_practitioner"), pk=pk)


def _slot_context(request, referral: Referral, *, appointment_type: str, ignore=(), after=None):
    whole_team = request.GET.get("team") == "1" or request.POST.get("team") == "1"
    respect = request.GET.get("any_time") != "1" and request.POST.get("any_time") != "1"
    slots = next_free_slots_for_referral(
        referral=referral, appointment_type=appointment_type, whole_team=whole_team, respect_preferences=respect,
        ignore_appointment_ids=ignore, after=after,
    )
    from django.contrib.auth import get_user_model

    names = {u.pk: u.get_full_name() or u.username for u in get_user_model().objects.filter(pk__in={s.practitioner_id for s in slots})}
    return {
        "slots": [{"slot": s, "practitioner_name": names.get(s.practitioner_id, "")} for s in slots],
        "whole_team": whole_team,
        "any_time": not respect,
        "appointment_type": appointment_type,
        "appointment_type_label": AppointmentType(appointment_type).label,
    }


def find_slots(request, pk: int, *, error=None, status=200, manual_form=None):
    referral = _referral_for_booking(request, pk)
    appointment_type = request.GET.get("type") or request.POST.get("appointment_type") or _default_type(referral)
    if appointment_type not in AppointmentType.values:
        appointment_type = AppointmentType.ASSESSMENT
    context = _slot_context(request, referral, appointment_type=appointment_type)
    context.update(
        referral=referral, patient=referral.patient, error=error,
        remaining_sessions=remaining_treatment_session_numbers(referral),
        manual_form=manual_form or forms.LocalTimeForm(initial={
            "practitioner": referral.assigned_practitioner_id, "appointment_type": appointment_type,
        }),
        types=AppointmentType.choices,
        upcoming=referral.appointments.not_cancelled().filter(outcome="0", start__gte=timezone.now()).select_related("practitioner"),
    )
    return render(request, "booking/find_slots.html", context, status=status)


def _default_type(referral: Referral) -> str:
    if referral.status in (Referral.Status.ASSESSED, Referral.Status.IN_TREATMENT):
        return AppointmentType.TREATMENT
    return AppointmentType.ASSESSMENT


def book(request, pk: int):
    """Book one slot (assessment, or a single treatment or review). A treatment slot can start a course."""
    referral = _referral_for_booking(request, pk)
    if request.method != "POST":
        return redirect("booking:find_slots", pk=pk)
    if "day" in request.POST:
        form = forms.LocalTimeForm(request.POST)
    else:
        form = forms.SlotChoiceForm(request.POST)
    if not form.is_valid():
        errors = [e for field_errors in form.errors.values() for e in field_errors]
        return find_slots(request, pk, error=" ".join(errors), status=400, manual_form=form if "day" in request.POST else None)
    data = form.cleaned_data
    if request.POST.get("course") == "1":
        query = f"?practitioner={data['practitioner'].pk}&start={data['start'].isoformat()}"
        return redirect(reverse("booking:course", args=[pk]) + query.replace("+", "%2B"))
    try:
        appointment = book_appointment(
            referral=referral, practitioner=data["practitioner"], appointment_type=data["appointment_type"],
            start=data["start"], actor=request.user, enforce_lead_time=True,
        )
    except SlotTaken as exc:
        return find_slots(request, pk, error=" ".join(_errors(exc)), status=409)
    except ValidationError as exc:
        return find_slots(request, pk, error=" ".join(_errors(exc)), status=400)
    if referral.assigned_practitioner_id is None and data["appointment_type"] == AppointmentType.ASSESSMENT:
        # An unassigned referral joins the caseload of the practitioner who assesses it.
        assign_practitioner(referral=referral, practitioner=data["practitioner"], actor=request.user)
    messages.success(request, f"Booked: {appointment} with {data['practitioner'].get_full_name()}.")
    return redirect("caseload:referral_detail", pk=pk)


def course(request, pk: int):
    """Preview the course (with skips and conflicts) and book it all or nothing."""
    referral = _referral_for_booking(request, pk)
    source = request.POST if request.method == "POST" else request.GET
    form = forms.SlotChoiceForm({"practitioner": source.get("practitioner"), "appointment_type": AppointmentType.TREATMENT,
                                 "start": source.get("start")})
    if not form.is_valid():
        return find_slots(request, pk, error="Choose the first session's time from the list.", status=400)
    practitioner, first_start = form.cleaned_data["practitioner"], form.cleaned_data["start"]
    include_reviews = source.get("reviews", "1") == "1"
    error, status = None, 200
    if request.method == "POST":
        expected = [forms.parse_instant(s) if s else None for s in request.POST.getlist("expected")]
        try:
            booked = book_course(
                referral=referral, practitioner=practitioner, first_start=first_start, actor=request.user,
                include_reviews=include_reviews, expected_starts=expected,
            )
        except CourseConflict as exc:
            error, status, plan = " ".join(_errors(exc)), 409, exc.plan
        except SlotTaken as exc:
            error, status = " ".join(_errors(exc)), 409
            plan = plan_course(referral=referral, practitioner=practitioner, first_start=first_start, include_reviews=include_reviews)
        except ValidationError as exc:
            error, status = " ".join(_errors(exc)), 400
            plan = plan_course(referral=referral, practitioner=practitioner, first_start=first_start, include_reviews=include_reviews)
        else:
            messages.success(request, f"Booked {len(booked)} sessions with {practitioner.get_full_name()}.")
            return redirect("caseload:referral_detail", pk=pk)
    else:
        plan = plan_course(referral=referral, practitioner=practitioner, first_start=first_start, include_reviews=include_reviews)
    return render(request, "booking/course.html", {
        "referral": referral, "patient": referral.patient, "practitioner": practitioner, "first_start": first_start,
        "plan": plan, "has_problems": any(p.problem for p in plan), "error": error, "include_reviews": include_reviews,
    }, status=status)


def _appointment_for_change(request, pk: int) -> Appointment:
    _require(request, "book_appointments")
    appointment = get_object_or_404(Appointment.objects.select_related("referral__patient", "practitioner"), pk=pk)
    if appointment.outcome != "0":
        raise PermissionDenied("This appointment already has an outcome.")
    return appointment


def _asked_at(value):
    if value is None:
        return None
    return timezone.make_aware(value) if timezone.is_naive(value) else value


def rearrange(request, pk: int):
    appointment = _appointment_for_change(request, pk)
    referral = appointment.referral
    ask_form = forms.AskedForm(request.POST or None, initial={"asked_by": "patient"})
    error, status = None, 200
    if request.method == "POST":
        practitioner_id, _, start = (request.POST.get("slot") or "").partition("|")
        slot_form = forms.SlotChoiceForm(
            {"practitioner": practitioner_id, "appointment_type": appointment.appointment_type, "start": start}
        )
        if ask_form.is_valid() and slot_form.is_valid():
            try:
                rearrange_appointment(
                    appointment=appointment, new_start=slot_form.cleaned_data["start"],
                    practitioner=slot_form.cleaned_data["practitioner"], asked_by=ask_form.cleaned_data["asked_by"],
                    reason=ask_form.cleaned_data["reason"], asked_at=_asked_at(ask_form.cleaned_data["asked_at"]),
                    actor=request.user, enforce_lead_time=True,
                )
            except ValidationError as exc:
                error, status = " ".join(_errors(exc)), 409 if isinstance(exc, SlotTaken) else 400
            else:
                messages.success(request, "Rearranged.")
                return redirect("caseload:referral_detail", pk=referral.pk)
        else:
            error, status = "Say who asked, and choose a new time.", 400
    context = _slot_context(request, referral, appointment_type=appointment.appointment_type, ignore=[appointment.pk])
    context.update(appointment=appointment, referral=referral, patient=referral.patient, ask_form=ask_form, error=error)
    return render(request, "booking/rearrange.html", context, status=status)


def cancel(request, pk: int):
    appointment = _appointment_for_change(request, pk)
    form = forms.CancelForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            cancel_appointment(
                appointment=appointment, cancelled_by=form.cleaned_data["cancelled_by"], reason=form.cleaned_data["reason"],
                asked_at=_asked_at(form.cleaned_data["asked_at"]), actor=request.user,
            )
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            messages.success(request, "Cancelled.")
            return redirect("caseload:referral_detail", pk=appointment.referral_id)
    return render(request, "booking/cancel.html", {"appointment": appointment, "form": form, "patient": appointment.referral.patient})


def new_referral(request):
    """Find the patient by NHS number or register them, then create the referral."""
    _require(request, "add_referral", "add_patient")
    existing = None
    nhs = request.GET.get("nhs_number") or request.POST.get("nhs_number")
    if nhs:
        try:
            existing = Patient.objects.filter(nhs_number=normalise_nhs_number(nhs)).first()
        except ValidationError:
            existing = None
    form = forms.NewReferralForm(request.POST or None, initial={"received_on": timezone.localdate(), "nhs_number": nhs or ""})
    duplicate = None
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            # One transaction: a referral refused after the patient was registered leaves no patient behind.
            with transaction.atomic():
                if existing is None or request.POST.get("use_existing") != "1":
                    patient = register_patient(
                        nhs_number=data["nhs_number"], given_name=data["given_name"], family_name=data["family_name"],
                        date_of_birth=data["date_of_birth"], mobile_phone=data["mobile_phone"], other_phone=data["other_phone"],
                        sms_consent=data["sms_consent"], voicemail_allowed=data["voicemail_allowed"],
                        preferred_days=data["preferred_days"], preferred_times=data["preferred_times"],
                    )
                else:
                    patient = existing
                referral = create_referral(
                    patient=patient, source=data["source"], received_on=data["received_on"], reason=data["reason"],
                    assigned_practitioner=data["assigned_practitioner"], actor=request.user,
                )
        except DuplicatePatient as exc:
            duplicate = exc.existing
            form.add_error("nhs_number", "A patient with this NHS number already exists.")
        except ValidationError as exc:
            for field, errs in exc.message_dict.items():
                form.add_error(field if field in form.fields else None, errs)
        else:
            messages.success(request, f"Referral created for {patient.full_name}.")
            return redirect("booking:find_slots", pk=referral.pk)
    duplicate_referral = duplicate.referrals.order_by("-received_on").first() if duplicate else None
    existing_referral = existing.referrals.order_by("-received_on").first() if existing else None
    return render(request, "booking/new_referral.html", {
        "form": form, "existing": existing, "duplicate": duplicate, "duplicate_referral": duplicate_referral,
        "existing_referral": existing_referral,
    }, status=400 if duplicate else 200)
