from django.urls import path

from scheduling.booking import views

app_name = "booking"
urlpatterns = [
    path("referrals/new/", views.new_referral, name="new_referral"),
    path("referrals/<int:pk>/slots/", views.find_slots, name="find_slots"),
    path("referrals/<int:pk>/book/", views.book, name="book"),
    path("referrals/<int:pk>/course/", views.course, name="course"),
    path("appointments/<int:pk>/rearrange/", views.rearrange, name="rearrange"),
    path("appointments/<int:pk>/cancel/", views.cancel, name="cancel"),
    path("appointments/<int:pk>/sooner/", views.wants_sooner, name="wants_sooner"),
]
