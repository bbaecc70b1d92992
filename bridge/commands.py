"""One command path for every front (Modbus, OPC UA, CLI): validate, apply policy, send, await the
device's acknowledgement and the STATUS that confirms it, count, persist, audit.

A caller gets success only when the device has acknowledged *and* its next STATUS shows the new
state; anything else is a precise exception (CommandRejected before sending, CommandFailed /
CommandTimeout after, DeviceOffline when there is no link).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from device.protocol import (
    AuxCommand,
    Calibrate,
    CommandResult,
    RelayCommand,
    SelfTestRequest,
    SelfTestResult,
    Status,
)

from .config import Config
from .errors import BridgeError, CommandFailed, CommandRejected, CommandTimeout, DeviceOffline, DeviceUnknown
from .logs import get_logger
from .session import DeviceHub, DeviceRuntime
from .store import Store

audit = get_logger("bridge.audit")


@dataclass(frozen=True, slots=True, kw_only=True)
class Origin:
    """Who asked: front ("modbus", "opcua", "cli"), user or peer, and the client's address."""

    front: str
    user: str = ""
    client: str = ""
    role: str = "operator"


@dataclass(frozen=True, slots=True)
class RelayOutcome:
    device: str
    circuit: int
    on: bool
    changed: bool
    latency_s: float


