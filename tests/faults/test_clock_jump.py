"""The device's clock jumps an hour forward or back mid-stream (an NTP step, a clock battery reset):
nothing is lost or counted twice, energy goes on exactly, and the measurement timeline stays monotonic
(the bridge times windows by the samples, set from the device clock only at a stream's start)."""

from __future__ import annotations

from pathlib import Path

import pytest

from device.simulator.process import SimulatorProcess
from tests.harness import ROOT, bridge_config, live_is_current, running_bridge, wait_for

pytestmark = pytest.mark.e2e
STEADY = ROOT / "tests" / "scenarios" / "steady.yaml"


@pytest.mark.parametrize("jump_s", [3600.0, -3600.0], ids=["forward", "back"])
async def test_a_device_clock_jump_changes_nothing_counted(tmp_path: Path, jump_s: float) -> None:
    config, ports = bridge_config(tmp_path)
    args = ["--connect", f"127.0.0.1:{ports['device']}", "--scenario", str(STEADY), "--speed", "4"]
    async with running_bridge(config, tmp_path) as app, SimulatorProcess([*args, "--clock-jump", f"3:{jump_s}"]):
        dev, rt = app.model.devices["board1"], app.hub.runtimes["board1"]
        times: list[float] = []

        def windows_after_jump() -> bool:
            if dev.snapshot is not None and (not times or times[-1] != dev.snapshot.time_s):
                times.append(dev.snapshot.time_s)
            # 8 s of signal: the jump at 3 s is well behind; the live energy that of the newest batch
            return dev.link.blocks > 100 and live_is_current(rt, dev)

        await wait_for(windows_after_jump, 30, "blocks past the jump")
        assert (dev.link.gaps, dev.link.duplicates, dev.link.stream_restarts) == (0, 0, 0)
        assert times == sorted(times) and times[-1] - times[0] < 60  # no hour-long leap either way
        assert rt.measured is not None and dev.snapshot is not None
        integrated_h = rt.measured.integrated_until / 7812.5 / 3600
        assert dev.snapshot.circuits[0].import_wh == pytest.approx(2000.0 * integrated_h, rel=1e-4)
