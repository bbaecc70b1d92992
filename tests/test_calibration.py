"""Calibration against a reference: a circuit whose voltage channel reads 2 % high and current channel
2 % low is brought within 0.05 % of a known reference by `openstrom-bridge calibrate`, persisted, and
reversible with --reset. Real simulator, the CLI through the control API."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from device.simulator.process import SimulatorProcess
from tests.harness import ROOT, bridge_config, fresh_windows, running_bridge, wait_for
from tests.test_commands_e2e import cli

pytestmark = pytest.mark.e2e
V_REF, I_REF = 230.0, 2000.0 / 230.0


async def test_calibration_to_a_reference_and_back(tmp_path: Path) -> None:
    config, ports = bridge_config(tmp_path)
    api = f"127.0.0.1:{ports['http']}"
    sim = SimulatorProcess(
        ["--connect", f"127.0.0.1:{ports['device']}", "--scenario", str(ROOT / "tests/scenarios/offcal.yaml"),
         "--speed", "4"]
    )  # fmt: skip
    async with running_bridge(config, tmp_path) as app, sim:
        dev = app.model.devices["board1"]
        await wait_for(lambda: dev.online and dev.snapshot is not None, 30, "windows")
        assert dev.snapshot is not None
        assert dev.snapshot.circuits[0].v_rms == pytest.approx(V_REF * 1.02, rel=5e-4)  # 2 % off, as built
        code, out, err = await cli(
            "calibrate", "board1", "1", "--reference-volts", str(V_REF), "--reference-amps", str(I_REF), "--api", api
        )
        assert code == 0, err
        doc = json.loads(out)
        assert doc["after"]["v"][0] == pytest.approx(1 / 1.02, rel=5e-4)
        assert doc["after"]["i"][0] == pytest.approx(1 / 0.98, rel=5e-4)
        await fresh_windows(dev)
        c1 = dev.snapshot.circuits[0]
        assert c1.v_rms == pytest.approx(V_REF, rel=5e-4) and c1.i_rms == pytest.approx(I_REF, rel=5e-4)
        assert c1.p_w == pytest.approx(2000.0, rel=1e-3)
        assert app.store.calibration("board1")[(1, "v")][0] == pytest.approx(1 / 1.02, rel=5e-4)
        # reversible: back to the device's own scales
        code, _, err = await cli("calibrate", "board1", "1", "--reset", "--api", api)
        assert code == 0, err
        await fresh_windows(dev)
        assert dev.snapshot.circuits[0].v_rms == pytest.approx(V_REF * 1.02, rel=5e-4)
        assert app.store.calibration("board1")[(1, "v")] == (1.0, 0.0)


async def test_a_calibration_written_to_the_device_counts_once(tmp_path: Path) -> None:
    """The device takes the gain into the LSB it announces; the bridge then applies none of its own,
    so after the device's next HELLO (here: the bridge restarted, the device reconnected) the circuit
    still reads the reference, not the gain twice (that would read 2 % low)."""
    from bridge.commands import Origin, Role

    config, ports = bridge_config(tmp_path)
    args = ["--connect", f"127.0.0.1:{ports['device']}", "--scenario", str(ROOT / "tests/scenarios/offcal.yaml")]
    admin = Origin(front="test", user="tester", role=Role.ADMIN)
    async with SimulatorProcess([*args, "--speed", "4"]):
        async with running_bridge(config, tmp_path) as app:
            dev = app.model.devices["board1"]
            await wait_for(lambda: dev.online and dev.snapshot is not None, 30, "windows")
            await app.commands.calibrate("board1", 1, "v", 1 / 1.02, 0.0, admin, write_to_device=True)
            assert app.store.calibration("board1")[(1, "v")] == (1.0, 0.0)  # the device applies the gain now
            await fresh_windows(dev)
            assert dev.snapshot is not None and dev.snapshot.circuits[0].v_rms == pytest.approx(V_REF, rel=5e-4)
        async with running_bridge(config, tmp_path) as app:
            dev = app.model.devices["board1"]
            await wait_for(lambda: dev.online and dev.snapshot is not None, 30, "the device back, its new HELLO")
            await fresh_windows(dev)
            assert dev.hello is not None and dev.hello.v_lsb_volts[0] != dev.hello.v_lsb_volts[1]
            assert dev.snapshot is not None and dev.snapshot.circuits[0].v_rms == pytest.approx(V_REF, rel=5e-4)
