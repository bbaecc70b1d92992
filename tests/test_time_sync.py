"""Device clocks drift: the bridge sets each device's clock at connect and every
links.time_sync_interval_s, and shows the offset it measures (Modbus register 128, OPC UA ClockOffset,
/health). A simulated clock that jumps 5 s is seen and set right at the next sync."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from device.simulator.process import SimulatorProcess
from tests.harness import ROOT, RawModbus, bridge_config, running_bridge, wait_for

pytestmark = pytest.mark.e2e


async def test_a_drifted_device_clock_is_measured_and_set_again(tmp_path: Path) -> None:
    config, ports = bridge_config(tmp_path, links__time_sync_interval_s=3.0)
    sim = SimulatorProcess(  # real time: the offset compares the device's clock with the bridge's
        ["--connect", f"127.0.0.1:{ports['device']}", "--scenario", str(ROOT / "tests/scenarios/steady.yaml"),
         "--clock-jump", "1.5:5"]
    )  # fmt: skip
    async with running_bridge(config, tmp_path) as app, sim:
        link = app.model.devices["board1"].link
        await wait_for(lambda: link.clock_offset_s is not None and link.blocks > 5, 20, "a first offset")
        assert link.clock_offset_s is not None and abs(link.clock_offset_s) < 0.5  # set at connect
        await wait_for(lambda: (link.clock_offset_s or 0) > 4.0, 10, "the jump seen")
        async with RawModbus(ports["modbus"]) as mb:
            regs = await mb.read(4, 1, 128, 2)
            assert isinstance(regs, list)
            assert struct.unpack(">f", struct.pack(">2H", *regs))[0] > 4.0
        await wait_for(lambda: abs(link.clock_offset_s or 99) < 0.5, 10, "the clock set right again")
