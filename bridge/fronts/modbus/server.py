"""Modbus TCP front: one server per configured map, over the live model (pymodbus is imported in this
folder only)."""

from __future__ import annotations

from typing import Any

from pymodbus.pdu.device import ModbusDeviceIdentification

from bridge.commands import CommandPath
from bridge.config import ModbusServer as ServerConfig
from bridge.logs import get_logger
from bridge.model import ModelView

from .context import ModelContext
from .pdus import STRICT_PDUS, PeerAwareServer
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
    model: ModelView, rmap: RegisterMap, commands: CommandPath, cfg: ServerConfig, *, name: str, version: str
) -> Any:
    """Start one Modbus TCP server in the background; returns it (``await server.shutdown()``)."""
    context = ModelContext(model, rmap, commands, cfg)
    server = PeerAwareServer(
        context, address=(cfg.host, cfg.port), identity=identity(name, version), custom_pdu=STRICT_PDUS
    )
    await server.serve_forever(background=True)
    log.info("modbus server ready", map=rmap.name, listen=f"{cfg.host}:{cfg.port}")
    return server
