"""Every form post is done once: a double click, a browser retry or a resent form gets the first answer.

Each POST form carries a one-time token (`{% form_token %}`, next to `{% csrf_token %}`). The
middleware claims the pair (token, exact form contents) by inserting a row before the view runs;
the database's primary key decides which of several identical posts does the work. The others
wait for that first answer and get a copy of it (its status, redirect or row HTML), so the person
sees the same result whichever request their browser kept. A post whose contents differ (another
button of the same form, a corrected field after "back") is a new submission.

Posts without a token (scripts, API clients, older pages) pass through untouched: the services
still guard their own writes (locks and constraints) for those.
"""

import hashlib
import re
import secrets
import time

from django.db import IntegrityError, models, transaction
from django.http import HttpResponse
from django.utils import timezone

FIELD_NAME = "form_token"
# The patient's self-service page has no login; its posts are made once too (the path carries the link).
ANONYMOUS_PATH_PREFIX = "/s/"
_TOKEN = re.compile(r"^[0-9a-f]{32}$")
# A replayed answer must fit in the row; a call-list row fragment or a redirect is a few KB.
LARGEST_STORED_BODY = 256 * 1024
# How long a duplicate waits for the first post to finish before it is told to reload.
WAIT_SECONDS = 15.0
_POLL_SECONDS = 0.1
_REPLAYED_HEADERS = ("Location", "Content-Type", "HX-Redirect", "HX-Refresh", "HX-Trigger", "HX-Retarget", "HX-Reswap")


def new_token() -> str:
    return secrets.token_hex(16)


class FormSubmission(models.Model):
    """One claimed form post and, once the view has answered, that answer."""

    key = models.CharField(max_length=64, primary_key=True)
    user_id = models.IntegerField()
    path = models.CharField(max_length=200)
    created_at = models.DateTimeField(default=timezone.now)
    answered_at = models.DateTimeField(null=True, blank=True)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    headers = models.JSONField(default=dict, blank=True)
    body = models.BinaryField(default=b"", blank=True)

    class Meta:
        app_label = "scheduling"

    def replay(self) -> HttpResponse:
        response = HttpResponse(bytes(self.body), status=self.status_code)
        for name, value in self.headers.items():
            response[name] = value
        response["X-Form-Replayed"] = "1"
        return response


def submission_key(request) -> str | None:
    token = request.POST.get(FIELD_NAME, "")
    if not _TOKEN.match(token):
        return None
    fields = sorted((name, value) for name, values in request.POST.lists() if name != "csrfmiddlewaretoken" for value in values)
    digest = hashlib.sha256()
    for part in (str(request.user.pk), request.path, *(f"{n}={v}" for n, v in fields)):
        digest.update(part.encode("utf-8", "surrogatepass") + b"\x00")
    return digest.hexdigest()


def _claim(*, key: str, request) -> bool:
    try:
        with transaction.atomic():
            # A self-service path carries the patient's link, which is never stored: only its prefix is.
            path = request.path if request.user.is_authenticated else ANONYMOUS_PATH_PREFIX
            FormSubmission.objects.create(key=key, user_id=request.user.pk or 0, path=path[:200])
        return True
    except IntegrityError:
        return False


def _record_answer(*, key: str, request, response) -> None:
    done = 300 <= response.status_code < 400 or (request.headers.get("HX-Request") and 200 <= response.status_code < 300)
    if not done or response.streaming or len(response.content) > LARGEST_STORED_BODY:
        # Only a done piece of work is replayed: a redirect after a post, or an htmx row. A refusal, a
        # failure or a page re-shown with form errors changed nothing, so the next identical post may run
        # the view itself (after an expired CSRF cookie, say).
        FormSubmission.objects.filter(key=key, answered_at__isnull=True).delete()
        return
    headers = {name: response[name] for name in _REPLAYED_HEADERS if response.has_header(name)}
    FormSubmission.objects.filter(key=key).update(
        answered_at=timezone.now(), status_code=response.status_code, headers=headers, body=response.content
    )


def _still_working() -> HttpResponse:
    return HttpResponse(
        "This form is still being saved from your earlier click. Reload the page in a moment to see the result.",
        status=409,
        content_type="text/plain; charset=utf-8",
    )


class OnceOnlyFormMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.method != "POST" or not (request.user.is_authenticated or request.path.startswith(ANONYMOUS_PATH_PREFIX)):
            return self.get_response(request)
        key = submission_key(request)
        if key is None:
            return self.get_response(request)
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            if _claim(key=key, request=request):
                try:
                    response = self.get_response(request)
                except BaseException:
                    FormSubmission.objects.filter(key=key, answered_at__isnull=True).delete()
                    raise
                _record_answer(key=key, request=request, response=response)
                return response
            first = FormSubmission.objects.filter(key=key).first()
            if first is not None and first.answered_at is not None:
                return first.replay()
            if time.monotonic() > deadline:
                return _still_working()
            time.sleep(_POLL_SECONDS)
