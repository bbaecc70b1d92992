"""An independent OPC UA stack against the bridge: node-opcua (tests/interop, installed with npm on
first use) browses the OPC 34100 energy model, receives the alarm events through an
OfType(AlarmConditionType) filter as other stacks send it, refreshes and acknowledges a condition
instance by its EventId."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from bridge.config import Config
from bridge.fronts.opcua.passwords import hash_password
from device.simulator.process import SimulatorProcess
from tests.harness import PLANT, ROOT, bridge_config, running_bridge, wait_for

pytestmark = pytest.mark.e2e
INTEROP = ROOT / "tests" / "interop"


def _node_client() -> Path:
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.fail("node and npm are needed for the node-opcua interop test (.ci/run installs them)")
    if not (INTEROP / "node_modules" / "node-opcua-client").is_dir():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=INTEROP, check=True, timeout=300)
    return INTEROP / "opcua_client.mjs"


async def test_node_opcua_reads_the_energy_model_and_acknowledges_a_condition(tmp_path: Path) -> None:
    script = _node_client()
    config, ports = bridge_config(tmp_path)
    doc = config.model_dump()
    doc["opcua"].update(
        enabled=True,
        trust_all_clients=True,  # node-opcua makes its own certificate on first use
        users=[{"name": "op", "password_hash": hash_password("op-secret"), "role": "operator"}],
    )
    config = Config.model_validate(doc)
    sim = SimulatorProcess(["--connect", f"127.0.0.1:{ports['device']}", "--scenario", str(PLANT), "--speed", "2"])
    async with running_bridge(config, tmp_path) as app, sim:
        dev = app.model.devices["board1"]
        await wait_for(lambda: dev.circuits[0].dips >= 1, 30, "the scenario's dip")
        await asyncio.sleep(0.5)
        proc = await asyncio.create_subprocess_exec(
            "node",
            str(script),
            config.opcua.endpoint,
            "op",
            "op-secret",
            str(tmp_path / "node-pki"),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=tmp_path,
            env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin:/usr/local/bin"},
        )
        stdout, stderr = await asyncio.wait_for(proc.communicate(), 90)
        assert stdout, stderr.decode()[-2000:]
        # node-opcua logs to stdout too: the result is the one JSON line
        lines = [ln for ln in stdout.decode().splitlines() if ln.startswith("{")]
        assert lines, stdout.decode()[-2000:] + stderr.decode()[-2000:]
        result = json.loads(lines[-1])
        assert "error" not in result, result
        assert result["energyType"] == "ecm;i=1006"  # EnergyMeasurementType
        assert result["measurementId"] == 1412 and result["power"] == pytest.approx(2000.0, rel=5e-4)
        assert result["refreshStatus"] == "Good"
        dips = [e for e in result["events"] if e["conditionName"] == "dip"]
        assert dips and dips[0]["severity"] == 600 and dips[0]["retain"] is True
        assert dips[0]["eventType"] == "ns=0;i=9341"  # ExclusiveLimitAlarmType, through OfType(AlarmConditionType)
        assert result["ackStatus"] == "Good" and result["ackedAfter"] is True
        assert dev.circuits[0].alarms["dip"].count >= 1
