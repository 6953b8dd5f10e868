"""Staff SMS pages: admin staff and managers read the outbox and replies; managers change rules,
templates and quiet hours. Thin: parse the form, call a selector or service, show the result."""

import json

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render

from scheduling import patient_links
from scheduling.roles import require_perms
from scheduling.errors import add_service_errors
from scheduling.reminders import content, forms, rules, selectors, services
from scheduling.reminders.models import MessageTemplate, OutboundMessage, ReminderRule, SmsSettings
from scheduling.reminders.sending import describe_error

PAGE_SIZE = 50


def _page_query(request) -> str:
    query = request.GET.copy()
    query.pop("page", None)
    return query.urlencode()


# --- Outbox ----------------------------------------------------------------------------------

def _error_text(message: OutboundMessage) -> str:
    if message.error_code:
        return describe_error(message.error_code, message.error_message)
    return message.error_message


def outbox(request):
    require_perms(request, "view_outboundmessage")
    form = forms.OutboxFilterForm(request.GET or None)
    context = {"form": form, "page_query": _page_query(request), "attention": selectors.NEEDS_ATTENTION}
    if request.GET and not form.is_valid():
        return render(request, "reminders/outbox.html", context, status=400)
    filters = form.cleaned_data if form.is_bound else {}
    period = {"kind": filters.get("kind", ""), "due_from": filters.get("due_from"), "due_to": filters.get("due_to")}
    page = Paginator(selectors.outbox_messages(status=filters.get("status", ""), **period), PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    for message in page:
        message.referral_id = selectors.referral_id_for(message)
        message.error_text = _error_text(message)
    counts = selectors.outbox_status_counts(**period)
    # Links from the counts keep the period and kind and change only the status.
    base = request.GET.copy()
    for key in ("page", "status"):
        base.pop(key, None)

    def status_link(status):
        query = base.copy()
        query["status"] = status
        return query.urlencode()

    for count in counts:
        count.query = status_link(count.status)
    context.update(
        page=page,
        counts=counts,
        attention_count=sum(c.count for c in counts if c.status in selectors.ATTENTION_STATUSES),
        attention_query=status_link(selectors.NEEDS_ATTENTION),
        status_filter=filters.get("status", ""),
    )
    return render(request, "reminders/outbox.html", context)


def message_detail(request, pk: int):
    require_perms(request, "view_outboundmessage")
    try:
        message = selectors.message_with_events(pk)
    except OutboundMessage.DoesNotExist:
        raise Http404("No such message")
    events = list(message.events.all())
    labels = dict(OutboundMessage.Status.choices)
    for event in events:
        event.old_label = labels.get(event.old_status, event.old_status)
        event.new_label = labels.get(event.new_status, event.new_status)
        event.error_text = describe_error(event.error_code) if event.error_code else ""
    return render(request, "reminders/message_detail.html", {
        "message": message,
        "length": content.sms_length(message.body),
        "referral_id": selectors.referral_id_for(message),
        "error_text": _error_text(message),
        "events": events,
        "can_view_events": request.user.has_perm("scheduling.view_messageevent"),
    })


# --- Replies ---------------------------------------------------------------------------------

def replies(request):
    require_perms(request, "view_inboundmessage")
    page = Paginator(selectors.inbound_messages(), PAGE_SIZE).get_page(request.GET.get("page"))
    return render(request, "reminders/replies.html", {
        "page": page,
        "can_resolve_tasks": request.user.has_perm("scheduling.change_admintask"),
    })


# --- Manager's settings ----------------------------------------------------------------------

def sms_settings(request):
    require_perms(request, "change_smssettings")
    current = SmsSettings.current()
    if request.method == "POST":
        form = forms.SmsSettingsForm(request.POST)
        if form.is_valid():
            try:
                services.update_sms_settings(actor=request.user, **form.cleaned_data)
            except ValidationError as exc:
                add_service_errors(form, exc)
            else:
                messages.success(request, "Saved the SMS settings.")
                return redirect("sms:settings")
        status = 400
    else:
        form = forms.SmsSettingsForm(initial={
            "quiet_hours_start": current.quiet_hours_start,
            "quiet_hours_end": current.quiet_hours_end,
            "minimum_notice_minutes": current.minimum_notice_minutes,
            "max_send_attempts": current.max_send_attempts,
            "send_confirmations": current.send_confirmations,
        })
        status = 200
    return render(request, "reminders/settings.html", {
        "form": form,
        "current": current,
        "rules_by_type": selectors.rules_by_appointment_type(),
        "templates": selectors.message_templates(),
        "backend": selectors.sms_backend_description(),
        "can_edit_templates": request.user.has_perm("scheduling.change_messagetemplate"),
        "can_edit_rules": request.user.has_perm("scheduling.change_reminderrule"),
        "can_add_rules": request.user.has_perm("scheduling.add_reminderrule"),
    }, status=status)


def edit_template(request, key: str):
    require_perms(request, "change_messagetemplate")
    if key not in MessageTemplate.Key.values:
        raise Http404("No such message template")
    label = MessageTemplate.Key(key).label
    may_carry_link = MessageTemplate.may_carry_link(key)
    status, previewing = 200, False
    if request.method == "POST":
        form = forms.TemplateForm(request.POST)
        previewing = "preview" in request.POST
        if form.is_valid() and not previewing:
            try:
                template = services.update_template(
                    key=key, body=form.cleaned_data["body"], actor=request.user,
                    include_link=form.cleaned_data["include_link"] if may_carry_link else None,
                )
            except ValidationError as exc:
                add_service_errors(form, exc, default_field="body")
            else:
                messages.success(request, f"Saved the wording of “{label}”. Texts planned from now on use it.")
                kept = content.sms_length(template.body).non_gsm_characters
                if kept:
                    messages.warning(request, (
                        f"The message contains {' '.join(kept)}, which are not in the GSM-7 alphabet, so each text "
                        f"goes as UCS-2: {content.SINGLE_SMS_UCS2} characters per SMS instead of {content.SINGLE_SMS_GSM7}."
                    ))
                return redirect("sms:settings")
        if not form.is_valid():
            status = 400
        body = form.data.get("body", "")
        include_link = form.cleaned_data.get("include_link", False) if form.is_valid() else False
    else:
        body = rules.template_body(key)
        include_link = rules.template_includes_link(key)
        form = forms.TemplateForm(initial={"body": body, "include_link": include_link})
    preview = selectors.preview_template(body, include_link=include_link and may_carry_link)
    if previewing and form.is_valid():
        # What Save would refuse, next to the field, before anything is saved.
        for problem in preview.problems:
            form.add_error("body", problem)
    sample = selectors.sample_values()
    return render(request, "reminders/edit_template.html", {
        "key": key,
        "label": label,
        "form": form,
        "preview": preview,
        "previewing": previewing,
        "placeholders": [(name, description, sample[name]) for name, description in content.PLACEHOLDERS.items()],
        "sample_values": sample,
        "script_data": json.dumps(selectors.sms_length_script_data(), ensure_ascii=False),
        "saved": MessageTemplate.objects.select_related("updated_by").filter(key=key).first(),
        "may_carry_link": may_carry_link,
        "links_available": patient_links.links_available(),
    }, status=status)


def edit_rule(request, pk: int | None = None):
    rule = None
    if pk is None:
        require_perms(request, "add_reminderrule")
    else:
        require_perms(request, "change_reminderrule")
        rule = get_object_or_404(ReminderRule, pk=pk)
    if request.method == "POST":
        form = forms.ReminderRuleForm(request.POST)
        if form.is_valid():
            try:
                saved = services.save_reminder_rule(actor=request.user, rule=rule, **form.cleaned_data)
            except ValidationError as exc:
                add_service_errors(form, exc)
            else:
                messages.success(request, f"Saved the reminder: {saved}{'' if saved.active else ' (not active)'}.")
                return redirect("sms:settings")
        status = 400
    else:
        if rule is not None:
            initial = {"appointment_type": rule.appointment_type, "days_before": rule.days_before,
                       "send_at": rule.send_at, "active": rule.active}
        else:
            initial = {"appointment_type": request.GET.get("type", ""), "active": True}
        form = forms.ReminderRuleForm(initial=initial)
        status = 200
    return render(request, "reminders/edit_rule.html", {"form": form, "rule": rule}, status=status)
