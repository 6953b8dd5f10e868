"""Booking screens (admin staff and managers on any caseload; PWPs on the caseloads they work). Thin:
parse the form, call a selector or service, show the result."""

from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone

from scheduling import params
from scheduling.roles import require_perms
from scheduling.booking import forms
from scheduling.booking.models import Appointment, BookingSettings, Rearrangement
from scheduling.booking.selectors import (
    next_free_slots_for_referral,
    plan_course,
    remaining_treatment_session_numbers,
    reviews_already_booked,
)
from scheduling.booking.services import (
    AlreadyDone,
    CourseConflict,
    SlotTaken,
    book_appointment,
    book_course,
    cancel_appointment,
    cancellation_notice,
    is_late_cancellation,
    is_late_rearrangement,
    rearrange_appointment,
    set_wants_sooner,
)
from scheduling.caseload.models import Patient, Referral
from scheduling.caseload.services import (
    DuplicatePatient,
    create_referral,
    patient_with_referral_errors,
    referral_errors,
    register_patient_with_referral,
)
from scheduling.caseload.nhs_number import normalise_nhs_number
from scheduling.caseload.selectors import can_book_for_referral, can_cancel_appointments, can_rearrange_appointment
from scheduling.codes import AppointmentType, AttendanceOutcome
from scheduling.errors import add_service_errors, service_error_message
from scheduling.uktime import LONDON


def _form_errors(*forms_) -> str:
    return " ".join(e for form in forms_ for field_errors in form.errors.values() for e in field_errors)


def _when(moment) -> str:
    return f"{moment.astimezone(LONDON):%a %d %b %Y %H:%M}"


def _what(appointment: Appointment) -> str:
    """"Treatment Tue 10 Mar 2026 14:30 (session 3) with Pat Jones": what, when (London) and with whom."""
    numbered = appointment.session_number and appointment.appointment_type != AppointmentType.ASSESSMENT
    session = f" (session {appointment.session_number})" if numbered else ""
    who = appointment.practitioner.get_full_name() or appointment.practitioner.get_username()
    return f"{appointment.get_appointment_type_display()} {_when(appointment.start)}{session} with {who}"


def _text_note(appointment: Appointment) -> str:
    """What the booking means for the patient's texts, as the reminders capability said when it
    answered the booking (booking.signals)."""
    return "; ".join(appointment.follow_ups)


def _notice_note(notice_hours: float, *, late: bool, short: bool, threshold_hours: int) -> str:
    given = _hours(notice_hours)
    if late:
        return f"A late cancellation ({given} notice, under {threshold_hours} hours): it counts as lost capacity."
    if short:
        return f"Cancelled by the service at short notice ({given}, under {threshold_hours} hours): it counts as lost capacity."
    return f"{given} notice: not a late cancellation, and not counted as lost capacity."


def _hours(hours: float) -> str:
    if hours < 0:
        return "no"
    if hours < 1:
        return "less than an hour's"
    if hours >= 48:
        return f"{hours / 24:.0f} days'"
    whole = int(hours)
    return f"{whole} hour{'s' if whole != 1 else ''}'"


def _already_done(request, exc: AlreadyDone):
    """A double submit: nothing changed; show where the first one left things."""
    messages.info(request, service_error_message(exc))
    return redirect("caseload:referral_detail", pk=exc.appointment.referral_id)


def _referral_for_booking(request, pk: int) -> Referral:
    referral = get_object_or_404(Referral.objects.select_related("patient", "assigned_practitioner"), pk=pk)
    # The 403 page names no one: a PWP on a caseload they do not work learns nothing about the patient.
    if not can_book_for_referral(request.user, referral):
        raise PermissionDenied
    return referral


_TICKED = ("1", "on", "true")


def _on_phone(request) -> bool:
    """The person booking says the patient agreed the time on the phone just now: the lead time gives way."""
    return request.GET.get("on_phone") in _TICKED or request.POST.get("on_phone") in _TICKED


