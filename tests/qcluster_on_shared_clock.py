"""Run a real `manage.py qcluster` on the end-to-end tests' shared clock (tests/shared_clock.py).

Test use only: started by tests/test_reminders_e2e.py with PAINPLATFORM_TEST_CLOCK_FILE set.
"""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.shared_clock import CLOCK_FILE_VARIABLE, follow  # noqa: E402

follow(Path(os.environ[CLOCK_FILE_VARIABLE]))

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "painplatform.settings")
sys.argv[1:] = ["qcluster"]  # as `manage.py qcluster` sees it: the settings keep its connections
import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402

call_command("qcluster")
