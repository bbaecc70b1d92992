"""Client writes to Relay nodes and method calls, answered through the command path (which
authorises them) and translated to OPC UA status codes once, here."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from asyncua import ua
from asyncua.server.internal_session import InternalSession

from bridge.commands import CommandPath, Origin
from bridge.errors import BridgeError, CommandRejected, CommandTimeout, DeviceOffline, DeviceUnknown, NotAuthorised
from bridge.logs import get_logger
from bridge.model import ModelView

from .address_space import MethodHandler, Nodes
from .catalogue import CIRCUIT_METHODS, DEVICE_METHODS, MAX_RECORD_BYTES, Method
from .security import ConfigUsers

log = get_logger("bridge.opcua")
GOOD = ua.StatusCode(ua.StatusCodes.Good)
Call = Callable[[CommandPath, str, int, Origin, list[Any]], Awaitable[list[ua.Variant]]]


# the command path's refusal codes that mean "an argument's value is wrong"
_ARGUMENT_CODES = frozenset({"circuit", "channel", "gain"})
SPECS: dict[str, Method] = {m.name: m for m in (*CIRCUIT_METHODS, *DEVICE_METHODS)}


def check_arguments(spec: Method, args: tuple[Any, ...]) -> ua.StatusCode | None:
    """Count and built-in type of each input argument against the method's declaration; None when
    they fit. A bad call is answered with its status code and does nothing."""
    if len(args) < len(spec.inputs):
        return ua.StatusCode(ua.StatusCodes.BadArgumentsMissing)
    if len(args) > len(spec.inputs):
        return ua.StatusCode(ua.StatusCodes.BadTooManyArguments)
    for arg, expected in zip(args, spec.inputs, strict=True):
        got = arg.VariantType if isinstance(arg, ua.Variant) else None
        if got != getattr(ua.VariantType, expected):
            return ua.StatusCode(ua.StatusCodes.BadTypeMismatch)
    return None


def status_for(exc: BridgeError) -> ua.StatusCode:
    if isinstance(exc, CommandRejected) and exc.code == "bad-limits":
        return ua.StatusCode(ua.StatusCodes.BadOutOfRange)
    if isinstance(exc, CommandRejected) and exc.code in _ARGUMENT_CODES:
        return ua.StatusCode(ua.StatusCodes.BadInvalidArgument)
    if isinstance(exc, NotAuthorised):
        return ua.StatusCode(ua.StatusCodes.BadUserAccessDenied)
    if isinstance(exc, DeviceOffline):
        return ua.StatusCode(ua.StatusCodes.BadNoCommunication)
    if isinstance(exc, CommandTimeout):
        return ua.StatusCode(ua.StatusCodes.BadTimeout)
    if isinstance(exc, DeviceUnknown):
        return ua.StatusCode(ua.StatusCodes.BadNodeIdUnknown)
    if isinstance(exc, CommandRejected):
        return ua.StatusCode(ua.StatusCodes.BadRequestNotAllowed)
    return ua.StatusCode(ua.StatusCodes.BadDeviceFailure)


async def _switch_on(cp: CommandPath, device: str, circuit: int, origin: Origin, args: list[Any]) -> list[ua.Variant]:
    await cp.switch_relay(device, circuit, True, origin)
    return []


async def _switch_off(cp: CommandPath, device: str, circuit: int, origin: Origin, args: list[Any]) -> list[ua.Variant]:
    await cp.switch_relay(device, circuit, False, origin)
    return []


async def _select(cp: CommandPath, device: str, circuit: int, origin: Origin, args: list[Any]) -> list[ua.Variant]:
    cp.select(device, circuit, bool(args[0]), origin)
    return []


async def _self_test(cp: CommandPath, device: str, circuit: int, origin: Origin, args: list[Any]) -> list[ua.Variant]:
    faults = await cp.self_test(device, origin)
    text = "; ".join(f"{f['code']} [{f['block']}] {f['text']}" for f in faults) or "passed"
    return [ua.Variant(text, ua.VariantType.String)]


async def _calibrate(cp: CommandPath, device: str, circuit: int, origin: Origin, args: list[Any]) -> list[ua.Variant]:
    c, ch, gain, offset = args
    before, after = await cp.calibrate(device, int(c), str(ch), float(gain), float(offset), origin)
    return [ua.Variant(f"circuit {c} {ch}: gain/offset {before} -> {after}", ua.VariantType.String)]


async def _calibrate_to_reference(
    cp: CommandPath, device: str, circuit: int, origin: Origin, args: list[Any]
) -> list[ua.Variant]:
    c, volts, amps = args
    out = await cp.calibrate_to_reference(device, int(c), float(volts), float(amps), origin)
    return [ua.Variant(f"circuit {c}: {out}", ua.VariantType.String)]


async def _aux_on(cp: CommandPath, device: str, circuit: int, origin: Origin, args: list[Any]) -> list[ua.Variant]:
    await cp.switch_aux(device, True, origin)
    return []


async def _aux_off(cp: CommandPath, device: str, circuit: int, origin: Origin, args: list[Any]) -> list[ua.Variant]:
    await cp.switch_aux(device, False, origin)
    return []


async def _maintenance(cp: CommandPath, device: str, circuit: int, origin: Origin, args: list[Any]) -> list[ua.Variant]:
    cp.set_maintenance_lock(device, int(args[0]), bool(args[1]), origin)
    return []


# method browse name (catalogue.CIRCUIT_METHODS, DEVICE_METHODS) -> what it does
CALLS: dict[str, Call] = {
    "SwitchOn": _switch_on,
    "SwitchOff": _switch_off,
    "Select": _select,
    "RunSelfTest": _self_test,
    "Calibrate": _calibrate,
    "CalibrateToReference": _calibrate_to_reference,
    "SwitchAuxOn": _aux_on,
    "SwitchAuxOff": _aux_off,
    "SetMaintenanceLock": _maintenance,
}


def read_record(model: ModelView, device: str, name: str) -> list[ua.Variant] | ua.StatusCode:
    """A record's .cfg text and .dat bytes, by its name in the device's list (no path from a client
    ever reaches the file system)."""
    dev = model.devices.get(device)
    rec = next((r for r in dev.records if r.name == name), None) if dev is not None else None
    if rec is None:
        return ua.StatusCode(ua.StatusCodes.BadNotFound)
    folder = Path(rec.folder)
    try:
        if (folder / f"{rec.name}.dat").stat().st_size > MAX_RECORD_BYTES:
            return ua.StatusCode(ua.StatusCodes.BadResourceUnavailable)
        cfg = (folder / f"{rec.name}.cfg").read_text()
        dat = (folder / f"{rec.name}.dat").read_bytes()
    except OSError:
        return ua.StatusCode(ua.StatusCodes.BadNotFound)  # removed by the retention policy meanwhile
    return [ua.Variant(cfg, ua.VariantType.String), ua.Variant(dat, ua.VariantType.ByteString)]


class CommandHandlers:
    def __init__(
        self,
        commands: CommandPath | None,
        users: ConfigUsers,
        nodes: Nodes,
        on_done: Callable[[str], None],
        model: ModelView | None = None,
    ) -> None:
        self.model = model
        self.commands = commands
        self.users = users
        self.nodes = nodes
        self.on_done = on_done  # the front refreshes the device's values after a command

    def method(self, device: str, circuit: int, name: str) -> MethodHandler:
        spec = SPECS[name]
        if name == "ReadRecord":  # a read of what the model lists: any logged-in role, no command path

            async def read(parent: ua.NodeId, *args: ua.Variant) -> Any:
                bad = check_arguments(spec, args)
                if bad is not None or self.model is None:
                    return bad or ua.StatusCode(ua.StatusCodes.BadNotImplemented)
                value = args[0].Value if isinstance(args[0], ua.Variant) else args[0]
                return read_record(self.model, device, str(value))

            return read
        run = CALLS[name]

        async def call(parent: ua.NodeId, *args: ua.Variant) -> Any:
            if self.commands is None:
                return ua.StatusCode(ua.StatusCodes.BadNotImplemented)
            bad = check_arguments(spec, args)
            if bad is not None:
                origin = self.users.origin()
                log.warning("OPC UA method call refused", method=name, device=device, user=origin.user, status=bad.name)
                return bad
            values = [a.Value if isinstance(a, ua.Variant) else a for a in args]
            try:
                out = await run(self.commands, device, circuit, self.users.origin(), values)
            except BridgeError as exc:
                return status_for(exc)
            except (TypeError, ValueError, IndexError):
                return ua.StatusCode(ua.StatusCodes.BadInvalidArgument)
            self.on_done(device)
            return out

        return call

    async def handle_write(
        self,
        session: InternalSession,
        params: ua.WriteParameters,
        orig: Callable[[InternalSession, ua.WriteParameters], Awaitable[list[ua.StatusCode]]],
    ) -> list[ua.StatusCode]:
        relays, limits = self.nodes.relays, self.nodes.limits
        ours = [
            (k, wv)
            for k, wv in enumerate(params.NodesToWrite)
            if (wv.NodeId in relays or wv.NodeId in limits) and wv.AttributeId == ua.AttributeIds.Value
        ]
        if not ours:
            return await orig(session, params)
        results: list[ua.StatusCode | None] = [None] * len(params.NodesToWrite)
        rest = [wv for k, wv in enumerate(params.NodesToWrite) if all(k != j for j, _ in ours)]
        for k, wv in ours:
            value = wv.Value.Value.Value if wv.Value is not None and wv.Value.Value is not None else None
            if wv.NodeId in limits:
                if isinstance(value, bool) or not isinstance(value, int | float):
                    results[k] = ua.StatusCode(ua.StatusCodes.BadTypeMismatch)
                    continue
                results[k] = await self._limit(*limits[wv.NodeId], float(value))
                continue
            device, circuit = relays[wv.NodeId]
            if not isinstance(value, bool):
                results[k] = ua.StatusCode(ua.StatusCodes.BadTypeMismatch)
                continue
            results[k] = await self._relay(device, circuit, value)
        if rest:
            sub = await orig(session, ua.WriteParameters(NodesToWrite=rest))
            it = iter(sub)
            results = [r if r is not None else next(it) for r in results]
        return [r if r is not None else GOOD for r in results]

    async def _limit(self, device: str, circuit: int, key: str, value: float) -> ua.StatusCode:
        if self.commands is None:
            return ua.StatusCode(ua.StatusCodes.BadNotWritable)
        origin = self.users.origin()
        if circuit:
            run = self.commands.set_limits(device, origin, overcurrent_a={circuit: value})
        else:
            run = self.commands.set_limits(device, origin, pq={key: value})
        return await self._written(device, origin, run, "OPC UA limit change denied", limit=key)

    async def _relay(self, device: str, circuit: int, on: bool) -> ua.StatusCode:
        if self.commands is None:
            return ua.StatusCode(ua.StatusCodes.BadNotWritable)
        origin = self.users.origin()
        run = self.commands.switch_relay(device, circuit, on, origin)
        return await self._written(device, origin, run, "OPC UA relay command denied", circuit=circuit)

    async def _written(
        self, device: str, origin: Origin, run: Awaitable[object], denied: str, **fields: object
    ) -> ua.StatusCode:
        """A client's write carried out through the command path, answered as a status code; a refusal
        for the role is logged with who asked."""
        try:
            await run
        except NotAuthorised as exc:
            log.warning(denied, user=origin.user, device=device, error=str(exc), **fields)
            return status_for(exc)
        except BridgeError as exc:
            return status_for(exc)
        self.on_done(device)
        return GOOD