def _back_to_calls(request) -> bool:
    # A fixed word, not a URL: nothing posted can send the browser elsewhere.
    return request.GET.get("back") == "calls" or request.POST.get("back") == "calls"


def _carried(request) -> list[tuple[str, str]]:
    """Hidden fields every slot form carries on: the phone tick and where to land afterwards."""
    fields = []
    if _on_phone(request):
        fields.append(("on_phone", "1"))
    if _back_to_calls(request):
        fields.append(("back", "calls"))
    return fields


def _landing(request, referral: Referral, *, practitioner_id=None) -> str:
    """Back to the call list the booking started from (that caseload's list, today), else the referral page."""
    owner = referral.assigned_practitioner_id or practitioner_id
    if _back_to_calls(request) and owner:
        return f"{reverse('calls:today')}?{urlencode({'practitioner': owner})}"
    return reverse("caseload:referral_detail", args=[referral.pk])


def _slot_context(request, referral: Referral, *, appointment_type: str, ignore=(), after=None, moving=None):
    whole_team = request.GET.get("team") == "1" or request.POST.get("team") == "1"
    respect = request.GET.get("any_time") != "1" and request.POST.get("any_time") != "1"
    on_phone = _on_phone(request)
    slots = next_free_slots_for_referral(
        referral=referral, appointment_type=appointment_type, whole_team=whole_team, respect_preferences=respect,
        ignore_appointment_ids=ignore, after=after, patient_on_phone=on_phone, moving=moving,
    )
    names = {u.pk: u.get_full_name() or u.username for u in get_user_model().objects.filter(pk__in={s.practitioner_id for s in slots})}
    return {
        "slots": [{"slot": s, "practitioner_name": names.get(s.practitioner_id, "")} for s in slots],
        "whole_team": whole_team,
        "any_time": not respect,
        "on_phone": on_phone,
        "back": "calls" if _back_to_calls(request) else "",
        "extra_fields": _carried(request),
        "may_cancel": can_cancel_appointments(request.user),
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
            "on_phone": context["on_phone"],
        }),
        types=AppointmentType.choices,
        upcoming=referral.appointments.not_cancelled().filter(outcome=AttendanceOutcome.NOT_APPLICABLE, start__gte=timezone.now()).select_related("practitioner"),
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
        return find_slots(request, pk, error=_form_errors(form), status=400, manual_form=form if "day" in request.POST else None)
    data = form.cleaned_data
    if request.POST.get("course") == "1":
        query = {"practitioner": data["practitioner"].pk, "start": data["start"].isoformat(), **dict(_carried(request))}
        return redirect(reverse("booking:course", args=[pk]) + "?" + urlencode(query))
    try:
        appointment = book_appointment(
            referral=referral, practitioner=data["practitioner"], appointment_type=data["appointment_type"],
            start=data["start"], actor=request.user, enforce_lead_time=True, enforce_availability=True,
            override_reason=data.get("override_reason", ""), patient_on_phone=data["on_phone"],
        )
    except AlreadyDone as exc:
        return _already_done(request, exc)
    except SlotTaken as exc:
        return find_slots(request, pk, error=service_error_message(exc), status=409)
    except ValidationError as exc:
        return find_slots(
            request, pk, error=service_error_message(exc), status=400, manual_form=form if "day" in request.POST else None
        )
    messages.success(
        request, f"Booked for {referral.patient.full_name}: {_what(appointment)}; {_text_note(appointment)}."
    )
    return redirect(_landing(request, referral, practitioner_id=data["practitioner"].pk))


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
        expected = [params.parse_instant(s.strip(), label="expected") if s.strip() else None for s in request.POST.getlist("expected")]
        try:
            booked = book_course(
                referral=referral, practitioner=practitioner, first_start=first_start, actor=request.user,
                include_reviews=include_reviews, expected_starts=expected, patient_on_phone=_on_phone(request),
            )
        except CourseConflict as exc:
            error, status, plan = service_error_message(exc), 409, exc.plan
        except SlotTaken as exc:
            error, status = service_error_message(exc), 409
            plan = plan_course(referral=referral, practitioner=practitioner, first_start=first_start, include_reviews=include_reviews)
        except ValidationError as exc:
            if exc.code == "nothing_to_book":  # the same course submitted twice: the first one booked it
                messages.info(request, "Already booked: this referral's course is fully booked.")
                return redirect("caseload:referral_detail", pk=pk)
            error, status = service_error_message(exc), 400
            plan = plan_course(referral=referral, practitioner=practitioner, first_start=first_start, include_reviews=include_reviews)
        else:
            messages.success(
                request, f"Booked {len(booked)} sessions for {referral.patient.full_name} with {practitioner.get_full_name()}, "
                f"the first {_when(booked[0].start)}; {_text_note(booked[0])}.",
            )
            return redirect(_landing(request, referral))
    else:
        plan = plan_course(referral=referral, practitioner=practitioner, first_start=first_start, include_reviews=include_reviews)
    return render(request, "booking/course.html", {
        "referral": referral, "patient": referral.patient, "practitioner": practitioner, "first_start": first_start,
        "plan": plan, "has_problems": any(p.problem for p in plan), "error": error, "include_reviews": include_reviews,
        "extra_fields": _carried(request), "already": _already_in_course(referral),
    }, status=status)


