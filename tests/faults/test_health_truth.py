"""Health tells the truth: a device whose link is up but whose blocks are all dropped (replays of
what was counted already) is not healthy on /health, Modbus (exception 0x0B) or the model's quality
within offline_after_s, with the reason; a real stream makes it healthy again."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest

from device.protocol import Connection, Role
from device.simulator.device import Identity, SimulatedDevice
from device.simulator.process import SimulatorProcess
from device.simulator.scenario import load_scenario
from tests.harness import PLANT, RawModbus, bridge_config, get_health, running_bridge, wait_for

pytestmark = pytest.mark.e2e


async def test_a_link_whose_blocks_are_all_replays_is_not_healthy(tmp_path: Path) -> None:
    config, ports = bridge_config(tmp_path, bridge__offline_after_s=1.5)
    loop = asyncio.get_running_loop()
    async with running_bridge(config, tmp_path) as app:
        dev, rt = app.model.devices["board1"], app.hub.runtimes["board1"]
        async with SimulatorProcess(
            ["--connect", f"127.0.0.1:{ports['device']}", "--scenario", str(PLANT), "--boot-id", "b1", "--speed", "4"]
        ):
            await wait_for(lambda: dev.link.blocks > 30 and dev.online, 30, "a counted stream")
            assert (await loop.run_in_executor(None, get_health, ports["http"]))[0] == 200
        await wait_for(lambda: not dev.link.connected, 10, "the simulator gone")
        last = rt.last_seq
        assert last is not None
        # the same device (same boot id, numbering going on) that only resends what was counted
        device = SimulatedDevice(load_scenario(PLANT), identity=Identity.for_serial("OS-SIM-0001"), boot_id="b1")
        hello = dataclasses.replace(device.hello(), next_block_seq=last + 1)
        blocks = [device.generate()[0] for _ in range(20)]
        conn = Connection(Role.DEVICE)
        reader, writer = await asyncio.open_connection("127.0.0.1", ports["device"])
        writer.write(conn.send(hello))
        try:
            for k in range(40):  # 4 s of replays, one every 0.1 s
                writer.write(conn.send(blocks[k % 20]))
                await writer.drain()
                await asyncio.sleep(0.1)
            assert dev.link.connected and not dev.online
            assert "replays" in dev.alarms["offline"].message
            status, doc = await loop.run_in_executor(None, get_health, ports["http"])
            board = doc["devices"]["board1"]  # type: ignore[index]
            assert (status == 503 and board["quality"] == "bad") or board["quality"] == "uncertain"
            assert "replays" in board["quality_reason"]
            async with RawModbus(ports["modbus"]) as mb:
                assert await mb.read(4, 1, 1000, 2) == 0x0B  # the device behind the gateway gives nothing usable
                assert await mb.read(2, 1, 1, 1) == [1]  # offline alarm
        finally:
            writer.close()
            del reader
