"""Every device's counters committed in one transaction: all of them or, when the database refuses
as a whole (locked by another process, full), none and at once; when it refuses one device's rows,
the others still commit and only they are acknowledged."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from bridge.config import Config
from bridge.errors import StoreError
from bridge.model import Model
from bridge.session import DeviceHub
from bridge.store import Progress, Store
from device.simulator.device import Identity, SimulatedDevice
from device.simulator.scenario import load_scenario
from tests.harness import PLANT
from tests.test_session_durability import FakeDeviceLink

REGS = {(c, r): (7 * c, 0.25) for c in range(1, 11) for r in ("import_wh", "export_wh", "s_vah")}
REFUSE_B2 = (
    "CREATE TRIGGER refuse BEFORE INSERT ON energy WHEN NEW.device = 'b2' "
    "BEGIN SELECT RAISE(ABORT, 'refused for the test'); END"
)


def test_every_device_in_one_transaction(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite")
    statements: list[str] = []
    store.db.set_trace_callback(statements.append)
    commits = [(f"b{k}", REGS, Progress(100 + k, k)) for k in range(1, 4)]
    assert store.commit_energy_many(commits) == {}
    assert [s for s in statements if s.split()[0] in ("BEGIN", "COMMIT")] == ["BEGIN IMMEDIATE", "COMMIT"]
    for name, regs, pos in commits:
        assert store.energy(name) == regs and store.progress(name) == pos


def test_a_device_whose_rows_are_refused_does_not_hold_the_others(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite")
    store.db.execute(REFUSE_B2)
    refused = store.commit_energy_many([(f"b{k}", REGS, Progress(k, 0)) for k in range(1, 4)])
    assert list(refused) == ["b2"] and "refused for the test" in str(refused["b2"])
    assert store.energy("b1") == REGS and store.energy("b3") == REGS and store.progress("b3") == Progress(3, 0)
    assert store.energy("b2") == {} and store.progress("b2") is None


def test_a_locked_database_refuses_every_device_at_once(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite")
    other = sqlite3.connect(tmp_path / "s.sqlite", isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")  # a backup tool
    started = time.monotonic()
    try:
        with pytest.raises(StoreError, match="locked"):
            store.commit_energy_many([(f"b{k}", REGS, Progress(k, 0)) for k in range(200)])
    finally:
        other.execute("ROLLBACK")
        other.close()
    # one wait for the lock (0.2 s), not one a device (40 s): the event loop is held that long
    assert time.monotonic() - started < 5
    assert store.energy("b1") == {}


async def test_only_the_devices_whose_counters_were_written_are_acknowledged(tmp_path: Path) -> None:
    config = Config.model_validate(
        {
            "devices": [
                {"name": "b1", "serial_number": "OS-SIM-0001", "unit_id": 1},
                {"name": "b2", "serial_number": "OS-SIM-0002", "unit_id": 2},
            ]
        }
    )
    store = Store(tmp_path / "s.sqlite")
    hub = DeviceHub(config, Model(config), store)
    devs = [
        SimulatedDevice(load_scenario(PLANT), identity=Identity.for_serial(s), seed=3)
        for s in ("OS-SIM-0001", "OS-SIM-0002")
    ]
    links = [FakeDeviceLink(hub, dev) for dev in devs]

    async def stream(blocks: int) -> None:
        for link, dev in zip(links, devs, strict=True):
            for _ in range(blocks):
                await link.send(dev.generate()[0])
            await link.pump()

    for link, dev in zip(links, devs, strict=True):
        await link.send(dev.hello())
    await stream(40)
    hub.commit_all()
    b1, b2 = hub.runtimes["b1"], hub.runtimes["b2"]
    first = b2.durable
    assert first is not None and b1.durable is not None
    await stream(40)
    store.db.execute(REFUSE_B2)
    hub.commit_all()
    for link in links:
        await link.pump()
    assert b1.durable.block_seq > first.block_seq + 30 and links[0].acked == b1.durable.block_seq
    assert store.progress("b1") == b1.durable
    assert b2.durable == first and links[1].acked == first.block_seq and store.progress("b2") == first
    assert hub.model.store_error is not None and hub.model.store_error.startswith("b2:")
    store.db.execute("DROP TRIGGER refuse")
    # the position of b2's counters as they stand: the blocks the refused commit had passed are in it
    # (taken again from the last one committed, it would pair these counters with an older position,
    # and a restart would count those blocks twice)
    hub.commit_all()
    await links[1].pump()
    assert b2.durable is not None and b2.durable.block_seq > first.block_seq + 30
    assert links[1].acked == b2.durable.block_seq and store.progress("b2") == b2.durable
    assert hub.model.store_error is None
    for link in links:
        await link.close()