def _already_in_course(referral: Referral) -> dict:
    """What the course plan counts as done: treatments booked or held, and reviews booked or held."""
    course = BookingSettings.current().course_treatment_sessions
    return {
        "treatments": course - len(remaining_treatment_session_numbers(referral)), "course": course,
        "reviews": reviews_already_booked(referral),
    }


def _appointment_for_change(request, pk: int, *, cancelling: bool = False) -> Appointment:
    if cancelling and not can_cancel_appointments(request.user):
        raise PermissionDenied  # before anything is read: PWPs never cancel
    appointment = get_object_or_404(Appointment.objects.select_related("referral__patient", "practitioner"), pk=pk)
    if not can_rearrange_appointment(request.user, appointment):
        raise PermissionDenied
    # A cancelled one gets through: the views answer a repeated cancel or rearrange with where it went.
    if appointment.outcome != AttendanceOutcome.NOT_APPLICABLE and not appointment.is_cancelled:
        raise PermissionDenied("This appointment already has an outcome.")
    return appointment


def _show_where_it_went(request, appointment: Appointment):
    moved = Rearrangement.objects.filter(original=appointment).select_related("replacement").first()
    messages.info(request, f"Already rearranged to {moved.replacement}." if moved else f"Already cancelled: {appointment}.")
    return redirect("caseload:referral_detail", pk=appointment.referral_id)


def _asked_at(value):
    if value is None:
        return None
    return timezone.make_aware(value) if timezone.is_naive(value) else value


