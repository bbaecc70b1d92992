"""Soak (make soak): the link cut for minutes while the device keeps sampling into its SRAM, then
restored: every block is delivered and counted once, nothing lost (the SRAM holds 327 s at full rate)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from device.simulator.process import SimulatorProcess
from tests.harness import ROOT, bridge_config, running_bridge, wait_for

pytestmark = pytest.mark.soak
STEADY = ROOT / "tests" / "scenarios" / "steady.yaml"
CUT_S = 180.0


async def test_a_three_minute_link_cut_loses_nothing(tmp_path: Path) -> None:
    config, ports = bridge_config(tmp_path)
    sim = SimulatorProcess(["--connect", f"127.0.0.1:{ports['device']}", "--scenario", str(STEADY), "--boot-id", "s1"])
    async with sim:
        async with running_bridge(config, tmp_path) as app:
            dev = app.model.devices["board1"]
            await wait_for(lambda: dev.link.acked_seq is not None and dev.link.blocks > 30, 30, "a first stream")
        await asyncio.sleep(CUT_S)  # the bridge is gone: the device buffers
        async with running_bridge(config, tmp_path) as app:
            dev, rt = app.model.devices["board1"], app.hub.runtimes["board1"]
            backlog = CUT_S / 0.08
            await wait_for(lambda: dev.link.blocks > backlog, 120, "the backlog delivered")
            assert (dev.link.gaps, dev.link.lost_blocks, dev.link.sram_dropped_blocks) == (0, 0, 0)
            assert rt.last_seq is not None
            stored = app.store.progress("board1")
            assert stored is not None
            # everything the device produced since block 0 is counted: the stream from 0 with no gap
            assert dev.link.duplicates <= 15  # at most the first bridge's unacknowledged batch, resent once
