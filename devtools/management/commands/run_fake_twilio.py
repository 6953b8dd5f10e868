"""python manage.py run_fake_twilio [--host 127.0.0.1] [--port 8765] [--account-sid AC…] [--auth-token …]

Runs the fake Twilio SMS API (devtools/fake_twilio.py) for the demo and the stack smoke
test until Ctrl-C or SIGTERM. Test and demo only: it has unauthenticated /_fake/ control endpoints.
"""

import os
import threading

from django.conf import settings
from django.core.management.base import BaseCommand

from devtools.fake_twilio import (
    DEFAULT_ACCOUNT_SID,
    DEFAULT_AUTH_TOKEN,
    FakeTwilioServer,
    run_until_signalled,
)


def _default(name: str, fallback: str) -> str:
    # getattr, so this works before (or without) TWILIO_* settings; then the environment, then the fake's own.
    return getattr(settings, name, None) or os.environ.get(name) or fallback


class Command(BaseCommand):
    help = "Run the fake Twilio SMS API (test and demo only) until Ctrl-C or SIGTERM."
    # It touches neither models nor the database; skipping the checks makes it start at once.
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1", help="Address to bind (keep it loopback)")
        parser.add_argument("--port", type=int, default=8765, help="Port; 0 picks a free one")
        parser.add_argument("--account-sid", default=_default("TWILIO_ACCOUNT_SID", DEFAULT_ACCOUNT_SID))
        parser.add_argument("--auth-token", default=_default("TWILIO_AUTH_TOKEN", DEFAULT_AUTH_TOKEN))

    def handle(self, *args, **options):
        lock = threading.Lock()

        def log(line: str) -> None:
            # Request threads log concurrently; flush so a parent process reading a pipe sees lines at once.
            # The fake passes method, path and status only: no phone numbers or message bodies.
            with lock:
                self.stdout.write(line)
                self.stdout.flush()

        server = FakeTwilioServer(
            account_sid=options["account_sid"],
            auth_token=options["auth_token"],
            host=options["host"],
            port=options["port"],
            log=log,
        )
        server.start()
        log(f"Fake Twilio (test only) listening on {server.base_url}")
        run_until_signalled(server)