def rearrange(request, pk: int):
    appointment = _appointment_for_change(request, pk)
    if appointment.is_cancelled and request.method != "POST":
        return _show_where_it_went(request, appointment)
    referral = appointment.referral
    ask_form = forms.AskedForm(request.POST or None, initial={"asked_by": "patient"})
    typed = request.method == "POST" and request.POST.get("typed") == "1"
    # Not required in the browser: the page's main button moves to a listed slot and must not be blocked by it.
    time_form = forms.RearrangeTimeForm(
        request.POST if typed else None, initial={"practitioner": appointment.practitioner_id}, use_required_attribute=False
    )
    error, status = None, 200
    if request.method == "POST":
        if typed:
            chosen_form = time_form
        else:
            practitioner_id, _, start = (request.POST.get("slot") or "").partition("|")
            chosen_form = forms.SlotChoiceForm(
                {"practitioner": practitioner_id, "appointment_type": appointment.appointment_type, "start": start}
            )
        if ask_form.is_valid() and chosen_form.is_valid():
            try:
                moved = rearrange_appointment(
                    appointment=appointment, new_start=chosen_form.cleaned_data["start"],
                    practitioner=chosen_form.cleaned_data["practitioner"], asked_by=ask_form.cleaned_data["asked_by"],
                    reason=ask_form.cleaned_data["reason"], asked_at=_asked_at(ask_form.cleaned_data["asked_at"]),
                    actor=request.user, enforce_lead_time=True, enforce_availability=True, enforce_asked_at=True,
                    patient_on_phone=_on_phone(request), override_reason=chosen_form.cleaned_data.get("override_reason", ""),
                )
            except AlreadyDone as exc:
                return _already_done(request, exc)
            except ValidationError as exc:
                error, status = service_error_message(exc), 409 if isinstance(exc, SlotTaken) else 400
            else:
                late = " It counts as a late cancellation." if is_late_rearrangement(moved) else ""
                messages.success(
                    request,
                    f"Rearranged for {referral.patient.full_name}: now {_what(moved.replacement)} "
                    f"(was {_when(moved.original.start)}); {_text_note(moved.replacement)}.{late}",
                )
                return redirect(_landing(request, referral))
        elif typed:
            error, status = f"Say who asked, and enter the new time. {_form_errors(ask_form, time_form)}".strip(), 400
        else:
            problems = _form_errors(ask_form) + (" " + _form_errors(chosen_form) if start or practitioner_id else "")
            error, status = f"Say who asked, and choose a new time. {problems}".strip(), 400
    context = _slot_context(request, referral, appointment_type=appointment.appointment_type, moving=appointment)
    context.update(
        appointment=appointment, referral=referral, patient=referral.patient, ask_form=ask_form, time_form=time_form,
        error=error, typed=typed,
    )
    return render(request, "booking/rearrange.html", context, status=status)


def cancel(request, pk: int):
    appointment = _appointment_for_change(request, pk, cancelling=True)
    if appointment.is_cancelled and request.method != "POST":
        return _show_where_it_went(request, appointment)
    form = forms.CancelForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            cancelled = cancel_appointment(
                appointment=appointment, cancelled_by=form.cleaned_data["cancelled_by"], reason=form.cleaned_data["reason"],
                asked_at=_asked_at(form.cleaned_data["asked_at"]), actor=request.user, enforce_asked_at=True,
            )
        except AlreadyDone as exc:
            return _already_done(request, exc)
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            notice = cancellation_notice(appointment=cancelled, asked_at=cancelled.cancelled_at)
            patient = cancelled.referral.patient
            messages.success(request, (
                f"Cancelled for {patient.full_name}: {_what(cancelled)}; the patient is not texted about it, and texts still to go for it are cancelled. "
                + _notice_note(notice.notice_hours, late=is_late_cancellation(cancelled), short=notice.short,
                               threshold_hours=notice.threshold_hours)
            ))
            return redirect("caseload:referral_detail", pk=appointment.referral_id)
    # Said before confirming, for a cancellation asked for now; the page gives the cut-off for an earlier one.
    notice = cancellation_notice(appointment=appointment)
    return render(
        request, "booking/cancel.html", {
            "appointment": appointment, "form": form, "patient": appointment.referral.patient,
            "notice": notice, "notice_words": _hours(notice.notice_hours).rstrip("'"),
        },
        status=400 if request.method == "POST" else 200,
    )


def _add_registration_errors(form, *, existing):
    """The service's checks on the fields the form could read, so one submit shows every problem (not the
    form's errors, then the service's on the next submit). A field the form already refused keeps its own error."""
    data = {name: value for name, value in form.cleaned_data.items() if value is not None}
    if existing is not None:
        fields = ("source", "received_on", "reason")
        errors = referral_errors(patient=existing, **{k: v for k, v in data.items() if k in fields})
    else:
        data.pop("assigned_practitioner", None)
        errors = patient_with_referral_errors(**data)
    for field, message in errors.items():
        if field in form.fields and field not in form.errors:
            form.add_error(field, message)


