"""Modbus TCP front: one server per configured map, over the live model (pymodbus is imported in this
folder only)."""

from __future__ import annotations

import ssl
from typing import Any

from pymodbus.framer import FramerType
from pymodbus.pdu.device import ModbusDeviceIdentification

from bridge.commands import CommandPath
from bridge.config import ModbusServer as ServerConfig
from bridge.logs import get_logger
from bridge.model import ModelView

from .clients import Access, Refusals
from .context import ModelContext
from .pdus import STRICT_PDUS, PeerAwareServer, PeerAwareTlsServer
from .register_map import RegisterMap

log = get_logger("bridge.modbus")


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
    model: ModelView,
    rmap: RegisterMap,
    commands: CommandPath,
    cfg: ServerConfig,
    *,
    name: str,
    version: str,
    tls: ssl.SSLContext | None = None,
) -> Any:
    """Start one Modbus TCP (or, with ``tls``, Modbus/TCP Security) server in the background; returns
    it (``await server.shutdown()``)."""
    refusals = Refusals()
    context = ModelContext(model, rmap, commands, cfg, refusals)
    common: dict[str, Any] = {
        "address": (cfg.host, cfg.port),
        "identity": identity(name, version),
        "custom_pdu": STRICT_PDUS,
        "access": Access(cfg),
        "refusals": refusals,
    }
    if tls is not None:
        server: Any = PeerAwareTlsServer(context, framer=FramerType.SOCKET, sslctx=tls, **common)
    else:
        server = PeerAwareServer(context, **common)
    await server.serve_forever(background=True)
    log.info(
        "modbus server ready",
        map=rmap.name,
        listen=f"{cfg.host}:{cfg.port}",
        security="Modbus/TCP Security (mutual TLS)" if tls else "plain",
        writes="none (read_only)" if cfg.read_only else ", ".join(str(n) for n in cfg.writers()),
    )
    return server
