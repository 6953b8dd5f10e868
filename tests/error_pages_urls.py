"""The project's URLs plus two views that fail on purpose, for tests/test_error_pages.py only."""

from django.urls import path

from painplatform.urls import handler400, urlpatterns as project_urlpatterns
from scheduling.params import InvalidParameter


def raises_invalid_parameter(request):
    raise InvalidParameter("date_from: “2024-13-45” is not a date; use YYYY-MM-DD.")


def raises_an_error(request):
    raise RuntimeError("a bug in a view")


urlpatterns = [
    path("test-errors/invalid-parameter/", raises_invalid_parameter),
    path("test-errors/crash/", raises_an_error),
    *project_urlpatterns,
]

__all__ = ["handler400", "urlpatterns"]
