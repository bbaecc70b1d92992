"""The local control API (POST /api/...): the CLI's way into the command path, loopback clients with
the bridge's API token only (``Authorization: Bearer TOKEN``; the token's holder acts as admin, and
the authoriser checks each action's role as for every front).

Each endpoint takes a JSON object and answers JSON; the status code says how it went (200 done,
400 malformed, 401 no or a wrong token, 403 not allowed, 404 no such endpoint, 409 refused by
validation, policy or the device, 502 acknowledged but the outcome disagrees, 503 device offline, 504
device did not answer in time); an error's ``outcome`` word (refused, denied, offline, timeout, failed)
is what the CLI's exit code follows.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from bridge.commands import CommandPath, Origin, Role
from bridge.errors import (
    BridgeError,
    DeviceUnknown,
)
from bridge.logs import audit, get_logger
from bridge.model import ModelView
from bridge.telemetry import outcome_of

from .capture import stream_capture
from .status import status
from .token import token_matches

Handler = Callable[[dict[str, Any], Origin], Awaitable[dict[str, Any]]]
LOOPBACK = ("127.0.0.1", "::1")
log = get_logger("bridge.http")


_STATUS = {"denied": 403, "refused": 409, "offline": 503, "timeout": 504, "failed": 502}


def _outcome(exc: BridgeError) -> tuple[int, str]:
    """HTTP status and outcome word of a failed request; the CLI's exit code follows the word."""
    word = outcome_of(exc)
    return _STATUS[word], word


def _json(status: int, doc: dict[str, Any]) -> web.Response:
    return web.Response(status=status, text=json.dumps(doc), content_type="application/json")


def endpoints(commands: CommandPath) -> dict[str, Handler]:
    """Path -> handler."""

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

    async def calibrate(req: dict[str, Any], origin: Origin) -> dict[str, Any]:
        device, circuit = str(req["device"]), int(req["circuit"])
        if req.get("reset"):
            for ch in ("v", "i"):
                await commands.calibrate(device, circuit, ch, 1.0, 0.0, origin)
            return {"ok": True, "after": {"v": [1.0, 0.0], "i": [1.0, 0.0]}}
        out = await commands.calibrate_to_reference(
            device, circuit, float(req["volts"]), float(req["amps"]), origin, windows=int(req.get("windows", 25))
        )
        return {"ok": True, **out}

    async def limits(req: dict[str, Any], origin: Origin) -> dict[str, Any]:
        device = str(req["device"])
        pq = req.get("pq") or {}
        if not isinstance(pq, dict) or not all(v is None or isinstance(v, int | float) for v in pq.values()):
            raise ValueError("'pq' must map limit names to numbers")
        overcurrent = {int(c): float(a) for c, a in (req.get("overcurrent_a") or {}).items()}
        if not (pq or overcurrent or req.get("reset")):
            return {"ok": True, "limits": commands.limits_of(device)}  # a look changes nothing
        out = await commands.set_limits(device, origin, pq=pq, overcurrent_a=overcurrent, reset=bool(req.get("reset")))
        return {"ok": True, **out}

    return {
        "/api/limits": limits,
        "/api/relay": relay,
        "/api/maintenance-lock": maintenance_lock,
        "/api/select": select,
        "/api/self-test": self_test,
        "/api/calibrate": calibrate,
    }


def status_endpoint(model: ModelView) -> Handler:
    async def get_status(req: dict[str, Any], origin: Origin) -> dict[str, Any]:
        return status(model)

    return get_status


def records_endpoint(model: ModelView) -> Handler:
    async def records(req: dict[str, Any], origin: Origin) -> dict[str, Any]:
        wanted = req.get("device")
        if wanted is not None and wanted not in model.devices:
            raise DeviceUnknown(f"unknown device {wanted!r}")
        out = []
        for dev in model.devices.values():
            if wanted is None or dev.name == wanted:
                out += [
                    {
                        "device": dev.name,
                        "name": r.name,
                        "trigger_utc": dt.datetime.fromtimestamp(r.trigger_s, dt.UTC).isoformat(),
                        "kind": r.kind,
                        "circuit": r.circuit,
                        "cfg": f"{r.folder}/{r.name}.cfg",
                        "dat": f"{r.folder}/{r.name}.dat",
                    }
                    for r in dev.records
                ]
        return {"ok": True, "records": sorted(out, key=lambda r: r["trigger_utc"])}

    return records


def add_api(
    app: web.Application,
    commands: CommandPath,
    token: str,
    model: ModelView | None = None,
    extra: Mapping[str, Handler] | None = None,
) -> None:
    """``extra``: endpoints the composition root adds (what needs more than the command path)."""
    table = endpoints(commands)
    if model is not None:
        table["/api/records"] = records_endpoint(model)
        table["/api/status"] = status_endpoint(model)
    table.update(extra or {})
    refused: set[tuple[str, str]] = set()

    def refuse(status: int, client: str, reason: str, text: str) -> web.Response:
        # logged at warning and audited once per (client, reason): a local loop cannot flood the log
        if (client, reason) not in refused:
            refused.add((client, reason))
            log.warning("control API request refused", client=client, reason=reason)
            audit("api refused", front="cli", client=client, reason=reason)
        headers = {"WWW-Authenticate": 'Bearer realm="openstrom-bridge"'} if status == 401 else None
        return web.Response(
            status=status, text=json.dumps({"error": text}), content_type="application/json", headers=headers
        )

    async def handle(request: web.Request) -> web.StreamResponse:
        client = request.remote or "?"
        if client not in LOOPBACK:
            return refuse(403, client, "not-loopback", "the control API answers loopback clients only")
        auth = request.headers.get("Authorization", "")
        given = auth[7:].strip() if auth[:7].lower() == "bearer " else None
        if not token_matches(given, token):
            why = "no API token" if given is None else "wrong API token"
            return refuse(401, client, why, f"{why}: the CLI reads it from the bridge's state_dir/api-token")
        handler = table.get(request.path)
        if handler is None and not (request.path == "/api/capture" and model is not None):
            return _json(404, {"error": "no such endpoint"})
        try:
            body = await request.read()
            req = json.loads(body or b"{}")
            if not isinstance(req, dict):
                raise ValueError("the body must be a JSON object")
            origin = Origin(front="cli", user=str(req.get("user", "cli")), client=client, role=Role.ADMIN)
            if request.path == "/api/capture" and model is not None:
                return await stream_capture(request, model, req, client)
            assert handler is not None
            return _json(200, await handler(req, origin))
        except (KeyError, TypeError, ValueError) as exc:
            return _json(400, {"error": f"bad request: {exc}"})
        except BridgeError as exc:
            status, outcome = _outcome(exc)
            return _json(status, {"error": str(exc), "code": exc.code, "outcome": outcome})

    app.router.add_post("/api/{name}", handle)
