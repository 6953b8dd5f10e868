from django.urls import path

from scheduling.worklist import views

app_name = "worklist"
# Under /booking/, where admin staff have always found their worklist.
urlpatterns = [
    path("", views.worklist, name="index"),
    path("take/", views.worklist_take, name="take"),
    path("release/", views.worklist_release, name="release"),
    path("tasks/<int:pk>/done/", views.task_resolve, name="task_resolve"),
]
