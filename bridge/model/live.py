"""The live model: every device's state, changed only through the named methods below.

The session is the one caller of these methods (fronts and the command path read the model and hand
outcomes to the session). Each method emits one :class:`Change` kind to the subscribers of that kind,
so what a front shows is always the model's, never a copy it keeps up by itself. Link counters
(blocks, duplicates, gaps, frame errors) move with every block and announce nothing of their own:
the next SNAPSHOT or LINK notice carries them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Protocol

from bridge.config import Config, Device
from bridge.core.aggregate import Aggregate
from device.protocol import Hello, Status

from .changes import ALL_CHANGES, Change
from .samples import SampleTaps
from .state import DeviceSnapshot, DeviceState, Limits, VoltageEventRecord, WaveformRecord

Listener = Callable[[DeviceState, Change], None]
AlarmChange = tuple[int, str, bool, str]  # (circuit 1.. or 0 for the device, alarm name, active, message)


class ModelView(Protocol):
    """What fronts and the command path may use: reading and subscribing, no change methods."""

    @property
    def devices(self) -> Mapping[str, DeviceState]: ...

    @property
    def store_error(self) -> str | None: ...

    def by_serial(self, serial: str) -> DeviceState | None: ...

    def by_unit(self, unit_id: int) -> DeviceState | None: ...

    def subscribe(self, listener: Listener, kinds: Iterable[Change] = ALL_CHANGES) -> None: ...

    @property
    def samples(self) -> SampleTaps: ...


class Model:
    """All devices, and the one way to change them: ``links``, ``reports`` and ``outcomes`` hold the
    change methods, grouped by where the change comes from."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._rated = config.commands.relay_rated_operations
        self._devices: dict[str, DeviceState] = {
            d.name: DeviceState(config=d, relay_rated_operations=self._rated) for d in config.devices
        }
        self._listeners: list[tuple[Listener, frozenset[Change]]] = []
        self.store_error: str | None = None  # why the last commit failed; None while commits succeed
        self.links = LinkChanges(self._emit)
        self.reports = ReportChanges(self._emit)
        self.outcomes = OutcomeChanges(self._emit)
        self._samples = SampleTaps()

    # ------------------------------------------------------------------ reading

    @property
    def devices(self) -> Mapping[str, DeviceState]:
        return self._devices

    @property
    def samples(self) -> SampleTaps:
        """The raw signal of every counted block, for captures and the event recorder."""
        return self._samples

    def by_serial(self, serial: str) -> DeviceState | None:
        return next((d for d in self._devices.values() if d.config.serial_number == serial), None)

    def by_unit(self, unit_id: int) -> DeviceState | None:
        return next((d for d in self._devices.values() if d.config.unit_id == unit_id), None)

    def subscribe(self, listener: Listener, kinds: Iterable[Change] = ALL_CHANGES) -> None:
        self._listeners.append((listener, frozenset(kinds)))

    def _emit(self, dev: DeviceState, kind: Change) -> None:
        for listener, kinds in list(self._listeners):
            if kind in kinds:
                listener(dev, kind)

    def set_store_health(self, error: str | None) -> None:
        """The state database accepts commits (None), or why it does not: blocks stay unacknowledged."""
        self.store_error = error

    def add_device(self, device: Device) -> DeviceState:
        state = DeviceState(config=device, relay_rated_operations=self._rated)
        self._devices[device.name] = state
        self._emit(state, Change.ADDED)
        return state

    def remove_device(self, name: str) -> DeviceState | None:
        """A reload removed the device: it leaves the model (its stored counters stay in the store)."""
        state = self._devices.pop(name, None)
        if state is not None:
            self._emit(state, Change.REMOVED)
        return state

    def reconfigure(self, device: Device) -> None:
        """A reload changed the device's settings (the name and serial number stay)."""
        state = self._devices[device.name]
        state.config = device
        for cs in state.circuits:
            cs.name = device.circuit_names.get(cs.index, f"Circuit{cs.index:02d}")
        self._emit(state, Change.CONFIGURED)


