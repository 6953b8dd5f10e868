from django.urls import path

from scheduling.calls import views

app_name = "calls"
urlpatterns = [
    path("", views.today, name="today"),
    path("log/", views.log_outcome, name="log"),
    path("undo/", views.undo, name="undo"),
    path("invite/", views.invite, name="invite"),
]
