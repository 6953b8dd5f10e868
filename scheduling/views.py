from django.contrib.auth.decorators import login_not_required
from django.http import JsonResponse
from django.shortcuts import redirect, render
from django.urls import NoReverseMatch, reverse
from django.views.decorators.http import require_safe

from scheduling.health import check_database, check_health
from scheduling.params import InvalidParameter
from scheduling.roles import is_admin_staff, is_manager, is_pwp

# Where each role lands after login; the first that exists wins.
LANDING_PAGES = {
    "pwp": ["calls:today", "caseload:referral_list"],
    "admin": ["worklist:index", "caseload:referral_list"],
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


@login_not_required
@require_safe
def healthz(request):
    """For monitoring (no login, no patient data): 200 when all is well, 503 with `problems` saying
    what a person must fix. `?only=database` checks just this web process and the database, for a
    load balancer, so a stopped queue worker does not take the site off the air."""
    if request.GET.get("only") == "database":
        database, problems = check_database()
        report = {"healthy": not problems, "problems": problems, "database": database}
    else:
        report = check_health()
    response = JsonResponse(report, status=200 if report["healthy"] else 503, json_dumps_params={"indent": 2})
    response["Cache-Control"] = "no-store"
    return response


def bad_request(request, exception):
    """The site's 400 page. Our own `InvalidParameter` messages name what is wrong; anything else
    that Django turns into a 400 (a forged host, a malformed upload) gets the general words."""
    message = str(exception) if isinstance(exception, InvalidParameter) else ""
    return render(request, "400.html", {"message": message}, status=400)