Emit = Callable[[DeviceState, Change], None]


class _Changes:
    """A group of change methods, announcing through the model's one emitter."""

    def __init__(self, emit: Emit) -> None:
        self._emit = emit


class LinkChanges(_Changes):
    """From the link and its HELLO: identity, online state, stream counters."""

    def identify(self, dev: DeviceState, hello: Hello, *, scales_changed: bool = False) -> None:
        dev.hello = hello
        if scales_changed:
            dev.link.scale_changes += 1
        self._emit(dev, Change.IDENTITY)

    def connect(self, dev: DeviceState, peer: str, transport: str) -> None:
        """A link is up. The device is online only once its data is counted again (see ``count``)."""
        link = dev.link
        link.connected, link.peer, link.transport = True, peer, transport
        link.connected_since_s = time.time()
        link.connected_monotonic = link.last_rx_monotonic = time.monotonic()
        dev.alarms["offline"].set(True, "connected, no data counted yet")
        self._emit(dev, Change.LINK)

    def disconnect(self, dev: DeviceState, reason: str) -> None:
        dev.link.connected = False
        dev.alarms["offline"].set(True, reason)
        self._emit(dev, Change.LINK)

    def heard(self, dev: DeviceState) -> None:
        """The device sent something (online needs more: counted data)."""
        dev.link.last_rx_monotonic = time.monotonic()

    def mark_silent(self, dev: DeviceState, message: str) -> bool:
        """Offline: no data counted for too long (or the link is down); True when it changed."""
        if dev.alarms["offline"].set(True, message):
            self._emit(dev, Change.LINK)
            return True
        return False

    def count(
        self, dev: DeviceState, *, blocks: int = 0, duplicates: int = 0, lost_blocks: int | None = None,
        frame_errors: int = 0,
    ) -> None:  # fmt: skip
        """Stream counters; ``lost_blocks`` (also 0) counts one gap. No notice: they move with every
        block, and the next SNAPSHOT or LINK notice carries them, except the first counted block of a
        connection, which makes the device online (LINK)."""
        link = dev.link
        if blocks:
            link.blocks += blocks
            link.last_counted_monotonic = time.monotonic()
            if dev.alarms["offline"].active and link.connected:
                dev.alarms["offline"].set(False)  # data flows and is counted: online
                self._emit(dev, Change.LINK)
        link.duplicates += duplicates
        link.frame_errors += frame_errors
        if lost_blocks is not None:
            link.gaps += 1
            link.lost_blocks += lost_blocks

    def acknowledged(self, dev: DeviceState, block_seq: int) -> None:
        dev.link.acked_seq = block_seq

    def clock_offset(self, dev: DeviceState, offset_s: float) -> None:
        """The device clock's offset as measured now (no notice: read with the rest)."""
        dev.link.clock_offset_s = offset_s

    def losses(self, dev: DeviceState, *, stream_restarts: int, sram_dropped_blocks: int) -> None:
        """The persisted loss counters, as the session loaded them (no notice: read with the rest)."""
        dev.link.stream_restarts = stream_restarts
        dev.link.sram_dropped_blocks = sram_dropped_blocks

    def stream_restarted(self, dev: DeviceState, restarts: int, reason: str) -> None:
        dev.link.stream_restarts = restarts
        dev.alarms["stream_restart"].set(True, f"the device started numbering its blocks anew: {reason}")
        self._emit(dev, Change.ALARM)

    def sram_dropped(self, dev: DeviceState, total: int, lost: int) -> None:
        dev.link.sram_dropped_blocks = total
        dev.alarms["sram_loss"].set(True, f"device SRAM overflowed: {lost} blocks dropped ({total} in all)")
        self._emit(dev, Change.ALARM)


