"""Staff SMS pages. PLACEHOLDER until the pages work lands."""

from django.http import Http404


def outbox(request):
    raise Http404


message_detail = replies = sms_settings = edit_template = edit_rule = outbox
