#!/usr/bin/env python3
"""Set up and run painplatform, or its tests, with nothing but Python 3.11+.

    python3 dev.py run     create .venv, install, migrate SQLite, load demo data, run web + queue worker
    python3 dev.py test    create .venv, install with test extras, run the whole test suite

Extra arguments after `test` go to pytest (e.g. `python3 dev.py test -k nhs`).
"""

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
PYTHON = VENV / "bin" / "python"


def ensure_environment(extras: str) -> None:
    """Create the virtualenv and install the project, only when pyproject.toml changed."""
    if sys.version_info < (3, 11):
        sys.exit("painplatform needs Python 3.11 or newer.")
    if not PYTHON.exists():
        # A half-made or dangling .venv (a copied symlink, an interrupted first run) is rebuilt.
        if VENV.is_symlink() or VENV.is_file():
            VENV.unlink()
        elif VENV.exists():
            shutil.rmtree(VENV)
        print("Creating virtual environment in .venv", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + extras.encode()).hexdigest()[:16]
    stamp = VENV / f".installed-{digest}"
    if stamp.exists():
        return
    print("Installing dependencies (first run only)", flush=True)
    target = f".[{extras}]" if extras else "."
    subprocess.run([PYTHON, "-m", "pip", "install", "--quiet", "--upgrade", "pip"], check=True)
    subprocess.run([PYTHON, "-m", "pip", "install", "--quiet", "-e", target], check=True, cwd=ROOT)
    for old in VENV.glob(".installed-*"):
        old.unlink()
    stamp.touch()


def manage(*args: str) -> None:
    subprocess.run([PYTHON, "manage.py", *args], check=True, cwd=ROOT)


def run() -> int:
    ensure_environment("")
    (ROOT / "var").mkdir(exist_ok=True)
    manage("migrate", "--verbosity", "0")
    manage("seed_demo", "--if-empty")
    port = os.environ.get("PORT", "8000")
    print(f"\nPain Platform is running at http://127.0.0.1:{port}/  (Ctrl-C stops web server and worker)\n", flush=True)
    processes = [
        subprocess.Popen([PYTHON, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"], cwd=ROOT),
        subprocess.Popen([PYTHON, "manage.py", "qcluster"], cwd=ROOT),
    ]
    try:
        while all(p.poll() is None for p in processes):
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        # Ctrl-C reached the children too; make sure both stop, whichever exited first.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        for p in processes:
            if p.poll() is None:
                p.terminate()
        for p in processes:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
        print("Stopped the web server and the worker.", flush=True)
    return 0


def test(pytest_args: list[str]) -> int:
    ensure_environment("test")
    database = os.environ.get("DATABASE_URL", "SQLite (in memory)")
    print(f"Running the test suite on {database.split('@')[-1]}", flush=True)
    return subprocess.run([PYTHON, "-m", "pytest", *pytest_args], cwd=ROOT).returncode


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] not in {"run", "test"}:
        print(__doc__)
        return 2
    if sys.argv[1] == "run":
        return run()
    return test(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
