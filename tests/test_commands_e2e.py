"""The one command path, exercised end to end: Modbus, the CLI (through the HTTP control API), policy,
timeouts, persistence across restarts, self-test."""

from __future__ import annotations

import asyncio
import struct
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from bridge.commands import Origin, Role
from bridge.errors import CommandRejected, CommandTimeout, DeviceRefused
from device.simulator.process import SimulatorProcess
from tests.harness import PLANT, RawModbus, bridge_config, f32, fresh_windows, running_bridge, wait_for

pytestmark = pytest.mark.e2e
SCENARIOS = Path(__file__).parent / "scenarios"


async def cli(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bridge.cli", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    async with asyncio.timeout(60):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def _sim(port: int, scenario: Path = PLANT) -> SimulatorProcess:
    return SimulatorProcess(["--connect", f"127.0.0.1:{port}", "--scenario", str(scenario), "--speed", "2"])


async def test_modbus_and_cli_switch_with_policy_and_counter_surviving_restart(tmp_path: Path) -> None:
    # the interval outlasts the two CLI runs and the window wait between the first switch and the
    # Modbus write below, also on a slow host (3 s did not, once)
    config, ports = bridge_config(tmp_path, commands={"min_interval_s": 8.0, "timeout_s": 3.0})
    api = f"127.0.0.1:{ports['http']}"
    async with running_bridge(config, tmp_path) as app, _sim(ports["device"]):
        dev = app.model.devices["board1"]
        await wait_for(lambda: dev.snapshot is not None and dev.status is not None, 20, "first window")
        # CLI: off; the load follows
        code, out, err = await cli("relay", "board1", "2", "off", "--api", api)
        assert code == 0, err
        assert '"changed": true' in out
        await fresh_windows(dev)
        assert abs(dev.snapshot.circuits[1].p_w) < 1.0 if dev.snapshot else False
        # repeating the same command is idempotent: success, nothing switched, nothing counted
        code, out, _ = await cli("relay", "board1", "2", "off", "--api", api)
        assert code == 0 and '"changed": false' in out
        # switching back faster than the minimum interval is refused with the reason
        code, _, err = await cli("relay", "board1", "2", "on", "--api", api)
        assert code == 3 and "minimum interval is 8 s" in err
        async with RawModbus(ports["modbus"]) as mb:
            body = await mb.request(1, struct.pack(">BHH", 5, 1, 0xFF00))  # coil 1 = circuit 2
            assert body == bytes([0x85, 0x06])  # server busy: retry later
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 10
            while body == bytes([0x85, 0x06]) and loop.time() < deadline:  # until the interval is over
                await asyncio.sleep(0.5)
                body = await mb.request(1, struct.pack(">BHH", 5, 1, 0xFF00))
            assert body == struct.pack(">BHH", 5, 1, 0xFF00)
            assert dev.circuits[1].relay_on is True
            await fresh_windows(dev)
            regs = await mb.read(4, 1, 1100, 6)
            assert isinstance(regs, list) and f32(regs, 4) == pytest.approx(1100.0, rel=1e-3)
            ops = await mb.read(4, 1, 1160, 2)
            assert ops == [0, 2]
        # unknown device and unknown circuit are clear errors
        code, _, err = await cli("relay", "nosuch", "1", "off", "--api", api)
        assert code == 3 and "unknown device 'nosuch'" in err
        code, _, err = await cli("relay", "board1", "11", "off", "--api", api)
        assert code == 3 and "circuits 1..10" in err
    # restart the bridge on the same state: the operation counter survives
    async with running_bridge(config, tmp_path) as app:
        assert app.model.devices["board1"].circuits[1].relay_operations == 2
        # and a command to the (now absent) device fails fast with "offline"
        loop = asyncio.get_running_loop()
        t = loop.time()
        code, _, err = await cli("relay", "board1", "2", "off", "--api", api)
        assert code == 4 and "offline" in err
        assert loop.time() - t < 10


async def test_unacknowledged_command_times_out_without_false_state(tmp_path: Path) -> None:
    config, ports = bridge_config(tmp_path, commands={"min_interval_s": 0.0, "timeout_s": 1.0})
    async with running_bridge(config, tmp_path) as app, _sim(ports["device"], SCENARIOS / "noack.yaml"):
        dev = app.model.devices["board1"]
        await wait_for(lambda: dev.online and dev.status is not None, 20, "online with a STATUS")
        with pytest.raises(CommandTimeout, match="did not acknowledge"):
            await app.commands.switch_relay("board1", 1, False, Origin(front="test", role=Role.OPERATOR))
        assert dev.circuits[0].relay_on is True  # no false state
        assert dev.circuits[0].relay_operations == 0
        code, _, err = await cli("relay", "board1", "1", "off", "--api", f"127.0.0.1:{ports['http']}")
        assert code == 5 and "did not acknowledge" in err


async def test_stuck_relay_self_test_concurrency_and_select_before_operate(tmp_path: Path) -> None:
    config, ports = bridge_config(tmp_path, commands={"min_interval_s": 0.0, "timeout_s": 3.0})
    doc = config.model_dump()
    doc["devices"][0]["relays"] = [{"circuit": 1, "select_before_operate": True}, {"circuit": 5, "locked": True}]
    config = type(config).model_validate(doc)
    async with running_bridge(config, tmp_path) as app, _sim(ports["device"], SCENARIOS / "faulty.yaml"):
        dev = app.model.devices["board1"]
        await wait_for(lambda: dev.online and dev.status is not None, 20, "online with a STATUS")
        op = Origin(front="test", user="tester", role=Role.OPERATOR)
        # the device refuses (stuck relay): precise error, mismatch alarm, no false state
        with pytest.raises(DeviceRefused, match="did not move"):
            await app.commands.switch_relay("board1", 4, False, op)
        assert dev.circuits[3].alarms["relay_mismatch"].active
        assert dev.circuits[3].relay_on is True
        # from the CLI: the device's refusal is "refused" (3), not the timeout code
        code, _, err = await cli("relay", "board1", "4", "off", "--api", f"127.0.0.1:{ports['http']}")
        assert code == 3 and "refused relay 4" in err and "relay-stuck" in err
        # interlocked relay
        with pytest.raises(CommandRejected, match="interlocked"):
            await app.commands.switch_relay("board1", 5, False, op)
        # select-before-operate: operate alone is refused, select then operate works
        with pytest.raises(CommandRejected, match="select-before-operate"):
            await app.commands.switch_relay("board1", 1, False, op)
        app.commands.select("board1", 1, False, op)
        await app.commands.switch_relay("board1", 1, False, op)
        assert dev.circuits[0].relay_on is False
        # concurrent identical commands (a retrying SCADA) are served by one switching
        r1, r2 = await asyncio.gather(
            app.commands.switch_relay("board1", 2, False, op), app.commands.switch_relay("board1", 2, False, op)
        )
        assert dev.circuits[1].relay_operations == 1 and r1.changed and r2.changed
        # self-test through the CLI returns the injected faults
        code, out, err = await cli("self-test", "board1", "--api", f"127.0.0.1:{ports['http']}")
        assert code == 0, err
        assert "WIFI_TIMEOUT" in out and "RELAY04_STUCK" in out
        # calibration needs the admin role, is persisted, and shows before/after
        with pytest.raises(CommandRejected, match="admin"):
            await app.commands.calibrate("board1", 1, "v", 1.01, 0.0, op)
        before, after = await app.commands.calibrate("board1", 1, "v", 1.01, 0.0, Origin(front="test", role=Role.ADMIN))
        assert before == (1.0, 0.0) and after == (1.01, 0.0)
        await fresh_windows(dev)
        assert dev.snapshot is not None and dev.snapshot.circuits[0].v_rms == pytest.approx(230 * 1.01, rel=1e-3)
        assert app.store.calibration("board1")[(1, "v")] == (1.01, 0.0)
        # the ZigBee auxiliary output switches through the same path
        await app.commands.switch_aux("board1", True, op)
        await wait_for(lambda: dev.aux_on is True, 5, "aux on")


async def test_select_and_maintenance_lock_from_modbus_and_cli(tmp_path: Path) -> None:
    config, ports = bridge_config(tmp_path, commands={"min_interval_s": 0.0, "select_before_operate": True})
    api = f"127.0.0.1:{ports['http']}"
    async with running_bridge(config, tmp_path) as app, _sim(ports["device"]):
        dev = app.model.devices["board1"]
        await wait_for(lambda: dev.online and dev.status is not None, 20, "online with a STATUS")
        async with RawModbus(ports["modbus"]) as mb:
            # operate without select: refused
            assert await mb.request(1, struct.pack(">BHH", 5, 0, 0x0000)) == bytes([0x85, 0x04])
            # select OFF (holding 10 = circuit 1), then operate OFF
            assert await mb.request(1, struct.pack(">BHH", 6, 10, 2)) == struct.pack(">BHH", 6, 10, 2)
            assert await mb.read(3, 1, 10, 1) == [2]
            assert await mb.request(1, struct.pack(">BHH", 5, 0, 0x0000)) == struct.pack(">BHH", 5, 0, 0x0000)
            assert dev.circuits[0].relay_on is False
            assert await mb.read(3, 1, 10, 1) == [0]  # the selection is used up
            assert await mb.request(1, struct.pack(">BHH", 6, 10, 7)) == bytes([0x86, 0x03])
        # maintenance lock from the CLI (local admin): selected or not, the relay stays put
        code, _, err = await cli("maintenance-lock", "board1", "2", "on", "--api", api)
        assert code == 0, err
        code, _, _ = await cli("select", "board1", "2", "off", "--api", api)
        assert code == 0
        code, _, err = await cli("relay", "board1", "2", "off", "--api", api)
        assert code == 3 and "maintenance lock" in err
        async with RawModbus(ports["modbus"]) as mb:
            assert await mb.read(2, 1, 118, 1) == [1]  # discrete input 110 + 8: circuit 2 maintenance lock
        assert dev.circuits[1].relay_on is True


async def test_control_api_needs_the_token(tmp_path: Path) -> None:
    config, ports = bridge_config(tmp_path)
    api = f"127.0.0.1:{ports['http']}"
    async with running_bridge(config, tmp_path) as app, _sim(ports["device"]):
        dev = app.model.devices["board1"]
        await wait_for(lambda: dev.online and dev.status is not None, 20, "device online")
        token_file = tmp_path / "state" / "api-token"
        assert token_file.stat().st_mode & 0o777 == 0o600
        token = token_file.read_text().strip()

        def post(headers: dict[str, str]) -> int:
            req = urllib.request.Request(
                f"http://{api}/api/self-test", data=b'{"device": "board1"}', headers=headers, method="POST"
            )
            try:
                with urllib.request.urlopen(req, timeout=30) as resp:
                    return int(resp.status)
            except urllib.error.HTTPError as exc:
                return exc.code

        loop = asyncio.get_running_loop()
        assert await loop.run_in_executor(None, post, {}) == 401
        assert await loop.run_in_executor(None, post, {"Authorization": "Bearer not-the-token"}) == 401

        # health and metrics stay open for probes and Prometheus
        def get_metrics() -> int:
            with urllib.request.urlopen(f"http://{api}/metrics", timeout=10) as resp:
                return int(resp.status)

        assert await loop.run_in_executor(None, get_metrics) == 200
        # the CLI finds the token itself, or takes a file; a wrong one is "not authorised" (exit 6)
        bad = tmp_path / "bad-token"
        bad.write_text("nope\n")
        code, _, err = await cli("self-test", "board1", "--api", api, "--token-file", str(bad))
        assert code == 6 and "wrong API token" in err
        code, out, err = await cli("self-test", "board1", "--api", api, "--token-file", str(token_file))
        assert code == 0 and '"ok": true' in out, err
        assert await loop.run_in_executor(None, post, {"Authorization": f"Bearer {token}"}) == 200
