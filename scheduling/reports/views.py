from urllib.parse import urlencode

from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404, HttpResponse
from django.shortcuts import render
from django.urls import reverse

from scheduling.params import InvalidParameter
from scheduling.reports import charts, selectors
from scheduling.reports.definitions import definitions_html
from scheduling.reports.exports import report_csv, report_json
from scheduling.reports.forms import ReportFilterForm

APPOINTMENT_FIGURES = {
    "booked": "Booked (not cancelled with enough notice)",
    "attended": "Attended (5, 6)",
    "dna": "Did not attend (3, 7)",
    "late_cancellation": "Late patient cancellations and rearrangements",
    "service_cancellation": "Late service cancellations and rearrangements",
    "lost": "Lost appointments (all appointment causes)",
}
OTHER_FIGURES = {
    "failed_calls": "Failed calls (not at a booked appointment)",
    "pre_assessment": "Referrals with their first attended assessment in the period",
    "wait_first_contact": "First successful contacts in the period",
    "wait_assessment": "First attended assessments in the period",
    "wait_first_treatment": "First attended treatment sessions in the period",
}


def _require_reports(request):
    if not request.user.has_perm("scheduling.view_reports"):
        raise PermissionDenied


def _form(request):
    form = ReportFilterForm(request.GET)
    if not form.is_valid():
        return form, None
    return form, form.params().with_settings()


def _form_errors_text(form) -> str:
    """The form's errors, each naming its field, for the 400 page."""
    parts = []
    for name, errors in form.errors.items():
        label = form.fields[name].label if name in form.fields else ""
        parts.append(f"{label or name}: {' '.join(errors)}" if name != "__all__" else " ".join(errors))
    return " ".join(parts)


def _choice_param(request, name: str, choices, *, label: str) -> str:
    value = request.GET.get(name, "")
    if value and value not in choices:
        raise InvalidParameter(f"{label}: “{value[:40]}” is not one of {', '.join(choices)}.")
    return value


# A wait longer than ten years is not a filter anyone means.
MAX_WITHIN_DAYS = 3660


def rows_url(params, figure: str, **extra) -> str:
    query = params.query_dict()
    query.update({k: v for k, v in extra.items() if v not in (None, "")})
    query["figure"] = figure
    return f"{reverse('reports:rows')}?{urlencode(query)}"


def definitions(request):
    """How each figure on the capacity page is worked out (docs/capacity-report.md, as a page)."""
    _require_reports(request)
    body, toc = definitions_html()
    return render(request, "reports/definitions.html", {"body": body, "toc": toc})


def capacity(request):
    _require_reports(request)
    form, params = _form(request)
    context = {"form": form}
    if params is not None:
        report = selectors.build_report(params)
        weeks = report["weekly_lost_minutes"]

        def week_link(week, cause):
            figure = "failed_calls" if cause == "failed_calls" else cause
            narrowed = params.narrowed(date_from=selectors_date(week["from"]), date_to=selectors_date(week["to"]))
            return rows_url(narrowed, figure)

        dist = report["pre_assessment"]["contacts_distribution"]
        waits = report["waits"]
        links = {name: rows_url(params, name) for name in [*APPOINTMENT_FIGURES, *OTHER_FIGURES]}
        for row in report["practitioners"]:
            narrowed = params.narrowed(practitioner_id=row["practitioner_id"])
            row["links"] = {name: rows_url(narrowed, name) for name in ["booked", "attended", *selectors.LOST_CAUSES]}
        export_query = urlencode(params.query_dict())
        context.update(
            report=report,
            params=params,
            links=links,
            export_query=export_query,
            weekly_chart=charts.weekly_lost_chart(weeks, week_link),
            weeks_with_links=list(zip(
                weeks,
                [{c: week_link(w, c) for c in selectors.LOST_CAUSES} for w in weeks],
                [charts.uk_day(w["week_starting"], year=True) for w in weeks],
            )),
            contacts_chart=charts.bar_chart(
                [(bucket, count, rows_url(params, "pre_assessment", contacts=bucket)) for bucket, count in dist.items()],
                title="Referrals by number of contact attempts before their assessment",
            ),
            contact_links={bucket: rows_url(params, "pre_assessment", contacts=bucket) for bucket in dist},
            waits_chart=charts.waits_chart(
                [
                    ("Referral to first contact", waits["to_first_contact_median_days"], links["wait_first_contact"]),
                    ("Referral to assessment", waits["to_assessment_median_days"], links["wait_assessment"]),
                    ("Referral to first treatment", waits["to_first_treatment_median_days"], links["wait_first_treatment"]),
                ]
            ),
            within_links={
                "6": rows_url(params, "wait_first_treatment", within=selectors.SIX_WEEKS_DAYS),
                "18": rows_url(params, "wait_first_treatment", within=selectors.EIGHTEEN_WEEKS_DAYS),
            },
            longest=selectors.longest_held_without_assessment(params),
        )
    return render(request, "reports/capacity.html", context, status=200 if params else 400)


def selectors_date(value: str):
    from datetime import date

    return date.fromisoformat(value)


def export(request, fmt: str):
    _require_reports(request)
    if fmt not in ("csv", "json"):
        raise Http404("Exports are CSV or JSON")
    form, params = _form(request)
    if params is None:
        raise InvalidParameter(_form_errors_text(form))
    report = selectors.build_report(params)
    name = f"capacity-{params.date_from.isoformat()}-to-{params.date_to.isoformat()}"
    if fmt == "csv":
        response = HttpResponse(report_csv(report), content_type="text/csv; charset=utf-8")
    else:
        response = HttpResponse(report_json(report), content_type="application/json")
    response["Content-Disposition"] = f'attachment; filename="{name}.{fmt}"'
    return response


def _notice_text(notice) -> str:
    if notice is None:
        return ""
    minutes = int(notice.total_seconds() // 60)
    sign = "-" if minutes < 0 else ""
    hours, minutes = divmod(abs(minutes), 60)
    return f"{sign}{hours} h {minutes:02d} min"


def rows(request):
    """The rows behind one figure, with the same conditions the figure was computed from."""
    _require_reports(request)
    form, params = _form(request)
    if params is None:
        raise InvalidParameter(_form_errors_text(form))
    figure = _choice_param(request, "figure", [*APPOINTMENT_FIGURES, *OTHER_FIGURES], label="figure")
    if not figure:
        raise InvalidParameter("figure: choose which figure to list.")
    bucket = _choice_param(request, "contacts", selectors.CONTACT_BUCKETS, label="contacts")
    within = request.GET.get("within", "")
    if within and not (within.isascii() and within.isdigit() and len(within) <= 4 and int(within) <= MAX_WITHIN_DAYS):
        raise InvalidParameter(f"within: “{within[:40]}” is not a number of days from 0 to {MAX_WITHIN_DAYS}.")
    found = selectors.figure_rows(params, figure=figure, bucket=bucket, within=int(within) if within else None)
    kind, total_label, total = found.kind, found.total_label, found.total
    title = (APPOINTMENT_FIGURES | OTHER_FIGURES)[figure] + found.narrowed_by
    page = Paginator(found.rows, 100).get_page(request.GET.get("page"))
    if kind == "appointments":
        for appointment in page:
            appointment.notice_text = _notice_text(appointment.notice_given)
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "reports/rows.html",
        {
            "figure": figure,
            "title": title,
            "kind": kind,
            "page": page,
            "params": params,
            "total": total,
            "total_label": total_label,
            "back_query": urlencode(params.query_dict()),
            "page_query": query.urlencode(),
            "threshold_hours": params.service_settings.late_cancellation_notice_hours,
        },
    )
