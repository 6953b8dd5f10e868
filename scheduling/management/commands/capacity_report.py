"""python manage.py capacity_report --from YYYY-MM-DD --to YYYY-MM-DD [--practitioner U] [--source CODE] --format json|csv|text"""

import datetime

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db.models import Q

from scheduling.caseload.models import Team
from scheduling.codes import AppointmentType, ReferralSource
from scheduling.reports.exports import report_csv, report_json, report_text
from scheduling.reports.selectors import ReportParams, build_report


def _date(value: str) -> datetime.date:
    try:
        return datetime.date.fromisoformat(value)
    except ValueError as exc:
        raise CommandError(f"'{value}' is not a date (YYYY-MM-DD).") from exc


class Command(BaseCommand):
    help = "Print the capacity and slot-wastage report for a period (definitions: docs/capacity-report.md)."

    def add_arguments(self, parser):
        parser.add_argument("--from", dest="date_from", required=True, help="First day, YYYY-MM-DD (UK time)")
        parser.add_argument("--to", dest="date_to", required=True, help="Last day, YYYY-MM-DD (included)")
        parser.add_argument("--practitioner", help="Username (or user id) of one practitioner")
        parser.add_argument("--team", help="Team name (or id)")
        parser.add_argument("--source", help="Source-of-referral code, e.g. A1")
        parser.add_argument("--type", dest="appointment_type", choices=AppointmentType.values)
        parser.add_argument("--format", choices=["json", "csv", "text"], default="text")

    def handle(self, *args, **options):
        date_from, date_to = _date(options["date_from"]), _date(options["date_to"])
        if date_to < date_from:
            raise CommandError("--to is before --from.")
        practitioner_id = team_id = None
        if options["practitioner"]:
            value = options["practitioner"]
            user = get_user_model().objects.filter(
                Q(username=value) | Q(pk=int(value)) if value.isdigit() else Q(username=value)
            ).first()
            if user is None:
                raise CommandError(f"No user '{value}'.")
            practitioner_id = user.pk
        if options["team"]:
            value = options["team"]
            team = Team.objects.filter(Q(name=value) | Q(pk=int(value)) if value.isdigit() else Q(name=value)).first()
            if team is None:
                raise CommandError(f"No team '{value}'.")
            team_id = team.pk
        source = options["source"] or ""
        if source and source not in ReferralSource.values:
            raise CommandError(f"'{source}' is not a source-of-referral code ({', '.join(ReferralSource.values)}).")
        params = ReportParams(
            date_from=date_from, date_to=date_to, practitioner_id=practitioner_id, team_id=team_id, source=source,
            appointment_type=options["appointment_type"] or "",
        )
        report = build_report(params)
        render = {"json": report_json, "csv": report_csv, "text": report_text}[options["format"]]
        self.stdout.write(render(report), ending="" if options["format"] != "json" else "\n")
