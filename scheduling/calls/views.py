"""The PWP's daily call list. Thin: permissions, parsing, then selectors and services."""

from datetime import date, timedelta
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpResponseBadRequest
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from scheduling.booking.models import Appointment
from scheduling.calls.forms import CallOutcomeForm, UndoForm
from scheduling.calls.models import CallOutcomeEffect, ContactAttempt
from scheduling.calls.selectors import booked_calls, call_list, people_to_reach, practitioners_viewable_by
from scheduling.calls.services import CallButton, invite_to_opt_in, record_call_outcome, undo_call_outcome
from scheduling.caseload.models import Referral
from scheduling.caseload.selectors import can_log_contact_on_caseload_of, can_open_caseload_of, can_view_all_caseloads


def _parse_day(value: str | None) -> date:
    if value:
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    return timezone.localdate()


def _may_log(user, owner) -> bool:
    if owner is None:
        return user.has_perm("scheduling.log_contact") and can_view_all_caseloads(user)
    return can_log_contact_on_caseload_of(user, owner)


def _book_assessment_url(referral) -> str:
    for name in ("booking:book", "booking:book_appointment"):
        try:
            return reverse(name, kwargs={"referral_pk": referral.pk})
        except NoReverseMatch:
            continue
    return reverse("caseload:referral_detail", args=[referral.pk])


def _urls():
    # Reversed once per page rather than once per row (hundreds of rows on a big caseload).
    return {"log_url": reverse("calls:log"), "undo_url": reverse("calls:undo"), "invite_url": reverse("calls:invite")}


def _row_context(*, practitioner_id, day, can_log: bool):
    return {
        "can_log": can_log,
        "practitioner_id": practitioner_id,
        "day": day,
        "day_iso": day.isoformat(),
        "today": timezone.localdate(),
        **_urls(),
    }


def today(request):
    user = request.user
    if not user.has_perm("scheduling.view_appointment"):
        raise PermissionDenied
    day = _parse_day(request.GET.get("date"))
    practitioner_id = request.GET.get("practitioner")
    User = get_user_model()
    if practitioner_id:
        if not practitioner_id.isdigit():
            return HttpResponseBadRequest("Unknown practitioner.")
        practitioner = get_object_or_404(User, pk=practitioner_id, practitioner__isnull=False)
    elif hasattr(user, "practitioner"):
        practitioner = user
    else:
        practitioner = None
    if practitioner is not None and not can_open_caseload_of(user, practitioner):
        raise PermissionDenied
    choices = practitioners_viewable_by(user)
    context = {
        "day": day,
        "day_iso": day.isoformat(),
        "today": timezone.localdate(),
        "previous_day": day - timedelta(days=1),
        "next_day": day + timedelta(days=1),
        "practitioner": practitioner,
        "practitioner_id": practitioner.pk if practitioner else "",
        "choices": choices,
        "can_log": False,
        **_urls(),
    }
    if practitioner is not None:
        context["calls"] = call_list(practitioner=practitioner, day=day, viewer=user)
        for row in context["calls"].to_reach:
            if row.offers_booking:
                row.book_url = _book_assessment_url(row.referral)
        context["can_log"] = _may_log(user, practitioner)
    return render(request, "calls/today.html", context)


def _redirect_back(request, anchor: str = ""):
    # Only a well-formed day and id go back into the URL: the outcome is already recorded, and an
    # over-long Location would turn that success into a 400 (DisallowedRedirect), inviting a second click.
    day, practitioner = request.POST.get("date", ""), request.POST.get("practitioner", "")
    params = {}
    if len(day) == 10 and _parse_day(day).isoformat() == day:
        params["date"] = day
    if practitioner.isascii() and practitioner.isdigit() and len(practitioner) <= 10:
        params["practitioner"] = practitioner
    url = reverse("calls:today") + (f"?{urlencode(params)}" if params else "")
    return redirect(url + (f"#{anchor}" if anchor else ""))


def _render_row(request, *, referral, appointment, message: str = "", error: str = ""):
    user = request.user
    day = _parse_day(request.POST.get("date"))
    owner_id = request.POST.get("practitioner") or ""
    if appointment is not None:
        rows = booked_calls(
            practitioner=appointment.practitioner, day=day, viewer=user, appointment_ids=[appointment.pk]
        )
        owner = appointment.practitioner
        template = "calls/_booked_row.html"
    else:
        rows = people_to_reach(
            practitioner=referral.assigned_practitioner, viewer=user, referral_ids=[referral.pk], include_spoken=True
        )
        owner = referral.assigned_practitioner
        template = "calls/_reach_row.html"
    context = _row_context(practitioner_id=owner_id, day=day, can_log=_may_log(user, owner))
    context.update({"row": rows[0], "message": message, "error": error})
    if appointment is None and rows[0].offers_booking:
        rows[0].book_url = _book_assessment_url(referral)
    return render(request, template, context)


