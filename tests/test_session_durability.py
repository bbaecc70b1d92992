"""Host/device pairs with no socket: the bridge's session against the simulated device over an
in-memory stream. A crash between commits loses nothing and counts nothing twice."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bridge.config import Config
from bridge.core import StreamAnalyzer
from bridge.model import Model
from bridge.session import DeviceHub
from bridge.session.scales import Scales
from bridge.store import Store
from device.protocol import Ack, Connection, ConnectionClosed, ErrorMessage, Role, Samples, TimeSync
from device.simulator.device import Identity, SimulatedDevice
from device.simulator.scenario import load_scenario
from tests.harness import PLANT

CONFIG = Config.model_validate({"devices": [{"name": "board1", "serial_number": "OS-SIM-0001", "unit_id": 1}]})


def _device() -> SimulatedDevice:
    return SimulatedDevice(load_scenario(PLANT), identity=Identity.for_serial("OS-SIM-0001"), seed=11)


class FakeDeviceLink:
    """Drives a SimulatedDevice over an in-memory stream against DeviceHub.handle()."""

    def __init__(self, hub: DeviceHub, device: SimulatedDevice) -> None:
        from bridge.link.streams import memory_pair

        self.bridge_end, self.device_end = memory_pair()
        self.conn = Connection(Role.DEVICE)
        self.device = device
        self.task = asyncio.create_task(hub.handle(self.bridge_end, None))
        self.acked: int | None = None

    async def send(self, msg: object) -> None:
        await self.device_end.write(self.conn.send(msg))  # type: ignore[arg-type]

    async def pump(self) -> None:
        """Let the bridge run, then apply what it sent back (ACKs) to the device."""
        for _ in range(5):
            await asyncio.sleep(0)
        while not self.device_end._rx.empty():
            data = self.device_end._rx.get_nowait()
            for ev in self.conn.events(data):
                if isinstance(ev, ConnectionClosed | ErrorMessage):
                    return
                if isinstance(ev, Ack):
                    self.acked = ev.block_seq
                if not isinstance(ev, TimeSync):
                    self.device.handle(ev)  # type: ignore[arg-type]

    async def close(self) -> None:
        await self.device_end.close()
        async with asyncio.timeout(5):
            await self.task


def _hub(tmp: Path) -> tuple[DeviceHub, Store]:
    store = Store(tmp / "state.sqlite")
    model = Model(CONFIG)
    return DeviceHub(CONFIG, model, store), store


def _energy(hub: DeviceHub) -> dict[str, float]:
    rt = hub.runtimes["board1"]
    assert rt.analyzer is not None
    return rt.analyzer.energy[0].values()


async def test_crash_between_commits_loses_nothing_and_counts_nothing_twice(tmp_path: Path) -> None:
    blocks = 150  # 12 s of samples
    # reference: one bridge that never crashes
    ref_hub, _ = _hub(tmp_path / "ref")
    ref = FakeDeviceLink(ref_hub, _device())
    await ref.send(ref.device.hello())
    for _ in range(blocks):
        block, _ = ref.device.generate()
        await ref.send(block)
    await ref.pump()
    assert ref_hub.runtimes["board1"].analyzer is not None
    await ref_hub.runtimes["board1"].settle()  # the blocks of a batch not yet due
    ref_hub.runtimes["board1"].analyzer.flush()  # integrate the open window too: every sample counted
    reference = _energy(ref_hub)
    await ref.close()

    # the same device stream, with a bridge that commits, counts on, crashes, restarts and gets the replay
    dev = _device()
    hub, store = _hub(tmp_path / "crash")
    link = FakeDeviceLink(hub, dev)
    await link.send(dev.hello())
    for k in range(blocks):
        block, _ = dev.generate()
        await link.send(block)
        if k == 60:
            await link.pump()
            hub.runtimes["board1"].commit()  # durable up to here, ACK sent
            await link.pump()
    await link.pump()
    assert link.acked is not None and 40 < link.acked < 61
    # crash: no final commit; the device still holds everything after the ACK
    link.task.cancel()
    store.close()
    hub2, _ = _hub(tmp_path / "crash")
    link2 = FakeDeviceLink(hub2, dev)
    await link2.send(dev.hello())
    for block in dev.unsent_after(None):
        await link2.send(block)  # the device resends its SRAM, oldest first
    await link2.pump()
    rt = hub2.runtimes["board1"]
    assert rt.state.link.duplicates == 0  # blocks up to the durable position were acknowledged and freed
    # both analyzers flushed: each has integrated every sample it was fed, and the crashed one must
    # have been fed each sample exactly once (one block counted twice or lost is 1/150 of the total)
    assert rt.analyzer is not None
    await rt.settle()
    rt.analyzer.flush()
    got = _energy(hub2)
    # active energy is P x duration per window, i.e. the sum of v*i over every sample: exact whatever
    # the window edges. S and Q1 are per window, so the restarted analyzer's other window edges move
    # them a little (not by a block: 1/150 = 6.7e-3 of the total)
    assert got["import_wh"] == pytest.approx(reference["import_wh"], rel=1e-6)
    assert got["s_vah"] == pytest.approx(reference["s_vah"], rel=1e-4)
    assert got["q_ind_varh"] == pytest.approx(reference["q_ind_varh"], abs=1e-4 * reference["s_vah"])
    rt.commit()
    await link2.close()


async def test_unknown_device_is_refused_with_an_error_message(tmp_path: Path) -> None:
    hub, _ = _hub(tmp_path)
    dev = SimulatedDevice(load_scenario(PLANT), identity=Identity.for_serial("OS-STRANGER"), seed=1)
    link = FakeDeviceLink(hub, dev)
    await link.send(dev.hello())
    async with asyncio.timeout(5):
        await link.task
    data = b""
    while not link.device_end._rx.empty():
        data += link.device_end._rx.get_nowait()
    link.conn.receive_data(data)
    ev = link.conn.next_event()
    assert isinstance(ev, ErrorMessage) and ev.code == "unknown-device"


async def test_replayed_blocks_are_dropped_and_gaps_counted(tmp_path: Path) -> None:
    hub, _ = _hub(tmp_path)
    dev = _device()
    link = FakeDeviceLink(hub, dev)
    await link.send(dev.hello())
    blocks: list[Samples] = [dev.generate()[0] for _ in range(20)]
    for b in blocks[:10]:
        await link.send(b)
    for b in blocks[5:10]:
        await link.send(b)  # a resend after a reconnect
    for b in blocks[12:]:
        await link.send(b)  # 10 and 11 lost
    await link.pump()
    health = hub.model.devices["board1"].link
    assert (health.duplicates, health.gaps, health.lost_blocks, health.blocks) == (5, 1, 2, 18)
    await link.close()


async def test_blocks_wait_as_payloads_and_are_measured_at_the_block_that_completes_a_batch(tmp_path: Path) -> None:
    """Between batches the runtime holds a batch's blocks as their payloads and the analyzer only the
    open window; each block is measured as if fed on arrival: the same windows at the same block, the
    same energy to the last bit as an analyzer fed every block at once."""
    hub, _ = _hub(tmp_path)
    dev = _device()
    link = FakeDeviceLink(hub, dev)
    await link.send(dev.hello())
    await link.pump()
    rt = hub.runtimes["board1"]
    assert rt.analyzer is not None and dev.hello() is not None
    direct = StreamAnalyzer(rt.analyzer.c, rt.analyzer.cfg)
    scales = Scales(dev.hello(), {})
    batch = rt.analyzer.cfg.min_batch_s * rt.analyzer.cfg.fs
    windows = room = direct_room = 0
    for k in range(60):
        block, _ = dev.generate()
        await link.send(block)
        await link.pump()
        update = direct.feed(
            block.v, block.i, seq=block.block_seq, t0_s=block.t0_ns / 1e9, scale=scales.scale, offset=scales.offset
        )
        windows += len(update.windows)
        if update.windows:  # a batch ran: the runtime fed what it held at this very block
            assert rt.analyzer.end == direct.end
        elif k > 0:  # (the first block is fed at once: nothing came before it)
            assert rt.analyzer.end < direct.end
        room, direct_room = max(room, rt.analyzer.room), max(direct_room, direct.room)
    assert windows >= 20
    assert room < batch < direct_room  # fed block by block, it holds a batch and the open window
    await rt.settle()
    for a, b in zip(rt.analyzer.energy, direct.energy, strict=True):
        assert a.values() == b.values()
    await link.close()
