"""Modbus RTU on a serial line (RS-485): the bridge as a slave answering one unit ID per device, over
the same register maps and command path as Modbus TCP (pymodbus's serial server).

The serial line rules of the Modbus over Serial Line specification (V1.02), where pymodbus leaves
them out:

- framing by silence: a frame ends after 3.5 character times of silence (1.75 ms fixed above
  19 200 baud); bytes still buffered when a silence that long has passed are an incomplete frame and
  are dropped, so the next frame starts clean. With ``strict_timing`` a gap of more than 1.5 character
  times inside a frame (0.75 ms above 19 200 baud) marks the frame broken: it is dropped.
- a frame with a CRC error is ignored (pymodbus drops it); one addressed to a unit that is not ours
  is another slave's: ignored, never answered; a reply waits until the line has been quiet for 3.5
  characters since the request.
- broadcast (unit 0): executed without a reply, and only where that is safe: starting a self-test.
  Relays, select, the aux output are never switched by a broadcast; such a broadcast is refused once
  in the log and the audit.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from pymodbus.framer import FramerType
from pymodbus.server import ModbusSerialServer
from pymodbus.server.requesthandler import ServerRequestHandler

from bridge.commands import CommandPath, Origin, Role
from bridge.config import ModbusRtuServer
from bridge.logs import get_logger
from bridge.model import ModelView

from .clients import Refusals, set_origin
from .context import ModelContext
from .pdus import STRICT_PDUS
from .register_map import RegisterMap
from .server import identity

log = get_logger("bridge.modbus")
BROADCAST = 0
SELF_TEST_REGISTER = 0  # holding register: write 1 to start a self-test (the one safe broadcast)


@dataclass(frozen=True, slots=True)
class RtuTiming:
    """Character times of a serial line: 11 bits a character (start, 8 data, parity or a second stop,
    stop) as the specification counts them."""

    t15: float
    t35: float

    @classmethod
    def of(cls, baudrate: int, floor_s: float = 0.0) -> RtuTiming:
        if baudrate > 19200:  # fixed values, so fast lines do not load the receiver with timers
            return cls(0.000750, max(0.001750, floor_s))
        char = 11.0 / baudrate
        return cls(1.5 * char, max(3.5 * char, floor_s))


class _RtuHandler(ServerRequestHandler):  # type: ignore[misc]
    """The one "connection" of a serial server: the line."""

    _last_rx = 0.0
    dropped = 0  # incomplete or broken frames dropped by the timing rules

    def callback_connected(self) -> None:
        super().callback_connected()
        self.origin = self.server.origin
        self._last_rx = time.monotonic()

    def datagram_received(self, data: bytes, addr: tuple[Any, ...] | None) -> None:
        now = time.monotonic()
        gap = now - self._last_rx
        self._last_rx = now
        timing: RtuTiming = self.server.timing
        if self.recv_buffer and (gap >= timing.t35 or (self.server.strict and gap > timing.t15)):
            # a frame left incomplete by silence, or broken by an inter-character gap: drop it
            self.dropped += 1
            log.debug("rtu frame dropped", bytes=len(self.recv_buffer), gap_ms=round(gap * 1000, 3))
            self.recv_buffer = b""
        super().datagram_received(data, addr)

    async def handle_request(self) -> None:
        pdu = self.last_pdu
        if pdu is None:
            return
        unit = pdu.dev_id
        if unit == BROADCAST:
            await self._broadcast(pdu)
            return
        if unit not in self.server.context.device_ids():
            return  # another slave's frame on the shared line: never answered
        set_origin(self.origin)
        quiet = self.server.timing.t35 - (time.monotonic() - self._last_rx)
        if quiet > 0:  # the line must have been silent 3.5 characters before a reply
            await asyncio.sleep(quiet)
        await super().handle_request()

    async def _broadcast(self, pdu: Any) -> None:
        safe = pdu.function_code == 6 and getattr(pdu, "address", None) == SELF_TEST_REGISTER
        if not safe or self.origin.role < Role.OPERATOR:
            self.server.refusals.refuse_once(
                self.origin,
                "broadcast-not-safe",
                "a broadcast may only start a self-test (by an operator line); relays never answer one",
                function=pdu.function_code,
            )
            return
        set_origin(self.origin)
        for unit in self.server.context.device_ids():
            await pdu.datastore_update(self.server.context, unit)  # no reply to a broadcast


class RtuServer(ModbusSerialServer):  # type: ignore[misc]
    def __init__(
        self, context: ModelContext, cfg: ModbusRtuServer, refusals: Refusals, origin: Origin, **kwargs: Any
    ) -> None:
        super().__init__(
            context,
            framer=FramerType.RTU,
            port=cfg.port,
            baudrate=cfg.baudrate,
            parity=cfg.parity,
            stopbits=cfg.stopbits,
            bytesize=8,
            broadcast_enable=False,  # broadcasts are ours to judge (see _RtuHandler)
            ignore_missing_devices=True,
            **kwargs,
        )
        self.timing = RtuTiming.of(cfg.baudrate, cfg.silence_floor_s)
        self.strict = cfg.strict_timing
        self.refusals = refusals
        self.origin = origin

    def callback_new_connection(self) -> ServerRequestHandler:
        return _RtuHandler(self, self.trace_packet, self.trace_pdu, self.trace_connect)


def rtu_units(cfg: ModbusRtuServer, model: ModelView) -> dict[int, str]:
    """Unit ID -> device on this line: the configured ones, else each device's TCP unit ID."""
    return dict(cfg.units) or {d.config.unit_id: d.name for d in model.devices.values()}


async def start_rtu(
    model: ModelView, rmap: RegisterMap, commands: CommandPath, cfg: ModbusRtuServer, *, name: str, version: str
) -> Any:
    """Start one Modbus RTU slave in the background; returns it (``await server.shutdown()``)."""
    refusals = Refusals()
    units = rtu_units(cfg, model)
    context = ModelContext(model, rmap, commands, cfg, refusals, units=units)
    role = Role.OPERATOR if cfg.role == "operator" else Role.VIEWER
    origin = Origin(front="modbus-rtu", client=cfg.port, role=role)
    server = RtuServer(context, cfg, refusals, origin, identity=identity(name, version), custom_pdu=STRICT_PDUS)
    await server.serve_forever(background=True)
    log.info(
        "modbus rtu server ready",
        port=cfg.port,
        map=rmap.name,
        line=f"{cfg.baudrate} {8}{cfg.parity}{cfg.stopbits}",
        units=", ".join(f"{u}={d}" for u, d in sorted(units.items())),
        writes="relays (operator)" if role >= Role.OPERATOR else "none (viewer)",
    )
    return server
