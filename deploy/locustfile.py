"""Load: PWPs working their call lists and logging outcomes (run by deploy/load_test.py).

Each simulated user signs in as its own PWP (load.pwpNN), opens the call list, and logs "No answer"
or "Engaged" on a person still to reach, as the htmx buttons do. Every outcome the server says it
recorded is counted, so the driver can check the database holds exactly that many attempts.
"""

import json
import os
import random
import re
import time
from pathlib import Path

from locust import HttpUser, between, events, task
from locust.exception import StopUser

PASSWORD = "load-test-password-1"
MAX_REQUESTS_PER_USER = int(os.environ.get("LOAD_MAX_REQUESTS_PER_USER", "150"))
RESULT_FILE = Path(os.environ.get("LOAD_RESULT_FILE", "var/load-result.json"))
# The baseline run signs in as a PWP of its own (LOAD_FIRST_USER): were it load.pwp01 too, its last clicks
# and the load run's first ones on the same people within two minutes would be the same submission.
_next_user = iter(range(int(os.environ.get("LOAD_FIRST_USER", "1")), 10_000))
recorded = {"ok": 0, "refused": 0}

# The same button on the same person by the same PWP within the service's SAME_SUBMISSION_WINDOW (2 min) is
# that click sent again: answered "Recorded" once more but stored once. A PWP does not log "No answer" twice
# on one person within two minutes, so neither does a simulated one (a margin for slow answers).
SAME_CLICK_SECONDS = 150
REFERRAL_ID = re.compile(r'name="referral" value="(\d+)"')
CSRF = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


class PractitionerWorkingTheirList(HttpUser):
    wait_time = between(0.5, 2.0)

    def trust_cookies(self):
        # Cookies are Secure (HTTPS behind the proxy); on loopback HTTP the client must still send them.
        for cookie in self.client.cookies:
            cookie.secure = False

    def on_start(self):
        self.number = next(_next_user)
        self.requests = 0
        # What the TLS-terminating proxy adds in production.
        self.client.headers.update({"X-Forwarded-Proto": "https", "Origin": self.host.replace("http://", "https://")})
        page = self.client.get("/login/", name="/login/").text
        self.trust_cookies()
        token = CSRF.search(page).group(1)
        response = self.client.post(
            "/login/",
            {"username": f"load.pwp{self.number:02d}", "password": PASSWORD, "csrfmiddlewaretoken": token},
            headers={"Referer": self.host.replace("http://", "https://") + "/login/"},
            name="/login/", allow_redirects=False,
        )
        if response.status_code != 302:
            raise StopUser()
        self.trust_cookies()
        self.referrals, self.csrf = [], ""
        self.clicked = {}  # (referral, button) -> when it was last sent
        self.open_call_list()

    def count(self):
        self.requests += 1
        if self.requests >= MAX_REQUESTS_PER_USER:
            raise StopUser()

    def open_call_list(self):
        self.count()
        page = self.client.get("/calls/", name="/calls/").text
        self.trust_cookies()
        self.referrals = sorted(set(REFERRAL_ID.findall(page)))
        match = CSRF.search(page)
        self.csrf = match.group(1) if match else self.csrf

    @task(2)
    def look_at_the_list(self):
        self.open_call_list()

    @task(3)
    def log_a_failed_call(self):
        now = time.monotonic()
        fresh = [
            (referral, button)
            for referral in self.referrals
            for button in ("no_answer", "engaged")
            if now - self.clicked.get((referral, button), -SAME_CLICK_SECONDS) >= SAME_CLICK_SECONDS
        ]
        if not fresh:
            return self.look_at_the_list()
        referral, button = random.choice(fresh)
        self.clicked[(referral, button)] = now
        self.count()
        with self.client.post(
            "/calls/log/",
            {"referral": referral, "button": button, "csrfmiddlewaretoken": self.csrf},
            headers={"HX-Request": "true", "Referer": self.host.replace("http://", "https://") + "/calls/",
                     "X-CSRFToken": self.csrf},
            name="/calls/log/", catch_response=True,
        ) as response:
            self.trust_cookies()
            if response.status_code == 200 and "Recorded:" in response.text:
                recorded["ok"] += 1
                response.success()
            elif response.status_code == 200 and "Not recorded" in response.text:
                recorded["refused"] += 1  # a refusal the service explained; not an error, not an attempt
                response.success()
            else:
                response.failure(f"status {response.status_code}")
        # The server times the window from when it handled the click, which may be long after it was sent.
        self.clicked[(referral, button)] = time.monotonic()


@events.test_stop.add_listener
def write_counts(environment, **kwargs):
    RESULT_FILE.parent.mkdir(parents=True, exist_ok=True)
    RESULT_FILE.write_text(json.dumps(recorded))
