from django import template

from django.utils.html import format_html

from scheduling import submissions
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
