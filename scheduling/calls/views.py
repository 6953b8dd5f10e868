"""The PWP's daily call list. Thin: parameters (scheduling.params), permissions, then selectors and services.
Every parameter is read before anything is looked at, and permission is checked before anything names
the person."""

from datetime import date, timedelta
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from scheduling.booking.models import Appointment
from scheduling.calls.buttons import CallButton, action_label
from scheduling.calls.models import CallOutcomeEffect, ContactAttempt
from scheduling.calls.selectors import (
    booked_calls,
    call_list,
    callbacks_on,
    people_to_reach,
    practitioners_viewable_by,
)
from scheduling.calls.services import CALLBACK_HORIZON, invite_to_opt_in, record_call_outcome, undo_call_outcome
from scheduling.caseload.models import ClinicalNote, Referral
from scheduling.caseload.selectors import can_log_contact_on_caseload_of, can_open_caseload_of, can_view_all_caseloads
from scheduling.errors import service_error_message
from scheduling.params import InvalidParameter, date_param, id_param, local_datetime_param, page_param


# Without JavaScript the list is reloaded at the row's anchor: the result of the click waits here for that
# page so it is shown inside the row (besides the page-top message).
ROW_FEEDBACK_KEY = "calls.row_feedback"


def _day(data) -> date:
    return date_param(data, "date", default=timezone.localdate(), label="date")


def _required_id(data, name: str) -> int:
    value = id_param(data, name, label=name)
    if value is None:
        raise InvalidParameter(f"{name}: missing.")
    return value


def _may_log(user, owner) -> bool:
    if owner is None:
        return user.has_perm("scheduling.log_contact") and can_view_all_caseloads(user)
    return can_log_contact_on_caseload_of(user, owner)


def _book_assessment_url(referral) -> str:
    # The slot finder for this referral, coming back to the call list after booking. A wrong URL name
    # fails loudly here rather than quietly sending the PWP somewhere they cannot book.
    query = urlencode({"type": "assessment", "back": "calls"})
    return f"{reverse('booking:find_slots', args=[referral.pk])}?{query}"


def _urls(user):
    # Reversed once per page rather than once per row (hundreds of rows on a big caseload). The call-back
    # bounds let the browser's picker stop a far date early; the service still checks them.
    now = timezone.now()
    return {
        # The note box only for those who write clinical notes (PWPs); the service checks again.
        "may_write_notes": user.has_perm("scheduling.add_clinicalnote"),
        "note_max_length": ClinicalNote.MAX_LENGTH,
        "list_url": reverse("calls:today"),
        "log_url": reverse("calls:log"),
        "undo_url": reverse("calls:undo"),
        "invite_url": reverse("calls:invite"),
        "callback_min": f"{timezone.localtime(now):%Y-%m-%dT%H:%M}",
        "callback_max": f"{timezone.localtime(now + CALLBACK_HORIZON):%Y-%m-%dT%H:%M}",
    }


def _row_context(*, user, practitioner_id, day, can_log: bool):
    return {
        "can_log": can_log,
        "practitioner_id": practitioner_id,
        "day": day,
        "day_iso": day.isoformat(),
        "today": timezone.localdate(),
        **_urls(user),
    }


def today(request):
    user = request.user
    if not user.has_perm("scheduling.view_appointment"):
        raise PermissionDenied
    day = _day(request.GET)
    practitioner_id = id_param(request.GET, "practitioner", label="practitioner")
    reach_page = page_param(request.GET, "page", label="page")
    if practitioner_id is not None:
        practitioner = get_object_or_404(get_user_model(), pk=practitioner_id, practitioner__isnull=False)
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
        "reach_page": 1,
        **_urls(user),
    }
    context["feedback"] = request.session.pop(ROW_FEEDBACK_KEY, None)
    if practitioner is not None:
        context["calls"] = call_list(practitioner=practitioner, day=day, viewer=user, reach_page=reach_page)
        context["reach_page"] = context["calls"].reach_page
        for row in context["calls"].to_reach:
            if row.offers_booking:
                row.book_url = _book_assessment_url(row.referral)
        context["can_log"] = _may_log(user, practitioner)
    return render(request, "calls/today.html", context)


