"""The core stays pure: no kopf, kubernetes, boto3, acme or network; no clock; no files."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import certfleet.core

REPO = Path(__file__).resolve().parents[3]
CORE = Path(certfleet.core.__file__).parent
SOURCES = sorted(CORE.glob("*.py"))


def test_import_contract() -> None:
    """The import-linter contract of pyproject.toml, in the test run."""
    lint_imports = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run(
        [str(lint_imports), "--no-cache"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "The core is pure" in result.stdout
    assert "KEPT" in result.stdout


def test_importing_the_core_loads_nothing_heavy() -> None:
    # socket is left out: cryptography.x509 imports email.utils, which imports it.
    forbidden = "kopf kubernetes boto3 botocore acme requests urllib3 http ssl subprocess asyncio"
    code = (
        "import sys, pkgutil, importlib, certfleet.core as c\n"
        "for m in pkgutil.iter_modules(c.__path__):\n"
        "    importlib.import_module(f'certfleet.core.{m.name}')\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {forbidden.split()!r})\n"
        "print(bad)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("source", SOURCES, ids=[s.name for s in SOURCES])
def test_core_imports_no_higher_layer(source: Path) -> None:
    """Within certfleet, the core is the bottom layer: it imports only itself."""
    tree = ast.parse(source.read_text(), filename=str(source))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{source.name}:{node.lineno}: use absolute imports"
            modules = [node.module or ""]
        elif isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        else:
            continue
        for module in modules:
            if module.split(".")[0] == "certfleet":
                assert module.startswith("certfleet.core"), f"{source.name} imports {module}"


FORBIDDEN_CALLS = {"now", "utcnow", "today", "time", "monotonic", "open", "urandom"}
# The one clock that edges pass in: defined in the core, called only by its callers.
CLOCK_DEFINITIONS = {("clock.py", "utc_now", "now")}
# Not a clock: the X.509 verifier's PolicyBuilder.time(moment) is given the time passed in.
TIME_SETTERS = {("checks.py", "_verify", "time")}


@pytest.mark.parametrize("source", SOURCES, ids=[s.name for s in SOURCES])
def test_no_clock_and_no_io(source: Path) -> None:
    """Time is passed in, nothing is read or written: the core is a set of decisions."""
    tree = ast.parse(source.read_text(), filename=str(source))
    allowed = {
        id(call)
        for function in ast.walk(tree)
        if isinstance(function, ast.FunctionDef)
        for call in ast.walk(function)
        if isinstance(call, ast.Call)
        and (source.name, function.name, _called(call)) in CLOCK_DEFINITIONS | TIME_SETTERS
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and id(node) not in allowed:
            name = _called(node)
            assert name not in FORBIDDEN_CALLS, f"{source.name}:{node.lineno} calls {name}()"


def _called(call: ast.Call) -> str:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else str(getattr(func, "id", ""))
