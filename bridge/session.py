"""One device's life in the bridge: identity, sequence numbers, acknowledgements, replay
de-duplication, measurement and the model update, across any number of connections."""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from bridge.config import AnalysisSection
from bridge.core import AnalyzerSettings, StreamAnalyzer, Thresholds, Update, VoltageEvent, WindowMetrics
from bridge.core.energy import REGISTERS
from device.protocol import (
    Ack,
    CommandResult,
    Connection,
    ConnectionClosed,
    ErrorMessage,
    FrameError,
    Heartbeat,
    Hello,
    Message,
    ProtocolError,
    Role,
    Samples,
    SelfTestResult,
    Status,
    TimeSync,
)
from device.protocol.connection import NEED_DATA

from .config import Config, Device
from .errors import DeviceOffline
from .link.streams import ByteStream
from .logs import get_logger
from .state import CircuitValues, DeviceSnapshot, DeviceState, Model
from .store import Progress, Store

HALF = 0x80000000
TIME_SYNC_ID = 0  # command id reserved for the clock set on every connect


def seq_after(a: int, b: int) -> bool:
    """u32 sequence arithmetic: is ``a`` after ``b``?"""
    return 0 < ((a - b) & 0xFFFFFFFF) < HALF


@dataclass(slots=True)
class _Fed:
    seq: int
    start: int  # global sample index of the block's first fed sample
    n: int
    skipped: int  # samples at the block start not fed (already counted before a restart)