def _back(data) -> dict:
    """Which list a posted row came from (its day and practitioner), read before anything is written."""
    given = date_param(data, "date", label="date")
    return {
        "date": given,
        "day": given or timezone.localdate(),
        "practitioner_id": id_param(data, "practitioner", label="practitioner") or "",
        "page": page_param(data, "page", label="page"),
    }


def _check_may_log(user, *, referral, appointment=None) -> None:
    """Refuse, without naming anyone, before anything about the person is read out or written. On a booked
    session the session's practitioner's caseload decides (as on the list that shows it); otherwise the
    referral's. An appointment of another referral is refused too, so neither id opens the other."""
    if appointment is not None:
        if appointment.referral_id != referral.pk:
            if _may_log(user, referral.assigned_practitioner) and _may_log(user, appointment.practitioner):
                raise InvalidParameter("appointment: that appointment belongs to another referral.")
            raise PermissionDenied
        if not _may_log(user, appointment.practitioner):
            raise PermissionDenied
    elif not _may_log(user, referral.assigned_practitioner):
        raise PermissionDenied


def _redirect_back(back: dict, anchor: str = ""):
    params = {
        k: v
        for k, v in (
            ("date", back["date"].isoformat() if back["date"] else ""),
            ("practitioner", back["practitioner_id"]),
            ("page", back["page"] if back["page"] > 1 else ""),
        )
        if v
    }
    url = reverse("calls:today") + (f"?{urlencode(params)}" if params else "")
    return redirect(url + (f"#{anchor}" if anchor else ""))


def _callback_request(data, referral):
    """The call-back row a post came from (its request attempt), read after the permission check: it must
    be a call-back request on the same referral."""
    request_id = id_param(data, "callback", label="callback")
    if request_id is None:
        return None
    found = ContactAttempt.objects.filter(
        pk=request_id, referral_id=referral.pk, outcome=ContactAttempt.Outcome.CALLBACK_REQUESTED
    ).exists()
    if not found:
        raise InvalidParameter("callback: that is not a call back asked for by this person.")
    return request_id


def _row_id(*, referral, appointment, callback_id) -> str:
    if callback_id is not None:
        return f"callback-{callback_id}"
    return f"appointment-{appointment.pk}" if appointment is not None else f"referral-{referral.pk}"


def _render_row(request, back: dict, *, referral, appointment, callback_id=None, message: str = "", error: str = ""):
    user = request.user
    day = back["day"]
    rows = []
    if callback_id is not None:
        rows = callbacks_on(practitioner=None, day=day, viewer=user, request_ids=[callback_id])
        owner = appointment.practitioner if appointment is not None else referral.assigned_practitioner
        template = "calls/_callback_row.html"
    if rows:
        pass  # the call-back row (gone only if its request was undone meanwhile: then the person's row)
    elif appointment is not None:
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
    context = _row_context(user=user, practitioner_id=back["practitioner_id"], day=day, can_log=_may_log(user, owner))
    context["reach_page"] = back["page"]
    context.update({"row": rows[0], "message": message, "error": error})
    if rows[0].kind == "reach" and rows[0].offers_booking:
        rows[0].book_url = _book_assessment_url(referral)
    return render(request, template, context)


def _answer(request, back: dict, *, referral, appointment, message: str, error: str, callback_id=None):
    """The updated row for htmx; otherwise a flash message, the result kept for the row, and back to the
    list at that row. Only reached once _check_may_log has passed, so naming the person here is fine."""
    if request.headers.get("HX-Request"):
        return _render_row(
            request, back, referral=referral, appointment=appointment, callback_id=callback_id, message=message,
            error=error,
        )
    if error:
        messages.error(request, f"{referral.patient.full_name}: {error}")
    else:
        messages.success(request, f"{referral.patient.full_name}: {message}")
    anchor = _row_id(referral=referral, appointment=appointment, callback_id=callback_id)
    request.session[ROW_FEEDBACK_KEY] = {"row": anchor, "message": message, "error": error}
    return _redirect_back(back, anchor)


