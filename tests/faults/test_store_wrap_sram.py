"""Storage that cannot commit, block numbers wrapping at 2**32, and a device SRAM that overflows
while the bridge is away: nothing acknowledged that was not persisted, nothing lost that was
delivered, nothing invented that was not, and the operator told each time."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from device.simulator.process import SimulatorProcess
from tests.harness import ROOT, RawModbus, bridge_config, get_health, running_bridge, wait_for

pytestmark = pytest.mark.e2e
STEADY = ROOT / "tests" / "scenarios" / "steady.yaml"
FS = 7812.5


def _sim(port: int, *extra: str) -> SimulatorProcess:
    return SimulatorProcess(["--connect", f"127.0.0.1:{port}", "--scenario", str(STEADY), *extra])


async def test_a_locked_database_acknowledges_nothing_and_says_so(tmp_path: Path) -> None:
    config, ports = bridge_config(tmp_path)
    loop = asyncio.get_running_loop()
    async with running_bridge(config, tmp_path) as app, _sim(ports["device"], "--speed", "2"):
        dev = app.model.devices["board1"]
        await wait_for(lambda: dev.link.acked_seq is not None and dev.online, 30, "acknowledged blocks")
        other = sqlite3.connect(tmp_path / "state" / "bridge.sqlite", isolation_level=None)
        other.execute("BEGIN EXCLUSIVE")  # another process holds the database (a backup, a full disk)
        try:
            await asyncio.sleep(1.0)  # a commit in flight finishes or fails
            acked = dev.link.acked_seq
            await asyncio.sleep(3.0)
            assert dev.link.acked_seq == acked, "acknowledged what was not persisted"
            status, doc = await loop.run_in_executor(None, get_health, ports["http"])
            assert status == 503 and doc["store"]["ok"] is False and "locked" in doc["store"]["error"]  # type: ignore[index]
            assert dev.link.blocks > 0 and dev.online  # measurement goes on meanwhile
        finally:
            other.execute("ROLLBACK")
            other.close()
        await wait_for(lambda: dev.link.acked_seq != acked, 10, "acknowledgements again")
        status, doc = await loop.run_in_executor(None, get_health, ports["http"])
        assert status == 200 and doc["store"]["ok"] is True  # type: ignore[index]


async def test_block_numbers_wrap_at_2_32(tmp_path: Path) -> None:
    config, ports = bridge_config(tmp_path)
    first = 2**32 - 25
    async with (
        running_bridge(config, tmp_path) as app,
        _sim(ports["device"], "--speed", "4", "--first-block", str(first)),
    ):
        dev, rt = app.model.devices["board1"], app.hub.runtimes["board1"]
        await wait_for(lambda: rt.last_seq is not None and rt.last_seq < 1000 and dev.link.blocks > 60, 30, "the wrap")
        assert (dev.link.gaps, dev.link.duplicates, dev.link.stream_restarts) == (0, 0, 0)
        assert dev.link.blocks == (rt.last_seq - first) % 2**32 + 1  # every block once across the wrap
        await wait_for(lambda: dev.link.acked_seq is not None and dev.link.acked_seq < 1000, 10, "ACK past the wrap")


async def test_sram_overflow_while_the_bridge_is_away_is_reported_never_invented(tmp_path: Path) -> None:
    config, ports = bridge_config(tmp_path)
    async with _sim(ports["device"], "--speed", "4", "--sram-blocks", "40"):
        async with running_bridge(config, tmp_path) as app:
            dev = app.model.devices["board1"]
            await wait_for(lambda: dev.link.acked_seq is not None and dev.link.blocks > 20, 30, "a first stream")
        # the first bridge's last commit holds where it stopped counting
        with sqlite3.connect(tmp_path / "state" / "bridge.sqlite") as db:
            _, offset_before = db.execute("SELECT block_seq, sample_offset FROM progress").fetchone()
        await asyncio.sleep(4.0)  # 16 s of signal = 200 blocks while the bridge is down; the SRAM holds 40
        async with running_bridge(config, tmp_path) as app:
            dev = app.model.devices["board1"]
            await wait_for(lambda: dev.link.sram_dropped_blocks > 0 and dev.link.blocks > 60, 30, "the loss reported")
            assert dev.alarms["sram_loss"].active
            # the device's account and the bridge's gap agree, but for the blocks the bridge counted and
            # committed at its shutdown without being able to acknowledge them (the device dropped those too)
            lost, dropped = dev.link.lost_blocks, dev.link.sram_dropped_blocks
            # (at most what arrives between two commits, 0.5 s x speed 4, plus one 1 s batch: 37.5 blocks)
            assert dropped > 100 and 0 <= dropped - lost <= 38
            async with RawModbus(ports["modbus"]) as mb:
                assert await mb.read(2, 1, 2, 1) == [1]
                regs = await mb.read(4, 1, 126, 2)
                assert isinstance(regs, list) and regs[0] * 65536 + regs[1] == dropped
        # no energy invented for what was lost: the committed energy is 2000 W times the committed
        # stream (from block 0 on) less the lost blocks, plus the part of the first lost block that the
        # first bridge had counted before it stopped
        with sqlite3.connect(tmp_path / "state" / "bridge.sqlite") as db:
            seq, offset = db.execute("SELECT block_seq, sample_offset FROM progress").fetchone()
            whole, residual = db.execute(
                "SELECT whole, residual FROM energy WHERE circuit = 1 AND register = 'import_wh'"
            ).fetchone()
        counted = ((seq + 1) - lost) * 625 + offset + offset_before
        assert whole + residual == pytest.approx(2000.0 * counted / FS / 3600, rel=1e-4)
