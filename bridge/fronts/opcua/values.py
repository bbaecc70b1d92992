"""The value projection: one device's part of the live model written into its nodes, with the
window's source timestamp and the quality rule rendered as OPC UA status codes."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

from asyncua import Server, ua

from bridge import telemetry
from bridge.errors import ConfigError
from bridge.model import DeviceState, Level, Quality, device_quality, relay_quality
from bridge.model.quantities import QUANTITIES, active_faults, coil_of, self_test_faults, wiring_of

from .address_space import Nodes
from .catalogue import (
    CIRCUIT_AGGREGATES,
    CIRCUIT_COUNTERS,
    CIRCUIT_MEASUREMENTS,
    CIRCUIT_SPECTRA,
    DEVICE_PROPERTIES,
    ECM_MEASUREMENTS,
    FREQUENCY,
    HARMONIC_ORDERS,
)
from .direct import DirectWriter, SharedDataValue
from .history import HistoryRow, MeasurementHistory

GOOD = ua.StatusCode(ua.StatusCodes.Good)
UNCERTAIN_LAST = ua.StatusCode(ua.StatusCodes.UncertainLastUsableValue)
BAD_NO_COMM = ua.StatusCode(ua.StatusCodes.BadNoCommunication)
WAITING = ua.StatusCode(ua.StatusCodes.BadWaitingForInitialData)
_STATUS = {Level.GOOD: GOOD, Level.UNCERTAIN: UNCERTAIN_LAST, Level.BAD: BAD_NO_COMM}
_ECM_TYPES = [(e, getattr(ua.VariantType, e.vtype)) for e in ECM_MEASUREMENTS]
_WINDOW_MEASUREMENTS = (*CIRCUIT_MEASUREMENTS, FREQUENCY)
HISTORIZABLE = {m.browse_name: m.field for m in (*CIRCUIT_MEASUREMENTS, FREQUENCY)}


def historized_fields(browse_names: tuple[str, ...]) -> frozenset[str]:
    """The model fields of the measurements ``opcua.historized`` names; an unknown name is a
    configuration error naming the key and the names it may hold."""
    unknown = [b for b in browse_names if b not in HISTORIZABLE]
    if unknown:
        raise ConfigError(
            f"opcua.historized: unknown measurement {', '.join(map(repr, unknown))} (known: {', '.join(HISTORIZABLE)})"
        )
    return frozenset(HISTORIZABLE[b] for b in browse_names)


def status_of(q: Quality) -> ua.StatusCode:
    """The quality rule in OPC UA terms."""
    return _STATUS[q.level]


_new = object.__new__


def shared_value(
    value: Any, vtype: ua.VariantType, status: ua.StatusCode, src: dt.datetime | None, now: dt.datetime | None
) -> SharedDataValue:
    """A SharedDataValue of a scalar or a list of ``vtype``, built field by field: the dataclasses'
    checks (type guessing, null rules, shape) cost 0.75 of its 0.93 us, and the bridge passes the
    declared type of the node it writes, so they have nothing to find."""
    v = _new(ua.Variant)
    v.Value, v.VariantType, v.Dimensions, v.is_array = value, vtype, None, isinstance(value, list)
    d = _new(SharedDataValue)
    d.Encoding, d.Value, d.StatusCode = 0, v, status  # type: ignore[assignment]
    d.SourceTimestamp, d.ServerTimestamp = src, now  # type: ignore[assignment]
    d.SourcePicoseconds = d.ServerPicoseconds = None
    return d


class ValueWriter:
    def __init__(self, server: Server, nodes: Nodes) -> None:
        self.server = server
        self.direct = DirectWriter(server)
        self._plans: dict[tuple[str, int], Any] = {}  # (device, circuit) -> _plan
        self.nodes = nodes
        self.history: MeasurementHistory | None = None
        self._written: dict[ua.NodeId, tuple[Any, ua.VariantType, int]] = {}  # see put
        self._shown: dict[str, tuple[int | None, int]] = {}  # device -> (snapshot number, status) written
        self.updates = 0

    def look_up_again(self) -> None:
        """Nodes may have been forgotten and made anew (``copies``): hold none of the old ones."""
        self._plans.clear()
        self.direct.forget()

    def forget(self, device: str) -> None:
        """New nodes hold their initial values: nothing written before applies to them."""
        self._written.clear()
        self._shown.pop(device, None)
        self._plans.clear()
        self.direct.forget()

    def put(
        self,
        node: ua.NodeId,
        value: Any,
        vtype: ua.VariantType,
        status: ua.StatusCode = GOOD,
        src: dt.datetime | None = None,
        now: dt.datetime | None = None,
    ) -> None:
        """Write a value only when it or its quality changed (the OPC UA meaning of SourceTimestamp:
        when the value last changed). Counters, aggregates, relay and device variables mostly stand
        still between updates, and a write costs ~30-50 us in asyncua even with nobody subscribed.
        The bridge is the only writer of these nodes (client writes to Relay are commands), so what
        it wrote last is what the node holds."""
        key = (value, vtype, status.value)
        if self._written.get(node) == key:
            return
        self._written[node] = key
        self.direct.write(node, shared_value(value, vtype, status, src, now))

    async def write_device(self, dev: DeviceState) -> None:
        """Write one device's values: the window's measurements, with its source timestamp and quality,
        when there is a new window or the quality changed (history: once per new window); everything
        else when it changed."""
        snap = dev.snapshot
        now = dt.datetime.now(dt.UTC)
        status = status_of(device_quality(dev))
        src = now if snap is None else dt.datetime.fromtimestamp(snap.time_s, dt.UTC)
        name = dev.name
        history: list[HistoryRow] = []
        # link, status and alarm changes also call for an update: the window's values are written
        # (and historized) again only when there is a new window or their quality changed
        shown = (None if snap is None else snap.number, status.value)
        previous = self._shown.get(name)
        fresh = previous != shown
        new_window = snap is not None and (previous is None or previous[0] != snap.number)
        self._shown[name] = shown
        for cs in dev.circuits:
            c = cs.index
            if fresh:
                self._measurements(dev, c, status, src, now, history if new_window else None)
            self._aggregates(dev, c, status, src, now)
            self.put(
                self.nodes.values[(name, c, "relay")],
                bool(cs.relay_on),
                ua.VariantType.Boolean,
                status_of(relay_quality(dev, cs)),
                now,
                now,
            )
            wiring, coil = wiring_of(dev, c), coil_of(dev, c)
            if wiring is not None:
                self.put(self.nodes.values[(name, c, "RelayWiring")], wiring, ua.VariantType.String, GOOD, now, now)
            if coil is not None:
                self.put(self.nodes.values[(name, c, "RelayCoil")], coil, ua.VariantType.Boolean, GOOD, now, now)
            for counter, attr in CIRCUIT_COUNTERS:
                self.put(
                    self.nodes.values[(name, c, counter)], getattr(cs, attr), ua.VariantType.UInt32, GOOD, now, now
                )
        self._device_variables(dev, src, now)
        self._limits(dev, now)
        if new_window and snap is not None:
            telemetry.observe_window("opcua", snap.time_s + snap.duration_s, dev.link.clock_offset_s)
        if history and self.history is not None:
            self.history.save_many(history)
        self.updates += 1

    def _plan(self, device: str, c: int) -> tuple[list[tuple[Any, Any, ua.NodeId, bool]], list[tuple[Any, Any, Any]]]:
        """A circuit's measurement and energy-model nodes with their Value attributes, looked up once
        (until ``forget``): a window writes ~33 values a circuit."""
        historized = self.history.nodes if self.history is not None else frozenset()
        target = self.direct.target
        measurements = []
        for m in _WINDOW_MEASUREMENTS:
            node = self.nodes.values[(device, c, m.field)]
            av = target(node)
            if av is None:
                raise KeyError(f"OPC UA node {node} has no value of its own to write")
            measurements.append((m, av, node, node in historized))
        energy = []
        for e, vtype in _ECM_TYPES if (device, c) in self.nodes.ecm else ():
            av = target(self.nodes.ecm[(device, c)][e.browse_name])
            if av is None:
                raise KeyError(f"OPC UA energy-model node {e.browse_name} of {device} circuit {c} has no value")
            energy.append((e, vtype, av))
        return measurements, energy

    def _measurements(
        self,
        dev: DeviceState,
        c: int,
        status: ua.StatusCode,
        src: dt.datetime,
        now: dt.datetime,
        history: list[HistoryRow] | None,
    ) -> None:
        snap = dev.snapshot
        cv = snap.circuits[c - 1] if snap is not None and c <= len(snap.circuits) else None
        double = ua.VariantType.Double
        plan = self._plans.get((dev.name, c))
        if plan is None:
            plan = self._plans[(dev.name, c)] = self._plan(dev.name, c)
        measurements, energy = plan
        store = self.direct.store
        shared: dict[str, SharedDataValue] = {}  # by model field ("freq_hz" for the frequency)
        for m, av, node, historized in measurements:
            if cv is None or snap is None:
                value = 0.0
            elif m is FREQUENCY:
                value = snap.freq_hz
            else:
                value = float(getattr(cv, m.field))
            dv = shared[m.field] = shared_value(value, double, status, src, now)
            store(av, dv)
            if history is not None and historized:
                history.append((node, now, src, status.value, value))
        for e, vtype, av in energy:
            # the same value as a circuit measurement of the same type: the same (immutable) DataValue
            known = shared.get(e.source) if vtype == double else None
            if known is not None:
                dv = known
            else:
                if cv is None or snap is None:
                    value = 0.0
                else:
                    value = snap.freq_hz if e.source == "freq_hz" else float(getattr(cv, e.source))
                dv = shared_value(value, vtype, status, src, now)
            store(av, dv)
        for m in CIRCUIT_SPECTRA:
            values = () if cv is None else getattr(cv, m.field)
            spectrum = [float(x) for x in values[:HARMONIC_ORDERS]]
            spectrum += [math.nan] * (HARMONIC_ORDERS - len(spectrum))
            # measured in one window of analysis.harmonics_every and carried between: written when it
            # changed (its SourceTimestamp is then the window it was measured in)
            self.put(self.nodes.values[(dev.name, c, m.field)], spectrum, double, status, src, now)

    def _aggregates(self, dev: DeviceState, c: int, status: ua.StatusCode, src: dt.datetime, now: dt.datetime) -> None:
        for m in CIRCUIT_AGGREGATES:
            agg = QUANTITIES[m.field].read(dev, c)
            # an interval not yet complete has no value: WaitingForInitialData, not a stale zero
            self.put(
                self.nodes.values[(dev.name, c, m.field)],
                0.0 if agg is None else float(agg),
                ua.VariantType.Double,
                WAITING if agg is None else status,
                src,
                now,
            )

    def _limits(self, dev: DeviceState, now: dt.datetime) -> None:
        band = dev.limits.pq.frequency_band(float(dev.config.f_nominal))
        shown = {**dev.limits.pq.model_dump(), "freq_low_hz": band[0], "freq_high_hz": band[1]}
        double = ua.VariantType.Double
        for node, circuit, key in self.nodes.device_limits.get(dev.name, ()):
            value = dev.limits.overcurrent_a[circuit - 1] if circuit else shown[key]
            self.put(node, float(value), double, GOOD, now, now)

    def _device_variables(self, dev: DeviceState, src: dt.datetime, now: dt.datetime) -> None:
        name, v, put = dev.name, self.nodes.device_vars, self.put
        uint32, double = ua.VariantType.UInt32, ua.VariantType.Double
        put(v[(name, "Connected")], dev.online, ua.VariantType.Boolean, GOOD, now, now)
        if dev.snapshot is not None:
            put(v[(name, "LastSampleTime")], src, ua.VariantType.DateTime, GOOD, src, now)
        put(v[(name, "Gaps")], dev.link.gaps, uint32)
        put(v[(name, "LostBlocks")], dev.link.lost_blocks, uint32)
        put(v[(name, "StreamRestarts")], dev.link.stream_restarts, uint32)
        put(v[(name, "SramDroppedBlocks")], dev.link.sram_dropped_blocks, uint32)
        if dev.snapshot is not None:
            put(v[(name, "Frequency")], dev.snapshot.freq_hz, double, status_of(device_quality(dev)), src, now)
        if dev.link.clock_offset_s is not None:
            put(v[(name, "ClockOffset")], round(dev.link.clock_offset_s, 3), double)
        st = dev.status
        if st is not None and st.sram_capacity_blocks:
            put(v[(name, "SramFill")], 100.0 * st.sram_fill_blocks / st.sram_capacity_blocks, double)
        if dev.aux_on is not None:
            put(v[(name, "AuxOutput")], dev.aux_on, ua.VariantType.Boolean)
        for prefix, faults in (("Fault", active_faults(dev)), ("SelfTest", self_test_faults(dev))):
            for suffix, attr in (("Codes", "code"), ("Blocks", "block"), ("Texts", "text")):
                texts = [getattr(f, attr) for f in faults]
                put(v[(name, f"{prefix}{suffix}")], texts, ua.VariantType.String)
        records = dev.records
        put(v[(name, "RecordFiles")], [f"{r.folder}/{r.name}.cfg" for r in records], ua.VariantType.String)
        times = [dt.datetime.fromtimestamp(r.trigger_s, dt.UTC) for r in records]
        put(v[(name, "RecordTimes")], times, ua.VariantType.DateTime)
        put(v[(name, "RecordKinds")], [r.kind for r in records], ua.VariantType.String)
        put(v[(name, "RecordCircuits")], [r.circuit for r in records], uint32)
        if dev.hello is not None:
            for browse, attr in DEVICE_PROPERTIES:
                if browse != "SerialNumber":  # the configured serial, written when the node is made
                    put(v[(name, browse)], str(getattr(dev.hello, attr)), ua.VariantType.String)
