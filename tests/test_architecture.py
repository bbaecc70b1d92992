"""The rooms and what they may touch (ARCHITECTURE.md), checked on the source's import statements."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def imports_of(folder: str) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for path in (ROOT / folder).rglob("*.py"):
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


@pytest.mark.parametrize(
    ("folder", "forbidden"),
    [
        (
            "device/protocol",
            ("asyncio", "socket", "serial", "serial_asyncio_fast", "logging", "time", "bridge", "device.simulator"),
        ),
        ("bridge/core", ("asyncio", "socket", "bridge.modbus", "bridge.opcua", "bridge.session", "logging")),
        ("device/simulator", ("bridge",)),
        ("bridge/modbus", ("asyncua", "bridge.opcua", "bridge.session", "bridge.link")),
        ("bridge/opcua", ("pymodbus", "bridge.modbus", "bridge.session", "bridge.link")),
    ],
)
def test_rooms_import_only_what_they_may(folder: str, forbidden: tuple[str, ...]) -> None:
    assert _hits(folder, forbidden) == []


def test_foreign_stacks_are_imported_in_one_adapter_each() -> None:
    every = {**imports_of("bridge"), **imports_of("device")}
    for stack, home in (("pymodbus", "bridge/modbus/"), ("asyncua", "bridge/opcua/")):
        users = {f for f, mods in every.items() if any(m == stack or m.startswith(stack + ".") for m in mods)}
        assert users and all(f.startswith(home) for f in users), users
