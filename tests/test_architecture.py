"""The rooms and what they may touch (docs/architecture.md): the import-linter contracts in
pyproject.toml, plus the standard-library rules grimp cannot see (it leaves the standard library out
of its graph), checked on the source's import statements."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def imports_of(folder: str) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    where = ROOT / folder
    for path in [where] if where.is_file() else where.rglob("*.py"):
        mods: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                mods.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: resolve against the file's package
                    pkg = path.relative_to(ROOT).parent.parts
                    pkg = pkg[: len(pkg) - (node.level - 1)]
                    base = ".".join((*pkg, base)) if base else ".".join(pkg)
                mods.add(base)
        out[str(path.relative_to(ROOT))] = mods
    return out


def _hits(folder: str, forbidden: tuple[str, ...]) -> list[str]:
    return [
        f"{f} imports {m}"
        for f, mods in imports_of(folder).items()
        for m in mods
        if any(m == x or m.startswith(x + ".") for x in forbidden)
    ]


def test_import_contracts_hold() -> None:
    lint = Path(sys.executable).parent / "lint-imports"
    done = subprocess.run([str(lint)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


@pytest.mark.parametrize(
    ("folder", "forbidden"),
    [
        ("device/protocol", ("asyncio", "socket", "selectors", "logging", "time", "threading")),
        ("bridge/core", ("asyncio", "socket", "selectors", "logging", "threading")),
        # the measuring process: blocking pipe I/O in one thread, nothing else
        ("bridge/measuring/meters.py", ("asyncio", "socket", "selectors", "logging", "threading", "time")),
        ("bridge/measuring/jobs.py", ("asyncio", "socket", "selectors", "logging", "threading", "time")),
        ("bridge/measuring/child.py", ("asyncio", "socket", "selectors", "logging", "threading")),
    ],
)
def test_no_io_clock_or_logging_in_the_pure_rooms(folder: str, forbidden: tuple[str, ...]) -> None:
    assert _hits(folder, forbidden) == []


def test_the_checker_sees_a_forbidden_import() -> None:
    """The scan is not vacuous: it finds the imports a room (or a file) does have."""
    assert _hits("device/simulator", ("asyncio",))
    assert _hits("bridge/measuring/child.py", ("pickle",))


def test_the_service_does_not_load_what_only_the_status_command_draws_with() -> None:
    """rich's traceback renderer and pygments are ~4 MB in every bridge process when structlog finds
    rich; console logs show plain tracebacks instead. The status command still draws with rich."""
    code = (
        "import sys, bridge.app, bridge.cli, bridge.logs, structlog.dev\n"
        "assert 'pygments' not in sys.modules and 'rich.traceback' not in sys.modules, 'loaded'\n"
        "assert structlog.dev.default_exception_formatter is structlog.dev.plain_traceback\n"
        "import rich.table\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