class CommandPath:
    def __init__(self, config: Config, hub: DeviceHub, store: Store) -> None:
        self.config = config
        self.hub = hub
        self.store = store
        self._ids = itertools.count(int(time.time()) & 0xFFFFFF)
        self._locks: dict[tuple[str, int], asyncio.Lock] = {}
        self._inflight: dict[tuple[str, int], tuple[bool, asyncio.Task[RelayOutcome]]] = {}
        self._armed: dict[tuple[str, int], tuple[bool, float, str]] = {}

    def _runtime(self, device: str) -> DeviceRuntime:
        rt = self.hub.runtime(device)
        if rt is None:
            known = ", ".join(sorted(self.hub.runtimes)) or "none"
            raise DeviceUnknown(f"unknown device '{device}' (configured: {known})")
        return rt

    def _next_id(self) -> int:
        return (next(self._ids) & 0xFFFFFFFF) or 1  # 0 is the session's time sync

    @staticmethod
    def _audit(action: str, origin: Origin, outcome: str, started: float, **fields: object) -> None:
        audit.info(
            "command",
            action=action,
            front=origin.front,
            user=origin.user,
            client=origin.client,
            outcome=outcome,
            latency_ms=round((time.monotonic() - started) * 1000, 1),
            **fields,
        )

    # ------------------------------------------------------------------ relays

    def _check_policy(self, rt: DeviceRuntime, circuit: int, on: bool, origin: Origin) -> None:
        cfg = self.config.commands
        pol = rt.state.config.policy(circuit)
        rec = self.store.relay(rt.name, circuit)
        if pol.locked:
            raise CommandRejected(
                f"relay {circuit} of {rt.name} is interlocked in the configuration (relays.locked)", code="interlocked"
            )
        if rec.maintenance_lock:
            raise CommandRejected(
                f"relay {circuit} of {rt.name} is under a maintenance lock; an admin must release it",
                code="maintenance-lock",
            )
        min_interval = pol.min_interval_s if pol.min_interval_s is not None else cfg.min_interval_s
        if rec.switched_at is not None:
            since = time.time() - rec.switched_at
            if since < min_interval:
                raise CommandRejected(
                    f"relay {circuit} of {rt.name} switched {since:.1f} s ago; the minimum interval is "
                    f"{min_interval:g} s (retry after {min_interval - since:.1f} s)",
                    code="min-interval",
                )
        limit = pol.daily_limit if pol.daily_limit is not None else cfg.daily_limit
        today = datetime.now(UTC).date().isoformat()
        if rec.day == today and rec.day_count >= limit:
            raise CommandRejected(
                f"relay {circuit} of {rt.name} reached its daily limit of {limit} switchings", code="daily-limit"
            )
        sbo = pol.select_before_operate if pol.select_before_operate is not None else cfg.select_before_operate
        if sbo:
            armed = self._armed.pop((rt.name, circuit), None)
            rt.state.circuits[circuit - 1].selected = None
            if armed is None or armed[0] != on or time.monotonic() > armed[1]:
                raise CommandRejected(
                    f"relay {circuit} of {rt.name} needs select-before-operate: select the same state "
                    f"within {cfg.select_timeout_s:g} s before operating",
                    code="not-selected",
                )

    def select(self, device: str, circuit: int, on: bool, origin: Origin) -> None:
        """Arm a relay for one operation (select-before-operate)."""
        rt = self._runtime(device)
        self._check_circuit(rt, circuit)
        self._armed[(rt.name, circuit)] = (
            on,
            time.monotonic() + self.config.commands.select_timeout_s,
            origin.user,
        )
        rt.state.circuits[circuit - 1].selected = on
        self._audit("select", origin, "armed", time.monotonic(), device=device, circuit=circuit, on=on)

    @staticmethod
    def _check_circuit(rt: DeviceRuntime, circuit: int) -> None:
        count = rt.state.hello.circuit_count if rt.state.hello else 10
        if not 1 <= circuit <= count:
            raise CommandRejected(f"device {rt.name} has circuits 1..{count}, not {circuit}", code="circuit")

    async def switch_relay(self, device: str, circuit: int, on: bool, origin: Origin) -> RelayOutcome:
        """Switch a relay; idempotent for repeats, serialised per relay."""
        started = time.monotonic()
        key = (device, circuit)
        try:
            rt = self._runtime(device)
            self._check_circuit(rt, circuit)
            if not rt.state.online:
                raise DeviceOffline(f"device {device} is offline; relay {circuit} was not switched")
            inflight = self._inflight.get(key)
            if inflight is not None and inflight[0] == on and not inflight[1].done():
                result = await asyncio.shield(inflight[1])  # a retrying SCADA joins the running command
            else:
                lock = self._locks.setdefault(key, asyncio.Lock())
                async with lock:
                    cs = rt.state.circuits[circuit - 1]
                    if cs.relay_on is on:
                        result = RelayOutcome(device, circuit, on, False, time.monotonic() - started)
                    else:
                        self._check_policy(rt, circuit, on, origin)
                        task = asyncio.ensure_future(self._do_switch(rt, circuit, on, started))
                        self._inflight[key] = (on, task)
                        try:
                            result = await asyncio.shield(task)
                        finally:
                            if self._inflight.get(key, (None, None))[1] is task:
                                del self._inflight[key]
        except BridgeError as exc:
            self._audit("relay", origin, f"{exc.code}: {exc}", started, device=device, circuit=circuit, on=on)
            raise
        self._audit(
            "relay",
            origin,
            "ok" if result.changed else "ok (already in state)",
            started,
            device=device,
            circuit=circuit,
            on=on,
        )
        return result

    async def _do_switch(self, rt: DeviceRuntime, circuit: int, on: bool, started: float) -> RelayOutcome:
        cfg = self.config.commands
        cid = self._next_id()
        cs = rt.state.circuits[circuit - 1]
        cs.relay_commanded = on
        try:
            answer = await rt.request(RelayCommand(command_id=cid, circuit=circuit, on=on), cid, cfg.timeout_s)
        except TimeoutError:
            raise CommandTimeout(
                f"device {rt.name} did not acknowledge switching relay {circuit} {'on' if on else 'off'} "
                f"within {cfg.timeout_s:g} s; the relay state is unknown until its next STATUS"
            ) from None
        assert isinstance(answer, CommandResult)
        if not answer.ok:
            cs.alarms["relay_mismatch"].set(True, answer.text)
            rt.model.notify(rt.state, "alarm")
            raise CommandFailed(
                f"device {rt.name} refused relay {circuit}: {answer.text} ({answer.code})", code=answer.code
            )

        def confirms(st: Status | None) -> bool:
            return st is not None and len(st.circuit_on) >= circuit and st.circuit_on[circuit - 1] is on

        try:
            # a device may send its STATUS before the COMMAND_RESULT: then it already confirms
            if not confirms(rt.state.status):
                await rt.wait_status(confirms, cfg.confirm_timeout_s)
        except TimeoutError:
            cs.alarms["relay_mismatch"].set(True, f"STATUS does not show relay {circuit} {'on' if on else 'off'}")
            rt.model.notify(rt.state, "alarm")
            raise CommandFailed(
                f"device {rt.name} acknowledged relay {circuit} but its STATUS still disagrees after "
                f"{cfg.confirm_timeout_s:g} s (feedback mismatch alarm raised)",
                code="feedback-mismatch",
            ) from None
        cs.alarms["relay_mismatch"].set(False)
        self._count_operation(rt, circuit, on)
        return RelayOutcome(rt.name, circuit, on, True, time.monotonic() - started)

    def _count_operation(self, rt: DeviceRuntime, circuit: int, on: bool) -> None:
        rec = self.store.relay(rt.name, circuit)
        today = datetime.now(UTC).date().isoformat()
        rec = replace(
            rec,
            operations=rec.operations + 1,
            last_state=on,
            switched_at=time.time(),
            day=today,
            day_count=(rec.day_count + 1) if rec.day == today else 1,
        )
        self.store.save_relay(rt.name, circuit, rec)
        cs = rt.state.circuits[circuit - 1]
        cs.relay_operations = rec.operations
        cfg = self.config.commands
        pol = rt.state.config.policy(circuit)
        threshold = pol.wear_alarm_operations or int(cfg.relay_rated_operations * cfg.wear_alarm_share)
        if cs.alarms["relay_wear"].set(
            rec.operations >= threshold, f"{rec.operations} operations of {cfg.relay_rated_operations} rated"
        ):
            rt.model.notify(rt.state, "alarm")

    def set_maintenance_lock(self, device: str, circuit: int, locked: bool, origin: Origin) -> None:
        if origin.role != "admin":
            raise CommandRejected("only an admin may set or release a maintenance lock", code="role")
        rt = self._runtime(device)
        self._check_circuit(rt, circuit)
        rec = self.store.relay(rt.name, circuit)
        self.store.save_relay(rt.name, circuit, replace(rec, maintenance_lock=locked))
        rt.state.circuits[circuit - 1].maintenance_lock = locked
        self._audit("maintenance-lock", origin, "ok", time.monotonic(), device=device, circuit=circuit, locked=locked)

    # ------------------------------------------------------------------ aux, self-test, calibration

    async def switch_aux(self, device: str, on: bool, origin: Origin) -> None:
        started = time.monotonic()
        try:
            rt = self._runtime(device)
            if not rt.state.online:
                raise DeviceOffline(f"device {device} is offline; the auxiliary output was not switched")
            cid = self._next_id()
            try:
                answer = await rt.request(AuxCommand(command_id=cid, on=on), cid, self.config.commands.timeout_s)
            except TimeoutError:
                raise CommandTimeout(f"device {device} did not acknowledge the auxiliary output") from None
            assert isinstance(answer, CommandResult)
            if not answer.ok:
                raise CommandFailed(f"device {device} refused the auxiliary output: {answer.text}", code=answer.code)
            rt.state.aux_on = on
        except BridgeError as exc:
            self._audit("aux", origin, f"{exc.code}: {exc}", started, device=device, on=on)
            raise
        self._audit("aux", origin, "ok", started, device=device, on=on)

    async def self_test(self, device: str, origin: Origin) -> list[dict[str, str]]:
        started = time.monotonic()
        try:
            rt = self._runtime(device)
            if not rt.state.online:
                raise DeviceOffline(f"device {device} is offline; self-test not started")
            cid = self._next_id()
            try:
                answer = await rt.request(SelfTestRequest(command_id=cid), cid, self.config.commands.timeout_s * 2)
            except TimeoutError:
                raise CommandTimeout(f"device {device} did not return a self-test result") from None
            assert isinstance(answer, SelfTestResult)
            faults = [{"code": f.code, "block": f.block, "text": f.text} for f in answer.faults]
            rt.state.last_self_test = faults
            rt.model.notify(rt.state, "selftest")
        except BridgeError as exc:
            self._audit("self-test", origin, f"{exc.code}: {exc}", started, device=device)
            raise
        self._audit("self-test", origin, "passed" if not faults else "faults", started, device=device, faults=faults)
        return faults

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
        started = time.monotonic()
        try:
            if origin.role != "admin":
                raise CommandRejected("calibration needs the admin role", code="role")
            rt = self._runtime(device)
            self._check_circuit(rt, circuit)
            if channel not in ("v", "i"):
                raise CommandRejected(f"channel must be 'v' or 'i', not {channel!r}", code="channel")
            if not 0.5 <= gain <= 2.0:
                raise CommandRejected(f"gain {gain} is outside 0.5..2.0; check the reference measurement", code="gain")
            before = rt.state.calibration.get((circuit, channel), (1.0, 0.0))
            if write_to_device:
                hello = rt.state.hello
                if hello is None:
                    raise DeviceOffline(f"device {device} has not identified itself yet")
                lsb = (hello.v_lsb_volts if channel == "v" else hello.i_lsb_amps)[circuit - 1] * gain
                cid = self._next_id()
                answer = await rt.request(
                    Calibrate(command_id=cid, circuit=circuit, channel=channel, lsb=lsb, offset_lsb=0.0),
                    cid,
                    self.config.commands.timeout_s,
                )
                assert isinstance(answer, CommandResult)
                if not answer.ok:
                    raise CommandFailed(f"device {device} refused the calibration: {answer.text}", code=answer.code)
            self.store.save_calibration(rt.name, circuit, channel, gain, offset, origin.user or origin.front)
            rt.set_calibration(circuit, channel, gain, offset)
        except BridgeError as exc:
            self._audit("calibrate", origin, f"{exc.code}: {exc}", started, device=device, circuit=circuit)
            raise
        self._audit(
            "calibrate",
            origin,
            "ok",
            started,
            device=device,
            circuit=circuit,
            channel=channel,
            before=list(before),
            after=[gain, offset],
        )
        return before, (gain, offset)

    async def apply_safe_state(self, device: str) -> None:
        """After a bridge restart, when a device first connects: ask each relay for its configured
        safe state (keep, on, off). Failures are audited and raise the relay's alarms."""
        rt = self._runtime(device)
        for c in range(1, 11):
            target = rt.state.config.policy(c).safe_state or self.config.commands.safe_state
            if target == "keep":
                continue
            with contextlib.suppress(BridgeError):  # audited already; the relay alarm shows it
                await self.switch_relay(rt.name, c, target == "on", Origin(front="safe-state"))
