"""Sparkplug B 3.0 edge node, sans-IO: topics, the birth/data/death payloads of the bridge (the edge
node) and its boards (Sparkplug devices), and DCMD decoding. Metric names come from the quantity
catalogue the other fronts use: a device quantity ``device.X`` is metric ``X``, a circuit quantity
``circuit.X`` is ``CircuitNN/X``. The series (harmonic spectra, event log, fault slots) are left to
Modbus and OPC UA.
"""

from __future__ import annotations

import enum
import math
import re
from dataclasses import dataclass, field

from bridge.model import DeviceState
from bridge.model.quantities import QUANTITIES, Quantity, Value

from .sparkplug_b_pb2 import Payload

NAMESPACE = "spBv1.0"
REBIRTH = "Node Control/Rebirth"
_SERIES = re.compile(r"^(circuit\.[vi]_h|device\.event|device\.fault|device\.selftest)\d+")


class DataType(enum.IntEnum):
    """Sparkplug B metric data types (specification 6.4.16)."""

    INT64 = 4
    UINT64 = 8
    DOUBLE = 10
    BOOLEAN = 11
    STRING = 12


_KIND_TYPES = {"float": DataType.DOUBLE, "int": DataType.INT64, "bool": DataType.BOOLEAN, "str": DataType.STRING}


@dataclass(frozen=True, slots=True)
class MetricDef:
    name: str
    alias: int
    quantity: Quantity
    circuit: int  # 0 for a device metric
    datatype: DataType

    def read(self, dev: DeviceState) -> Value:
        return self.quantity.read(dev, self.circuit)


def device_metrics(dev: DeviceState) -> list[MetricDef]:
    """The board's metrics, aliased from 1 in catalogue order (stable while the bridge runs)."""
    out: list[MetricDef] = []
    for q in QUANTITIES.values():
        if _SERIES.match(q.name):
            continue
        _, _, short = q.name.partition(".")
        circuits = range(1, len(dev.circuits) + 1) if q.scope == "circuit" else [0]
        for c in circuits:
            name = f"Circuit{c:02d}/{short}" if c else short
            out.append(MetricDef(name, len(out) + 1, q, c, _KIND_TYPES[q.kind]))
    return out


def _set_value(metric: Payload.Metric, datatype: DataType, value: Value) -> None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        metric.is_null = True
    elif datatype is DataType.DOUBLE:
        metric.double_value = float(value)
    elif datatype is DataType.BOOLEAN:
        metric.boolean_value = bool(value)
    elif datatype is DataType.STRING:
        metric.string_value = str(value)
    else:
        metric.long_value = int(value) & 0xFFFFFFFFFFFFFFFF  # Int64 travels as its two's complement


def topic(group: str, kind: str, node: str, device: str | None = None) -> str:
    return "/".join([NAMESPACE, group, kind, node, *([device] if device else [])])


@dataclass(slots=True)
class EdgeNode:
    """The edge node's Sparkplug state: bdSeq (one per MQTT session), seq (0-255 over every message
    after NBIRTH), each board's metrics and what was last published of them."""

    group: str
    node: str
    bd_seq: int = 0
    seq: int = 0
    metrics: dict[str, list[MetricDef]] = field(default_factory=dict)
    published: dict[str, dict[int, Value]] = field(default_factory=dict)  # device -> alias -> value
    born: set[str] = field(default_factory=set)

    def _next_seq(self) -> int:
        s = self.seq
        self.seq = (self.seq + 1) % 256
        return s

    def nbirth(self, now_ms: int) -> bytes:
        self.seq = 0
        p = Payload(timestamp=now_ms, seq=self._next_seq())
        for name, dt, value in (("bdSeq", DataType.UINT64, self.bd_seq), (REBIRTH, DataType.BOOLEAN, False)):
            m = p.metrics.add(name=name, timestamp=now_ms, datatype=int(dt))
            _set_value(m, dt, value)
        self.born.clear()
        return bytes(p.SerializeToString())

    def ndeath(self) -> bytes:
        """The will: bdSeq only, no seq (specification 7.1.1)."""
        p = Payload()
        p.metrics.add(name="bdSeq", datatype=int(DataType.UINT64), long_value=self.bd_seq)
        return bytes(p.SerializeToString())

    def dbirth(self, dev: DeviceState, now_ms: int) -> bytes:
        defs = self.metrics.setdefault(dev.name, device_metrics(dev))
        p = Payload(timestamp=now_ms, seq=self._next_seq())
        values: dict[int, Value] = {}
        for d in defs:
            value = d.read(dev)
            m = p.metrics.add(name=d.name, alias=d.alias, timestamp=now_ms, datatype=int(d.datatype))
            _set_value(m, d.datatype, value)
            if d.quantity.unit:
                m.properties.keys.append("engUnit")
                m.properties.values.add(type=int(DataType.STRING), string_value=d.quantity.unit)
            values[d.alias] = value
        self.published[dev.name] = values
        self.born.add(dev.name)
        return bytes(p.SerializeToString())

    def changes(self, dev: DeviceState) -> list[tuple[MetricDef, Value]]:
        """The metrics that changed since the last birth or look (report by exception)."""
        last = self.published.setdefault(dev.name, {})
        out: list[tuple[MetricDef, Value]] = []
        for d in self.metrics.get(dev.name, ()):
            value = d.read(dev)
            if d.alias in last and _same(last[d.alias], value):
                continue
            last[d.alias] = value
            out.append((d, value))
        return out

    def ddata(
        self, changed: list[tuple[MetricDef, Value]], now_ms: int, source_ms: int, *, historical: bool = False
    ) -> bytes | None:
        """DDATA of changed metrics, by alias; ``historical`` for values stored while the broker or
        the primary host was away (a host never lets them overwrite live ones). None when empty."""
        if not changed:
            return None
        p = Payload(timestamp=now_ms)
        for d, value in changed:
            m = p.metrics.add(alias=d.alias, timestamp=source_ms, datatype=int(d.datatype))
            if historical:
                m.is_historical = True
            _set_value(m, d.datatype, value)
        p.seq = self._next_seq()
        return bytes(p.SerializeToString())

    def ddeath(self, dev: DeviceState | str, now_ms: int) -> bytes:
        self.born.discard(dev if isinstance(dev, str) else dev.name)
        return bytes(Payload(timestamp=now_ms, seq=self._next_seq()).SerializeToString())

    def command_targets(self, device: str, payload: bytes) -> list[tuple[MetricDef, Value]]:
        """The writable metrics a DCMD sets (by name or alias) and their values; others are left out."""
        p = Payload()
        p.ParseFromString(payload)
        by_name = {d.name: d for d in self.metrics.get(device, ())}
        by_alias = {d.alias: d for d in self.metrics.get(device, ())}
        out: list[tuple[MetricDef, Value]] = []
        for m in p.metrics:
            d = by_name.get(m.name) if m.name else by_alias.get(m.alias)
            if d is None or not d.quantity.writable:
                continue
            which = m.WhichOneof("value")
            out.append((d, getattr(m, which) if which else None))
        return out


def wants_rebirth(payload: bytes) -> bool:
    p = Payload()
    p.ParseFromString(payload)
    return any(m.name == REBIRTH and m.boolean_value for m in p.metrics)


def _same(a: Value, b: Value) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b
