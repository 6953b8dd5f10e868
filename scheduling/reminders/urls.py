from django.urls import path

from scheduling.reminders import views, webhooks

app_name = "sms"
urlpatterns = [
    # Twilio's webhooks: no login (Twilio signs them instead), checked in scheduling.reminders.webhooks.
    path("twilio/status/<int:message_id>/", webhooks.status_callback, name="twilio_status"),
    path("twilio/inbound/", webhooks.inbound, name="twilio_inbound"),
    # Staff pages (scheduling.reminders.views).
    path("", views.outbox, name="outbox"),
    path("messages/<int:pk>/", views.message_detail, name="message_detail"),
    path("replies/", views.replies, name="replies"),
    path("settings/", views.sms_settings, name="settings"),
    path("templates/<str:key>/", views.edit_template, name="edit_template"),
    path("rules/new/", views.edit_rule, name="new_rule"),
    path("rules/<int:pk>/", views.edit_rule, name="edit_rule"),
]