class ReportChanges(_Changes):
    """From what the device reports and what the core measures."""

    def update_status(self, dev: DeviceState, status: Status) -> None:
        dev.status = status
        for k, on in enumerate(status.circuit_on[: len(dev.circuits)]):
            dev.circuits[k].relay_on = on
        dev.aux_on = status.aux_on
        self._emit(dev, Change.STATUS)

    def publish(
        self,
        dev: DeviceState,
        snapshot: DeviceSnapshot | None,
        aggregates: Iterable[Aggregate] = (),
        freq_10s: tuple[float, float] | None = None,
    ) -> None:
        """New windows and completed aggregate intervals (a partial interval never reaches the model)."""
        for agg in aggregates:
            dev.aggregates[agg.kind] = agg
        if freq_10s is not None:
            dev.freq_10s = freq_10s
        if snapshot is not None:
            dev.snapshot = snapshot
            self._emit(dev, Change.SNAPSHOT)

    def set_alarms(self, dev: DeviceState, changes: Iterable[AlarmChange]) -> bool:
        """Apply alarm states; one ALARM notice when any of them changed."""
        changed = False
        for circuit, name, active, message in changes:
            alarms = dev.circuits[circuit - 1].alarms if circuit else dev.alarms
            changed |= alarms[name].set(active, message)
        if changed:
            self._emit(dev, Change.ALARM)
        return changed

    def restore_events(
        self, dev: DeviceState, recent: Iterable[VoltageEventRecord], counts: dict[tuple[int, str], int]
    ) -> None:
        """The stored event log and counters, at start."""
        dev.events.clear()
        dev.events.extend(recent)
        for cs in dev.circuits:
            cs.dips = counts.get((cs.index, "dip"), 0)
            cs.swells = counts.get((cs.index, "swell"), 0)
            cs.interruptions = counts.get((cs.index, "interruption"), 0)
        dev.events_total = sum(counts.values())
        self._emit(dev, Change.EVENT)

    def set_records(self, dev: DeviceState, records: list[WaveformRecord]) -> None:
        """The device's waveform records on disk now (after one was saved, or some were removed)."""
        dev.records = records
        self._emit(dev, Change.RECORD)

    def count_voltage_event(self, dev: DeviceState, record: VoltageEventRecord, message: str) -> None:
        """A dip, swell or interruption ended. One that began and ended between two updates still
        counts as one activation of its alarm, so fronts that follow the count report it."""
        cs = dev.circuits[record.circuit - 1]
        kind = record.kind
        if kind == "dip":
            cs.dips += 1
        elif kind == "swell":
            cs.swells += 1
        else:
            cs.interruptions += 1
        dev.events.append(record)
        dev.events_total += 1
        alarm = cs.alarms[kind]
        if not alarm.active:
            alarm.set(True, message)
            alarm.set(False)
        self._emit(dev, Change.EVENT)


class OutcomeChanges(_Changes):
    """From the command path, through the session: what a command did."""

    def set_aux(self, dev: DeviceState, on: bool) -> None:
        dev.aux_on = on
        self._emit(dev, Change.STATUS)

    def set_relay_bookkeeping(
        self, dev: DeviceState, circuit: int, *, operations: int | None = None, maintenance_lock: bool | None = None
    ) -> None:
        cs = dev.circuits[circuit - 1]
        if operations is not None:
            cs.relay_operations = operations
        if maintenance_lock is not None:
            cs.maintenance_lock = maintenance_lock
        self._emit(dev, Change.RELAY)

    def set_selected(self, dev: DeviceState, circuit: int, on: bool | None) -> None:
        dev.circuits[circuit - 1].selected = on
        self._emit(dev, Change.RELAY)

    def set_self_test(self, dev: DeviceState, faults: list[dict[str, str]]) -> None:
        dev.last_self_test = faults
        self._emit(dev, Change.SELF_TEST)

    def set_calibration(self, dev: DeviceState, table: Mapping[tuple[int, str], tuple[float, float]]) -> None:
        dev.calibration = dict(table)
        self._emit(dev, Change.CALIBRATION)

    def set_limits(self, dev: DeviceState, limits: Limits) -> None:
        dev.limits = limits
        self._emit(dev, Change.LIMITS)
