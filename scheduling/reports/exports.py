"""The report as CSV (one metric per line) and as plain text."""

import csv
import io
import json


def _flatten(value, prefix=""):
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from _flatten(inner, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(value, list):
        for i, inner in enumerate(value):
            label = inner.get("week_starting") or inner.get("username") or inner.get("referral_id") if isinstance(inner, dict) else i
            yield from _flatten(inner, f"{prefix}[{label}]")
    else:
        yield prefix, "" if value is None else value


def report_csv(report: dict) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["metric", "value"])
    for key, value in _flatten(report):
        writer.writerow([key, value])
    return out.getvalue()


def report_json(report: dict) -> str:
    return json.dumps(report, indent=2)


def _fmt(value, unit=""):
    return "n/a" if value is None else f"{value}{unit}"


def report_text(report: dict) -> str:
    lost = report["lost_minutes"]
    pre = report["pre_assessment"]
    waits = report["waits"]
    dist = ", ".join(f"{k}: {v}" for k, v in pre["contacts_distribution"].items())
    lines = [
        f"Capacity report {report['period']['from']} to {report['period']['to']}",
        f"Booked minutes            {report['booked_minutes']}",
        f"Attended minutes          {report['attended_minutes']}",
        f"Lost minutes              {lost['total']} ({_fmt(report['booked_lost_pct'], '%')} of booked lost in sessions)",
        f"  did not attend          {lost['dna']}",
        f"  late cancellation       {lost['late_cancellation']}",
        f"  service cancellation    {lost['service_cancellation']}",
        f"  failed calls            {lost['failed_calls']}",
        f"Lost hours                {report['lost_hours']}",
        f"Equivalent sessions lost  {report['equivalent_sessions_lost']}",
        f"Cost                      £{report['cost_pounds']:.2f}",
        f"Referrals assessed        {pre['referrals_assessed']}",
        f"  contacts before         {dist}",
        f"  median / 90th pct       {_fmt(pre['contacts_median'])} / {_fmt(pre['contacts_p90'])}",
        f"  lost minutes before     {pre['lost_minutes']}",
        f"Median days to first contact     {_fmt(waits['to_first_contact_median_days'])}",
        f"Median days to assessment        {_fmt(waits['to_assessment_median_days'])}",
        f"Median days to first treatment   {_fmt(waits['to_first_treatment_median_days'])}",
        f"First treatments within 6 weeks  {_fmt(waits['within_6_weeks_pct'], '%')}",
        f"First treatments within 18 weeks {_fmt(waits['within_18_weeks_pct'], '%')}",
    ]
    return "\n".join(lines) + "\n"
