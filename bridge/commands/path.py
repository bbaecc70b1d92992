"""One command path for every front (Modbus, OPC UA, CLI): authorise, validate, apply policy, send,
await the device's acknowledgement and the STATUS that confirms it, count, persist, audit.

A caller gets success only when the device has acknowledged *and* its next STATUS shows the new
state; anything else is a precise exception (NotAuthorised / CommandRejected before sending,
CommandFailed / CommandTimeout after, DeviceOffline when there is no link). Devices are reached
through :class:`DevicePort` only; outcomes go back to the session, which writes the live model.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TypeVar

from bridge import telemetry
from bridge.config import Config
from bridge.errors import (
    BridgeError,
    CommandFailed,
    CommandRejected,
    CommandTimeout,
    DeviceOffline,
    DeviceRefused,
    DeviceUnknown,
)
from bridge.logs import audit
from bridge.store import Store
from device.protocol import (
    BOARD_CIRCUITS,
    AuxCommand,
    Calibrate,
    CommandResult,
    RelayCommand,
    RelayWiring,
    SelfTestRequest,
    SelfTestResult,
    Status,
)

from .authorise import Action, Origin, Role, authorise
from .limits import configured, effective, merged
from .policy import SelectBeforeOperate, check_relay_policy, needs_select, not_selected, wear_threshold
from .port import (
    AuxSwitched,
    Calibrated,
    DevicePort,
    DevicePorts,
    LimitsChanged,
    MaintenanceLocked,
    RelayCounted,
    RelayFeedback,
    Selected,
    SelfTested,
)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RelayOutcome:
    device: str
    circuit: int
    on: bool
    changed: bool
    latency_s: float


def _count(label: str, origin: Origin, exc: BaseException | None, started: float) -> None:
    telemetry.COMMANDS.labels(label, origin.front, telemetry.outcome_of(exc)).inc()
    telemetry.COMMAND_DURATION.labels(label).observe(time.monotonic() - started)


def _audit(action: str, origin: Origin, outcome: str, started: float, **fields: object) -> None:
    audit(
        "command",
        action=action,
        front=origin.front,
        user=origin.user,
        client=origin.client,
        role=str(origin.role),
        outcome=outcome,
        latency_ms=round((time.monotonic() - started) * 1000, 1),
        **fields,
    )


def _check_circuit(port: DevicePort, circuit: int) -> None:
    hello = port.state.hello
    count = hello.circuit_count if hello else BOARD_CIRCUITS
    if not 1 <= circuit <= count:
        raise CommandRejected(f"device {port.name} has circuits 1..{count}, not {circuit}", code="circuit")


def _require_online(port: DevicePort, what: str) -> None:
    if not port.state.online:
        raise DeviceOffline(f"device {port.name} is offline; {what}")


async def _average(port: DevicePort, circuit: int, windows: int) -> tuple[float, float]:
    """Mean RMS voltage and current of one circuit over the windows measured from now until
    ``windows`` have passed (the live snapshot is the newest window of each batch)."""
    start = port.state.snapshot.number if port.state.snapshot else 0
    seen: dict[int, tuple[float, float]] = {}
    async with asyncio.timeout(windows * 0.25 + 30):
        while not seen or max(seen) - start < windows:
            snap = port.state.snapshot
            if snap is not None and snap.number > start and snap.number not in seen:
                cv = snap.circuits[circuit - 1]
                seen[snap.number] = (cv.v_rms, cv.i_rms)
            await asyncio.sleep(0.02)
    n = len(seen)
    return sum(v for v, _ in seen.values()) / n, sum(i for _, i in seen.values()) / n


class CommandPath:
    def __init__(self, config: Config, ports: DevicePorts, store: Store) -> None:
        self.config = config
        self.ports = ports
        self.store = store
        self._ids = itertools.count(int(time.time()) & 0xFFFFFF)
        self._locks: dict[tuple[str, int], asyncio.Lock] = {}
        self._inflight: dict[tuple[str, int], tuple[bool, asyncio.Task[RelayOutcome]]] = {}
        self._sbo = SelectBeforeOperate(config.commands.select_timeout_s)

    # ------------------------------------------------------------------ shared steps

    def _port(self, device: str) -> DevicePort:
        port = self.ports.port(device)
        if port is None:
            known = ", ".join(sorted(self.ports.names())) or "none"
            raise DeviceUnknown(f"unknown device '{device}' (configured: {known})")
        return port

    def _next_id(self) -> int:
        return (next(self._ids) & 0xFFFFFFFF) or 1  # 0 is the session's time sync

    async def _audited(
        self, label: str, action: Action, origin: Origin, run: Callable[[], Awaitable[T]], **fields: object
    ) -> T:
        """Authorise, run and audit one command: every refusal and failure is audited once, here."""
        started = time.monotonic()
        try:
            authorise(origin, action)
            result = await run()
        except BridgeError as exc:
            _audit(label, origin, f"{exc.code}: {exc}", started, **fields)
            _count(label, origin, exc, started)
            raise
        _audit(label, origin, _describe(result), started, **fields)
        _count(label, origin, None, started)
        return result

    async def _request(self, port: DevicePort, msg_for: Callable[[int], object], timeout_s: float, what: str) -> object:
        cid = self._next_id()
        try:
            return await port.request(msg_for(cid), cid, timeout_s)  # type: ignore[arg-type]
        except TimeoutError:
            raise CommandTimeout(f"device {port.name} did not {what} within {timeout_s:g} s") from None

    # ------------------------------------------------------------------ relays

    def _relay_port(
        self, label: str, action: Action, origin: Origin, device: str, circuit: int, **fields: object
    ) -> DevicePort:
        """Authorise a synchronous relay action and find its relay; a refusal is audited here."""
        try:
            authorise(origin, action)
            port = self._port(device)
            _check_circuit(port, circuit)
        except BridgeError as exc:
            _audit(label, origin, f"{exc.code}: {exc}", time.monotonic(), device=device, circuit=circuit, **fields)
            raise
        return port

    def select(self, device: str, circuit: int, on: bool, origin: Origin) -> None:
        """Arm a relay for one operation (select-before-operate)."""
        started = time.monotonic()
        port = self._relay_port("select", Action.SELECT, origin, device, circuit, on=on)
        self._sbo.arm(port.name, circuit, on, origin.user)
        port.record(Selected(circuit, on))
        _audit("select", origin, "armed", started, device=device, circuit=circuit, on=on)

    async def switch_relay(self, device: str, circuit: int, on: bool, origin: Origin) -> RelayOutcome:
        """Switch a relay; idempotent for repeats, serialised per relay."""
        started = time.monotonic()
        return await self._audited(
            "relay",
            Action.SWITCH_RELAY,
            origin,
            lambda: self._switch_relay(device, circuit, on, started),
            device=device,
            circuit=circuit,
            on=on,
        )

    async def _switch_relay(self, device: str, circuit: int, on: bool, started: float) -> RelayOutcome:
        key = (device, circuit)
        port = self._port(device)
        _check_circuit(port, circuit)
        _require_online(port, f"relay {circuit} was not switched")
        inflight = self._inflight.get(key)
        if inflight is not None and inflight[0] == on and not inflight[1].done():
            return await asyncio.shield(inflight[1])  # a retrying SCADA joins the running command
        async with self._locks.setdefault(key, asyncio.Lock()):
            if port.state.circuits[circuit - 1].relay_on is on:
                return RelayOutcome(device, circuit, on, False, time.monotonic() - started)
            cfg = self.config.commands
            dev_cfg = port.state.config
            check_relay_policy(dev_cfg, circuit, self.store.relay(port.name, circuit), cfg)
            if needs_select(dev_cfg, circuit, cfg):
                armed = self._sbo.take(port.name, circuit, on)
                port.record(Selected(circuit, None))
                if not armed:
                    raise not_selected(dev_cfg, circuit, cfg)
            task = asyncio.ensure_future(self._do_switch(port, circuit, on, started))
            self._inflight[key] = (on, task)
            try:
                return await asyncio.shield(task)
            finally:
                if self._inflight.get(key, (None, None))[1] is task:
                    del self._inflight[key]

    async def _do_switch(self, port: DevicePort, circuit: int, on: bool, started: float) -> RelayOutcome:
        cfg = self.config.commands
        word = "on" if on else "off"
        answer = await self._request(
            port,
            lambda cid: RelayCommand(command_id=cid, circuit=circuit, on=on),
            cfg.timeout_s,
            f"acknowledge switching relay {circuit} {word} (the relay state is unknown until its next STATUS)",
        )
        assert isinstance(answer, CommandResult)
        if not answer.ok:
            port.record(RelayFeedback(circuit, True, answer.text))
            raise DeviceRefused(f"device {port.name} refused relay {circuit}: {answer.text} ({answer.code})")

        def confirms(st: Status | None) -> bool:
            return st is not None and len(st.circuit_on) >= circuit and st.circuit_on[circuit - 1] is on

        try:
            # a device may send its STATUS before the COMMAND_RESULT: then it already confirms
            if not confirms(port.state.status):
                await port.wait_status(confirms, cfg.confirm_timeout_s)
        except TimeoutError:
            port.record(RelayFeedback(circuit, True, f"STATUS does not show relay {circuit} {word}"))
            raise CommandFailed(
                f"device {port.name} acknowledged relay {circuit} but its STATUS still disagrees after "
                f"{cfg.confirm_timeout_s:g} s (feedback mismatch alarm raised)",
                code="feedback-mismatch",
            ) from None
        port.record(RelayFeedback(circuit, False))
        self._count_operation(port, circuit, on)
        return RelayOutcome(port.name, circuit, on, True, time.monotonic() - started)

    def _count_operation(self, port: DevicePort, circuit: int, on: bool) -> None:
        rec = self.store.relay(port.name, circuit)
        today = datetime.now(UTC).date().isoformat()
        rec = replace(
            rec,
            operations=rec.operations + 1,
            last_state=on,
            switched_at=time.time(),
            day=today,
            day_count=(rec.day_count + 1) if rec.day == today else 1,
        )
        self.store.save_relay(port.name, circuit, rec)
        cfg = self.config.commands
        threshold = wear_threshold(port.state.config, circuit, cfg)
        port.record(
            RelayCounted(
                circuit,
                rec.operations,
                rec.operations >= threshold,
                f"{rec.operations} operations of {cfg.relay_rated_operations} rated",
            )
        )

    def set_maintenance_lock(self, device: str, circuit: int, locked: bool, origin: Origin) -> None:
        started = time.monotonic()
        port = self._relay_port("maintenance-lock", Action.MAINTENANCE_LOCK, origin, device, circuit, locked=locked)
        rec = self.store.relay(port.name, circuit)
        self.store.save_relay(port.name, circuit, replace(rec, maintenance_lock=locked))
        port.record(MaintenanceLocked(circuit, locked))
        _audit("maintenance-lock", origin, "ok", started, device=device, circuit=circuit, locked=locked)

    # ------------------------------------------------------------------ alarm limits

    def limits_of(self, device: str) -> dict[str, object]:
        dev = self._port(device).state
        return dev.limits.as_dict(float(dev.config.f_nominal))

    async def set_limits(
        self,
        device: str,
        origin: Origin,
        *,
        pq: Mapping[str, float | None] | None = None,
        overcurrent_a: Mapping[int, float] | None = None,
        reset: bool = False,
    ) -> dict[str, object]:
        """Change a device's alarm limits at run time (admin): persisted as overrides of the
        configuration, applied from the next window on; ``reset`` returns to the file's limits.
        Answers the limits before and after."""

        async def run() -> dict[str, object]:
            port = self._port(device)
            dev = port.state
            stored = self.store.limit_overrides(port.name)
            overrides = {} if reset else merged(stored, pq or {}, overcurrent_a or {})
            after = effective(configured(dev.config, self.config.pq), overrides)
            before = dev.limits
            self.store.save_limit_overrides(port.name, overrides, str(origin))
            port.record(LimitsChanged(after))
            f = float(dev.config.f_nominal)
            return {"before": before.as_dict(f), "after": after.as_dict(f)}

        return await self._audited(
            "limits",
            Action.CHANGE_LIMITS,
            origin,
            run,
            device=device,
            pq=dict(pq or {}),
            overcurrent_a=dict(overcurrent_a or {}),
            reset=reset,
        )

    # ------------------------------------------------------------------ aux, self-test, calibration

    async def switch_aux(self, device: str, on: bool, origin: Origin) -> None:
        async def run() -> None:
            port = self._port(device)
            _require_online(port, "the auxiliary output was not switched")
            answer = await self._request(
                port,
                lambda cid: AuxCommand(command_id=cid, on=on),
                self.config.commands.timeout_s,
                "acknowledge the auxiliary output",
            )
            assert isinstance(answer, CommandResult)
            if not answer.ok:
                raise DeviceRefused(f"device {device} refused the auxiliary output: {answer.text} ({answer.code})")
            port.record(AuxSwitched(on))

        await self._audited("aux", Action.SWITCH_AUX, origin, run, device=device, on=on)

    async def self_test(self, device: str, origin: Origin) -> list[dict[str, str]]:
        async def run() -> list[dict[str, str]]:
            port = self._port(device)
            _require_online(port, "self-test not started")
            answer = await self._request(
                port,
                lambda cid: SelfTestRequest(command_id=cid),
                self.config.commands.timeout_s * 2,
                "return a self-test result",
            )
            assert isinstance(answer, SelfTestResult)
            faults = [{"code": f.code, "block": f.block, "text": f.text} for f in answer.faults]
            port.record(SelfTested(faults))
            return faults

        return await self._audited("self-test", Action.SELF_TEST, origin, run, device=device)

    async def calibrate(
        self,
        device: str,
        circuit: int,
        channel: str,
        gain: float,
        offset: float,
        origin: Origin,
        *,
        write_to_device: bool = False,
    ) -> tuple[tuple[float, float], tuple[float, float]]:
        """Set gain and offset of one channel (applied in the bridge, persisted); returns before, after."""

        async def run() -> tuple[tuple[float, float], tuple[float, float]]:
            port = self._port(device)
            _check_circuit(port, circuit)
            if channel not in ("v", "i"):
                raise CommandRejected(f"channel must be 'v' or 'i', not {channel!r}", code="channel")
            if not 0.5 <= gain <= 2.0:
                raise CommandRejected(f"gain {gain} is outside 0.5..2.0; check the reference measurement", code="gain")
            before = port.state.calibration.get((circuit, channel), (1.0, 0.0))
            bridge_gain, lsb = gain, 0.0
            if write_to_device:
                hello = port.state.hello
                if hello is None:
                    raise DeviceOffline(f"device {device} has not identified itself yet")
                # the device takes the gain into the LSB size it announces in HELLO from now on, so
                # the bridge must not apply it again; the offset stays the bridge's (volts or amperes)
                lsb = (hello.v_lsb_volts if channel == "v" else hello.i_lsb_amps)[circuit - 1] * gain / before[0]
                answer = await self._request(
                    port,
                    lambda cid: Calibrate(command_id=cid, circuit=circuit, channel=channel, lsb=lsb, offset_lsb=0.0),
                    self.config.commands.timeout_s,
                    "acknowledge the calibration",
                )
                assert isinstance(answer, CommandResult)
                if not answer.ok:
                    raise DeviceRefused(f"device {device} refused the calibration: {answer.text} ({answer.code})")
                bridge_gain = 1.0
            self.store.save_calibration(port.name, circuit, channel, bridge_gain, offset, origin.user or origin.front)
            port.record(Calibrated(circuit, channel, bridge_gain, offset, lsb if write_to_device else None))
            return before, (gain, offset)

        return await self._audited(
            "calibrate", Action.CALIBRATE, origin, run, device=device, circuit=circuit, channel=channel,
            gain=gain, offset=offset,
        )  # fmt: skip

    async def calibrate_to_reference(
        self, device: str, circuit: int, v_ref: float, i_ref: float, origin: Origin, *, windows: int = 25
    ) -> dict[str, object]:
        """Calibrate one circuit against a known reference (a calibrator, or a reference meter on the
        same load): average ``windows`` new measurement windows, set each channel's gain so that it
        reads the reference (offsets kept), persist, audit. Returns what was measured, before, after."""

        async def run() -> dict[str, object]:
            port = self._port(device)
            _check_circuit(port, circuit)
            _require_online(port, "calibration needs live measurements")
            if not (v_ref > 0 and i_ref > 0):
                raise CommandRejected("reference volts and amperes must be > 0", code="gain")
            v, i = await _average(port, circuit, windows)
            cal = port.state.calibration
            (gv, ov), (gi, oi) = cal.get((circuit, "v"), (1.0, 0.0)), cal.get((circuit, "i"), (1.0, 0.0))
            new_v, new_i = gv * v_ref / v, gi * i_ref / i
            for ch, g in (("v", new_v), ("i", new_i)):
                if not 0.5 <= g <= 2.0:
                    raise CommandRejected(
                        f"circuit {circuit} {ch}: gain {g:.4f} is outside 0.5..2.0; is the reference connected "
                        f"(measured {v:.3f} V, {i:.4f} A)?",
                        code="gain",
                    )
            for ch, g, o in (("v", new_v, ov), ("i", new_i, oi)):
                self.store.save_calibration(port.name, circuit, ch, g, o, origin.user or origin.front)
                port.record(Calibrated(circuit, ch, g, o))
            return {
                "measured": {"v_rms": v, "i_rms": i, "windows": windows},
                "before": {"v": [gv, ov], "i": [gi, oi]},
                "after": {"v": [new_v, ov], "i": [new_i, oi]},
            }

        return await self._audited("calibrate", Action.CALIBRATE, origin, run, device=device, circuit=circuit)

    async def apply_wiring(self, device: str) -> None:
        """At every connect: tell the device the NO/NC wiring the configuration gives its relays,
        where its STATUS says otherwise. Each change is audited; a refusal raises the relay's
        mismatch alarm."""
        port = self._port(device)
        wanted = {r.circuit: r.wiring for r in port.state.config.relays if r.wiring is not None}
        if not wanted:
            return
        timeout = self.config.commands.timeout_s
        status = port.state.status or await port.wait_status(lambda st: True, timeout)
        origin = Origin(front="config", role=Role.ADMIN)
        for circuit, wiring in sorted(wanted.items()):
            if circuit <= len(status.relay_wiring) and status.relay_wiring[circuit - 1] == wiring:
                continue

            async def run(circuit: int = circuit, wiring: str = wiring) -> None:
                answer = await self._request(
                    port,
                    lambda cid: RelayWiring(command_id=cid, circuit=circuit, wiring=wiring),
                    timeout,
                    "acknowledge the relay wiring",
                )
                assert isinstance(answer, CommandResult)
                if not answer.ok:
                    text = f"device {device} refused {wiring} wiring for relay {circuit}: {answer.text}"
                    port.record(RelayFeedback(circuit, True, text))
                    raise DeviceRefused(f"{text} ({answer.code})")

            with contextlib.suppress(BridgeError):  # audited; a refusal shows as the relay's alarm
                await self._audited(
                    "relay-wiring", Action.SET_WIRING, origin, run, device=device, circuit=circuit, wiring=wiring
                )

    async def apply_safe_state(self, device: str) -> None:
        """After a bridge restart, when a device first connects: ask each relay for its configured
        safe state (keep, on, off). Failures are audited and raise the relay's alarms."""
        port = self._port(device)
        origin = Origin(front="safe-state", role=Role.ADMIN)
        for c in range(1, BOARD_CIRCUITS + 1):
            target = port.state.config.policy(c).safe_state or self.config.commands.safe_state
            if target == "keep":
                continue
            with contextlib.suppress(BridgeError):  # audited already; the relay alarm shows it
                await self.switch_relay(port.name, c, target == "on", origin)


def _describe(result: object) -> str:
    if isinstance(result, RelayOutcome):
        return "ok" if result.changed else "ok (already in state)"
    if isinstance(result, list):  # self-test faults
        return "faults: " + ", ".join(f"{f['code']} [{f['block']}]" for f in result) if result else "passed"
    if isinstance(result, tuple):  # calibration: before, after
        return f"ok (gain, offset {result[0]} -> {result[1]})"
    if isinstance(result, dict) and "after" in result:  # calibration against a reference
        return f"ok (before {result['before']}, after {result['after']})"
    return "ok"
