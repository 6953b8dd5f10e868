"""The worklist page (admin staff and managers): filter, search, take and release items, resolve tasks."""

from urllib.parse import urlencode

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from scheduling import params
from scheduling.roles import require_perms
from scheduling.errors import service_error_message
from scheduling.worklist import forms
from scheduling.worklist.models import WORKLIST_KEY_MAX_LENGTH, AdminTask
from scheduling.worklist.selectors import (
    WORKLIST_KEY_PATTERN,
    WORKLIST_KIND_LABELS,
    WORKLIST_SEARCH_MAX_LENGTH,
    worklist_page,
)
from scheduling.worklist.services import release_worklist_item, resolve_admin_task, take_worklist_item


def _worklist_filters(data) -> dict:
    """The kind filter and the name or NHS number search, from the page's address or carried on a form."""
    return {
        "kind": params.choice_param(data, "kind", choices=WORKLIST_KIND_LABELS, label="kind"),
        "q": params.text_param(data, "q", max_length=WORKLIST_SEARCH_MAX_LENGTH, label="search"),
    }


def _item_key(data) -> str:
    raw = data.get("item", "")
    match = WORKLIST_KEY_PATTERN.match(raw) if len(raw) <= WORKLIST_KEY_MAX_LENGTH else None
    if match is None or int(match.group(2)) > params.LARGEST_ID:
        raise params.InvalidParameter(f"item: “{raw[:40]}” is not a worklist item.")
    return raw


def _back_to_worklist(filters: dict, key: str):
    query = urlencode({name: value for name, value in filters.items() if value})
    anchor = "item-" + key.replace(":", "-")
    return redirect(reverse("worklist:index") + (f"?{query}" if query else "") + f"#{anchor}")


def worklist(request):
    require_perms(request, "book_appointments", "view_admintask")
    filters = _worklist_filters(request.GET)
    page = worklist_page(kind=filters["kind"], query=filters["q"])
    search = {"q": filters["q"]} if filters["q"] else {}
    chips = [
        {"kind": kind, "label": label, "count": count, "query": urlencode({"kind": kind, **search}),
         "current": filters["kind"] == kind}
        for kind, label, count in page.counts
    ]
    return render(request, "worklist/worklist.html", {
        "page": page, "items": page.items, "filters": filters, "chips": chips, "all_query": urlencode(search),
        "today": timezone.now(),
    })


@require_POST
def worklist_take(request):
    require_perms(request, "book_appointments", "view_admintask")
    key, filters = _item_key(request.POST), _worklist_filters(request.POST)
    take_over = params.id_param(request.POST, "take_over", label="take over")
    try:
        claim = take_worklist_item(key=key, actor=request.user, take_over=take_over)
    except ValidationError as exc:
        messages.error(request, service_error_message(exc))
    else:
        messages.success(request, f"Taken: colleagues now see this item as taken by you at {timezone.localtime(claim.taken_at):%H:%M}.")
    return _back_to_worklist(filters, key)


@require_POST
def worklist_release(request):
    require_perms(request, "book_appointments", "view_admintask")
    key, filters = _item_key(request.POST), _worklist_filters(request.POST)
    try:
        claim = release_worklist_item(key=key, actor=request.user)
    except ValidationError as exc:
        messages.error(request, service_error_message(exc))
    else:
        messages.success(request, "Released: anyone may take this item now." if claim else "Nobody had taken this item.")
    return _back_to_worklist(filters, key)


def task_resolve(request, pk: int):
    require_perms(request, "change_admintask")
    task = get_object_or_404(AdminTask.objects.select_related("patient", "referral", "appointment"), pk=pk)
    form = forms.ResolveTaskForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            resolve_admin_task(task=task, actor=request.user, resolution=form.cleaned_data["resolution"])
        except ValidationError as exc:
            messages.error(request, service_error_message(exc))
        else:
            messages.success(request, "Done: removed from the worklist.")
        return redirect("worklist:index")
    return render(request, "worklist/task_resolve.html", {"task": task, "form": form})
