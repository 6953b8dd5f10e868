from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone

from scheduling.demo import DEMO_PASSWORD, STAFF, DemoBuilder, database_has_non_demo_data, demo_data_present


class Command(BaseCommand):
    help = "Load a realistic demo service (staff, ~300 referrals, calls, courses). Deterministic for a seed."

    def add_arguments(self, parser):
        parser.add_argument("--seed", type=int, default=2026, help="Random seed (same seed, same service).")
        parser.add_argument("--referrals", type=int, default=300, help="How many referrals to create.")
        parser.add_argument(
            "--allow-non-demo-database", action="store_true",
            help="Load demo data even though the database holds real (non-demo) patients.",
        )
        parser.add_argument("--if-empty", action="store_true", help="Do nothing (and succeed) if demo data is loaded.")

    def handle(self, *args, seed, referrals, allow_non_demo_database, if_empty, **options):
        if demo_data_present():
            if if_empty:
                self.stdout.write("Demo data is already loaded.")
                return
            raise CommandError("Demo data is already loaded. Start from an empty database to load it again.")
        if database_has_non_demo_data() and not allow_non_demo_database:
            raise CommandError(
                "This database holds non-demo patients or referrals; refusing to mix demo data into it. "
                "Use --allow-non-demo-database if you really mean to."
            )
        usernames = [u for people in STAFF.values() for u, _, _ in people]
        if get_user_model().objects.filter(username__in=usernames).exists():
            raise CommandError("Demo staff accounts already exist in this database.")
        builder = DemoBuilder(seed=seed, referrals=referrals, now=timezone.now(), out=self.stdout.write)
        # All or nothing: a first `dev.py run` stopped half-way must not leave a half-built demo
        # that --if-empty would then take for a loaded one.
        with transaction.atomic():
            builder.build()
        self.stdout.write(self.style.SUCCESS("Demo service loaded."))
        self.stdout.write("Demo sign-ins (shown once; every account uses the same password):")
        for role, people in STAFF.items():
            self.stdout.write(f"  {role:12} " + ", ".join(u for u, _, _ in people))
        self.stdout.write(f"  password     {DEMO_PASSWORD}")
