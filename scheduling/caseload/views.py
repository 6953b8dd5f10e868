from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, render

from scheduling.caseload.models import Referral
from scheduling.caseload.selectors import can_view_clinical_notes, can_view_referral, search_referrals


def referral_list(request):
    if not (request.user.has_perm("scheduling.view_referral")):
        raise PermissionDenied
    referrals = search_referrals(
        user=request.user,
        query=request.GET.get("q", ""),
        status=request.GET.get("status", ""),
        practitioner_id=request.GET.get("practitioner") or None,
    )
    page = Paginator(referrals, 50).get_page(request.GET.get("page"))
    practitioners = get_user_model().objects.filter(practitioner__isnull=False).order_by("first_name")
    return render(
        request,
        "caseload/referral_list.html",
        {"page": page, "statuses": Referral.Status.choices, "practitioners": practitioners, "q": request.GET.get("q", "")},
    )


def referral_detail(request, pk: int):
    referral = get_object_or_404(
        Referral.objects.select_related("patient", "assigned_practitioner"), pk=pk
    )
    if not can_view_referral(request.user, referral):
        raise PermissionDenied
    show_notes = can_view_clinical_notes(request.user)
    return render(
        request,
        "caseload/referral_detail.html",
        {
            "referral": referral,
            "patient": referral.patient,
            "appointments": referral.appointments.select_related("practitioner").order_by("start"),
            "attempts": referral.contact_attempts.select_related("practitioner", "undo").order_by("-attempted_at"),
            "audit": referral.audit_entries.select_related("actor").order_by("-at", "-id")[:50],
            "show_notes": show_notes,
            "notes": referral.clinical_notes.select_related("author") if show_notes else [],
        },
    )
