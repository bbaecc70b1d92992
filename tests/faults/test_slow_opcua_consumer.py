"""A slow OPC UA consumer: a client subscribed to every value of a device stops dead (SIGSTOP: it
reads nothing more and sends no Publish requests). The bridge's values keep being updated, the
device's stream has no gap, and Modbus keeps answering; the stalled session is bounded by asyncua's
publish queues (only answered Publish requests carry data)."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from pathlib import Path

import pytest

from bridge.config import Config
from device.simulator.process import SimulatorProcess
from tests.harness import PLANT, RawModbus, bridge_config, running_bridge, wait_for

pytestmark = pytest.mark.e2e

CONSUMER = """
import asyncio, os, signal, sys
from asyncua import Client

async def main(url):
    c = Client(url, timeout=30)
    await c.connect()
    idx = await c.get_namespace_index("urn:openstrom:bridge")
    board = await c.nodes.objects.get_child([f"{idx}:OpenStrom", f"{idx}:board1", f"{idx}:Circuits"])
    nodes = []
    for circuit in await board.get_children():
        nodes += await circuit.get_children()
    class H:
        def datachange_notification(self, node, val, data):
            pass
    sub = await c.create_subscription(50, H())
    await sub.subscribe_data_change(nodes, queuesize=100)
    print(len(nodes), flush=True)
    await asyncio.sleep(1.0)
    os.kill(os.getpid(), signal.SIGSTOP)  # stops dead: reads nothing, publishes nothing

asyncio.run(main(sys.argv[1]))
"""


async def test_a_stalled_subscriber_does_not_hold_the_bridge(tmp_path: Path) -> None:
    config, ports = bridge_config(tmp_path)
    doc = config.model_dump()
    doc["opcua"].update(enabled=True, allow_none_security=True, allow_anonymous=True)
    config = Config.model_validate(doc)
    sim = SimulatorProcess(["--connect", f"127.0.0.1:{ports['device']}", "--scenario", str(PLANT)])
    async with running_bridge(config, tmp_path) as app, sim:
        dev = app.model.devices["board1"]
        await wait_for(lambda: dev.online and dev.snapshot is not None, 30, "the device streaming")
        consumer = await asyncio.create_subprocess_exec(
            sys.executable, "-c", CONSUMER, config.opcua.endpoint, stdout=asyncio.subprocess.PIPE
        )
        try:
            assert consumer.stdout is not None
            subscribed = int(await asyncio.wait_for(consumer.stdout.readline(), 60))
            assert subscribed > 100
            await asyncio.sleep(2.0)  # it has stopped by now
            gaps, updates, blocks = dev.link.gaps, app.opcua.updates, dev.link.blocks
            worst = 0.0
            async with RawModbus(ports["modbus"]) as mb:
                end = time.monotonic() + 8
                while time.monotonic() < end:
                    t = time.perf_counter()
                    assert isinstance(await mb.read(4, 1, 1000, 30), list)
                    worst = max(worst, time.perf_counter() - t)
                    await asyncio.sleep(0.05)
            assert dev.link.gaps == gaps and dev.link.blocks > blocks + 80
            assert app.opcua.updates > updates + 5  # the address space kept up with the model
            assert worst < 0.1, worst
        finally:
            consumer.send_signal(signal.SIGKILL)
            await consumer.wait()
