from django.urls import path

from scheduling.selfservice import views

app_name = "selfservice"
# Mounted at /s/ (patient_links.PATH_PREFIX): the token is the whole of what the patient's text carries.
urlpatterns = [
    path("<str:token>", views.start, name="start"),
    path("<str:token>/confirm", views.confirm, name="confirm"),
    path("<str:token>/cancel", views.cancel, name="cancel"),
    path("<str:token>/move", views.move, name="move"),
    path("<str:token>/take", views.take, name="take"),
]
