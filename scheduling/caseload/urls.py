from django.urls import path

from scheduling.caseload import views

app_name = "caseload"
urlpatterns = [
    path("", views.referral_list, name="referral_list"),
    path("<int:pk>/", views.referral_detail, name="referral_detail"),
    path("<int:pk>/discharge/", views.discharge, name="discharge"),
]
