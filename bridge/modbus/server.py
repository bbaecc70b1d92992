"""Modbus TCP front: a register map over the live model, served by pymodbus.

pymodbus is imported in this module only. Reads are computed from the device's current snapshot in
one synchronous pass (no await), so a request never mixes two windows and a float is never torn.
Writes to relays go through the command path and answer only after the device confirmed.
"""

from __future__ import annotations

import contextvars
import math
from collections.abc import Sequence
from typing import Any

from pymodbus.constants import ExcCodes
from pymodbus.datastore import ModbusServerContext
from pymodbus.exceptions import ModbusIOException
from pymodbus.pdu import ExceptionResponse
from pymodbus.pdu.bit_message import (
    ReadCoilsRequest,
    ReadDiscreteInputsRequest,
    WriteMultipleCoilsRequest,
    WriteSingleCoilRequest,
)
from pymodbus.pdu.device import ModbusDeviceIdentification
from pymodbus.pdu.register_message import (
    ReadHoldingRegistersRequest,
    ReadInputRegistersRequest,
    WriteMultipleRegistersRequest,
    WriteSingleRegisterRequest,
)
from pymodbus.server import ModbusTcpServer
from pymodbus.server.requesthandler import ServerRequestHandler
from pymodbus.transaction import TransactionManager

from ..commands import CommandPath, Origin
from ..config import ModbusServer as ServerConfig
from ..errors import BridgeError, CommandRejected, CommandTimeout, DeviceOffline, DeviceUnknown
from ..logs import get_logger
from ..register_map import BIT_TABLES, Point, RegisterMap, decode, encode
from ..state import Model

log = get_logger("bridge.modbus")
_peer: contextvars.ContextVar[str] = contextvars.ContextVar("modbus_peer", default="?")

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


def _strict(base: type[Any], limit: int, *, bits: bool = False) -> type[Any]:
    """pymodbus answers an over-long count with ILLEGAL FUNCTION; the standard says ILLEGAL DATA VALUE."""

    class Strict(base):  # type: ignore[misc, valid-type]
        _bad = False

        def decode(self, data: bytes) -> None:
            try:
                super().decode(data)
            except ValueError:
                self._bad = True

        async def datastore_update(self, context: Any, device_id: int) -> Any:
            if self._bad or not 1 <= self.count <= limit:
                return ExceptionResponse(self.function_code, ExcCodes.ILLEGAL_VALUE)
            return await super().datastore_update(context, device_id)

    Strict.__name__ = f"Strict{base.__name__}"
    return Strict


class StrictWriteCoil(WriteSingleCoilRequest):  # type: ignore[misc]
    """A single-coil write must carry 0xFF00 or 0x0000; anything else is ILLEGAL DATA VALUE."""

    _raw = 0

    def decode(self, data: bytes) -> None:
        super().decode(data)
        self._raw = int.from_bytes(data[2:4], "big")

    async def datastore_update(self, context: Any, device_id: int) -> Any:
        if self._raw not in (0xFF00, 0x0000):
            return ExceptionResponse(self.function_code, ExcCodes.ILLEGAL_VALUE)
        return await super().datastore_update(context, device_id)


STRICT_PDUS = [
    _strict(ReadCoilsRequest, 2000),
    _strict(ReadDiscreteInputsRequest, 2000),
    _strict(ReadHoldingRegistersRequest, 125),
    _strict(ReadInputRegistersRequest, 125),
    _strict(WriteMultipleCoilsRequest, 1968),
    _strict(WriteMultipleRegistersRequest, 123),
    StrictWriteCoil,
    WriteSingleRegisterRequest,
]


class ModelContext(ModbusServerContext):  # type: ignore[misc]
    """The pymodbus datastore interface answered from the live model through a register map."""

    def __init__(self, model: Model, rmap: RegisterMap, commands: CommandPath, cfg: ServerConfig) -> None:
        # deliberately not calling super().__init__: it builds simulator devices we do not use
        self.old_simulator = True
        self.simdevices = []
        self.model = model
        self.map = rmap
        self.commands = commands
        self.word_order = cfg.word_order or rmap.word_order
        self.offline_mode = cfg.offline

    def device_ids(self) -> list[int]:
        return [d.config.unit_id for d in self.model.devices.values()]

    def _device(self, unit: int) -> Any:
        dev = self.model.by_unit(unit)
        if dev is None:
            return ExcCodes.GATEWAY_PATH_UNAVIABLE  # pymodbus spells it so: 0x0A
        return dev

    async def async_getValues(  # noqa: N802 - the name pymodbus calls
        self, device_id: int, func_code: int, address: int, count: int = 1
    ) -> Any:
        dev = self._device(device_id)
        if isinstance(dev, ExcCodes):
            return dev
        table = FC_TABLE.get(func_code)
        if table is None:
            return ExcCodes.ILLEGAL_FUNCTION
        if not self.map.covered(table, address, count):
            return ExcCodes.ILLEGAL_ADDRESS
        offline = not dev.online
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
        origin = Origin(front="modbus", client=_peer.get(), user=f"unit {device_id}")
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


class _PeerHandler(ServerRequestHandler):  # type: ignore[misc]
    def callback_data(self, data: bytes, addr: tuple[Any, ...] | None = None) -> int:
        # pymodbus answers an unknown function code with function 0x80; the standard wants the
        # request's own code with the high bit set (0x41 -> 0xC1), which clients match on
        try:
            used = TransactionManager.callback_data(self, data, addr)
        except ModbusIOException as exc:
            fc = data[7] if len(data) > 7 else 0
            self.server_send(
                ExceptionResponse(
                    fc & 0x7F,
                    exception_code=ExcCodes.ILLEGAL_FUNCTION,
                    device_id=exc.dev_id,
                    transaction=exc.transaction_id,
                ),
                addr,
            )
            return len(data)
        if self.last_pdu:
            self.loop.call_soon(self.handle_later)
        return int(used)

    async def handle_request(self) -> None:
        peer = self.transport.get_extra_info("peername") if self.transport else None
        _peer.set(f"{peer[0]}:{peer[1]}" if peer else "?")
        await super().handle_request()


class _Server(ModbusTcpServer):  # type: ignore[misc]
    def callback_new_connection(self) -> ServerRequestHandler:
        return _PeerHandler(self, self.trace_packet, self.trace_pdu, self.trace_connect)


def identity(bridge_name: str, version: str) -> ModbusDeviceIdentification:
    return ModbusDeviceIdentification(
        info_name={
            "VendorName": "OpenStrom",
            "ProductCode": "OSB",
            "MajorMinorRevision": version,
            "VendorUrl": "https://github.com/mzeitler/openstrom",
            "ProductName": "OpenStrom Bridge",
            "ModelName": bridge_name,
        }
    )


async def start_modbus(
    model: Model, rmap: RegisterMap, commands: CommandPath, cfg: ServerConfig, *, name: str, version: str
) -> Any:
    """Start one Modbus TCP server in the background; returns it (``await server.shutdown()``)."""
    context = ModelContext(model, rmap, commands, cfg)
    server = _Server(context, address=(cfg.host, cfg.port), identity=identity(name, version), custom_pdu=STRICT_PDUS)
    await server.serve_forever(background=True)
    log.info("modbus server ready", map=rmap.name, listen=f"{cfg.host}:{cfg.port}")
    return server
