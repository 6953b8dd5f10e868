"""python manage.py import_activity FILE.csv — import past referrals, calls and appointments (see README)."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from scheduling.reports.services import ImportRejected, import_activity, read_csv


class Command(BaseCommand):
    help = "Import one event per row (referral_received, call_attempt, appointment). Nothing is imported if any row is bad."

    def add_arguments(self, parser):
        parser.add_argument("file", help="CSV with columns referral_id, nhs_number, practitioner, event, at, appointment_type, "
                            "duration_minutes, outcome, cancelled_at, source")
        parser.add_argument("--actor", help="Username recorded as having made the import")

    def handle(self, *args, **options):
        actor = None
        if options["actor"]:
            actor = get_user_model().objects.filter(username=options["actor"]).first()
            if actor is None:
                raise CommandError(f"No user '{options['actor']}'.")

        def progress(message):
            self.stderr.write(message)

        try:
            with open(options["file"], newline="", encoding="utf-8-sig") as handle:
                raw_rows = read_csv(handle)
            self.stderr.write(f"read {len(raw_rows)} rows")
            result = import_activity(raw_rows=raw_rows, file_name=options["file"], actor=actor, progress=progress)
        except OSError as exc:
            raise CommandError(f"Cannot read {options['file']}: {exc.strerror}") from exc
        except UnicodeDecodeError as exc:
            raise CommandError(f"{options['file']} is not UTF-8 text.") from exc
        except ImportRejected as exc:
            for line, reason in exc.errors:
                self.stderr.write(f"line {line}: {reason}")
            raise CommandError(f"{len({line for line, _ in exc.errors})} bad row(s); nothing was imported.") from exc
        imported = ", ".join(f"{n} {event}" for event, n in result.imported.items())
        self.stdout.write(f"Imported {imported}.")
        self.stdout.write(
            f"{result.already_imported} row(s) were already imported and {result.duplicates_in_file} repeated in the file; "
            f"{result.new_patients} patient(s) and {result.rearrangements_linked} rearrangement link(s) created."
        )
        if result.new_practitioners:
            self.stdout.write("New practitioners (no login): " + ", ".join(result.new_practitioners))
