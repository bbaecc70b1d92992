"""The local control API (POST /api/...): the CLI's way into the command path, loopback clients only.

Each endpoint takes a JSON object and answers JSON; the status code says how it went (200 done,
400 malformed, 403 not allowed, 404 no such endpoint, 409 refused by validation or policy, 503 device
offline, 504 device did not confirm).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from bridge.commands import CommandPath, Origin, Role
from bridge.errors import BridgeError, CommandRejected, DeviceOffline, DeviceUnknown

Handler = Callable[[dict[str, Any], Origin], Awaitable[dict[str, Any]]]
LOOPBACK = ("127.0.0.1", "::1")


def _json(status: int, doc: dict[str, Any]) -> web.Response:
    return web.Response(status=status, text=json.dumps(doc), content_type="application/json")


def endpoints(commands: CommandPath) -> dict[str, tuple[Role, Handler]]:
    """Path -> (the role a local caller acts with, handler)."""

    async def relay(req: dict[str, Any], origin: Origin) -> dict[str, Any]:
        out = await commands.switch_relay(str(req["device"]), int(req["circuit"]), bool(req["on"]), origin)
        return {"ok": True, "changed": out.changed, "latency_s": round(out.latency_s, 3)}

    async def maintenance_lock(req: dict[str, Any], origin: Origin) -> dict[str, Any]:
        commands.set_maintenance_lock(str(req["device"]), int(req["circuit"]), bool(req["locked"]), origin)
        return {"ok": True}

    async def select(req: dict[str, Any], origin: Origin) -> dict[str, Any]:
        commands.select(str(req["device"]), int(req["circuit"]), bool(req["on"]), origin)
        return {"ok": True}

    async def self_test(req: dict[str, Any], origin: Origin) -> dict[str, Any]:
        return {"ok": True, "faults": await commands.self_test(str(req["device"]), origin)}

    return {
        "/api/relay": (Role.OPERATOR, relay),
        # the control API answers loopback only: a local operator of the bridge host acts as admin
        "/api/maintenance-lock": (Role.ADMIN, maintenance_lock),
        "/api/select": (Role.OPERATOR, select),
        "/api/self-test": (Role.OPERATOR, self_test),
    }


def add_api(app: web.Application, commands: CommandPath) -> None:
    table = endpoints(commands)

    async def handle(request: web.Request) -> web.Response:
        client = request.remote or "?"
        if client not in LOOPBACK:
            return _json(403, {"error": "the control API answers loopback clients only"})
        entry = table.get(request.path)
        if entry is None:
            return _json(404, {"error": "no such endpoint"})
        role, handler = entry
        try:
            body = await request.read()
            req = json.loads(body or b"{}")
            if not isinstance(req, dict):
                raise ValueError("the body must be a JSON object")
            origin = Origin(front="cli", user=str(req.get("user", "cli")), client=client, role=role)
            return _json(200, await handler(req, origin))
        except (KeyError, TypeError, ValueError) as exc:
            return _json(400, {"error": f"bad request: {exc}"})
        except (DeviceUnknown, CommandRejected) as exc:
            return _json(409, {"error": str(exc), "code": exc.code})
        except DeviceOffline as exc:
            return _json(503, {"error": str(exc), "code": exc.code})
        except BridgeError as exc:
            return _json(504, {"error": str(exc), "code": exc.code})

    app.router.add_post("/api/{name}", handle)
