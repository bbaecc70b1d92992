"""Register maps: data files (register_maps/*.yaml) validated by one schema, expanded into points.

A point ties a model quantity (or a constant) to a Modbus table, address and data type. One table
(``TYPES``) says, per data type, its struct code, register count, "not available" marker and which
tables may hold it. Docs and ``map export`` are generated from the same expanded points.
"""

from __future__ import annotations

import csv
import io
import itertools
import math
import re
import struct
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from bridge.config import format_validation, read_document
from bridge.errors import ConfigError
from bridge.model.quantities import QUANTITIES, Quantity, Value
from device.protocol import BOARD_CIRCUITS

Table = Literal["coil", "discrete", "input", "holding"]
BIT_TABLES = ("coil", "discrete")
WORD_TABLES = ("input", "holding")
REFERENCE_BASE = {"coil": 1, "discrete": 100001, "input": 300001, "holding": 400001}  # 6-digit notation


@dataclass(frozen=True, slots=True)
class DataType:
    struct_code: str  # "" for bits and strings
    registers: int  # 0: from `size`
    na: int | float | None  # raw value meaning "not available" (SunSpec conventions)
    tables: tuple[str, ...]
    integer: bool


TYPES: dict[str, DataType] = {
    "bool": DataType("", 1, None, BIT_TABLES + WORD_TABLES, True),
    "uint16": DataType(">H", 1, 0xFFFF, WORD_TABLES, True),
    "int16": DataType(">h", 1, -0x8000, WORD_TABLES, True),
    "sunssf": DataType(">h", 1, -0x8000, WORD_TABLES, True),
    "uint32": DataType(">I", 2, 0xFFFFFFFF, WORD_TABLES, True),
    "int32": DataType(">i", 2, -0x80000000, WORD_TABLES, True),
    "acc32": DataType(">I", 2, 0, WORD_TABLES, True),
    "float32": DataType(">f", 2, math.nan, WORD_TABLES, False),
    "uint64": DataType(">Q", 4, 0xFFFFFFFFFFFFFFFF, WORD_TABLES, True),
    "acc64": DataType(">Q", 4, 0, WORD_TABLES, True),
    "string": DataType("", 0, None, WORD_TABLES, False),
}


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PointSpec(_Frozen):
    name: str = Field(pattern=r"^[A-Za-z0-9_.{}:-]+$")
    table: Table | None = None
    address: int | None = Field(None, ge=0, le=65535)
    offset: int | None = Field(None, ge=0, le=65535)
    type: Literal[tuple(TYPES)]  # type: ignore[valid-type]
    size: int | None = Field(None, ge=1, le=64, description="registers, for strings")
    quantity: str | None = None
    value: float | int | str | None = None
    constant: bool = Field(False, description="value given (null = the type's not-available marker)")
    sf: int = Field(0, ge=-10, le=10, description="decimal exponent: engineering value = raw x 10^sf")
    multiplier: float = Field(1.0, description="applied before sf (e.g. 100 for a PF in percent)")
    unit: str = ""
    description: str = ""
    orders: int | None = Field(
        None, ge=1, le=40, description="a series: one point per N = 1..orders, {order} in name and quantity"
    )
    order_stride: int | None = Field(None, ge=1, le=100, description="registers from one N to the next")

    @model_validator(mode="before")
    @classmethod
    def _mark_constant(cls, data: Any) -> Any:
        if isinstance(data, dict) and "value" in data and "constant" not in data:
            data = {**data, "constant": True}
        return data

    @model_validator(mode="after")
    def _check(self) -> PointSpec:
        if self.quantity is None and not self.constant:
            raise ValueError("give either 'quantity' (a model value) or 'value' (a constant)")
        if self.quantity is not None and self.constant:
            raise ValueError("'quantity' and 'value' exclude each other")
        if self.orders is not None and not (self.quantity and "{order}" in self.quantity and "{order}" in self.name):
            raise ValueError("'orders' needs {order} in both 'name' and 'quantity'")
        if self.quantity is not None and self.quantity.format(order=1) not in QUANTITIES:
            raise ValueError(f"unknown quantity '{self.quantity}'; see docs/register-maps.md for the list")
        if self.type == "string" and self.size is None:
            raise ValueError("a string needs 'size' (registers, 2 characters each)")
        if self.type != "string" and self.size is not None:
            raise ValueError("'size' applies to strings only")
        return self


