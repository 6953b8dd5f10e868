"""The development-only devtools app (fake Twilio server, benchmarks) stays out of the product: nothing under
scheduling/ imports it, production settings do not install it, and the wheel and the image leave it out."""

import ast
import fnmatch
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SECRET_KEY = "x" * 60 + "-a-long-random-secret-for-tests-only-9f8e7d6c5b4a"
PRINT_INSTALLED = (
    "import django; django.setup(); from django.conf import settings; print('devtools' in settings.INSTALLED_APPS)"
)


def is_devtools(module: str | None) -> bool:
    return module is not None and (module == "devtools" or module.startswith("devtools."))


def devtools_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [f"line {node.lineno}: import {alias.name}" for alias in node.names if is_devtools(alias.name)]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and is_devtools(node.module):
            found.append(f"line {node.lineno}: from {node.module} import ...")
    return found


def test_no_product_module_imports_devtools():
    modules = sorted((ROOT / "scheduling").rglob("*.py"))
    assert len(modules) > 20  # the walk itself finds the product
    offenders = {str(path.relative_to(ROOT)): found for path in modules if (found := devtools_imports(path))}
    assert offenders == {}


def installed_with(**env_overrides: str) -> bool:
    # cwd is the repository root, so devtools is importable: only the settings decide.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "PAINPLATFORM_DEVTOOLS"))}
    env.update(DJANGO_SETTINGS_MODULE="painplatform.settings", **env_overrides)
    result = subprocess.run([sys.executable, "-c", PRINT_INSTALLED], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return {"True": True, "False": False}[result.stdout.strip().splitlines()[-1]]


PRODUCTION = {"DJANGO_DEBUG": "false", "DJANGO_SECRET_KEY": SECRET_KEY, "DJANGO_ALLOWED_HOSTS": "painplatform.example.nhs.uk"}


@pytest.mark.parametrize(
    "env, installed",
    [
        pytest.param(PRODUCTION, False, id="production"),
        pytest.param({**PRODUCTION, "PAINPLATFORM_DEVTOOLS": "0"}, False, id="production, devtools off"),
        # What deploy/stack_smoke.py gives its fake Twilio process, and nothing else.
        pytest.param({**PRODUCTION, "PAINPLATFORM_DEVTOOLS": "1"}, True, id="production, devtools asked for"),
        pytest.param({}, True, id="development default (debug on)"),
    ],
)
def test_devtools_is_installed_only_outside_production(env, installed):
    assert installed_with(**env) is installed


def test_the_wheel_and_the_image_leave_devtools_out():
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    assert any(fnmatch.fnmatch("scheduling", pattern) for pattern in patterns)  # the table is where we read it
    assert not any(fnmatch.fnmatch(package, pattern) for pattern in patterns for package in ("devtools", "devtools.management"))
    copied = re.findall(r"^COPY\s+(\S+)", (ROOT / "deploy" / "Dockerfile").read_text(), re.M)
    assert "scheduling" in copied and not any(source.startswith("devtools") or source == "." for source in copied)
