"""GET /metrics as Prometheus reads it (its own parser): names in base units with ``_total`` on counters,
the window-to-front latency of Modbus and OPC UA, commands by outcome, Modbus requests by function and
exception, OPC UA sessions; and the Grafana dashboard asks only for metrics the bridge serves."""

from __future__ import annotations

import asyncio
import json
import re
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bridge.commands import Origin, Role
from bridge.errors import CommandRejected
from device.simulator.process import SimulatorProcess
from tests.harness import PLANT, RawModbus, running_bridge, wait_for
from tests.test_opcua_e2e import _config as opcua_config
from tests.test_opcua_e2e import _connect, trusted_client

pytestmark = pytest.mark.e2e
DASHBOARD = Path(__file__).resolve().parents[1] / "deploy" / "grafana" / "openstrom-bridge.json"
UNITS = ("seconds", "volts", "amperes", "watts", "joules", "hertz")


def _scrape(port: int) -> dict[str, list[tuple[dict[str, str], float, str]]]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out: dict[str, list[tuple[dict[str, str], float, str]]] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, []).append((s.labels, s.value, fam.type))
    return out


Scrape = dict[str, list[tuple[dict[str, str], float, str]]]


def _value(m: Scrape, name: str, **labels: str) -> float:
    return sum(v for lab, v, _ in m.get(name, []) if all(lab.get(k) == x for k, x in labels.items()))


def _delta(after: Scrape, before: Scrape, name: str, **labels: str) -> float:
    return _value(after, name, **labels) - _value(before, name, **labels)


async def test_metrics_follow_the_conventions_and_count_what_happened(tmp_path: Path) -> None:
    config, ports = opcua_config(tmp_path)
    doc = config.model_dump()
    doc["commands"]["min_interval_s"] = 30.0  # the second switching of a relay is refused
    config = type(config).model_validate(doc)
    cert, key = await trusted_client(tmp_path, "metrics")
    sim = SimulatorProcess(["--connect", f"127.0.0.1:{ports['device']}", "--scenario", str(PLANT)])
    async with running_bridge(config, tmp_path) as app, sim:
        dev = app.model.devices["board1"]
        await wait_for(lambda: dev.online and dev.snapshot is not None and dev.status is not None, 20, "values")
        # the service's metrics live in one registry per process: count what happens from here on
        before = await asyncio.to_thread(_scrape, ports["http"])
        client = await _connect(config, cert, key, "viewer", "view-secret")
        try:
            async with RawModbus(ports["modbus"]) as mb:
                assert isinstance(await mb.read(4, 1, 1000, 2), list)
                assert await mb.read(4, 1, 60000, 2) == 0x02  # no such register
            op = Origin(front="test", user="t", role=Role.OPERATOR)
            await app.commands.switch_relay("board1", 3, False, op)
            with pytest.raises(CommandRejected):
                await app.commands.switch_relay("board1", 3, True, op)
            n = dev.snapshot.number if dev.snapshot else 0
            await wait_for(lambda: dev.snapshot is not None and dev.snapshot.number > n + 5, 10, "more windows")
            await asyncio.sleep(0.5)  # the OPC UA writer follows the model
            m = await asyncio.to_thread(_scrape, ports["http"])
            assert _value(m, "openstrom_opcua_sessions") >= 1
        finally:
            await client.disconnect()
    for name, rows in m.items():
        assert name.startswith("openstrom_") or not name.startswith("open"), name
        kinds = {t for _, _, t in rows}
        if "counter" in kinds:
            assert name.endswith("_total"), f"counter {name} without _total"
        assert not re.search(r"_(wh|kwh|ms|milliseconds|kilowatts)(_|$)", name), f"{name}: not a base unit"
    assert _delta(m, before, "openstrom_window_latency_seconds_count", front="modbus") > 0
    assert _delta(m, before, "openstrom_window_latency_seconds_count", front="opcua") > 0
    # Modbus values are readable within a refresh (analysis.publish_s, 1 s) of the window's end
    within = _delta(m, before, "openstrom_window_latency_seconds_bucket", front="modbus", le="1.5")
    assert within >= 0.9 * _delta(m, before, "openstrom_window_latency_seconds_count", front="modbus")
    assert _delta(m, before, "openstrom_commands_total", action="relay", outcome="ok") == 1
    assert _delta(m, before, "openstrom_commands_total", action="relay", outcome="refused") == 1
    assert _delta(m, before, "openstrom_command_duration_seconds_count", action="relay") == 2
    assert _delta(m, before, "openstrom_modbus_requests_total", function="4", exception="0x02") == 1
    assert _delta(m, before, "openstrom_modbus_requests_total", function="4", exception="none") >= 1
    wh = dev.snapshot.circuits[0].import_wh if dev.snapshot else 0.0
    joules = _value(m, "openstrom_energy_import_joules_total", device="board1", circuit="1")
    assert joules == pytest.approx(wh * 3600, rel=0.05) and joules > 0
    assert _value(m, "openstrom_relay_on", device="board1", circuit="3") == 0.0
    # every metric the dashboard asks for is one the bridge serves
    served = {re.sub(r"_(bucket|sum|count)$", "", n) for n in m} | set(m)
    exprs = [t["expr"] for p in json.loads(DASHBOARD.read_text())["panels"] for t in p["targets"]]
    asked = {name for e in exprs for name in re.findall(r"\b(openstrom_[a-z_]+)", e)}
    assert asked and asked <= served, asked - served
    assert all(any(u in n for u in UNITS) or not n.endswith(("_wh", "_w")) for n in asked)