class RepeatSpec(_Frozen):
    var: Literal["circuit"] = "circuit"
    count: int = Field(BOARD_CIRCUITS, ge=1, le=BOARD_CIRCUITS)
    base: int = Field(ge=0, le=65535)
    stride: int = Field(ge=1, le=65535)
    table: Table | None = None
    points: tuple[PointSpec, ...]


class MapSpec(_Frozen):
    name: str = Field(pattern=r"^[a-z][a-z0-9_-]*$")
    title: str = ""
    description: str = ""
    word_order: Literal["big", "little"] = "big"
    table: Table = "input"
    points: tuple[PointSpec, ...] = ()
    repeat: tuple[RepeatSpec, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Point:
    """One expanded point: absolute address, circuit bound (0 for device scope)."""

    name: str
    table: Table
    address: int
    registers: int  # bits count 1 for bit tables
    type: str
    quantity: Quantity | None
    value: Value
    circuit: int
    sf: int
    multiplier: float
    unit: str
    description: str
    order: int = 0  # N of a series point (a harmonic order, an event-log slot), 0 otherwise
    orders: int = 0  # how many points its series has
    order_stride: int = 0  # registers from one N to the next
    series: str = ""  # the series' name, "[1..N]" in place of N

    @property
    def writable(self) -> bool:
        return self.quantity is not None and self.quantity.writable and self.table in ("coil", "holding")

    @property
    def end(self) -> int:
        return self.address + self.registers


class RegisterMap:
    def __init__(self, spec: MapSpec, points: list[Point], source: str) -> None:
        self.spec = spec
        self.name = spec.name
        self.word_order = spec.word_order
        self.points = points
        self.source = source
        self._index: dict[str, dict[int, Point]] = {t: {} for t in REFERENCE_BASE}
        for p in points:
            for a in range(p.address, p.end):
                self._index[p.table][a] = p

    def point_at(self, table: str, address: int) -> Point | None:
        return self._index[table].get(address)

    def covered(self, table: str, address: int, count: int) -> bool:
        idx = self._index[table]
        return all(a in idx for a in range(address, address + count))

    def points_in(self, table: str, address: int, count: int) -> list[Point]:
        idx = self._index[table]
        seen: dict[int, Point] = {}
        for a in range(address, address + count):
            p = idx.get(a)
            if p is not None:
                seen[id(p)] = p
        return sorted(seen.values(), key=lambda p: p.address)


def _expand(spec: MapSpec, source: str) -> list[Point]:
    points: list[Point] = []

    def make(
        ps: PointSpec,
        table: str | None,
        address: int,
        circuit: int,
        where: str,
        order: tuple[int, int, int, str] = (0, 0, 0, ""),
    ) -> None:
        if ps.orders is not None:  # a series (a harmonic spectrum, the event log): one point per N
            step = ps.order_stride or TYPES[ps.type].registers or 1
            series = ps.name.replace("{order}", f"[1..{ps.orders}]")
            for n in range(1, ps.orders + 1):
                one = ps.model_copy(
                    update={
                        "orders": None,
                        "name": ps.name.replace("{order}", str(n)),
                        "quantity": (ps.quantity or "").format(order=n),
                    }
                )
                make(one, table, address + (n - 1) * step, circuit, f"{where}, N = {n}", (n, ps.orders, step, series))
            return
        t = ps.table or table or spec.table
        dt = TYPES[ps.type]
        if t not in dt.tables:
            raise ConfigError(f"{source}: {where}: type {ps.type} cannot live in the {t} table")
        if ps.type == "bool" and t in WORD_TABLES and ps.quantity is None:
            raise ConfigError(f"{source}: {where}: a bool in a register table must be a quantity")
        q = QUANTITIES.get(ps.quantity) if ps.quantity else None
        if q is not None and q.scope == "circuit" and circuit == 0:
            raise ConfigError(f"{source}: {where}: circuit quantity '{q.name}' outside a circuit repeat block")
        if q is not None and q.kind == "str" and ps.type != "string":
            raise ConfigError(f"{source}: {where}: text quantity '{q.name}' needs type string")
        if q is not None and q.kind != "str" and ps.type == "string":
            raise ConfigError(f"{source}: {where}: numeric quantity '{q.name}' cannot be a string")
        regs = 1 if t in BIT_TABLES else (ps.size if ps.type == "string" else dt.registers) or 1
        if address + regs > 65536:
            raise ConfigError(f"{source}: {where}: address {address} + {regs} registers passes 65535")
        points.append(
            Point(
                name=ps.name.format(circuit=circuit),
                table=t,  # type: ignore[arg-type]
                address=address,
                registers=regs,
                type=ps.type,
                quantity=q,
                value=ps.value,
                circuit=circuit,
                sf=ps.sf,
                multiplier=ps.multiplier,
                unit=ps.unit or (q.unit if q else ""),
                description=ps.description or (q.description if q else ""),
                order=order[0],
                orders=order[1],
                order_stride=order[2],
                series=order[3].format(circuit=circuit),
            )
        )

    for k, ps in enumerate(spec.points):
        if ps.address is None:
            raise ConfigError(f"{source}: points[{k}] ({ps.name}): needs 'address'")
        make(ps, None, ps.address, 0, f"points[{k}] ({ps.name})")
    for r, rep in enumerate(spec.repeat):
        for k, ps in enumerate(rep.points):
            if ps.offset is None:
                raise ConfigError(f"{source}: repeat[{r}].points[{k}] ({ps.name}): needs 'offset'")
            for c in range(1, rep.count + 1):
                make(
                    ps,
                    rep.table,
                    rep.base + (c - 1) * rep.stride + ps.offset,
                    c,
                    f"repeat[{r}].points[{k}] ({ps.name}) for circuit {c}",
                )
    # overlaps and duplicate names, named by both points
    by_table: dict[str, list[Point]] = {}
    names: dict[str, Point] = {}
    for p in points:
        if p.name in names:
            raise ConfigError(f"{source}: point name '{p.name}' is used twice")
        names[p.name] = p
        by_table.setdefault(p.table, []).append(p)
    for table, pts in by_table.items():
        pts.sort(key=lambda p: p.address)
        for a, b in itertools.pairwise(pts):
            if b.address < a.end:
                raise ConfigError(
                    f"{source}: '{b.name}' at {table} {b.address} overlaps '{a.name}' ({a.address}..{a.end - 1})"
                )
    return points


def parse_map(data: Any, *, source: str, lines: dict[tuple[str, ...], int] | None = None) -> RegisterMap:
    try:
        spec = MapSpec.model_validate(data if data is not None else {})
    except ValidationError as exc:
        raise ConfigError(f"{source}: invalid register map\n" + format_validation(exc, source, lines or {})) from None
    return RegisterMap(spec, _expand(spec, source), source)


def load_map_file(path: Path) -> RegisterMap:
    data, lines = read_document(path)
    return parse_map(data, source=str(path), lines=lines)


def builtin_map_names() -> list[str]:
    files = resources.files("register_maps")
    return sorted(f.name.removesuffix(".yaml") for f in files.iterdir() if f.name.endswith(".yaml"))


def load_map(name: str, extra_dirs: tuple[str | Path, ...] = ()) -> RegisterMap:
    """A map by name: first the integrator's folders, then the built-in maps; or a file path."""
    p = Path(name)
    if p.suffix in (".yaml", ".yml", ".toml") and p.exists():
        return load_map_file(p)
    for d in extra_dirs:
        for suffix in (".yaml", ".yml", ".toml"):
            cand = Path(d) / f"{name}{suffix}"
            if cand.exists():
                return load_map_file(cand)
    res = resources.files("register_maps") / f"{name}.yaml"
    if not res.is_file():
        known = ", ".join(builtin_map_names())
        raise ConfigError(f"register map '{name}' not found (built-in maps: {known}; or give a .yaml path)")
    with resources.as_file(res) as path:
        return load_map_file(path)


# ---------------------------------------------------------------------------------------------- values


def _raw(point: Point, value: Value) -> int | float | None:
    if value is None:
        return None
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, str):
        return None
    dt = TYPES[point.type]
    if isinstance(value, int) and dt.integer and point.multiplier == 1:
        # integers stay exact (a float would round counters above 2^53)
        scaled: int = value * 10 ** (-point.sf) if point.sf <= 0 else round(value / 10**point.sf)
        return scaled
    x = float(value) * point.multiplier
    if not math.isfinite(x):
        return None
    if dt.integer:
        return round(x / 10.0**point.sf)
    return x


