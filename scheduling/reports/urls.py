from django.urls import path

from scheduling.reports import views

app_name = "reports"
urlpatterns = [
    path("", views.capacity, name="capacity"),
    path("rows/", views.rows, name="rows"),
    path("definitions/", views.definitions, name="definitions"),
    path("export.<str:fmt>", views.export, name="export"),
]
