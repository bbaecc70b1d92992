"""A real Mosquitto broker process and a Sparkplug host application for the MQTT tests."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from bridge.fronts.mqtt.sparkplug_b_pb2 import Payload
from tests.harness import free_port


@contextlib.asynccontextmanager
async def mosquitto(tmp: Path, port: int | None = None) -> AsyncIterator[int]:
    exe = shutil.which("mosquitto", path=os.environ.get("PATH", "") + ":/usr/sbin")
    if exe is None:
        pytest.fail("the Sparkplug tests need a Mosquitto broker (.ci/run installs the mosquitto package)")
    port = port or free_port()
    conf = tmp / f"mosquitto-{port}.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    proc = await asyncio.create_subprocess_exec(exe, "-c", str(conf), stderr=asyncio.subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                _, w = await asyncio.open_connection("127.0.0.1", port)
                w.close()
                break
            except OSError:
                assert time.monotonic() < deadline, "mosquitto did not start"
                await asyncio.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 5)


class Host:
    """A Sparkplug host application: every message on spBv1.0/#, decoded."""

    def __init__(self) -> None:
        self.got: list[tuple[str, Any]] = []

    def of(self, kind: str, device: str | None = None) -> list[Any]:
        return [p for t, p in self.got if t.split("/")[2] == kind and (device is None or t.endswith("/" + device))]

    async def listen(self, client: aiomqtt.Client) -> None:
        async for m in client.messages:
            p = Payload()
            p.ParseFromString(bytes(m.payload))  # type: ignore[arg-type]
            self.got.append((str(m.topic), p))


def metric(p: Any, name: str) -> Any:
    return next(m for m in p.metrics if m.name == name)


@contextlib.asynccontextmanager
async def listening(host: Any, port: int, name: str = "host-app") -> AsyncIterator[aiomqtt.Client]:
    """A host application (``host.listen(client)``) subscribed to every Sparkplug topic while inside."""
    async with aiomqtt.Client("127.0.0.1", port, identifier=name) as client:
        await client.subscribe("spBv1.0/#", qos=1)
        task = asyncio.ensure_future(host.listen(client))
        try:
            yield client
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
