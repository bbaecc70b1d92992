"""A device that starts numbering its blocks anew (a reboot, lost SRAM, a replaced board with the same
serial): its new stream is counted at once, the restart shows on every front, no energy is invented
and no block is counted twice. Real simulator processes killed with SIGKILL; the bridge in process.

The truth for "nothing counted twice": the new stream is numbered from 0 without gaps, so after the
restart the bridge must have counted exactly (its last block number + 1) blocks; one block counted
twice breaks the equality. The truth for "no energy invented": circuit 1 of the plant scenario draws
2000 W, so its imported energy must be 2000 W times the signal time the analyzer integrated.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest

from bridge.fronts.opcua.passwords import hash_password
from device.simulator.process import SimulatorProcess
from tests.harness import PLANT, RawModbus, bridge_config, live_is_current, running_bridge, wait_for

pytestmark = pytest.mark.e2e
FS = 7812.5
BLOCK = 625


def _sim(port: int, *extra: str) -> SimulatorProcess:
    return SimulatorProcess(["--connect", f"127.0.0.1:{port}", "--scenario", str(PLANT), "--speed", "4", *extra])


async def _kill(sim: SimulatorProcess) -> None:
    assert sim.proc is not None
    sim.proc.send_signal(signal.SIGKILL)  # no goodbye: the device's SRAM is gone with it
    await sim.stop()


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (["--boot-id", "a1"], ["--boot-id", "b2"]),  # the boot id tells
        (["--boot-id", ""], ["--boot-id", ""]),  # a v1 device without one: its numbering went back
        (["--boot-id", "a1"], ["--boot-id", "b2", "--first-block", "100000"]),  # ahead, but a new boot
    ],
    ids=["boot-id", "v1-numbering", "boot-id-ahead"],
)
async def test_a_restarted_device_is_counted_at_once_and_shown(
    tmp_path: Path, first: list[str], second: list[str]
) -> None:
    config, ports = bridge_config(tmp_path, bridge__offline_after_s=1.5)
    async with running_bridge(config, tmp_path) as app:
        dev, rt = app.model.devices["board1"], app.hub.runtimes["board1"]
        sim = _sim(ports["device"], *first)
        await sim.start()
        await wait_for(lambda: dev.link.acked_seq is not None and dev.link.blocks > 40, 30, "a first stream")
        await _kill(sim)
        before = dev.link.blocks
        async with _sim(ports["device"], *second):
            # counted at once: no replays dropped, online again with fresh data
            await wait_for(lambda: dev.link.blocks > before + 20, 15, "the new stream counted")
            assert dev.online and dev.link.duplicates == 0
            base = int(second[second.index("--first-block") + 1]) if "--first-block" in second else 0
            assert rt.last_seq is not None
            assert dev.link.blocks - before == rt.last_seq - base + 1  # every new block once, none twice
            # the restart shows: alarm, persisted counter, Modbus discrete input 3 and register 124
            assert dev.alarms["stream_restart"].active and dev.link.stream_restarts == 1
            assert app.store.stream("board1").restarts == 1
            async with RawModbus(ports["modbus"]) as mb:
                assert await mb.read(2, 1, 3, 1) == [1]
                assert await mb.read(4, 1, 124, 2) == [0, 1]
            # no energy invented: 2000 W over exactly the integrated signal
            fresh = lambda: dev.snapshot is not None and dev.snapshot.number > 10 and live_is_current(rt, dev)  # noqa: E731
            await wait_for(fresh, 10, "windows")
            assert rt.measured is not None and dev.snapshot is not None
            integrated_h = rt.measured.integrated_until / FS / 3600
            assert dev.snapshot.circuits[0].import_wh == pytest.approx(2000.0 * integrated_h, rel=1e-3)
            # and the position stored belongs to the new stream: a bridge restart would count on
            await asyncio.sleep(1.0)
            stored = app.store.progress("board1")
            assert stored is not None and stored.block_seq - base <= rt.last_seq - base < 1_000


async def test_a_restart_is_an_opc_ua_condition(tmp_path: Path) -> None:
    from asyncua import Client, ua

    config, ports = bridge_config(tmp_path)
    doc = config.model_dump()
    doc["opcua"].update(
        enabled=True,
        allow_none_security=True,
        allow_anonymous=True,
        users=[{"name": "op", "password_hash": hash_password("x"), "role": "operator"}],
    )
    from bridge.config import Config

    config = Config.model_validate(doc)
    async with running_bridge(config, tmp_path) as app:
        dev = app.model.devices["board1"]
        sim = _sim(ports["device"], "--boot-id", "a1")
        await sim.start()
        await wait_for(lambda: dev.link.blocks > 20, 30, "a first stream")
        await _kill(sim)
        client = Client(config.opcua.endpoint, timeout=10)
        async with client:
            idx = await client.get_namespace_index("urn:openstrom:bridge")
            board = await client.nodes.objects.get_child([f"{idx}:OpenStrom", f"{idx}:board1"])
            restarts = await board.get_child([f"{idx}:StreamRestarts"])
            assert await restarts.read_value() == 0
            events: list[object] = []

            class Handler:
                def event_notification(self, event: object) -> None:
                    events.append(event)

            sub = await client.create_subscription(100, Handler())
            await sub.subscribe_events(board, ua.ObjectIds.AlarmConditionType)
            async with _sim(ports["device"], "--boot-id", "b2"):
                await wait_for(lambda: dev.alarms["stream_restart"].active, 15, "the restart")
                await wait_for(
                    lambda: any("stream restart active" in str(e.Message.Text) for e in events),  # type: ignore[attr-defined]
                    10,
                    "the condition event",
                )
                await wait_for(lambda: dev.link.blocks > 0, 1, "")
                async with asyncio.timeout(5):
                    while await restarts.read_value() != 1:
                        await asyncio.sleep(0.1)
