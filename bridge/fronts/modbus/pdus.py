"""Request PDUs that answer as the Modbus application protocol says where pymodbus does not, and the
connection handler that remembers the client's address for the audit."""

from __future__ import annotations

import contextvars
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
from pymodbus.server import ModbusTcpServer
from pymodbus.server.requesthandler import ServerRequestHandler
from pymodbus.transaction import TransactionManager

peer: contextvars.ContextVar[str] = contextvars.ContextVar("modbus_peer", default="?")


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
        addr = self.transport.get_extra_info("peername") if self.transport else None
        peer.set(f"{addr[0]}:{addr[1]}" if addr else "?")
        await super().handle_request()


class PeerAwareServer(ModbusTcpServer):  # type: ignore[misc]
    def callback_new_connection(self) -> ServerRequestHandler:
        return _PeerHandler(self, self.trace_packet, self.trace_pdu, self.trace_connect)
