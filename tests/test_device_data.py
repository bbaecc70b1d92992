"""Everything measured, on every front, against the analytic truth of the simulator's waveforms: the
harmonic spectra of a switch-mode supply (Modbus block at 5000 + 200 x (circuit - 1), OPC UA arrays)."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import pytest
from asyncua import Client, ua

from bridge.config import Config
from device.simulator.process import SimulatorProcess
from tests.harness import ROOT, RawModbus, bridge_config, f32, running_bridge, wait_for

pytestmark = pytest.mark.e2e
NS = "urn:openstrom:bridge"
U = 230.0
# the supply's current: fundamental p / (u cos 8 deg), odd orders as shares of it (waveforms._smps)
I1 = 300.0 / (U * math.cos(math.radians(8.0)))
CURRENT_SHARES = {1: 1.0, 3: 0.80, 5: 0.55, 7: 0.30, 9: 0.12, 11: 0.08, 13: 0.06}
VOLTAGE_SHARES = {1: 1.0, 5: 0.04, 7: 0.02}


def _truth(shares: dict[int, float], base: float) -> list[float]:
    return [base * shares.get(n, 0.0) for n in range(1, 41)]


def _check(measured: list[float], truth: list[float], rel: float, floor: float, what: str) -> None:
    # IEC 61000-4-7 class I asks 5 % of reading (or 0.15 % of range for small ones); a synthetic,
    # synchronous wave must do far better: `rel` of reading, `floor` absolute for absent orders
    for n, (got, want) in enumerate(zip(measured, truth, strict=True), start=1):
        assert got == pytest.approx(want, rel=rel, abs=floor), f"{what} order {n}: {got} vs {want}"


async def test_harmonic_spectra_on_modbus_and_opcua(tmp_path: Path) -> None:
    config, ports = bridge_config(tmp_path)
    doc = config.model_dump()
    doc["opcua"].update(enabled=True, allow_none_security=True, allow_anonymous=True)
    config = Config.model_validate(doc)
    scenario = ROOT / "tests/scenarios/harmonics.yaml"
    sim = SimulatorProcess(["--connect", f"127.0.0.1:{ports['device']}", "--scenario", str(scenario), "--speed", "2"])
    async with running_bridge(config, tmp_path) as app, sim:
        dev = app.model.devices["board1"]
        await wait_for(lambda: dev.snapshot is not None and dev.snapshot.number > 3, 20, "windows")
        v_truth, i_truth = _truth(VOLTAGE_SHARES, U), _truth(CURRENT_SHARES, I1)
        async with RawModbus(ports["modbus"]) as mb:
            regs = await mb.read(4, 1, 5000, 120)
            regs += await mb.read(4, 1, 5120, 40)
            assert isinstance(regs, list) and len(regs) == 160
            _check([f32(regs, 2 * k) for k in range(40)], v_truth, 2e-3, 0.02, "Modbus voltage")
            _check([f32(regs, 80 + 2 * k) for k in range(40)], i_truth, 2e-3, 2e-3, "Modbus current")
            # circuit 2 has no load: its current spectrum is zero, its voltage spectrum the mains'
            other = await mb.read(4, 1, 5200 + 80, 10)
            assert isinstance(other, list) and all(abs(f32(other, 2 * k)) < 2e-3 for k in range(5))
        await asyncio.sleep(0.3)
        async with Client(config.opcua.endpoint, timeout=10) as c:
            idx = await c.get_namespace_index(NS)
            circuit = await c.nodes.objects.get_child(
                [f"{idx}:OpenStrom", f"{idx}:board1", f"{idx}:Circuits", f"{idx}:Circuit01"]
            )
            for browse, truth, floor in (("HarmonicsVoltage", v_truth, 0.02), ("HarmonicsCurrent", i_truth, 2e-3)):
                node = await circuit.get_child([f"{idx}:{browse}"])
                dv = await node.read_data_value()
                assert dv.StatusCode.is_good() and dv.Value.VariantType == ua.VariantType.Double
                assert (await node.read_attribute(ua.AttributeIds.ValueRank)).Value.Value == 1
                assert (await node.read_array_dimensions()) == [40]
                _check(list(dv.Value.Value), truth, 2e-3, floor, f"OPC UA {browse}")
                eu = await (await node.get_child(["0:EngineeringUnits"])).read_value()
                assert eu.DisplayName.Text == ("V" if browse == "HarmonicsVoltage" else "A")