def encode(point: Point, value: Value, word_order: str) -> list[int]:
    """Registers (or one bit) for a point's engineering value; out-of-range and missing values become
    the type's not-available marker (NaN, 0x8000, 0xFFFF ...)."""
    if point.table in BIT_TABLES:
        return [1 if value else 0]
    if point.type == "string":
        text = "" if value is None else str(value)
        raw = text.encode("utf-8")[: 2 * point.registers].ljust(2 * point.registers, b"\0")
        return list(struct.unpack(f">{point.registers}H", raw))
    if point.type == "bool":
        return [0xFFFF if value is None else int(bool(value))]
    dt = TYPES[point.type]
    r = _raw(point, value)
    if r is None:
        r = dt.na
    if dt.integer:
        assert r is not None
        lo, hi = _limits(dt.struct_code)
        if not lo <= int(r) <= hi:
            r = dt.na
    data = struct.pack(dt.struct_code, r)
    words = list(struct.unpack(f">{len(data) // 2}H", data))
    if word_order == "little":
        words.reverse()
    return words


def decode(point: Point, words: list[int], word_order: str) -> float | int | str | None:
    """The inverse of :func:`encode` (used for writes and by tests)."""
    if point.table in BIT_TABLES or point.type == "bool":
        return int(bool(words[0]))
    if point.type == "string":
        return struct.pack(f">{len(words)}H", *words).rstrip(b"\0").decode("utf-8", "replace")
    dt = TYPES[point.type]
    w = list(words)
    if word_order == "little":
        w.reverse()
    (r,) = struct.unpack(dt.struct_code, struct.pack(f">{len(w)}H", *w))
    if dt.integer:
        if r == dt.na and point.type not in ("acc32", "acc64"):
            return None
        if point.sf or point.multiplier != 1:
            return float(r * 10.0**point.sf / point.multiplier)
        return int(r)
    return None if math.isnan(r) else float(r / point.multiplier)