@require_POST
def log_outcome(request):
    form = CallOutcomeForm(request.POST)
    if not form.is_valid():
        if "referral" in form.errors or "button" in form.errors:
            return HttpResponseBadRequest("Unknown call or outcome.")
    referral = get_object_or_404(
        Referral.objects.select_related("patient", "assigned_practitioner"), pk=form.cleaned_data["referral"]
    )
    appointment = None
    if form.cleaned_data.get("appointment"):
        appointment = get_object_or_404(
            Appointment.objects.select_related("practitioner"), pk=form.cleaned_data["appointment"]
        )
    owner = appointment.practitioner if appointment is not None else referral.assigned_practitioner
    if not _may_log(request.user, owner):
        raise PermissionDenied
    message = error = ""
    if form.errors:
        error = " ".join(str(e) for errors in form.errors.values() for e in errors)
    else:
        button = form.cleaned_data["button"]
        try:
            record_call_outcome(
                referral=referral,
                button=button,
                actor=request.user,
                appointment=appointment,
                callback_at=form.cleaned_data.get("callback_at") if button == CallButton.CALLBACK else None,
                note=form.cleaned_data.get("note") or "",
            )
            message = f"Recorded: {CallButton(button).label}."
        except ValidationError as exc:
            error = " ".join(exc.messages)
        referral.refresh_from_db()
        if appointment is not None:
            appointment.refresh_from_db()
    anchor = f"appointment-{appointment.pk}" if appointment is not None else f"referral-{referral.pk}"
    if request.headers.get("HX-Request"):
        return _render_row(request, referral=referral, appointment=appointment, message=message, error=error)
    if error:
        messages.error(request, f"{referral.patient.full_name}: {error}")
    else:
        messages.success(request, f"{referral.patient.full_name}: {message}")
    return _redirect_back(request, anchor)


@require_POST
def undo(request):
    form = UndoForm(request.POST)
    if not form.is_valid():
        return HttpResponseBadRequest("Unknown call.")
    attempt = get_object_or_404(
        ContactAttempt.objects.select_related(
            "referral__patient", "referral__assigned_practitioner", "appointment__practitioner"
        ),
        pk=form.cleaned_data["attempt"],
    )
    owner = attempt.appointment.practitioner if attempt.appointment_id else attempt.referral.assigned_practitioner
    if not _may_log(request.user, owner):
        raise PermissionDenied
    message = error = ""
    try:
        undo_call_outcome(attempt=attempt, actor=request.user)
        effect = CallOutcomeEffect.objects.filter(attempt=attempt).values_list("button", flat=True).first()
        label = CallButton(effect).label if effect in CallButton.values else attempt.get_outcome_display()
        if effect == CallButton.SPOKE and attempt.appointment_id is None:
            label = "Spoke to patient"
        message = f"Undone: {label}."
    except ValidationError as exc:
        error = " ".join(exc.messages)
    referral = attempt.referral
    referral.refresh_from_db()
    appointment = attempt.appointment
    if appointment is not None:
        appointment.refresh_from_db()
    if request.headers.get("HX-Request"):
        return _render_row(request, referral=referral, appointment=appointment, message=message, error=error)
    if error:
        messages.error(request, f"{referral.patient.full_name}: {error}")
    else:
        messages.success(request, f"{referral.patient.full_name}: {message}")
    anchor = f"appointment-{appointment.pk}" if appointment is not None else f"referral-{referral.pk}"
    return _redirect_back(request, anchor)


@require_POST
def invite(request):
    """Record the opt-in invitation for someone whose policy attempts have all failed."""
    referral_id = request.POST.get("referral") or ""
    if not referral_id.isdigit():
        return HttpResponseBadRequest("Unknown referral.")
    referral = get_object_or_404(Referral.objects.select_related("patient", "assigned_practitioner"), pk=referral_id)
    if not _may_log(request.user, referral.assigned_practitioner):
        raise PermissionDenied
    message = error = ""
    try:
        invite_to_opt_in(referral=referral, actor=request.user)
        message = "Opt-in invitation recorded."
    except ValidationError as exc:
        error = " ".join(exc.messages)
    if request.headers.get("HX-Request"):
        return _render_row(request, referral=referral, appointment=None, message=message, error=error)
    if error:
        messages.error(request, f"{referral.patient.full_name}: {error}")
    else:
        messages.success(request, f"{referral.patient.full_name}: {message}")
    return _redirect_back(request, f"referral-{referral.pk}")
