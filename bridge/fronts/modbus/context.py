"""The pymodbus datastore interface answered from the live model through a register map.

Reads are computed from the device's current snapshot in one synchronous pass (no await), so a
request never mixes two windows and a float is never torn. Writes go through the command path and
answer only after the device confirmed.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping, Sequence
from typing import Any

from pymodbus.constants import ExcCodes
from pymodbus.datastore import ModbusServerContext

from bridge import telemetry
from bridge.commands import MINIMUM_ROLE, Action, CommandPath, Origin
from bridge.config import ModbusRtuServer
from bridge.config import ModbusServer as ServerConfig
from bridge.errors import BridgeError, CommandRejected, CommandTimeout, DeviceOffline, DeviceUnknown, NotAuthorised
from bridge.logs import get_logger
from bridge.model import ModelView, device_quality

from .clients import Refusals, current_origin
from .register_map import BIT_TABLES, Point, RegisterMap, decode, encode

log = get_logger("bridge.modbus")
# what a Modbus write can ask for; a client below the least of their roles is refused at once
WRITE_ACTIONS = (Action.SWITCH_RELAY, Action.SELECT, Action.SWITCH_AUX, Action.SELF_TEST)
LEAST_WRITE_ROLE = min(MINIMUM_ROLE[a] for a in WRITE_ACTIONS)

FC_TABLE = {
    1: "coil",
    2: "discrete",
    3: "holding",
    4: "input",
    5: "coil",
    6: "holding",
    15: "coil",
    16: "holding",
}


ANSWER_CACHE = 4096  # encoded answers kept per server (a few per device and polled block)
LIVE_QUANTITIES = {"device.data_age_s"}  # change with the clock, not with a model change: never cached


def _live_addresses(rmap: RegisterMap) -> dict[str, set[int]]:
    out: dict[str, set[int]] = {}
    for p in rmap.points:
        if p.quantity is not None and p.quantity.name in LIVE_QUANTITIES:
            out.setdefault(p.table, set()).update(range(p.address, p.end))
    return out


_COUNTERS: dict[tuple[int, int], Any] = {}  # (function, exception or 0) -> its counter: labels() costs ~2 us


def _count(func_code: int, answer: object) -> None:
    code = int(answer) if isinstance(answer, ExcCodes) else 0
    counter = _COUNTERS.get((func_code, code))
    if counter is None:
        exception = f"0x{code:02X}" if code else "none"
        counter = _COUNTERS[(func_code, code)] = telemetry.MODBUS_REQUESTS.labels(str(func_code), exception)
    counter.inc()


class ModelContext(ModbusServerContext):  # type: ignore[misc]
    """The pymodbus datastore interface answered from the live model through a register map."""

    def __init__(
        self,
        model: ModelView,
        rmap: RegisterMap,
        commands: CommandPath,
        cfg: ServerConfig | ModbusRtuServer,
        refusals: Refusals,
        units: Mapping[int, str] | None = None,
    ) -> None:
        # deliberately not calling super().__init__: it builds simulator devices we do not use
        self.old_simulator = True
        self.simdevices = []
        self.model = model
        self.map = rmap
        self.commands = commands
        self.word_order = cfg.word_order or rmap.word_order
        self.offline_mode = cfg.offline
        self.read_only = cfg.read_only
        self.refusals = refusals
        self.units = dict(units) if units else None  # an RTU line's own unit IDs
        # Encoded answers by request, valid until the device's next model change: SCADA polls the same
        # blocks again and again, and a poll between two windows then costs a dictionary look-up
        # instead of reading and encoding every point (~30 us for 30 registers). Bounded: a client
        # scanning addresses only makes the cache start over.
        self._versions: dict[str, int] = {}
        self._answers: dict[tuple[int, int, int, int], tuple[str, int, list[Any], bytes]] = {}
        self._live = _live_addresses(rmap)
        model.subscribe(self._changed)

    def _changed(self, dev: Any, what: Any) -> None:
        self._versions[dev.name] = self._versions.get(dev.name, 0) + 1

    def use_map(self, rmap: RegisterMap, cfg: ServerConfig | ModbusRtuServer, units: Mapping[int, str] | None) -> None:
        """A reload's map (read from its file again) and, on a serial line, its unit table."""
        self._answers.clear()
        self._live = _live_addresses(rmap)
        self.map = rmap
        self.word_order = cfg.word_order or rmap.word_order
        if self.units is not None and units is not None:
            self.units = dict(units)

    def device_ids(self) -> list[int]:
        if self.units is not None:
            return sorted(self.units)
        return [d.config.unit_id for d in self.model.devices.values()]

    def _device(self, unit: int) -> Any:
        dev = self.model.by_unit(unit) if self.units is None else self.model.devices.get(self.units.get(unit, ""))
        if dev is None:
            return ExcCodes.GATEWAY_PATH_UNAVIABLE  # pymodbus spells it so: 0x0A
        return dev

    async def async_getValues(  # noqa: N802 - the name pymodbus calls
        self, device_id: int, func_code: int, address: int, count: int = 1
    ) -> Any:
        out = self._get(device_id, func_code, address, count)
        _count(func_code, out)
        return out

    def _get(self, device_id: int, func_code: int, address: int, count: int) -> Any:
        dev = self._device(device_id)
        if isinstance(dev, ExcCodes):
            return dev
        key = (device_id, func_code, address, count)
        version = self._versions.get(dev.name, 0)
        hit = self._answers.get(key)
        if hit is not None and hit[0] == dev.name and hit[1] == version:
            return list(hit[2])
        out = self._read(dev, func_code, address, count)
        if isinstance(out, list) and not self._live.get(FC_TABLE.get(func_code, ""), set()) & set(
            range(address, address + count)
        ):
            if len(self._answers) >= ANSWER_CACHE:
                self._answers.clear()
            packed = bytes([2 * count]) + struct.pack(f">{count}H", *out) if func_code in (3, 4) else b""
            self._answers[key] = (dev.name, version, out, packed)
            return list(out)
        return out

    def ready_answer(self, device_id: int, func_code: int, address: int, count: int) -> bytes | None:
        """The PDU data (byte count, registers) of a register read answered before and still current,
        or None: the server then takes the request the long way. Lets the connection answer a repeated
        poll without pymodbus decoding, dispatching and encoding it (about half the CPU of a read)."""
        hit = self._answers.get((device_id, func_code, address, count))
        if hit is None or not hit[3]:
            return None
        dev = (
            self.model.by_unit(device_id)
            if self.units is None
            else self.model.devices.get(self.units.get(device_id, ""))
        )
        if dev is None or hit[0] != dev.name or hit[1] != self._versions.get(dev.name, 0):
            return None
        _count(func_code, None)
        return hit[3]

    def _read(self, dev: Any, func_code: int, address: int, count: int) -> Any:
        table = FC_TABLE.get(func_code)
        if table is None:
            return ExcCodes.ILLEGAL_FUNCTION
        if not self.map.covered(table, address, count):
            return ExcCodes.ILLEGAL_ADDRESS
        offline = device_quality(dev).offline
        if offline and self.offline_mode == "exception" and func_code in (1, 2, 3, 4):
            constant_only = all(
                p.quantity is None or p.quantity.scope == "device" for p in self.map.points_in(table, address, count)
            )
            if not constant_only:
                return ExcCodes.GATEWAY_NO_RESPONSE  # 0x0B: the device behind the gateway is silent
        # one synchronous pass: every value comes from the same snapshot
        words: dict[int, int] = {}
        for p in self.map.points_in(table, address, count):
            value = self._value(p, dev, offline)
            for k, w in enumerate(encode(p, value, self.word_order)):
                words[p.address + k] = w
        out = [words[a] for a in range(address, address + count)]
        if table in BIT_TABLES:
            return [bool(x) for x in out]
        return out

    def _value(self, p: Point, dev: Any, offline: bool) -> Any:
        if p.quantity is None:
            return p.value
        value = p.quantity.read(dev, p.circuit)
        if offline and self.offline_mode == "nan" and p.quantity.scope == "circuit" and p.quantity.kind == "float":
            return math.nan
        return value

    async def async_setValues(  # noqa: N802 - the name pymodbus calls
        self, device_id: int, func_code: int, address: int, values: Sequence[int] | Sequence[bool]
    ) -> ExcCodes | None:
        out = await self._set(device_id, func_code, address, values)
        _count(func_code, out)
        return out

    async def _set(
        self, device_id: int, func_code: int, address: int, values: Sequence[int] | Sequence[bool]
    ) -> ExcCodes | None:
        origin = current_origin()
        if origin.role < LEAST_WRITE_ROLE:
            # refused before anything is looked at: a client without authority learns nothing of the map
            why = "read-only server" if self.read_only else "this client may not write (write_allow, certificate role)"
            self.refusals.refuse_once(origin, "write-not-allowed", why, unit=device_id, function=func_code)
            return ExcCodes.ILLEGAL_FUNCTION
        dev = self._device(device_id)
        if isinstance(dev, ExcCodes):
            return dev
        table = FC_TABLE.get(func_code)
        if table not in ("coil", "holding"):
            return ExcCodes.ILLEGAL_FUNCTION
        count = len(values)
        if not self.map.covered(table, address, count):
            return ExcCodes.ILLEGAL_ADDRESS
        points = self.map.points_in(table, address, count)
        if any(not p.writable for p in points):
            return ExcCodes.ILLEGAL_ADDRESS  # read-only points are not writable addresses
        for p in points:
            if p.address < address or p.end > address + count:
                return ExcCodes.ILLEGAL_ADDRESS  # a multi-register point must be written whole
            raw = [int(v) for v in values[p.address - address : p.end - address]]
            value = decode(p, raw, self.word_order)
            allowed = (1, 2) if p.quantity is not None and p.quantity.name == "circuit.relay_select" else (0, 1)
            if value not in allowed:
                return ExcCodes.ILLEGAL_VALUE
            try:
                await self._write(p, dev.name, int(value), origin)
            except (DeviceOffline, CommandTimeout) as exc:
                log.warning("modbus write failed", point=p.name, error=str(exc), client=origin.client)
                return ExcCodes.GATEWAY_NO_RESPONSE
            except DeviceUnknown:
                return ExcCodes.GATEWAY_PATH_UNAVIABLE
            except NotAuthorised as exc:
                log.warning("modbus write refused", point=p.name, error=str(exc), client=origin.client)
                return ExcCodes.ILLEGAL_FUNCTION
            except CommandRejected as exc:
                log.warning("modbus write refused", point=p.name, error=str(exc), client=origin.client)
                return ExcCodes.DEVICE_BUSY if exc.code == "min-interval" else ExcCodes.DEVICE_FAILURE
            except BridgeError as exc:
                log.warning("modbus write failed", point=p.name, error=str(exc), client=origin.client)
                return ExcCodes.DEVICE_FAILURE
        return None

    async def _write(self, p: Point, device: str, value: int, origin: Origin) -> None:
        assert p.quantity is not None
        name = p.quantity.name
        if name == "circuit.relay":
            await self.commands.switch_relay(device, p.circuit, bool(value), origin)
        elif name == "circuit.relay_select":
            self.commands.select(device, p.circuit, value == 1, origin)
        elif name == "device.aux":
            await self.commands.switch_aux(device, bool(value), origin)
        elif name == "device.self_test":
            if value:
                await self.commands.self_test(device, origin)
        else:  # pragma: no cover - the map loader only marks these as writable
            raise CommandRejected(f"{name} is not writable")