def new_referral(request):
    """Find the patient by NHS number or register them, then create the referral."""
    require_perms(request, "add_referral", "add_patient")
    existing = None
    nhs = request.GET.get("nhs_number") or request.POST.get("nhs_number")
    if nhs:
        try:
            existing = Patient.objects.filter(nhs_number=normalise_nhs_number(nhs)).first()
        except ValidationError:
            existing = None
    form = forms.NewReferralForm(request.POST or None, initial={"received_on": timezone.localdate(), "nhs_number": nhs or ""})
    duplicate = None
    # An empty POST leaves the form unbound: shown again as on GET, as before.
    if form.is_bound and not form.is_valid():
        _add_registration_errors(form, existing=existing if request.POST.get("use_existing") == "1" else None)
    elif form.is_bound:
        data = form.cleaned_data
        try:
            if existing is not None and request.POST.get("use_existing") == "1":
                referral = create_referral(
                    patient=existing, source=data["source"], received_on=data["received_on"], reason=data["reason"],
                    assigned_practitioner=data["assigned_practitioner"], actor=request.user,
                )
            else:
                # One service, one transaction: a refused referral leaves no patient behind.
                referral = register_patient_with_referral(
                    nhs_number=data["nhs_number"], given_name=data["given_name"], family_name=data["family_name"],
                    date_of_birth=data["date_of_birth"], mobile_phone=data["mobile_phone"], other_phone=data["other_phone"],
                    sms_consent=data["sms_consent"], voicemail_allowed=data["voicemail_allowed"],
                    preferred_days=data["preferred_days"], preferred_times=data["preferred_times"],
                    source=data["source"], received_on=data["received_on"], reason=data["reason"],
                    assigned_practitioner=data["assigned_practitioner"], actor=request.user,
                )
        except DuplicatePatient as exc:
            duplicate = exc.existing
            form.add_error("nhs_number", "A patient with this NHS number already exists.")
        except ValidationError as exc:
            add_service_errors(form, exc)
        else:
            messages.success(request, f"Referral created for {referral.patient.full_name}.")
            return redirect("booking:find_slots", pk=referral.pk)
    duplicate_referral = duplicate.referrals.order_by("-received_on").first() if duplicate else None
    existing_referral = existing.referrals.order_by("-received_on").first() if existing else None
    return render(request, "booking/new_referral.html", {
        "form": form, "existing": existing, "duplicate": duplicate, "duplicate_referral": duplicate_referral,
        "existing_referral": existing_referral,
    }, status=400 if duplicate or form.errors else 200)


def wants_sooner(request, pk: int):
    """Admin staff record that the patient would take an earlier time for this appointment (sooner-slot
    offers look for it), or no longer would. POST only; audited by the service."""
    require_perms(request, "book_appointments")
    if request.method != "POST":
        return redirect("worklist:index")
    appointment = get_object_or_404(Appointment.objects.select_related("referral"), pk=pk)
    wanted = params.choice_param(request.POST, "wants_sooner", choices=("yes", "no"), label="wants sooner")
    if not wanted:
        raise params.InvalidParameter("wants sooner: say yes or no.")
    try:
        set_wants_sooner(appointment=appointment, wants_sooner=wanted == "yes", actor=request.user)
    except ValidationError as exc:
        messages.error(request, service_error_message(exc))
    else:
        messages.success(request, "Recorded: the patient will be offered an earlier time if one comes free."
                         if wanted == "yes" else "Recorded: no earlier times will be offered for this appointment.")
    return redirect("booking:find_slots", appointment.referral_id)
