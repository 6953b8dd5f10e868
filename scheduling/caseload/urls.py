from django.urls import path

from scheduling.caseload import note_views, patient_views, views

app_name = "caseload"
urlpatterns = [
    path("", views.referral_list, name="referral_list"),
    path("<int:pk>/", views.referral_detail, name="referral_detail"),
    path("<int:pk>/discharge/", views.discharge, name="discharge"),
    path("<int:pk>/notes/", note_views.write, name="write_note"),
    path("<int:pk>/notes/<int:note_pk>/amend/", note_views.amend, name="amend_note"),
    path("patients/<int:pk>/details/", patient_views.patient_details, name="patient_details"),
]
