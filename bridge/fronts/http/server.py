"""The HTTP port (default 9840): health, metrics and the local control API, served by aiohttp."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping

from aiohttp import web
from prometheus_client import generate_latest

from bridge import telemetry
from bridge.commands import CommandPath
from bridge.logs import get_logger
from bridge.model import ModelView

from .api import Handler, add_api
from .health import health
from .metrics import registry_for

log = get_logger("bridge.http")
MAX_BODY = 65536


def build_app(
    model: ModelView,
    commands: CommandPath,
    token: str,
    ready: asyncio.Event | None = None,
    extra: Mapping[str, Handler] | None = None,
) -> web.Application:
    registry = registry_for(model)
    app = web.Application(client_max_size=MAX_BODY)

    # Probes for an orchestrator, apart from /health (which is 503 while any board is offline: a
    # liveness probe on it would restart a healthy bridge because a board lost power).
    async def get_live(request: web.Request) -> web.Response:
        return web.json_response({"live": True})  # answered at all: the event loop runs

    async def get_ready(request: web.Request) -> web.Response:
        up = ready is None or ready.is_set()
        return web.json_response({"ready": up}, status=200 if up else 503)

    async def get_health(request: web.Request) -> web.Response:
        status, doc = health(model)
        return web.Response(status=status, text=json.dumps(doc, indent=1), content_type="application/json")

    async def get_metrics(request: web.Request) -> web.Response:
        body = generate_latest(registry) + generate_latest(telemetry.REGISTRY)
        return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4"})

    app.router.add_get("/health", get_health)
    app.router.add_get("/health/live", get_live)
    app.router.add_get("/health/ready", get_ready)
    app.router.add_get("/metrics", get_metrics)
    add_api(app, commands, token, model, extra)
    return app


async def serve_http(
    host: str,
    port: int,
    model: ModelView,
    commands: CommandPath,
    token: str,
    started: asyncio.Event | None = None,
    ready: asyncio.Event | None = None,
    extra: Mapping[str, Handler] | None = None,
) -> None:
    """``ready`` (every front serving) answers /health/ready; ``extra`` adds control API endpoints."""
    runner = web.AppRunner(build_app(model, commands, token, ready, extra), access_log=None, handle_signals=False)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        log.info("health and metrics ready", listen=f"{host}:{port}")
        if started is not None:
            started.set()
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