class DeviceRuntime:
    """Everything about one device that outlives a connection."""

    def __init__(self, state: DeviceState, model: Model, store: Store, analysis: AnalysisSection | None = None) -> None:
        self.state = state
        self.analysis = analysis or AnalysisSection()
        self.model = model
        self.store = store
        self.name = state.name
        self.log = get_logger("bridge.device", device=self.name)
        self.analyzer: StreamAnalyzer | None = None
        self._fed: collections.deque[_Fed] = collections.deque()
        stored = store.progress(self.name)
        self.durable = stored  # what the last commit covers
        self.last_seq: int | None = stored.block_seq if stored else None
        self._resume_offset = stored.sample_offset if stored else 0
        self.acked: int | None = None
        self._sender: Callable[[Message], None] | None = None
        self._scale_v = np.ones(10)
        self._scale_i = np.ones(10)
        self._offset_v = np.zeros(10)
        self._offset_i = np.zeros(10)
        self._scale = np.ones(20)  # voltages then currents, as the analyzer takes them
        self._offset: np.ndarray | None = None  # None while every calibration offset is zero
        self._waiters: dict[int, asyncio.Future[Message]] = {}
        self._status_waiters: list[tuple[Callable[[Status], bool], asyncio.Future[Status]]] = []
        self._snapshots = 0
        for c in state.circuits:
            rec = store.relay(self.name, c.index)
            c.relay_operations, c.maintenance_lock = rec.operations, rec.maintenance_lock
        state.calibration = store.calibration(self.name)

    # ------------------------------------------------------------------ link attachment

    @property
    def connected(self) -> bool:
        return self._sender is not None

    def attach(self, sender: Callable[[Message], None], peer: str, kind: str) -> None:
        link = self.state.link
        link.connected, link.peer, link.transport = True, peer, kind
        link.connected_since_s = time.time()
        link.last_rx_monotonic = time.monotonic()
        self._sender = sender
        self.state.alarms["offline"].set(False)
        self.model.notify(self.state, "link")
        # set the device clock: window timestamps (OPC UA source timestamps, history) use it
        self.send(TimeSync(command_id=TIME_SYNC_ID, unix_time_ns=time.time_ns()))
        if self.durable is not None:
            # tell the device at once what it may free: everything we already hold durably
            self.send(Ack(block_seq=self.durable.block_seq))
            self.acked = self.durable.block_seq

    def detach(self, sender: Callable[[Message], None]) -> None:
        if self._sender is not sender:
            return  # an older link closing after a newer one took over
        self._sender = None
        self.state.link.connected = False
        self.state.alarms["offline"].set(True, "link closed")
        for fut in self._waiters.values():
            if not fut.done():
                fut.set_exception(DeviceOffline(f"device {self.name} disconnected before it answered"))
        self._waiters.clear()
        self.model.notify(self.state, "link")

    def send(self, msg: Message) -> None:
        if self._sender is None:
            raise DeviceOffline(f"device {self.name} is not connected; check its link and power")
        self._sender(msg)

    async def request(self, msg: Message, command_id: int, timeout_s: float) -> Message:
        """Send a command and wait for the answer carrying ``command_id``."""
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

    # ------------------------------------------------------------------ messages

    def on_message(self, msg: Message) -> None:
        self.state.link.last_rx_monotonic = time.monotonic()
        if self.state.alarms["offline"].set(False):
            self.model.notify(self.state, "link")
        match msg:
            case Samples():
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

    def on_hello(self, hello: Hello) -> None:
        old = self.state.hello
        self.state.hello = hello
        lsb_changed = old is None or (old.v_lsb_volts, old.i_lsb_amps) != (
            hello.v_lsb_volts,
            hello.i_lsb_amps,
        )
        if self.analyzer is None or old is None or old.sample_rate_hz != hello.sample_rate_hz:
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
        self.model.notify(self.state, "identity")

    def _new_analyzer(self, hello: Hello) -> None:
        dev = self.state.config
        counters = self.analyzer.energy if self.analyzer is not None else None
        self._update_scales()
        settings = AnalyzerSettings(
            fs=hello.sample_rate_hz,
            f_nominal=float(dev.f_nominal),
            u_nominal=dev.u_nominal,
            thresholds=Thresholds(),
            min_batch_s=self.analysis.batch_s,
            harmonics_every=self.analysis.harmonics_every,
            v_clip=tuple(self._rail(hello.v_adc_bits, self._scale_v, self._offset_v)),
            i_clip=tuple(self._rail(hello.i_adc_bits, self._scale_i, self._offset_i)),
        )
        self.analyzer = StreamAnalyzer(hello.circuit_count, settings)
        if counters is not None:
            self.analyzer.energy = counters
        else:
            for (c, reg), (whole, residual) in self.store.energy(self.name).items():
                if 1 <= c <= hello.circuit_count and reg in REGISTERS:
                    self.analyzer.energy.restore(c - 1, reg, whole, residual)
        self._fed.clear()

    @staticmethod
    def _rail(bits: int, scale: np.ndarray, offset: np.ndarray) -> list[float]:
        """Values at the ADC rail per circuit (a hair inside, so a railed sample always counts)."""
        return [float(x) for x in np.abs((2 ** (bits - 1) - 1) * scale) * 0.999999 + np.abs(offset)]

    def _update_scales(self) -> None:
        hello = self.state.hello
        if hello is None:
            return
        n = hello.circuit_count
        cal = self.state.calibration
        self._scale_v = np.array([hello.v_lsb_volts[c] * cal.get((c + 1, "v"), (1.0, 0.0))[0] for c in range(n)])
        self._scale_i = np.array([hello.i_lsb_amps[c] * cal.get((c + 1, "i"), (1.0, 0.0))[0] for c in range(n)])
        self._offset_v = np.array([cal.get((c + 1, "v"), (1.0, 0.0))[1] for c in range(n)])
        self._offset_i = np.array([cal.get((c + 1, "i"), (1.0, 0.0))[1] for c in range(n)])
        self._scale = np.concatenate((self._scale_v, self._scale_i))
        offset = np.concatenate((self._offset_v, self._offset_i))
        self._offset = offset if offset.any() else None

    def set_calibration(self, circuit: int, channel: str, gain: float, offset: float) -> None:
        self.state.calibration[(circuit, channel)] = (gain, offset)
        self._update_scales()

    def on_samples(self, block: Samples) -> None:
        link = self.state.link
        if self.analyzer is None or self.state.hello is None:
            return
        seq = block.block_seq
        if self.last_seq is not None and not seq_after(seq, self.last_seq):
            link.duplicates += 1
            return
        if self.last_seq is not None and seq != (self.last_seq + 1) & 0xFFFFFFFF:
            lost = ((seq - self.last_seq) & 0xFFFFFFFF) - 1
            link.gaps += 1
            link.lost_blocks += lost
            self.log.warning("blocks missing from the device stream", after=self.last_seq, got=seq, lost=lost)
        circuits = list(block.circuits)
        if circuits != list(range(1, len(circuits) + 1)) or len(circuits) != self.analyzer.c:
            self.log.warning("block skipped: circuit set differs from HELLO", block=seq, circuits=circuits)
            self.last_seq = seq
            return
        skip = 0
        if self.durable is not None and seq == (self.durable.block_seq + 1) & 0xFFFFFFFF and self._resume_offset:
            skip = min(self._resume_offset, block.n)  # counted before a restart: do not count twice
        self._resume_offset = 0
        start = self.analyzer.end
        t0 = block.t0_ns / 1e9 + skip / block.sample_rate_hz
        # ADC counts go in as they are: the analyzer scales them while copying them into its buffer
        update = self.analyzer.feed(
            block.v[:, skip:], block.i[:, skip:], seq=seq, t0_s=t0, scale=self._scale, offset=self._offset
        )
        if block.n > skip:
            self._fed.append(_Fed(seq, start, block.n - skip, skip))
        self.last_seq = seq
        link.blocks += 1
        self._apply(update)

    def on_status(self, status: Status) -> None:
        prev = self.state.status
        self.state.status = status
        for k, on in enumerate(status.circuit_on[: len(self.state.circuits)]):
            self.state.circuits[k].relay_on = on
        self.state.aux_on = status.aux_on
        if prev is not None and status.dropped_blocks > prev.dropped_blocks:
            lost = status.dropped_blocks - prev.dropped_blocks
            self.state.alarms["sram_loss"].set(True, f"device SRAM overflowed: {lost} blocks dropped")
            self.log.warning("device dropped blocks from a full SRAM buffer", dropped=lost)
        if self.state.alarms["fault"].set(bool(status.fault_codes), ", ".join(status.fault_codes)):
            self.model.notify(self.state, "alarm")
        for pred, fut in list(self._status_waiters):
            if not fut.done() and pred(status):
                fut.set_result(status)
        self.model.notify(self.state, "status")

    # ------------------------------------------------------------------ measurements -> model

    def _apply(self, update: Update) -> None:
        for agg in update.aggregates:
            if agg.complete:  # a partial interval would pass for a full one on the registers
                self.state.aggregates[agg.kind] = agg
        if update.freq_10s:
            self.state.freq_10s = update.freq_10s[-1]
        if not update.windows and not update.events:
            return
        assert self.analyzer is not None
        dev = self.state
        for ev in update.events:
            self._record_event(ev)
            al = self.state.circuits[ev.circuit].alarms[ev.kind]
            if not al.active:
                # the whole event fell between two updates: still count it as one activation, so
                # fronts that follow the count (OPC UA conditions) report it
                al.set(True, f"{ev.kind}: {ev.extreme_v:.1f} V")
                al.set(False)
        ongoing = {e.circuit: e.kind for e in self.analyzer.events.ongoing()}
        if update.windows:
            # the live values are the newest window's (a batch brings several); every window still
            # passes the alarm checks below
            self._snapshots += len(update.windows)
            dev.snapshot = self._snapshot(update.windows[-1])
        limit = dev.config.overcurrent_a
        for w in update.windows:
            changed = False
            i_rms_w, clipped_w = w.i_rms.tolist(), w.clipped.tolist()
            for c in range(self.analyzer.c):
                cs = dev.circuits[c]
                kind = ongoing.get(c)
                changed |= cs.alarms["dip"].set(kind == "dip", "voltage dip in progress")
                changed |= cs.alarms["swell"].set(kind == "swell", "voltage swell in progress")
                changed |= cs.alarms["interruption"].set(kind == "interruption", "supply interrupted")
                i_rms = i_rms_w[c]
                over = i_rms > limit
                changed |= cs.alarms["overcurrent"].set(over, f"{i_rms:.1f} A > {limit:g} A" if over else "")
                changed |= cs.alarms["clipped"].set(clipped_w[c], "samples at the ADC rail")
            if changed:
                self.model.notify(dev, "alarm")
        self.model.notify(dev, "snapshot")

    def _snapshot(self, w: WindowMetrics) -> DeviceSnapshot:
        assert self.analyzer is not None
        energy = [e.values() for e in self.analyzer.energy]
        # whole arrays to Python values at once (the same floats as float() of each element)
        col = {
            name: getattr(w, name).tolist()
            for name in (
                "v_rms", "i_rms", "p_w", "q_var", "s_va", "n_va", "pf", "dpf", "angle_deg",
                "thd_v", "thd_i", "v_dc", "i_dc", "clipped", "event", "harmonics_v", "harmonics_i",
            )
        }  # fmt: skip
        urms_half = self.analyzer.last_urms_half.tolist()
        circuits = tuple(
            CircuitValues(
                v_rms=col["v_rms"][c],
                i_rms=col["i_rms"][c],
                p_w=col["p_w"][c],
                q_var=col["q_var"][c],
                s_va=col["s_va"][c],
                n_va=col["n_va"][c],
                pf=col["pf"][c],
                dpf=col["dpf"][c],
                angle_deg=col["angle_deg"][c],
                thd_v=col["thd_v"][c],
                thd_i=col["thd_i"][c],
                v_dc=col["v_dc"][c],
                i_dc=col["i_dc"][c],
                clipped=col["clipped"][c],
                event=col["event"][c],
                urms_half=urms_half[c],
                harmonics_v=tuple(col["harmonics_v"][c]),
                harmonics_i=tuple(col["harmonics_i"][c]),
                **energy[c],
            )
            for c in range(self.analyzer.c)
        )
        return DeviceSnapshot(
            number=self._snapshots,  # windows measured so far
            time_s=w.t_start_s,
            duration_s=w.duration_s,
            freq_hz=w.freq_hz,
            synced=w.synced,
            circuits=circuits,
            received_monotonic=time.monotonic(),
        )

    def _record_event(self, ev: VoltageEvent) -> None:
        assert self.analyzer is not None
        cs = self.state.circuits[ev.circuit]
        if ev.kind == "dip":
            cs.dips += 1
        elif ev.kind == "swell":
            cs.swells += 1
        else:
            cs.interruptions += 1
        t = self.analyzer.time_of(ev.start)
        duration = ev.duration_s(self.analyzer.cfg.fs)
        self.log.warning(
            "voltage event",
            circuit=cs.index,
            kind=ev.kind,
            duration_s=round(duration, 4),
            extreme_v=round(ev.extreme_v, 1),
        )
        self.store.append_event(
            self.name,
            cs.index,
            ev.kind,
            t,
            duration,
            ev.extreme_v,
            f"{ev.kind} on circuit {cs.index}: {ev.extreme_v:.1f} V for {duration * 1000:.0f} ms",
        )
        self.model.notify(self.state, "event")

    # ------------------------------------------------------------------ durability

    def durable_position(self) -> Progress | None:
        """The stream position whose energy is inside the counters now."""
        if self.analyzer is None:
            return self.durable
        upto = self.analyzer.integrated_until
        pos: Progress | None = None
        while self._fed:
            f = self._fed[0]
            if f.start + f.n <= upto:
                pos = Progress(f.seq, 0)
                self._fed.popleft()
            else:
                if f.start < upto:
                    # the next block is partly counted: remember how far (plus what a restart skipped)
                    base = pos or self.durable
                    prev_seq = (f.seq - 1) & 0xFFFFFFFF
                    if base is None or base.block_seq == prev_seq:
                        return Progress(prev_seq, f.skipped + (upto - f.start))
                break
        return pos or self.durable

    def commit(self) -> None:
        """Persist counters and position (one transaction), then acknowledge what is durable."""
        if self.analyzer is None:
            return
        pos = self.durable_position()
        regs = {
            (c + 1, name): (getattr(e, name).whole, getattr(e, name).residual)
            for c, e in enumerate(self.analyzer.energy)
            for name in REGISTERS
        }
        self.store.commit_energy(self.name, regs, pos)
        self.durable = pos
        if pos is not None and self.connected and (self.acked is None or seq_after(pos.block_seq, self.acked)):
            try:
                self.send(Ack(block_seq=pos.block_seq))
                self.acked = pos.block_seq
                self.state.link.acked_seq = pos.block_seq
            except DeviceOffline:
                pass


