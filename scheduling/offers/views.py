"""Offers' pages: stop offering a slot (admin staff and managers) and the offer settings (managers).
The offers themselves are shown on the worklist and booking pages (templatetags: offers_panel)."""

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from scheduling import patient_links
from scheduling.errors import add_service_errors, service_error_message
from scheduling.offers import forms, services
from scheduling.offers.models import OfferedSlot, OfferSettings
from scheduling.roles import require_perms


def _back(request):
    target = request.POST.get("next", "")
    if len(target) <= 500 and target.startswith("/") and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return redirect(target)
    return redirect("worklist:index")


@require_POST
def stop(request, pk: int):
    require_perms(request, "book_appointments")
    slot = get_object_or_404(OfferedSlot, pk=pk)
    try:
        services.stop_offer(slot=slot, actor=request.user)
    except ValidationError as exc:
        messages.error(request, service_error_message(exc))
    else:
        messages.success(request, "Stopped: nobody else will be offered this time, and replies now get the “gone” text.")
    return _back(request)


def offer_settings(request):
    require_perms(request, "change_offersettings")
    current = OfferSettings.read()
    if request.method == "POST":
        form = forms.OfferSettingsForm(request.POST)
        if form.is_valid():
            try:
                services.update_offer_settings(actor=request.user, **form.cleaned_data)
            except ValidationError as exc:
                add_service_errors(form, exc)
            else:
                messages.success(request, "Saved the offer settings.")
                return redirect("offers:settings")
        status = 400
    else:
        form = forms.OfferSettingsForm(initial={
            name: getattr(current, name)
            for name in ("enabled", "minimum_notice_hours", "wave_size", "minutes_between_waves", "scope", "include_link")
        })
        status = 200
    return render(request, "offers/settings.html", {
        "form": form, "current": current, "links_available": patient_links.links_available(),
    }, status=status)
