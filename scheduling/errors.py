"""A service's refusal (a ValidationError) shown to the person who asked: on the form they sent, or as
one message on the page. Services word their messages for people, so the words are shown as written."""

from django.core.exceptions import ValidationError


def add_service_errors(form, error: ValidationError, *, default_field: str | None = None) -> None:
    """Each message next to the form field it names; a message for a field the form does not have, or
    for no field, goes on `default_field` (None: the form as a whole). Codes are kept (form.has_error)."""
    by_field = error.error_dict if hasattr(error, "error_dict") else {default_field: error.error_list}
    for name, errors in by_field.items():
        form.add_error(name if name in form.fields else default_field, ValidationError(errors))


def service_error_message(error: ValidationError) -> str:
    """All of a refusal's messages as one text, for a flash message or a row."""
    return " ".join(error.messages)
