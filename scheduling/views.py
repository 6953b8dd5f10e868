from django.shortcuts import redirect
from django.urls import NoReverseMatch, reverse

from scheduling.roles import is_admin_staff, is_manager, is_pwp

# Where each role lands after login; the first that exists wins.
LANDING_PAGES = {
    "pwp": ["calls:today", "caseload:referral_list"],
    "admin": ["booking:worklist", "caseload:referral_list"],
    "manager": ["reports:capacity", "caseload:referral_list"],
}


def _first_existing(names):
    for name in names:
        try:
            return reverse(name)
        except NoReverseMatch:
            continue
    return reverse("caseload:referral_list")


def home(request):
    user = request.user
    if is_pwp(user):
        return redirect(_first_existing(LANDING_PAGES["pwp"]))
    if is_admin_staff(user):
        return redirect(_first_existing(LANDING_PAGES["admin"]))
    if is_manager(user):
        return redirect(_first_existing(LANDING_PAGES["manager"]))
    return redirect("caseload:referral_list")