class DeviceHub:
    """Routes links to device runtimes by the serial number in HELLO; refuses unknown devices."""

    def __init__(self, config: Config, model: Model, store: Store) -> None:
        self.config = config
        self.model = model
        self.store = store
        self.runtimes: dict[str, DeviceRuntime] = {
            name: DeviceRuntime(state, model, store, config.analysis) for name, state in model.devices.items()
        }
        self.log = get_logger("bridge.hub")
        self._refused: set[str] = set()

    def runtime(self, name: str) -> DeviceRuntime | None:
        return self.runtimes.get(name)

    def _accept(self, hello: Hello, peer: str, expected: str | None) -> DeviceRuntime | None:
        state = self.model.by_serial(hello.serial_number)
        if state is None and self.config.bridge.auto_accept:
            used = {d.config.unit_id for d in self.model.devices.values()}
            unit = next(u for u in range(1, 248) if u not in used)
            name = "dev_" + "".join(ch if ch.isalnum() else "_" for ch in hello.serial_number)[:36]
            state = self.model.add_device(Device(name=name, serial_number=hello.serial_number, unit_id=unit))
            self.runtimes[name] = DeviceRuntime(state, self.model, self.store, self.config.analysis)
            self.log.warning(
                "unknown device accepted (auto_accept is on)",
                serial=hello.serial_number,
                name=name,
                unit_id=unit,
            )
        if state is None:
            # log once per serial at warning, repeats at debug
            (self.log.debug if hello.serial_number in self._refused else self.log.warning)(
                "device refused: serial number not in the configuration (add it under [[devices]] "
                "or set bridge.auto_accept)",
                serial=hello.serial_number,
                peer=peer,
            )
            self._refused.add(hello.serial_number)
            return None
        if expected is not None and state.name != expected:
            self.log.warning(
                "device on this link is not the configured one",
                expected=expected,
                got=state.name,
                serial=hello.serial_number,
                peer=peer,
            )
            return None
        return self.runtimes[state.name]

    async def handle(self, stream: ByteStream, expected: str | None) -> None:
        """Serve one link until it closes. Errors stay on this link: other devices never notice."""
        conn = Connection(Role.BRIDGE, skip_before_hello=stream.kind == "serial")
        runtime: DeviceRuntime | None = None
        log = self.log.bind(peer=stream.peer, link=stream.kind)

        def sender(msg: Message) -> None:
            stream.write_nowait(conn.send(msg))

        first_error = True
        try:
            while True:
                data = await stream.read()
                conn.receive_data(data)
                while True:
                    ev = conn.next_event()
                    if ev is NEED_DATA:
                        break
                    if isinstance(ev, ConnectionClosed):
                        return
                    if isinstance(ev, FrameError):
                        if runtime is not None:
                            runtime.state.link.frame_errors += 1
                        (log.warning if first_error else log.debug)(
                            "frame skipped", error=str(ev.error), code=ev.error.code
                        )
                        first_error = False
                        continue
                    if isinstance(ev, Hello):
                        new = self._accept(ev, stream.peer, expected)
                        if new is None:
                            await stream.write(
                                conn.send(
                                    ErrorMessage(
                                        code="unknown-device",
                                        text=f"serial {ev.serial_number} is not configured on this bridge",
                                    )
                                )
                            )
                            return
                        if new is not runtime:
                            if runtime is not None:
                                runtime.detach(sender)
                            runtime = new
                            log = log.bind(device=runtime.name)
                            runtime.on_hello(ev)
                            runtime.attach(sender, stream.peer, stream.kind)
                            log.info("device connected")
                        else:
                            runtime.on_hello(ev)
                        continue
                    if runtime is not None:
                        runtime.on_message(ev)  # type: ignore[arg-type]
                if not data:
                    return
        except ProtocolError as exc:
            log.warning("link closed: device broke the protocol", error=str(exc))
        except (ConnectionError, OSError) as exc:
            log.info("link lost", error=str(exc))
        finally:
            if runtime is not None:
                runtime.detach(sender)
                log.info("device disconnected")
            await stream.close()
