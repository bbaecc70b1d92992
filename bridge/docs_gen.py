"""Generate the tables in docs/ from the same sources the code uses (``make docs``).

Hand-written prose stays; only the text between ``<!-- generated:NAME -->`` and
``<!-- /generated:NAME -->`` markers is replaced.
"""

from __future__ import annotations

import itertools
import re
import sys
import types
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from device.protocol.faults import BLOCKS, FAULT_DICTIONARY, UNKNOWN_FAULT

from .commands.authorise import MINIMUM_ROLE, Action
from .config import Config
from .fronts.modbus.register_map import TYPES, builtin_map_names, export_map, load_map
from .fronts.opcua.catalogue import (
    CIRCUIT_AGGREGATES,
    CIRCUIT_MEASUREMENTS,
    CIRCUIT_SPECTRA,
    ECM_MEASUREMENTS,
    FREQUENCY,
    UNITS,
)
from .model.changes import Change
from .model.quantities import QUANTITIES

DOCS = Path(__file__).resolve().parents[1] / "docs"


def register_maps_md() -> str:
    parts = []
    for name in builtin_map_names():
        parts.append(export_map(load_map(name), "md"))
    return "\n".join(parts)


# quantities that form a series (a harmonic spectrum, the event log): one row each, N for the index
_SERIES = re.compile(r"^(circuit\.[vi]_h|device\.event|device\.fault|device\.selftest)(\d+)(\.\w+)?$")


def quantities_md() -> str:
    rows = ["| quantity | scope | unit | type | writable | description |", "|---|---|---|---|---|---|"]
    sizes: dict[str, int] = {}
    for q in QUANTITIES.values():
        m = _SERIES.match(q.name)
        if m:
            key = m[1] + "N" + (m[3] or "")
            sizes[key] = max(sizes.get(key, 0), int(m[2]))
    for q in QUANTITIES.values():
        name, desc = q.name, q.description
        m = _SERIES.match(q.name)
        if m and m[2] != "1":
            continue  # a series is one row
        if m:
            name = m[1] + "N" + (m[3] or "")
            desc = re.sub(r"\b1\b", "N", desc, count=1) + f" (N = 1..{sizes[name]})"
        rows.append(f"| `{name}` | {q.scope} | {q.unit} | {q.kind} | {'yes' if q.writable else ''} | {desc} |")
    return "\n".join(rows) + "\n"


def types_md() -> str:
    rows = ["| type | registers | not-available marker | tables |", "|---|---|---|---|"]
    for name, t in TYPES.items():
        regs = "size" if t.registers == 0 else str(t.registers)
        na = "" if t.na is None else (hex(t.na) if isinstance(t.na, int) and t.na > 0 else str(t.na))
        rows.append(f"| {name} | {regs} | {na} | {', '.join(t.tables)} |")
    return "\n".join(rows) + "\n"


def _fields(model: type[BaseModel], prefix: str, rows: list[str]) -> None:
    for name, f in model.model_fields.items():
        ann = f.annotation
        sub = _model_of(ann)
        key = f"{prefix}{name}"
        if sub is not None and not _is_sequence(ann):
            _fields(sub, key + ".", rows)
            continue
        default = f.get_default(call_default_factory=True)
        if isinstance(default, BaseModel | tuple) and sub is not None:
            shown = "(list)" if _is_sequence(ann) else ""
        else:
            shown = f"`{default!r}`" if default is not None or not f.is_required() else "required"
        if f.is_required():
            shown = "required"
        rows.append(f"| `{key}` | {_type_name(ann)} | {shown} | {f.description or ''} |")
        if sub is not None and _is_sequence(ann):
            _fields(sub, key + "[].", rows)


def _is_sequence(ann: Any) -> bool:
    return getattr(ann, "__origin__", None) in (tuple, list)


def _model_of(ann: Any) -> type[BaseModel] | None:
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    for arg in getattr(ann, "__args__", ()) or ():
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None


def _type_name(ann: Any) -> str:
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if origin is typing.Annotated:
        return _type_name(args[0])
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in args)
    if origin is typing.Literal:
        return " / ".join(f"`{a!r}`" for a in args)
    if origin is tuple:
        return f"list of {_type_name(args[0])}"
    if origin is dict:
        return f"table {_type_name(args[0])} -> {_type_name(args[1])}"
    if ann is type(None):
        return "none"
    return getattr(ann, "__name__", str(ann))