def _limits(code: str) -> tuple[int, int]:
    bits = struct.calcsize(code) * 8
    if code[-1].isupper():
        return 0, 2**bits - 1
    return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1


# ---------------------------------------------------------------------------------------------- export


def _rows(m: RegisterMap, spectra: bool = False) -> list[dict[str, str]]:
    """One row per point; with ``spectra`` a harmonic spectrum is one row (order 1's, spanning all)."""
    rows = []
    for p in sorted(m.points, key=lambda p: (list(REFERENCE_BASE).index(p.table), p.address)):
        if spectra and p.order > 1:
            continue
        if spectra and p.order == 1:
            last = p.address + (p.orders - 1) * p.order_stride + p.registers - 1
            source = p.quantity.name if p.quantity else ""
            rows.append(
                {
                    "table": p.table,
                    "address": f"{p.address} + {p.order_stride} x (N - 1)",
                    "reference": f"{REFERENCE_BASE[p.table] + p.address}..{REFERENCE_BASE[p.table] + last}",
                    "registers": str(p.registers),
                    "name": p.series,
                    "type": p.type,
                    "scale": "" if not p.sf and p.multiplier == 1 else _scale_text(p),
                    "unit": p.unit,
                    "access": "R",
                    "source": re.sub(r"(\D)1(\.|$)", r"\1N\2", source, count=1),
                    "description": re.sub(r"\b1\b", "N", p.description, count=1) + f" (N = 1..{p.orders})",
                }
            )
            continue
        rows.append(
            {
                "table": p.table,
                "address": str(p.address),
                "reference": str(REFERENCE_BASE[p.table] + p.address),
                "registers": str(p.registers),
                "name": p.name,
                "type": p.type,
                "scale": "" if not p.sf and p.multiplier == 1 else _scale_text(p),
                "unit": p.unit,
                "access": "RW" if p.writable else "R",
                "source": p.quantity.name
                if p.quantity
                else ("const " + repr(p.value) if p.value is not None else "n/a"),
                "description": p.description,
            }
        )
    return rows


def _scale_text(p: Point) -> str:
    parts = []
    if p.multiplier != 1:
        parts.append(f"x{p.multiplier:g}")
    if p.sf:
        parts.append(f"10^{p.sf}")
    return " ".join(parts)


def export_map(m: RegisterMap, fmt: Literal["csv", "md"]) -> str:
    rows = _rows(m, spectra=fmt == "md")
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
        return buf.getvalue()
    head = (
        f"### Map `{m.name}`: {m.spec.title}\n\n{m.spec.description.strip()}\n\nWord order: **{m.word_order}-endian** "
    )
    head += (
        "(first register holds the most significant word)"
        if m.word_order == "big"
        else "(first register holds the least significant word)"
    )
    cols = [
        "table",
        "address",
        "reference",
        "registers",
        "name",
        "type",
        "scale",
        "unit",
        "access",
        "source",
        "description",
    ]
    lines = [head, "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join(r[c].replace("|", "\\|") for c in cols) + " |")
    return "\n".join(lines) + "\n"