@require_POST
def log_outcome(request):
    data = request.POST
    back = _back(data)
    referral_id = _required_id(data, "referral")
    appointment_id = id_param(data, "appointment", label="appointment")
    button = data.get("button", "")
    if button not in CallButton.values:
        raise InvalidParameter(f"button: “{button[:40]}” is not a call outcome.")
    referral = get_object_or_404(
        Referral.objects.select_related("patient", "assigned_practitioner"), pk=referral_id
    )
    appointment = None
    if appointment_id is not None:
        appointment = get_object_or_404(Appointment.objects.select_related("practitioner"), pk=appointment_id)
    _check_may_log(request.user, referral=referral, appointment=appointment)
    callback_id = _callback_request(data, referral)
    message = error = ""
    callback_at = None
    if button == CallButton.CALLBACK:
        try:
            callback_at = local_datetime_param(data, "callback_at", label="Call-back time")
        except InvalidParameter as exc:
            error = str(exc)  # typed by the user: shown on the row like any other refusal
    if not error:
        try:
            record_call_outcome(
                referral=referral,
                button=button,
                actor=request.user,
                appointment=appointment,
                callback_at=callback_at,
                note=data.get("note", ""),
                clinical_note=data.get("clinical_note", ""),
            )
            message = f"Recorded: {action_label(button, on_appointment=appointment is not None)}."
        except ValidationError as exc:
            error = service_error_message(exc)
        referral.refresh_from_db()
        if appointment is not None:
            appointment.refresh_from_db()
    return _answer(
        request, back, referral=referral, appointment=appointment, message=message, error=error, callback_id=callback_id
    )


@require_POST
def undo(request):
    back = _back(request.POST)
    attempt = get_object_or_404(
        ContactAttempt.objects.select_related(
            "referral__patient", "referral__assigned_practitioner", "appointment__practitioner"
        ),
        pk=_required_id(request.POST, "attempt"),
    )
    _check_may_log(request.user, referral=attempt.referral, appointment=attempt.appointment)
    callback_id = _callback_request(request.POST, attempt.referral)
    message = error = ""
    try:
        undo_call_outcome(attempt=attempt, actor=request.user)
        effect = CallOutcomeEffect.objects.filter(attempt=attempt).values_list("button", flat=True).first()
        label = (
            action_label(effect, on_appointment=attempt.appointment_id is not None)
            if effect in CallButton.values
            else attempt.get_outcome_display()
        )
        message = f"Undone: {label}."
    except ValidationError as exc:
        error = service_error_message(exc)
    referral = attempt.referral
    referral.refresh_from_db()
    appointment = attempt.appointment
    if appointment is not None:
        appointment.refresh_from_db()
    if callback_id is not None and attempt.pk == callback_id:
        callback_id = None  # the call-back request itself was undone: its row is gone, answer with the person's
    return _answer(
        request, back, referral=referral, appointment=appointment, message=message, error=error, callback_id=callback_id
    )


@require_POST
def invite(request):
    """Record the opt-in invitation for someone whose policy attempts have all failed."""
    back = _back(request.POST)
    referral = get_object_or_404(
        Referral.objects.select_related("patient", "assigned_practitioner"), pk=_required_id(request.POST, "referral")
    )
    _check_may_log(request.user, referral=referral)
    message = error = ""
    try:
        invite_to_opt_in(referral=referral, actor=request.user)
        message = "Opt-in invitation recorded."
    except ValidationError as exc:
        error = service_error_message(exc)
    return _answer(request, back, referral=referral, appointment=None, message=message, error=error)