def config_md() -> str:
    rows = ["| key | type | default | meaning |", "|---|---|---|---|"]
    _fields(Config, "", rows)
    return "\n".join(rows) + "\n"


def opcua_md() -> str:
    rows = ["| browse name | unit | UNECE code | EURange | description |", "|---|---|---|---|---|"]
    for m in (*CIRCUIT_MEASUREMENTS, FREQUENCY, *CIRCUIT_SPECTRA, *CIRCUIT_AGGREGATES):
        u = UNITS[m.unit]
        code = u.code or "(none, UnitId -1)"
        rows.append(f"| {m.browse_name} | {u.symbol} | {code} | {m.low:g} .. {m.high:g} | {m.description} |")
    return "\n".join(rows) + "\n"


def changes_md() -> str:
    import ast
    import inspect

    # the kinds' docstrings sit beside them in the enum's source: read them from there, one source
    doc: dict[str, str] = {}
    body = ast.parse(inspect.getsource(Change)).body[0]
    assert isinstance(body, ast.ClassDef)
    for a, b in itertools.pairwise(body.body):
        if isinstance(a, ast.Assign) and isinstance(b, ast.Expr) and isinstance(b.value, ast.Constant):
            doc[a.targets[0].id] = str(b.value.value)  # type: ignore[attr-defined]
    rows = ["| kind | what changed |", "|---|---|"]
    rows += [f"| `{c.name}` | {doc.get(c.name, '')} |" for c in Change]
    return "\n".join(rows) + "\n"


def roles_md() -> str:
    rows = ["| action | least role |", "|---|---|"]
    rows += [f"| {a.value} | {MINIMUM_ROLE[a]} |" for a in Action]
    return "\n".join(rows) + "\n"


def ecm_md() -> str:
    rows = ["| MeasurementID | BrowseName | DataType | unit | from | reached by |", "|---|---|---|---|---|---|"]
    for m in ECM_MEASUREMENTS:
        by = "HasStatisticComponent" if m.statistic else "HasComponent"
        member = " (IEnergyProfileE2Type)" if m.e2 else ""
        rows.append(f"| {m.measurement_id} | {m.browse_name} | {m.vtype} | {m.unit} | `{m.source}` | {by}{member} |")
    return "\n".join(rows) + "\n"


def faults_md() -> str:
    blocks = ", ".join(f"{n} {b}" for b, n in BLOCKS.items())
    rows = [
        f"Block numbers (Modbus): {blocks}. A code not listed reads number {UNKNOWN_FAULT} with the device's own text.",
        "",
        "| number | code | block | meaning |",
        "|---|---|---|---|",
    ]
    for f in FAULT_DICTIONARY:
        rows.append(f"| {f.number} | `{f.code}` | {f.block} | {f.text} |")
    return "\n".join(rows) + "\n"


GENERATORS = {
    "protocol.md": {"faults": faults_md},
    "architecture.md": {"changes": changes_md, "roles": roles_md},
    "register-maps.md": {"maps": register_maps_md, "quantities": quantities_md, "types": types_md},
    "configuration.md": {"config": config_md},
    "opcua.md": {"measurements": opcua_md, "ecm": ecm_md},
}


def render(path: Path, blocks: dict[str, Any]) -> str:
    text = path.read_text(encoding="utf-8")
    for name, fn in blocks.items():
        pattern = re.compile(rf"(<!-- generated:{name} -->\n).*?(<!-- /generated:{name} -->)", re.S)
        match = pattern.search(text)
        if match is None:
            raise SystemExit(f"{path}: marker <!-- generated:{name} --> missing")
        head, tail = match.groups()
        text = text[: match.start()] + head + fn() + tail + text[match.end() :]
    return text


def main(check: bool = False) -> int:
    stale = []
    for fname, blocks in GENERATORS.items():
        path = DOCS / fname
        new = render(path, blocks)
        if new != path.read_text(encoding="utf-8"):
            stale.append(fname)
            if not check:
                path.write_text(new, encoding="utf-8")
    if check and stale:
        print("stale generated docs: " + ", ".join(stale) + " (run `make docs`)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(check="--check" in sys.argv))
