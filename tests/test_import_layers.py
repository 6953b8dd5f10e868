"""The capabilities form a one-way stack (pyproject.toml, [tool.importlinter]): caseload at the bottom,
then booking, calls, the worklist, and reminders and reports on top. These tests keep it so: a new
upward import, or an import hidden inside a function to dodge the check, fails here."""

import ast
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
# Django loads apps.py before any model exists; wiring the hooks in ready() is the one sanctioned case.
FUNCTION_IMPORTS_ALLOWED_IN = {"scheduling/apps.py"}


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(root / "pyproject.toml"), "--no-cache"],
        cwd=root, capture_output=True, text=True, timeout=300,
    )


def imports_inside_functions(source: str) -> list[tuple[int, str]]:
    """(line, module) for every import of a scheduling module made inside a function or method."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for inner in ast.walk(node):
            if isinstance(inner, ast.ImportFrom) and inner.module and inner.module.startswith("scheduling"):
                found.append((inner.lineno, inner.module))
            elif isinstance(inner, ast.Import):
                found += [(inner.lineno, a.name) for a in inner.names if a.name.startswith("scheduling")]
    return sorted(set(found))


def test_the_capabilities_keep_to_their_layers():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Capabilities form a one-way stack KEPT" in result.stdout


def test_an_upward_import_breaks_the_stack(tmp_path):
    shutil.copytree(ROOT / "scheduling", tmp_path / "scheduling", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    services = tmp_path / "scheduling" / "caseload" / "services.py"
    services.write_text(services.read_text() + "\nfrom scheduling.worklist.services import raise_admin_task  # noqa\n")

    result = lint_imports(tmp_path)

    assert result.returncode != 0
    assert "BROKEN" in result.stdout and "scheduling.caseload.services -> scheduling.worklist.services" in result.stdout


def test_no_module_hides_an_import_inside_a_function():
    hidden = {}
    for path in sorted((ROOT / "scheduling").rglob("*.py")):
        relative = path.relative_to(ROOT).as_posix()
        if "/migrations/" in relative or relative in FUNCTION_IMPORTS_ALLOWED_IN:
            continue
        found = imports_inside_functions(path.read_text())
        if found:
            hidden[relative] = found
    assert hidden == {}


def test_the_function_import_check_sees_an_import_in_a_method():
    source = "class A:\n    def f(self):\n        from scheduling.booking.services import cancel_appointment\n"
    assert imports_inside_functions(source) == [(3, "scheduling.booking.services")]
