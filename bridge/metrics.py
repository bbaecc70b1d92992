"""Health, metrics and the local control API on one small HTTP port (default 9840).

GET /health   JSON: devices, links, data age (200 when every configured device is online, else 503)
GET /metrics  Prometheus text format
POST /api/relay, /api/self-test  the CLI's way into the command path (loopback clients only)
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily

from .commands import CommandPath, Origin
from .errors import BridgeError, CommandRejected, DeviceOffline, DeviceUnknown
from .logs import get_logger
from .state import Model

log = get_logger("bridge.http")


class _ModelCollector:
    def __init__(self, model: Model) -> None:
        self.model = model

    def collect(self) -> Iterable[GaugeMetricFamily]:
        online = GaugeMetricFamily("openstrom_device_online", "1 when the device link is up", labels=["device"])
        age = GaugeMetricFamily("openstrom_data_age_seconds", "age of the newest window", labels=["device"])
        blocks = GaugeMetricFamily("openstrom_blocks_total", "sample blocks measured", labels=["device"])
        gaps = GaugeMetricFamily("openstrom_lost_blocks_total", "blocks lost", labels=["device"])
        dups = GaugeMetricFamily("openstrom_duplicate_blocks_total", "replayed blocks dropped", labels=["device"])
        errs = GaugeMetricFamily("openstrom_frame_errors_total", "frames skipped", labels=["device"])
        power = GaugeMetricFamily("openstrom_active_power_watts", "active power", labels=["device", "circuit"])
        energy = GaugeMetricFamily("openstrom_energy_import_wh", "imported energy", labels=["device", "circuit"])
        for d in self.model.devices.values():
            online.add_metric([d.name], 1.0 if d.online else 0.0)
            a = d.data_age_s()
            age.add_metric([d.name], a if math.isfinite(a) else float("nan"))
            blocks.add_metric([d.name], d.link.blocks)
            gaps.add_metric([d.name], d.link.lost_blocks)
            dups.add_metric([d.name], d.link.duplicates)
            errs.add_metric([d.name], d.link.frame_errors)
            if d.snapshot is not None:
                for c, cv in enumerate(d.snapshot.circuits, 1):
                    power.add_metric([d.name, str(c)], cv.p_w)
                    energy.add_metric([d.name, str(c)], cv.import_wh)
        yield from (online, age, blocks, gaps, dups, errs, power, energy)


def health(model: Model) -> tuple[int, dict[str, Any]]:
    devices = {}
    for d in model.devices.values():
        a = d.data_age_s()
        devices[d.name] = {
            "serial_number": d.config.serial_number,
            "online": d.online,
            "peer": d.link.peer,
            "data_age_s": round(a, 3) if math.isfinite(a) else None,
            "lost_blocks": d.link.lost_blocks,
            "frame_errors": d.link.frame_errors,
        }
    ok = all(v["online"] for v in devices.values())
    return (200 if ok else 503), {"status": "ok" if ok else "degraded", "devices": devices}


_STATUS = {
    200: "OK",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    409: "Conflict",
    503: "Service Unavailable",
    504: "Gateway Timeout",
    500: "Internal Server Error",
}


async def serve_http(
    host: str, port: int, model: Model, commands: CommandPath, started: asyncio.Event | None = None
) -> None:
    registry = CollectorRegistry()
    registry.register(_ModelCollector(model))

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername") or ("?", 0)
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            length = 0
            for line in lines[1:]:
                if line.lower().startswith("content-length:"):
                    length = min(int(line.split(":", 1)[1]), 65536)
            body = await asyncio.wait_for(reader.readexactly(length), 5) if length else b""
            status, ctype, payload = await _route(method, path, body, peer[0], model, commands, registry)
        except (ValueError, asyncio.IncompleteReadError, TimeoutError, asyncio.LimitOverrunError):
            status, ctype, payload = 400, "text/plain", b"bad request\n"
        writer.write(
            f"HTTP/1.1 {status} {_STATUS.get(status, 'OK')}\r\nContent-Type: {ctype}\r\n"
            f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode()
            + payload
        )
        try:
            await writer.drain()
        finally:
            writer.close()

    server = await asyncio.start_server(handle, host, port)
    log.info("health and metrics ready", listen=f"{host}:{port}")
    if started is not None:
        started.set()
    async with server:
        await server.serve_forever()


async def _route(
    method: str, path: str, body: bytes, client: str, model: Model, commands: CommandPath, registry: CollectorRegistry
) -> tuple[int, str, bytes]:
    if method == "GET" and path == "/health":
        status, doc = health(model)
        return status, "application/json", json.dumps(doc, indent=1).encode()
    if method == "GET" and path == "/metrics":
        return 200, "text/plain; version=0.0.4", generate_latest(registry)
    if method == "POST" and path.startswith("/api/"):
        if client not in ("127.0.0.1", "::1"):
            return 403, "application/json", b'{"error": "the control API answers loopback clients only"}'
        try:
            req = json.loads(body or b"{}")
            origin = Origin(front="cli", user=str(req.get("user", "cli")), client=client)
            if path == "/api/relay":
                out = await commands.switch_relay(str(req["device"]), int(req["circuit"]), bool(req["on"]), origin)
                return (
                    200,
                    "application/json",
                    json.dumps({"ok": True, "changed": out.changed, "latency_s": round(out.latency_s, 3)}).encode(),
                )
            if path == "/api/maintenance-lock":
                # the control API answers loopback only: a local operator of the bridge host acts as admin
                admin = Origin(front="cli", user=str(req.get("user", "cli")), client=client, role="admin")
                commands.set_maintenance_lock(str(req["device"]), int(req["circuit"]), bool(req["locked"]), admin)
                return 200, "application/json", b'{"ok": true}'
            if path == "/api/select":
                commands.select(str(req["device"]), int(req["circuit"]), bool(req["on"]), origin)
                return 200, "application/json", b'{"ok": true}'
            if path == "/api/self-test":
                faults = await commands.self_test(str(req["device"]), origin)
                return 200, "application/json", json.dumps({"ok": True, "faults": faults}).encode()
            return 404, "application/json", b'{"error": "no such endpoint"}'
        except (KeyError, TypeError, ValueError) as exc:
            return 400, "application/json", json.dumps({"error": f"bad request: {exc}"}).encode()
        except (DeviceUnknown, CommandRejected) as exc:
            return 409, "application/json", json.dumps({"error": str(exc), "code": exc.code}).encode()
        except DeviceOffline as exc:
            return 503, "application/json", json.dumps({"error": str(exc), "code": exc.code}).encode()
        except BridgeError as exc:
            return 504, "application/json", json.dumps({"error": str(exc), "code": exc.code}).encode()
    return 404, "text/plain", b"not found\n"
