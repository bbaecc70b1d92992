"""Request PDUs that answer as the Modbus application protocol says where pymodbus does not, and the
connection handler: who the client is (address, certificate, role), how many may connect, and how
long one may stay silent."""

from __future__ import annotations

import struct
import time
from typing import Any

from pymodbus.constants import ExcCodes
from pymodbus.exceptions import ModbusIOException
from pymodbus.pdu import ExceptionResponse
from pymodbus.pdu.bit_message import (
    ReadCoilsRequest,
    ReadDiscreteInputsRequest,
    WriteMultipleCoilsRequest,
    WriteSingleCoilRequest,
)
from pymodbus.pdu.register_message import (
    ReadHoldingRegistersRequest,
    ReadInputRegistersRequest,
    WriteMultipleRegistersRequest,
    WriteSingleRegisterRequest,
)
from pymodbus.server import ModbusTcpServer, ModbusTlsServer
from pymodbus.server.requesthandler import ServerRequestHandler
from pymodbus.transaction import TransactionManager

from bridge.logs import get_logger

from .clients import Access, Client, Refusals, client_of, set_origin

log = get_logger("bridge.modbus")


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


class _ClientHandler(ServerRequestHandler):  # type: ignore[misc]
    """One client connection. Its identity and role are fixed when it connects."""

    access: Access
    client = Client("?", "?")
    _idle: Any = None
    _last_rx = 0.0

    def callback_connected(self) -> None:
        super().callback_connected()
        self.access = self.server.access
        self.client = client_of(self.transport)
        self.origin = self.access.origin(self.client)
        self._last_rx = time.monotonic()
        cfg = self.access.cfg
        if len(self.server.active_connections) > cfg.max_connections:
            # as the Modbus TCP implementation guide says: make room by closing the connection unused
            # the longest, so idle sockets (or a flood of them) never lock out a polling SCADA
            others = [c for c in self.server.active_connections.values() if c is not self]
            oldest = min(others, key=lambda c: getattr(c, "_last_rx", 0.0))
            self.server.refusals.refuse_once(
                getattr(oldest, "origin", self.origin),
                "too-many-connections",
                f"{cfg.max_connections} clients connected: the one unused the longest was closed",
            )
            oldest.close()
        if cfg.idle_timeout_s:
            self._idle = self.loop.call_later(cfg.idle_timeout_s, self._check_idle)

    def _check_idle(self) -> None:
        timeout = self.access.cfg.idle_timeout_s
        silent = time.monotonic() - self._last_rx
        if silent >= timeout:
            log.info("modbus client closed after idle timeout", client=self.client.address, silent_s=round(silent, 1))
            self.close()
        else:
            self._idle = self.loop.call_later(timeout - silent, self._check_idle)

    def callback_disconnected(self, exc: Exception | None) -> None:
        if self._idle is not None:
            self._idle.cancel()
        super().callback_disconnected(exc)

    def callback_data(self, data: bytes, addr: tuple[Any, ...] | None = None) -> int:
        self._last_rx = time.monotonic()
        # a lone register read (as SCADA polls: one request, then wait for the answer) that the
        # context answered before and that is still current goes straight back
        if len(data) == 12 and data[2:6] == b"\x00\x00\x00\x06" and data[7] in (3, 4):
            address, count = struct.unpack(">HH", data[8:12])
            if 1 <= count <= 125:
                ready = self.server.context.ready_answer(data[6], data[7], address, count)
                if ready is not None:
                    head = data[:4] + struct.pack(">HBB", len(ready) + 2, data[6], data[7])
                    self.transport.write(head + ready)  # type: ignore[attr-defined]
                    return 12
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
        set_origin(self.origin)
        await super().handle_request()


class _ClientServer:
    """What our TCP and TLS servers add to pymodbus's: the clients' access rules, our connection
    handler, and the refusal log."""

    def __init__(self, *args: Any, access: Access, refusals: Refusals, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.access = access
        self.refusals = refusals

    def callback_new_connection(self) -> ServerRequestHandler:
        return _ClientHandler(self, self.trace_packet, self.trace_pdu, self.trace_connect)  # type: ignore[attr-defined]


class PeerAwareServer(_ClientServer, ModbusTcpServer):  # type: ignore[misc]
    """Modbus TCP."""


class PeerAwareTlsServer(_ClientServer, ModbusTlsServer):  # type: ignore[misc]
    """Modbus/TCP Security: the same MBAP frames (the socket framer) inside mutual TLS."""
