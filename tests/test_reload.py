"""Live reload: devices, users, policies and maps changed in the file and applied to the running bridge
(`openstrom-bridge reload`, and SIGHUP) without dropping the other device's link, the Modbus client's
connection or the OPC UA session, without re-applying a safe state; a file that fails validation, or
that changes what needs a restart, changes nothing and says why."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from asyncua import ua

from bridge.commands import Origin, Role
from bridge.config import Config
from bridge.errors import CommandRejected
from device.simulator.process import SimulatorProcess
from tests.harness import PLANT, RawModbus, f32, running_bridge, wait_for, wait_for_value
from tests.test_commands_e2e import cli
from tests.test_opcua_e2e import _config as opcua_config
from tests.test_opcua_e2e import _connect, trusted_client

pytestmark = pytest.mark.e2e
OP = Origin(front="test", user="tester", role=Role.OPERATOR)


def _sim(port: int, serial: str) -> SimulatorProcess:
    return SimulatorProcess(["--connect", f"127.0.0.1:{port}", "--serial-number", serial, "--scenario", str(PLANT)])


def _write(path: Path, doc: dict[str, Any]) -> None:
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


async def test_reload_adds_removes_and_changes_devices_and_users_without_dropping_anything(tmp_path: Path) -> None:
    config, ports = opcua_config(tmp_path)
    doc = config.model_dump(mode="json")
    doc["commands"]["safe_state"] = "off"  # applied once, at the first connect after the start
    doc["devices"] = [
        {"name": "board1", "serial_number": "OS-SIM-0001", "unit_id": 1},
        {"name": "board2", "serial_number": "OS-SIM-0002", "unit_id": 2},
    ]
    cfg = tmp_path / "bridge.yaml"
    _write(cfg, doc)
    config = Config.model_validate(doc)
    cert, key = await trusted_client(tmp_path, "reload")
    api = ["--api", f"127.0.0.1:{ports['http']}"]
    async with (
        running_bridge(config, tmp_path, config_path=cfg) as app,
        _sim(ports["device"], "OS-SIM-0001"),
        _sim(ports["device"], "OS-SIM-0002") as sim2,
        RawModbus(ports["modbus"]) as mb,
    ):
        b1 = app.model.devices["board1"]
        await wait_for(lambda: b1.online and app.model.devices["board2"].online, 20, "both online")
        await wait_for(lambda: b1.circuits[0].relay_on is False, 10, "the safe state (off) at the first connect")
        await app.commands.switch_relay("board1", 1, True, OP)
        ops = b1.circuits[0].relay_operations
        since = b1.link.connected_since_s
        client = await _connect(config, cert, key, "viewer", "view-secret")
        try:
            idx = await client.get_namespace_index("urn:openstrom:bridge")
            assert isinstance(await mb.read(4, 2, 1000, 2), list)  # board2 on unit 2
            # ---- the edited file: board2 out, board3 in, board1 renamed circuit and an interlock, a new user
            doc["devices"] = [
                {"name": "board1", "serial_number": "OS-SIM-0001", "unit_id": 1, "circuit_names": {1: "Heater"},
                 "relays": [{"circuit": 2, "locked": True}]},
                {"name": "board3", "serial_number": "OS-SIM-0003", "unit_id": 3},
            ]  # fmt: skip
            from bridge.fronts.opcua.passwords import hash_password

            doc["opcua"]["users"].append({"name": "newop", "password_hash": hash_password("n3w"), "role": "operator"})
            doc["modbus"]["servers"][1]["map"] = "openstrom"  # the second server changes its map
            async with RawModbus(ports["sunspec"]) as sunspec:
                assert await sunspec.read(4, 1, 1000, 2) == 0x02  # the SunSpec map has no input 1000
            _write(cfg, doc)
            code, out, err = await cli("reload", *api)
            assert code == 0, err
            answer = json.loads(out)
            assert (answer["added"], answer["removed"], answer["changed"]) == (["board3"], ["board2"], ["board1"])
            # nothing dropped: board1's link, the Modbus connection, the OPC UA session
            assert b1.online and b1.link.connected_since_s == since
            assert b1.circuits[0].relay_on is True and b1.circuits[0].relay_operations == ops  # no safe state
            assert await mb.read(4, 2, 1000, 2) == 0x0A  # unit 2 is no device any more, same connection
            assert "board2" not in app.model.devices
            async with RawModbus(ports["sunspec"]) as sunspec:  # the new map, on the same listener
                regs = await sunspec.read(4, 1, 1000, 2)
                assert isinstance(regs, list) and f32(regs) == pytest.approx(230, rel=0.01)
            node = client.get_node(ua.NodeId("board1.Circuit01", idx))
            await wait_for_value(lambda: node.read_display_name(), "Heater")
            with pytest.raises(ua.UaStatusCodeError):
                await client.get_node(ua.NodeId("board2.Circuit01.Voltage", idx)).read_value()
            with pytest.raises(CommandRejected, match="interlocked"):
                await app.commands.switch_relay("board1", 2, True, OP)
            async with _sim(ports["device"], "OS-SIM-0003"):
                b3 = app.model.devices["board3"]
                await wait_for(lambda: b3.online and b3.snapshot is not None, 20, "board3 counted")
                regs = await mb.read(4, 3, 1000, 2)
                assert isinstance(regs, list) and f32(regs) == pytest.approx(230, rel=0.01)
                voltage = client.get_node(ua.NodeId("board3.Circuit01.Voltage", idx))
                await wait_for_value(lambda: voltage.read_value(), 230.0, approx=True)
                assert b3.circuits[0].relay_operations == 0  # a device added by a reload is not switched
            newop = await _connect(config, cert, key, "newop", "n3w")
            await newop.disconnect()
            assert sim2.proc is not None and sim2.proc.returncode is None  # refused now, and retrying
            # ---- a file that fails validation changes nothing and says where
            doc["devices"][1]["unit_id"] = 999
            _write(cfg, doc)
            code, _, err = await cli("reload", *api)
            assert code == 3 and "bridge.yaml" in err and "unit_id" in err
            assert "board3" in app.model.devices
            # ---- a change only a restart can apply is refused as a whole, naming the key
            doc["devices"][1]["unit_id"] = 3
            doc["modbus"]["servers"][0]["port"] = ports["modbus"] + 1
            doc["devices"].append({"name": "board4", "serial_number": "OS-SIM-0004", "unit_id": 4})
            _write(cfg, doc)
            code, _, err = await cli("reload", *api)
            assert code == 3 and "need a restart" in err and "modbus.servers[0].port" in err, err
            assert "board4" not in app.model.devices
        finally:
            await client.disconnect()


async def test_sighup_reloads_the_running_process(tmp_path: Path) -> None:
    config, ports = opcua_config(tmp_path)
    doc = config.model_dump(mode="json")
    doc["opcua"]["enabled"] = False
    cfg = tmp_path / "bridge.yaml"
    _write(cfg, doc)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bridge.cli", "run", "--config", str(cfg),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip

    def devices() -> list[str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{ports['http']}/health", timeout=2) as r:
                return list(json.loads(r.read())["devices"])
        except urllib.error.HTTPError as exc:  # 503 while a device is offline: the body is the same
            return list(json.loads(exc.read())["devices"])
        except OSError:
            return []

    try:
        async with asyncio.timeout(30):
            while await asyncio.to_thread(devices) != ["board1"]:
                await asyncio.sleep(0.2)
        doc["devices"].append({"name": "hall2", "serial_number": "OS-SIM-0042", "unit_id": 42})
        _write(cfg, doc)
        proc.send_signal(signal.SIGHUP)
        async with asyncio.timeout(15):
            while await asyncio.to_thread(devices) != ["board1", "hall2"]:
                await asyncio.sleep(0.2)
    finally:
        proc.terminate()
        _, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0
    assert b"configuration reloaded" in err
