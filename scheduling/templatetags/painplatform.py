from django import template

from django.utils.html import format_html

import datetime as dt

from django.utils import timezone

from scheduling import submissions
from scheduling.offers.models import OfferSettings
from scheduling.offers.selectors import offers_for_page
from scheduling.caseload.phones import display_phone

register = template.Library()


@register.filter
def phone(e164: str) -> str:
    """'+447700900123' -> '07700 900123'."""
    return display_phone(e164)


@register.simple_tag
def form_token():
    """A one-time token for a POST form, so a double click or a resend is done once (see submissions.py)."""
    return format_html('<input type="hidden" name="{}" value="{}">', submissions.FIELD_NAME, submissions.new_token())


@register.inclusion_tag("offers/_panel.html", takes_context=True)
def offers_panel(context, referral=None):
    """Sooner-slot offers, for the worklist (open ones and those closed this week) or a referral's booking
    pages (its offers): sent, taken, expired, with a stop button for admin staff and managers. Here, in the
    wiring layer, so the worklist and booking need not import offers."""
    request = context.get("request")
    user = getattr(request, "user", None)
    if user is None or not user.has_perm("scheduling.view_offeredslot"):
        return {"show": False}
    since = timezone.now() - dt.timedelta(days=7)
    slots = offers_for_page(referral=referral) if referral is not None else offers_for_page(since=since)
    enabled = OfferSettings.read().enabled
    return {
        "show": bool(slots) or (enabled and referral is None),
        "slots": slots,
        "enabled": enabled,
        "referral": referral,
        "may_stop": user.has_perm("scheduling.book_appointments"),
        "may_configure": user.has_perm("scheduling.change_offersettings"),
        "next": request.get_full_path() if request is not None else "",
    }
