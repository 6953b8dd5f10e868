"""The self-service page (no login: the signed link and the date of birth stand in for it). Thin: count the
request, resolve the link, check the session knows the date of birth, call a selector or service.

Before the date of birth is right the page shows the patient's first name and nothing else; a refused link
shows no detail at all. Every response says not to cache or index it (the token is in the address)."""

import datetime as dt
from functools import wraps

from axes.helpers import get_client_ip_address
from django.contrib import messages
from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_http_methods

from scheduling import patient_links
from scheduling.booking.services import AlreadyDone
from scheduling.caseload.models import ServiceSettings
from scheduling.errors import service_error_message
from scheduling.patient_links import PatientLink
from scheduling.selfservice import forms, selectors, services

# How long a right date of birth opens the page in this browser (also bounded by the session's idle time).
VERIFIED_FOR = dt.timedelta(minutes=15)
_SESSION_KEY = "selfservice_verified"

REFUSED_PAGES = {
    # reason: (template, status)
    "expired": ("selfservice/expired.html", 410),
    "locked": ("selfservice/locked.html", 403),
}


def _private(response):
    response["Cache-Control"] = "no-store"
    # Referrer-Policy stays the site's "same-origin": the address (with the token) never leaves the site, and
    # "no-referrer" would make browsers send "Origin: null" with the forms, which the CSRF check refuses.
    response["X-Robots-Tag"] = "noindex, nofollow"
    return response


def _page(request, template: str, context: dict | None = None, *, status: int = 200):
    context = {"service_phone": ServiceSettings.current().service_phone, **(context or {})}
    return _private(render(request, template, context, status=status))


def self_service(view):
    """Count the request (per client address, then per link once its signature is right), resolve the link or
    show the refusal page, and pass the live link on. Anonymous by design (login_not_required)."""

    @login_not_required
    @wraps(view)
    def wrapper(request, token: str, *args, **kwargs):
        now = timezone.now()
        try:
            services.count_address_request(address=get_client_ip_address(request) or "", now=now)
            token_hash = patient_links.verified_hash(token)
            services.count_link_request(token_hash=token_hash, now=now)
            link = patient_links.resolve_token(token, now=now)
        except services.RateLimited:
            return _page(request, "selfservice/slow_down.html", status=429)
        except patient_links.LinkRefused as refused:
            template, status = REFUSED_PAGES.get(refused.reason, ("selfservice/refused.html", 404))
            return _page(request, template, status=status)
        return view(request, link, token, *args, **kwargs)

    return wrapper


def _is_verified(request, link) -> bool:
    until = request.session.get(_SESSION_KEY, {}).get(str(link.pk))
    return until is not None and dt.datetime.fromisoformat(until) > timezone.now()


def _remember_verified(request, link) -> None:
    # A new session key on proving who they are, so a session id planted before cannot ride on it.
    request.session.cycle_key()
    verified = {k: v for k, v in request.session.get(_SESSION_KEY, {}).items()
                if dt.datetime.fromisoformat(v) > timezone.now()}
    verified[str(link.pk)] = (timezone.now() + VERIFIED_FOR).isoformat()
    request.session[_SESSION_KEY] = verified


def _home(token: str):
    return redirect(reverse("selfservice:start", args=[token]))


@self_service
@require_http_methods(["GET", "POST"])
def start(request, link, token):
    """The date-of-birth check, then the appointment with what the patient can do."""
    if request.method == "POST" and not _is_verified(request, link):
        form = forms.DateOfBirthForm(request.POST)
        if form.is_valid():
            if services.check_date_of_birth(link=link, date_of_birth=form.cleaned_data["date_of_birth"]):
                _remember_verified(request, link)
                return _private(_home(token))
            link.refresh_from_db()
            if link.is_locked:
                return _page(request, "selfservice/locked.html", status=403)
            left = patient_links.MAX_WRONG_TRIES - link.wrong_tries
            form.add_error(None, (
                f"That date of birth does not match. You can try {left} more time{'s' if left != 1 else ''} "
                "before this link stops working."
            ))
        return _page(request, "selfservice/date_of_birth.html", {"form": form, "link": link, "token": token}, status=400)
    if not _is_verified(request, link):
        form = forms.DateOfBirthForm()
        return _page(request, "selfservice/date_of_birth.html", {"form": form, "link": link, "token": token})
    if link.purpose == PatientLink.Purpose.OFFER:
        offer = selectors.offer_state(link)
        return _page(request, "selfservice/offer.html", {"offer": offer, "link": link, "token": token})
    state = selectors.page_state(link)
    return _page(request, "selfservice/appointment.html", {"state": state, "link": link, "token": token})


