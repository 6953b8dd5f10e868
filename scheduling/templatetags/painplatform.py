from django import template

from scheduling.caseload.phones import display_phone

register = template.Library()


@register.filter
def phone(e164: str) -> str:
    """'+447700900123' -> '07700 900123'."""
    return display_phone(e164)
