"""One fake clock for the test and every worker process it starts.

time-machine moves the clock of one process only. The end-to-end tests need the same "now" in the
test (booking, the webhooks live_server answers) and in a real qcluster (its scheduler, pusher,
monitor and workers are all forked processes). So the test writes the time to a file and each
worker process follows it: it travels there at start, and a watcher thread, restarted after every
fork, moves its clock whenever the file changes. Clocks tick in real time between moves.
"""

import datetime as dt
import os
import threading
import time
from pathlib import Path

import time_machine

CLOCK_FILE_VARIABLE = "PAINPLATFORM_TEST_CLOCK_FILE"
POLL_SECONDS = 0.02
# Long enough for every follower to have read a new time (several polls).
SETTLE_SECONDS = 0.15


def _write(path: Path, moment: dt.datetime) -> None:
    if moment.tzinfo is None:
        raise ValueError("the shared clock needs an aware datetime")
    temporary = path.with_suffix(".tmp")
    temporary.write_text(moment.isoformat())
    os.replace(temporary, path)  # atomic: a follower never reads half a time


class SharedClock:
    """The test's side: moves its own clock and, through the file, the workers'."""

    def __init__(self, path: Path, start: dt.datetime):
        self.path = path
        _write(path, start)
        self._travel = time_machine.travel(start, tick=True)
        self._traveller = self._travel.start()

    def move_to(self, moment: dt.datetime) -> None:
        _write(self.path, moment)
        self._traveller.move_to(moment, tick=True)
        time.sleep(SETTLE_SECONDS)

    def stop(self) -> None:
        self._travel.stop()


def follow(path: Path) -> None:
    """A worker process's side: travel to the file's time and keep following it, here and in every
    process forked from here."""
    seen = path.read_text()
    traveller = time_machine.travel(dt.datetime.fromisoformat(seen), tick=True).start()
    state = {"seen": seen}

    def watch():
        while True:
            time.sleep(POLL_SECONDS)  # time-machine leaves sleep alone
            try:
                text = path.read_text()
            except FileNotFoundError:
                continue
            if text and text != state["seen"]:
                state["seen"] = text
                traveller.move_to(dt.datetime.fromisoformat(text), tick=True)

    def start_watching():
        threading.Thread(target=watch, name="shared-clock", daemon=True).start()

    start_watching()
    # Threads do not survive fork(); the watcher is started again in each child.
    os.register_at_fork(after_in_child=start_watching)
