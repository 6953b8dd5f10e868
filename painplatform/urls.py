from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from scheduling.views import healthz

# 403, 404 and 500 use Django's own handlers with our templates (templates/403.html, ...).
handler400 = "scheduling.views.bad_request"

urlpatterns = [
    # No trailing slash: settings.SECURE_REDIRECT_EXEMPT matches exactly "healthz".
    path("healthz", healthz, name="healthz"),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("", include("scheduling.urls")),
]
