from django.urls import path

from scheduling.offers import views

app_name = "offers"
# Under /booking/offers/, beside the worklist where admin staff see them.
urlpatterns = [
    path("settings/", views.offer_settings, name="settings"),
    path("<int:pk>/stop/", views.stop, name="stop"),
]
