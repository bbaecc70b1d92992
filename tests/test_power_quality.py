"""Programmable power-quality limits, with a real simulator: the dip threshold decides whether the
scenario's 70 % sag is a dip, a frequency step out of the band raises the frequency alarm (Modbus
discrete input 4), and an overcurrent limit set for one circuit applies to that circuit only."""

from __future__ import annotations

from pathlib import Path

import pytest

from device.simulator.process import SimulatorProcess
from tests.harness import PLANT, ROOT, RawModbus, bridge_config, running_bridge, wait_for

pytestmark = pytest.mark.e2e


def _sim(port: int, scenario: Path) -> SimulatorProcess:
    return SimulatorProcess(["--connect", f"127.0.0.1:{port}", "--scenario", str(scenario), "--speed", "4"])


@pytest.mark.parametrize(("dip", "counted"), [(0.9, 1), (0.6, 0)], ids=["default-limit", "lower-limit"])
async def test_the_dip_limit_decides_what_a_sag_is(tmp_path: Path, dip: float, counted: int) -> None:
    config, ports = bridge_config(tmp_path, pq={"dip": dip, "interruption": 0.05})
    async with running_bridge(config, tmp_path) as app, _sim(ports["device"], PLANT):
        dev = app.model.devices["board1"]
        await wait_for(
            lambda: dev.snapshot is not None and dev.snapshot.time_s > 0 and dev.link.blocks > 120, 30, "9 s"
        )
        assert dev.circuits[0].dips == counted  # the sag to 70 % at 6 s
        assert (
            len(app.store.db.execute("SELECT * FROM events WHERE kind = 'dip' AND circuit = 1").fetchall()) == counted
        )


async def test_a_frequency_step_out_of_the_band_raises_the_alarm(tmp_path: Path) -> None:
    config, ports = bridge_config(tmp_path)  # default band: 50 Hz +/- 1 %
    async with running_bridge(config, tmp_path) as app, _sim(ports["device"], ROOT / "tests/scenarios/freqstep.yaml"):
        dev = app.model.devices["board1"]
        await wait_for(lambda: dev.snapshot is not None and dev.link.blocks > 20, 30, "windows before the step")
        assert not dev.alarms["frequency"].active
        async with RawModbus(ports["modbus"]) as mb:
            assert await mb.read(2, 1, 4, 1) == [0]
            await wait_for(lambda: dev.alarms["frequency"].active, 20, "the frequency alarm")
            assert "49.0" in dev.alarms["frequency"].message and "49.5..50.5 Hz" in dev.alarms["frequency"].message
            assert await mb.read(2, 1, 4, 1) == [1]


async def test_an_overcurrent_limit_for_one_circuit(tmp_path: Path) -> None:
    config, ports = bridge_config(
        tmp_path,
        devices=[{"name": "board1", "serial_number": "OS-SIM-0001", "unit_id": 1, "circuit_overcurrent_a": {1: 5.0}}],
    )
    async with running_bridge(config, tmp_path) as app, _sim(ports["device"], PLANT):
        dev = app.model.devices["board1"]
        await wait_for(lambda: dev.snapshot is not None and dev.link.blocks > 20, 30, "windows")
        await wait_for(lambda: dev.circuits[0].alarms["overcurrent"].active, 10, "circuit 1 over 5 A")
        assert "> 5 A" in dev.circuits[0].alarms["overcurrent"].message
        assert not dev.circuits[1].alarms["overcurrent"].active  # 1100 W at 230 V: under the 40 A default
