from django.urls import include, path

from scheduling import views

urlpatterns = [
    path("", views.home, name="home"),
    path("referrals/", include("scheduling.caseload.urls")),
    path("booking/offers/", include("scheduling.offers.urls")),
    path("booking/", include("scheduling.worklist.urls")),
    path("booking/", include("scheduling.booking.urls")),
    path("calls/", include("scheduling.calls.urls")),
    path("reports/", include("scheduling.reports.urls")),
    path("sms/", include("scheduling.reminders.urls")),
    # The patient's self-service page: the only pages with no login (patient_links.PATH_PREFIX).
    path("s/", include("scheduling.selfservice.urls")),
]
