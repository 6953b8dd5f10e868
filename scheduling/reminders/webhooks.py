"""Twilio's webhooks. PLACEHOLDER until the webhook work lands: refuses everything."""

from django.http import HttpResponseForbidden


def status_callback(request, message_id):
    return HttpResponseForbidden()


def inbound(request):
    return HttpResponseForbidden()
