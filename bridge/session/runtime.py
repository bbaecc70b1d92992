"""One device's life in the bridge, across any number of connections: identity, sequence numbers,
replay de-duplication, measurement into the live model, durable acknowledgements, and the device
port the command path talks to. The session is the live model's only writer."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import math
import time
import zlib
from collections.abc import Callable

import numpy as np

from bridge import telemetry
from bridge.config import AnalysisSection, Config, PowerQualityLimits
from bridge.core import AnalyzerSettings, StreamAnalyzer, VoltageEvent
from bridge.core.energy import REGISTERS
from bridge.errors import CommandRejected, DeviceOffline, StoreError
from bridge.logs import audit, get_logger
from bridge.measuring import (
    Block,
    Create,
    Drop,
    LocalMeasurer,
    Measured,
    Measurer,
    MeasuringFailed,
    Restart,
    SetScales,
    SetThresholds,
)
from bridge.model import EVENT_LOG_SIZE, DeviceState, Model, SampleBlock, Trigger, VoltageEventRecord
from bridge.store import EnergyCommit, Progress, Store
from device.protocol import (
    Ack,
    CommandResult,
    EncodedSamples,
    ErrorMessage,
    Heartbeat,
    Hello,
    Message,
    Samples,
    SelfTestResult,
    Status,
    TimeSync,
)
from device.protocol.sequence import distance, is_after, next_seq

from ..commands.limits import configured, effective
from ..commands.port import (
    AuxSwitched,
    Calibrated,
    LimitsChanged,
    MaintenanceLocked,
    Outcome,
    RelayCounted,
    RelayFeedback,
    Selected,
    SelfTested,
)
from .durability import FedBlocks
from .measurements import snapshot_of, window_alarms
from .scales import Scales
from .streams import StreamBook

TIME_SYNC_ID = 0  # command id reserved for the clock set on every connect
# a link's reads wait while more than this many batches of its blocks wait to be measured: one is
# held until due, the rest is the measurer's queue (bounded memory when it falls behind)
BACKLOG_BATCHES = 3


class DeviceRuntime:
    """Everything about one device that outlives a connection; implements the command path's
    :class:`~bridge.commands.port.DevicePort`."""

    def __init__(
        self,
        state: DeviceState,
        model: Model,
        store: Store,
        analysis: AnalysisSection | None = None,
        pq: PowerQualityLimits | None = None,
        measurer: Measurer | None = None,
    ) -> None:
        self.state = state
        self.analysis = analysis or AnalysisSection()
        self.model = model
        self.store = store
        self.name = state.name
        self.log = get_logger("bridge.device", device=self.name)
        base = configured(state.config, pq)
        try:
            model.outcomes.set_limits(state, effective(base, store.limit_overrides(self.name)))
        except CommandRejected as exc:  # the file changed under a run-time change: the file's limits hold
            self.log.warning("stored alarm limits no longer fit the configuration; using the file's", error=str(exc))
            model.outcomes.set_limits(state, base)
        self._measurer: Measurer = measurer if measurer is not None else LocalMeasurer()
        self._measurer.register(self.name, self._on_measured)
        self._circuits: int | None = None  # the analyzer's circuits; None while there is none
        self._batch_samples = 0.0
        self._end = 0  # samples sent to the analyzer: the global index of the next
        self.measured: Measured | None = None  # the analyzer's newest answer (counters and all)
        self._caught_up = asyncio.Event()
        self._fed = FedBlocks()
        stored = store.progress(self.name)
        self.durable = stored  # what the last commit covers
        self._counted = stored  # the position whose energy the counters held when last asked
        self.last_seq: int | None = stored.block_seq if stored else None
        self._resume_offset = stored.sample_offset if stored else 0
        self.acked: int | None = None
        self._sender: Callable[[Message], None] | None = None
        self._scales: Scales | None = None
        self._waiters: dict[int, asyncio.Future[Message]] = {}
        self._status_waiters: list[tuple[Callable[[Status], bool], asyncio.Future[Status]]] = []
        self._snapshots = 0
        self._published_s = -math.inf  # device time of the end of the newest window published
        self.synced_at: float | None = None  # monotonic time of the last TIME_SYNC sent
        self._offsets: collections.deque[float] = collections.deque(maxlen=25)
        self._triggered: collections.deque[tuple[int, str, float]] = collections.deque(maxlen=64)  # event starts
        for c in state.circuits:
            rec = store.relay(self.name, c.index)
            model.outcomes.set_relay_bookkeeping(
                state, c.index, operations=rec.operations, maintenance_lock=rec.maintenance_lock
            )
        model.outcomes.set_calibration(state, store.calibration(self.name))
        recent = [
            VoltageEventRecord(circuit=c, kind=k, start_s=t, duration_s=d, extreme_v=x)
            for c, k, t, d, x in store.recent_events(self.name, EVENT_LOG_SIZE)
        ]
        model.reports.restore_events(state, recent, store.event_counts(self.name))
        self.streams = StreamBook(store, self.name, self._persist)
        book = self.streams.record
        model.links.losses(state, stream_restarts=book.restarts, sram_dropped_blocks=book.dropped_blocks)

    def reconfigure(self, config: Config) -> None:
        """A reload changed the device's settings or the bridge's [pq]: its alarm limits are the new
        file's, with the run-time changes an admin made still on top; from the next window on."""
        base = configured(self.state.config, config.pq)
        try:
            limits = effective(base, self.store.limit_overrides(self.name))
        except CommandRejected as exc:
            self.log.warning("stored alarm limits no longer fit the configuration; using the file's", error=str(exc))
            limits = base
        self.record(LimitsChanged(limits))

    # ------------------------------------------------------------------ link attachment

    @property
    def connected(self) -> bool:
        return self._sender is not None

    def attach(self, sender: Callable[[Message], None], peer: str, kind: str) -> None:
        self._sender = sender
        self.model.links.connect(self.state, peer, kind)
        self.sync_clock()
        if self.durable is not None:
            # tell the device at once what it may free: everything we already hold durably
            self.send(Ack(block_seq=self.durable.block_seq))
            self.acked = self.durable.block_seq

    def sync_clock(self) -> None:
        """Set the device clock (window timestamps, OPC UA source times and history use it): at
        every connect and every links.time_sync_interval_s, since device clocks drift."""
        self.send(TimeSync(command_id=TIME_SYNC_ID, unix_time_ns=time.time_ns()))
        self.synced_at = time.monotonic()
        self._offsets.clear()  # measured anew against the clock just set

    def detach(self, sender: Callable[[Message], None]) -> None:
        if self._sender is not sender:
            return  # an older link closing after a newer one took over
        self._sender = None
        for fut in self._waiters.values():
            if not fut.done():
                fut.set_exception(DeviceOffline(f"device {self.name} disconnected before it answered"))
        self._waiters.clear()
        self.model.links.disconnect(self.state, "link closed")

    # ------------------------------------------------------------------ the device port

    def send(self, msg: Message) -> None:
        if self._sender is None:
            raise DeviceOffline(f"device {self.name} is not connected; check its link and power")
        self._sender(msg)

    async def request(self, msg: Message, command_id: int, timeout_s: float) -> Message:
        fut: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._waiters[command_id] = fut
        try:
            self.send(msg)
            async with asyncio.timeout(timeout_s):
                return await fut
        finally:
            self._waiters.pop(command_id, None)

    async def wait_status(self, predicate: Callable[[Status], bool], timeout_s: float) -> Status:
        fut: asyncio.Future[Status] = asyncio.get_running_loop().create_future()
        entry = (predicate, fut)
        self._status_waiters.append(entry)
        try:
            async with asyncio.timeout(timeout_s):
                return await fut
        finally:
            if entry in self._status_waiters:
                self._status_waiters.remove(entry)

    def record(self, outcome: Outcome) -> None:
        out, alarms, dev = self.model.outcomes, self.model.reports.set_alarms, self.state
        match outcome:
            case RelayFeedback(circuit=c, mismatch=bad, text=text):
                alarms(dev, [(c, "relay_mismatch", bad, text)])
            case RelayCounted(circuit=c, operations=ops, worn=worn, text=text):
                out.set_relay_bookkeeping(dev, c, operations=ops)
                alarms(dev, [(c, "relay_wear", worn, text)])
            case MaintenanceLocked(circuit=c, locked=locked):
                out.set_relay_bookkeeping(dev, c, maintenance_lock=locked)
            case Selected(circuit=c, on=on):
                out.set_selected(dev, c, on)
            case AuxSwitched(on=on):
                out.set_aux(dev, on)
            case SelfTested(faults=faults):
                out.set_self_test(dev, faults)
            case LimitsChanged(limits=limits):
                out.set_limits(dev, limits)
                if self._circuits is not None:  # the event detector follows from the next half-cycle on
                    self._measurer.send(SetThresholds(self.name, limits.pq.thresholds()))
            case Calibrated(circuit=c, channel=ch, gain=gain, offset=offset, device_lsb=lsb):
                if lsb is not None and dev.hello is not None:
                    # the device scales by its new LSB from now on and announces it in its next
                    # HELLO: take it now, so the gain counts once, at once
                    hello = dev.hello
                    table = list(hello.v_lsb_volts if ch == "v" else hello.i_lsb_amps)
                    table[c - 1] = lsb
                    if ch == "v":
                        hello = dataclasses.replace(hello, v_lsb_volts=tuple(table))
                    else:
                        hello = dataclasses.replace(hello, i_lsb_amps=tuple(table))
                    self.model.links.identify(dev, hello)
                out.set_calibration(dev, {**dev.calibration, (c, ch): (gain, offset)})
                self._update_scales()

    # ------------------------------------------------------------------ messages

    def on_message(self, msg: Message | EncodedSamples) -> None:
        self.model.links.heard(self.state)
        match msg:
            case Samples() | EncodedSamples():
                self.on_samples(msg)
            case Status():
                self.on_status(msg)
            case CommandResult() | SelfTestResult():
                fut = self._waiters.get(msg.command_id)
                if fut is not None and not fut.done():
                    fut.set_result(msg)
                elif msg.command_id == TIME_SYNC_ID:
                    if isinstance(msg, CommandResult) and not msg.ok:
                        self.log.warning("device refused the time sync", text=msg.text)
                else:
                    self.log.info("late or unknown command answer", command_id=msg.command_id)
            case Heartbeat():
                pass
            case ErrorMessage():
                self.log.warning("device reported an error", code=msg.code, text=msg.text)

    def _check_stream(self, hello: Hello) -> None:
        reason = self.streams.on_hello(hello, self.last_seq)
        if reason is None:
            return
        self.log.warning(
            "device restarted its block numbering: counting its new stream from its first block",
            reason=reason,
            restarts=self.streams.record.restarts,
        )
        self.last_seq, self.durable, self._counted, self.acked, self._resume_offset = None, None, None, None, 0
        self._fed.clear()
        if self._circuits is not None:
            self._measurer.send(Restart(self.name))
        self.model.links.stream_restarted(self.state, self.streams.record.restarts, reason)

    @property
    def analyzer(self) -> StreamAnalyzer | None:
        """The analyzer itself when it runs in this process (for tests and tools); else None."""
        return self._measurer.analyzer(self.name) if isinstance(self._measurer, LocalMeasurer) else None

    async def settle(self) -> None:
        """Every block sent so far measured and its results applied (the counters include them)."""
        await self._measurer.settle(self.name)

    def forget(self) -> None:
        """The device leaves the bridge: its analyzer goes (after :meth:`settle` and a commit)."""
        self._measurer.unregister(self.name)
        with contextlib.suppress(MeasuringFailed):  # gone with the measurer: nothing to drop
            self._measurer.send(Drop(self.name))

    def on_hello(self, hello: Hello) -> None:
        """A HELLO, after :meth:`settle`: what came before it is measured as it was sent (old scales,
        old stream)."""
        self._check_stream(hello)
        old = self.state.hello
        lsb_changed = old is None or (old.v_lsb_volts, old.i_lsb_amps) != (hello.v_lsb_volts, hello.i_lsb_amps)
        if old is not None and lsb_changed:
            # never silent: a changed scale changes every value and the energy counted from now on
            fields = {"old_v_lsb": old.v_lsb_volts, "new_v_lsb": hello.v_lsb_volts, "old_i_lsb": old.i_lsb_amps}
            self.log.warning("device announced other ADC scales in HELLO", **fields, new_i_lsb=hello.i_lsb_amps)
            audit("scales changed", device=self.name, serial=hello.serial_number, **fields, new_i_lsb=hello.i_lsb_amps)
        self.model.links.identify(self.state, hello, scales_changed=old is not None and lsb_changed)
        if old is not None and old.circuit_count != hello.circuit_count and self._circuits is not None:
            # another board behind the same serial, or a reconfigured one: keep what was counted, per
            # circuit, and measure the circuits it has now (the rest keep their stored energy)
            self.log.warning("device announced another circuit count", old=old.circuit_count, new=hello.circuit_count)
            audit("device changed", device=self.name, circuits_old=old.circuit_count, circuits_new=hello.circuit_count)
            self._persist(self.commit)
            self._circuits = None
        if old is not None and old.firmware_version != hello.firmware_version:
            self.log.warning("device firmware changed", old=old.firmware_version, new=hello.firmware_version)
            audit(
                "device changed",
                device=self.name,
                firmware_old=old.firmware_version,
                firmware_new=hello.firmware_version,
            )
        if self._circuits is None or old is None or old.sample_rate_hz != hello.sample_rate_hz:
            self._new_analyzer(hello)
        elif lsb_changed:
            self._update_scales()
        self.log.info(
            "device identified",
            serial=hello.serial_number,
            firmware=hello.firmware_version,
            rate_hz=hello.sample_rate_hz,
            next_block=hello.next_block_seq,
        )

    def _update_scales(self) -> None:
        hello = self.state.hello
        if hello is not None:
            self._scales = scales = Scales(hello, self.state.calibration)
            if self._circuits == hello.circuit_count:
                # blocks sent before the change are measured with the scales they were sent with
                self._measurer.send(SetScales(self.name, scales.scale, scales.offset))

    def _new_analyzer(self, hello: Hello) -> None:
        dev = self.state.config
        keep = self._circuits is not None  # the counters go on: only the sample rate changed
        self._update_scales()
        assert self._scales is not None
        settings = AnalyzerSettings(
            fs=hello.sample_rate_hz,
            f_nominal=float(dev.f_nominal),
            u_nominal=dev.u_nominal,
            thresholds=self.state.limits.pq.thresholds(),
            min_batch_s=self.analysis.batch_s,
            batch_phase=zlib.crc32(dev.name.encode()) / 2**32,  # the same for a board at every start
            harmonics_every=self.analysis.harmonics_every,
            v_clip=self._scales.v_rails(hello.v_adc_bits),
            i_clip=self._scales.i_rails(hello.i_adc_bits),
        )
        # the stored counters, for a first analyzer (or one whose predecessor is not there to go on from)
        restore = tuple(
            (c - 1, reg, whole, residual)
            for (c, reg), (whole, residual) in self.store.energy(self.name).items()
            if 1 <= c <= hello.circuit_count and reg in REGISTERS
        )
        self._circuits, self._batch_samples = hello.circuit_count, settings.min_batch_s * settings.fs
        self._end, self.measured = 0, None  # a new analyzer counts its samples from 0
        self._fed.clear()
        self._measurer.send(
            Create(
                self.name,
                hello.circuit_count,
                settings,
                self._scales.scale,
                self._scales.offset,
                restore=restore,
                keep_energy=keep,
            )
        )

    def on_samples(self, block: Samples | EncodedSamples) -> None:
        """A block arrived: counted, checked and sent to be measured (held there until the analyzer
        would measure, as its payload)."""
        if self._circuits is None or self._scales is None:
            return
        dev, seq = self.state, block.block_seq
        if self.last_seq is not None and not is_after(seq, self.last_seq):
            self.model.links.count(dev, duplicates=1)
            return
        follows = self.last_seq is not None and seq == next_seq(self.last_seq)
        if self.last_seq is not None and not follows:
            lost = distance(seq, self.last_seq) - 1
            self.model.links.count(dev, lost_blocks=lost)
            self.log.warning("blocks missing from the device stream", after=self.last_seq, got=seq, lost=lost)
        circuits = list(block.circuits)
        if circuits != list(range(1, len(circuits) + 1)) or len(circuits) != self._circuits:
            self.log.warning("block skipped: circuit set differs from HELLO", block=seq, circuits=circuits)
            self.last_seq = seq
            return
        skip = 0
        if self.durable is not None and seq == next_seq(self.durable.block_seq) and self._resume_offset:
            skip = min(self._resume_offset, block.n)  # counted before a restart: do not count twice
        self._resume_offset = 0
        self.last_seq = seq
        self.model.links.count(dev, blocks=1)
        # device time of the block's end minus now: transit and buffering only make it smaller, so
        # the largest of the recent blocks is the best estimate of the clock offset
        self._offsets.append((block.t0_ns / 1e9 + block.n / block.sample_rate_hz) - time.time())
        self.model.links.clock_offset(dev, max(self._offsets))
        start, self._end = self._end, self._end + block.n - skip
        if block.n > skip:
            self._fed.append(seq, start, block.n - skip, skip)
            if self.model.samples.wanted(self.name):
                self._tap(block, skip)
        payload = block.wire if isinstance(block, EncodedSamples) else block
        # a block after a gap is measured at once, as the analyzer measures what came before a gap
        self._measurer.send(Block(self.name, payload, skip, now=not follows))

    @property
    def backlogged(self) -> bool:
        """Whether the link should wait before it reads more: its blocks wait to be measured."""
        measured = self.measured.end if self.measured is not None else 0
        return self._circuits is not None and self._end - measured > BACKLOG_BATCHES * self._batch_samples

    async def caught_up(self) -> None:
        while self.backlogged:
            self._caught_up.clear()
            await self._caught_up.wait()

    def on_status(self, status: Status) -> None:
        dev = self.state
        self.model.reports.update_status(dev, status)
        alarms = [(0, "fault", bool(status.fault_codes), ", ".join(status.fault_codes))]
        self.model.reports.set_alarms(dev, alarms)
        lost = self.streams.on_dropped(status.dropped_blocks)
        if lost:
            self.log.warning("device dropped blocks from a full SRAM buffer", dropped=lost)
            self.model.links.sram_dropped(dev, self.streams.record.dropped_blocks, lost)
        for pred, fut in list(self._status_waiters):
            if not fut.done() and pred(status):
                fut.set_result(status)

    # ------------------------------------------------------------------ measurements -> model

    def _tap(self, block: Samples | EncodedSamples, skip: int) -> None:
        assert self._scales is not None
        scale = self._scales.scale
        offset = self._scales.offset if self._scales.offset is not None else np.zeros_like(scale)
        t0 = block.t0_ns / 1e9 + skip / block.sample_rate_hz
        seq, fs = block.block_seq, block.sample_rate_hz
        if isinstance(block, EncodedSamples):  # decoded here only if a listener reads the counts
            encoded = block

            def decode() -> tuple[np.ndarray, np.ndarray]:
                got = encoded.decode()
                return got.v[:, skip:], got.i[:, skip:]

            shape = (len(block.circuits), block.n - skip)
            tapped = SampleBlock.deferred(self.name, seq, t0, fs, shape, decode, scale, offset, block.wire, skip)
        else:
            v, i = block.v[:, skip:], block.i[:, skip:]
            tapped = SampleBlock(self.name, seq, t0, fs, v, i, scale, offset, wire=block.wire, skip=skip)
        self.model.samples.publish(tapped)

    def _on_measured(self, m: Measured) -> None:
        self.measured = m
        self._apply(m)
        if m.decided_s is not None:  # a batch ran: its events are triggered
            self.model.samples.decided(self.name, m.decided_s)
        if not self.backlogged:
            self._caught_up.set()

    def _trigger_starts(self, m: Measured) -> None:
        """A waveform trigger at the start of every voltage event, once: while it lasts (so a long
        interruption's record holds its beginning) or, if it began and ended within one batch, when it
        is reported."""
        for ev in (*m.ongoing, *m.update.events):
            key = (ev.circuit, ev.kind, ev.start)
            if key in self._triggered:
                continue
            self._triggered.append(key)
            self.model.samples.trigger(Trigger(self.name, m.time_of(ev.start), ev.kind, ev.circuit + 1))

    def _apply(self, m: Measured) -> None:
        dev, update = self.state, m.update
        self._trigger_starts(m)
        for ev in update.events:
            self._record_event(m, ev)
        snapshot = None
        if update.windows:
            # the live values are the newest window's (a batch brings several, and a refresh comes
            # once per analysis.publish_s); every window still passes the alarm rules
            self._snapshots += len(update.windows)
            if self._publish_due(m.time_of(update.windows[-1].end)):
                snapshot = snapshot_of(m, update.windows[-1], self._snapshots)
            ongoing = {e.circuit: e.kind for e in m.ongoing}
            limits = dev.limits
            band = limits.pq.frequency_band(float(dev.config.f_nominal))
            for w in update.windows:
                self.model.reports.set_alarms(dev, window_alarms(w, ongoing, limits.overcurrent_a, band))
        self.model.reports.publish(
            dev,
            snapshot,
            # a partial interval would pass for a full one on the registers
            [agg for agg in update.aggregates if agg.complete],
            update.freq_10s[-1] if update.freq_10s else None,
        )
        if snapshot is not None:  # from here Modbus reads it: the model is what Modbus serves
            telemetry.observe_window("modbus", snapshot.time_s + snapshot.duration_s, dev.link.clock_offset_s)

    def _publish_due(self, end_s: float) -> bool:
        """Whether a batch whose newest window ends at ``end_s`` (device clock) refreshes the live
        values. The core measures in short batches, so that its buffer and the record ring stay short
        (memory) and events are seen soon; the fronts take the newest window once per
        ``analysis.publish_s``, as often as clients need it: each refresh costs every front its
        writes, whatever the batch. Due from half a batch early, so a refresh comes every whole
        number of batches rather than slipping to the next one when windows end early; a clock that
        went back (a device reset) is due at once."""
        cfg = self.analysis
        since = end_s - self._published_s
        if 0 <= since < cfg.publish_s - 0.5 * cfg.batch_s:
            return False
        self._published_s = end_s
        return True

    def _record_event(self, m: Measured, ev: VoltageEvent) -> None:
        circuit = ev.circuit + 1
        t = m.time_of(ev.start)
        duration = ev.duration_s(m.fs)
        self.log.warning(
            "voltage event",
            circuit=circuit,
            kind=ev.kind,
            duration_s=round(duration, 4),
            extreme_v=round(ev.extreme_v, 1),
        )
        text = f"{ev.kind} on circuit {circuit}: {ev.extreme_v:.1f} V for {duration * 1000:.0f} ms"
        new = True  # if the store refuses the row, the event still counts (in memory, and /health says why)

        def record() -> None:
            nonlocal new
            new = self.store.append_event(self.name, circuit, ev.kind, t, duration, ev.extreme_v, text)

        self._persist(record)
        if new:  # not one of the blocks replayed after a restart, whose events are counted already
            rec = VoltageEventRecord(
                circuit=circuit, kind=ev.kind, start_s=t, duration_s=duration, extreme_v=ev.extreme_v
            )
            self.model.reports.count_voltage_event(self.state, rec, f"{ev.kind}: {ev.extreme_v:.1f} V")

    # ------------------------------------------------------------------ durability

    def _persist(self, write: Callable[[], None]) -> None:
        """A write outside the commit loop (stream record, voltage event). If the database refuses
        it, the link goes on: the state stays in memory, the next change or commit writes it, and
        /health says why until then."""
        try:
            write()
        except StoreError as exc:
            (self.log.error if self.model.store_error is None else self.log.debug)("state not written", error=str(exc))
            self.model.set_store_health(str(exc))

    def durable_position(self) -> Progress | None:
        """The stream position whose energy is inside the counters of the newest answer."""
        if self._circuits is None or self.measured is None:
            return self.durable
        # from the last position found, not the last one committed: finding one takes the blocks it
        # passes off the list, so after a commit that failed the next must start where this one ended
        self._counted = self._fed.position(self.measured.integrated_until, self._counted)
        return self._counted

    def counters(self) -> EnergyCommit | None:
        """What a commit writes now: the counters of the newest answer and the stream position whose
        energy they hold (both as of that answer: blocks still being measured are in neither)."""
        if self._circuits is None or self.measured is None:
            return None
        pos = self.durable_position()
        regs = {
            (c + 1, name): (getattr(e, name).whole, getattr(e, name).residual)
            for c, e in enumerate(self.measured.energy)
            for name in REGISTERS
        }
        return self.name, regs, pos

    def commit(self) -> None:
        """Persist counters and position (one transaction), then acknowledge what is durable."""
        what = self.counters()
        if what is None:
            return
        self.store.commit_energy(*what)
        self.committed(what[2])

    def committed(self, pos: Progress | None) -> None:
        """The counters up to ``pos`` are on disk: acknowledge it, so the device may free those blocks."""
        self.durable = pos
        if pos is not None and self.connected and (self.acked is None or is_after(pos.block_seq, self.acked)):
            try:
                self.send(Ack(block_seq=pos.block_seq))
                self.acked = pos.block_seq
                self.model.links.acknowledged(self.state, pos.block_seq)
            except DeviceOffline:
                pass
