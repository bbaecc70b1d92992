"""The SunSpec map read by the SunSpec Alliance's own client (pySunSpec2): a second Modbus TCP stack
that discovers the models from 'SunS' on, the way SunSpec tools and inverters' EMS do."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import sunspec2.modbus.client as sunspec_client

from device.simulator.process import SimulatorProcess
from tests.harness import PLANT, bridge_config, running_bridge, wait_for

pytestmark = pytest.mark.e2e


def _scan(port: int) -> dict[str, Any]:
    """What a SunSpec tool sees: discover, then read every circuit's meter model (blocking client)."""
    dev = sunspec_client.SunSpecModbusClientDeviceTCP(slave_id=1, ipaddr="127.0.0.1", ipport=port, timeout=5)
    try:
        dev.scan()
        common = dev.models["common"][0]
        meters = dev.models[201]
        for m in meters:
            m.read()
        return {
            "ids": [m.model_id for m in dev.model_list],
            "vendor": 64420 in dev.models,  # discovered; the client has no definition of a vendor model
            "common": {p: common.points[p].value for p in ("Mn", "Md", "SN", "Vr", "DA")},
            "meters": [{p: pt.cvalue for p, pt in m.points.items()} for m in meters],
        }
    finally:
        dev.close()


async def test_sunspec_tools_discover_the_meters_and_read_the_scenario_truth(tmp_path: Path) -> None:
    config, ports = bridge_config(tmp_path)
    sim = SimulatorProcess(["--connect", f"127.0.0.1:{ports['device']}", "--scenario", str(PLANT), "--speed", "2"])
    async with running_bridge(config, tmp_path) as app, sim:
        dev = app.model.devices["board1"]
        await wait_for(lambda: dev.snapshot is not None and dev.snapshot.number > 5, 20, "windows")
        seen = await asyncio.to_thread(_scan, ports["sunspec"])

    # common model 1, then one single-phase meter model 201 per circuit, then the vendor model (found by
    # walking the chain to the end marker)
    assert seen["ids"] == [1, *([201] * 10)] and seen["vendor"]
    common = {"Mn": "OpenStrom", "Md": "OS-10C-40A-DIN", "SN": "OS-SIM-0001", "Vr": "0.8.3-sim", "DA": 1}
    assert seen["common"] == common
    # plant.yaml: circuit 1 a 2 kW heater at 230 V, circuit 2 a 1.1 kW pump at PF 0.8 lagging; scale
    # factors applied by the client (cvalue), so these are engineering units at the map's resolution
    c1, c2 = seen["meters"][0], seen["meters"][1]
    assert c1["PhV"] == pytest.approx(230.0, abs=0.11) and c1["PhVphA"] == c1["PhV"]
    assert c1["A"] == pytest.approx(2000 / 230, abs=0.011)
    assert c1["W"] == pytest.approx(2000, abs=1.5) and c1["VA"] == pytest.approx(2000, abs=1.5)
    assert c1["Hz"] == pytest.approx(50.0, abs=0.015)
    assert c2["W"] == pytest.approx(1100, abs=1.5)
    assert abs(c2["VAR"]) == pytest.approx(825, abs=1.5)
    assert abs(c2["PF"]) == pytest.approx(80.0, abs=0.15)  # percent
    # points a single-phase circuit does not have read as SunSpec's "not implemented" (None)
    assert c1["AphB"] is None and c1["PhVphC"] is None