def _verified_only(view):
    @wraps(view)
    def wrapper(request, link, token, *args, **kwargs):
        if not _is_verified(request, link):
            return _private(_home(token))
        return view(request, link, token, *args, **kwargs)

    return wrapper


def _for(purpose: str):
    """The action belongs to links of this purpose; another link's page is all the patient gets."""

    def decorator(view):
        @wraps(view)
        def wrapper(request, link, token, *args, **kwargs):
            if link.purpose != purpose:
                return _private(_home(token))
            return view(request, link, token, *args, **kwargs)

        return wrapper

    return decorator


_appointment_only = _for(PatientLink.Purpose.APPOINTMENT)


@self_service
@_verified_only
@_for(PatientLink.Purpose.OFFER)
@require_http_methods(["POST"])
def take(request, link, token):
    """Take the offered time: the same service as a "YES <code>" reply. Then back to the page, which shows
    "Booked: <time>", or that the time has gone (no text is sent: the patient is reading the page)."""
    services.take_offer(link=link)
    return _private(_home(token))


@self_service
@_verified_only
@_appointment_only
@require_http_methods(["POST"])
def confirm(request, link, token):
    try:
        changed = services.confirm(link=link)
    except ValidationError as exc:
        messages.error(request, service_error_message(exc))
    else:
        messages.success(request, "Thank you. You have confirmed your phone call." if changed
                         else "You have already confirmed this phone call.")
    return _private(_home(token))


@self_service
@_verified_only
@_appointment_only
@require_http_methods(["GET", "POST"])
def cancel(request, link, token):
    state = selectors.page_state(link)
    if not state.can_act:
        return _private(_home(token))
    if request.method == "POST":
        try:
            services.cancel(link=link)
        except AlreadyDone:
            messages.info(request, "This phone call was already cancelled.")
        except ValidationError as exc:
            messages.error(request, service_error_message(exc))
        else:
            messages.success(request, "Your phone call is cancelled.")
        return _private(_home(token))
    notice = selectors.notice_if_cancelled_now(state.appointment)
    return _page(request, "selfservice/cancel.html", {"state": state, "notice": notice, "token": token})


@self_service
@_verified_only
@_appointment_only
@require_http_methods(["GET", "POST"])
def move(request, link, token):
    state = selectors.page_state(link)
    if not state.can_act:
        return _private(_home(token))
    form = forms.PickTimeForm(request.POST or None)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                rearrangement = services.move(link=link, new_start=form.cleaned_data["start"])
            except AlreadyDone as done:
                messages.info(request, f"Your phone call is already moved to {selectors.when_words(done.appointment.start)}.")
                return _private(_home(token))
            except ValidationError as exc:
                form.add_error(None, service_error_message(exc))
            else:
                messages.success(
                    request, f"Your phone call is now on {selectors.when_words(rearrangement.replacement.start)}."
                )
                return _private(_home(token))
        status = 400
    slots = [(slot.start.isoformat(), selectors.when_words(slot.start)) for slot in selectors.times_to_move_to(state.appointment)]
    notice = selectors.notice_if_cancelled_now(state.appointment)
    return _page(request, "selfservice/move.html", {
        "state": state, "form": form, "slots": slots, "notice": notice, "token": token,
    }, status=status)
