"""Password guessing over OPC UA: 20 wrong passwords from a real asyncua client in its own process are
answered ever slower, then locked out (the right password too, while locked), every refusal audited,
while a Modbus client polling the same bridge keeps its latency (the hash runs off the event loop)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from pathlib import Path

import pytest

from bridge.config import Config
from bridge.fronts.opcua.passwords import hash_password
from device.simulator.process import SimulatorProcess
from tests.harness import PLANT, RawModbus, bridge_config, running_bridge, wait_for
from tests.test_opcua_e2e import _client_cert

pytestmark = pytest.mark.e2e

ATTACKER = """
import asyncio, json, sys, time
from asyncua import Client, ua
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256

async def main(url, cert, key):
    out = []
    for k in range(21):
        c = Client(url, timeout=20)
        c.application_uri = "urn:test:attacker"
        await c.set_security(SecurityPolicyBasic256Sha256, cert, key, mode=ua.MessageSecurityMode.SignAndEncrypt)
        c.set_user("op")
        c.set_password("guess%d" % k if k < 20 else "op-secret")
        t = time.monotonic()
        try:
            await c.connect()
            code = "Good"
            await c.disconnect()
        except ua.UaStatusCodeError as exc:
            code = type(exc).__name__
        except Exception as exc:
            code = "error: %r" % exc
        out.append([code, time.monotonic() - t])
    print(json.dumps(out))

asyncio.run(main(*sys.argv[1:4]))
"""


async def test_password_guessing_is_throttled_and_modbus_keeps_its_latency(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config, ports = bridge_config(tmp_path)
    doc = config.model_dump()
    doc["opcua"].update(
        enabled=True,
        trust_all_clients=True,  # the attacker gets as far as the login
        users=[{"name": "op", "password_hash": hash_password("op-secret"), "role": "operator"}],
        login_max_failures=5,
        login_delay_s=0.05,
    )
    config = Config.model_validate(doc)
    cert, key = await _client_cert(tmp_path, "attacker")
    sim = SimulatorProcess(["--connect", f"127.0.0.1:{ports['device']}", "--scenario", str(PLANT), "--speed", "1"])
    async with running_bridge(config, tmp_path) as app, sim:
        dev = app.model.devices["board1"]
        await wait_for(lambda: dev.snapshot is not None, 30, "first window")
        attacker = await asyncio.create_subprocess_exec(
            sys.executable, "-c", ATTACKER, config.opcua.endpoint, str(cert), str(key), stdout=asyncio.subprocess.PIPE
        )
        latencies: list[float] = []
        async with RawModbus(ports["modbus"]) as mb:
            deadline = time.monotonic() + 120
            while attacker.returncode is None and time.monotonic() < deadline:
                t = time.perf_counter()
                regs = await mb.read(4, 1, 1000, 30)
                latencies.append(time.perf_counter() - t)
                assert isinstance(regs, list)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(attacker.wait()), 0.02)
        out, _ = await asyncio.wait_for(attacker.communicate(), 30)
    attempts = json.loads(out)
    codes = [a[0] for a in attempts]
    assert codes == ["BadUserAccessDenied"] * 21, codes  # the right password too, while locked out
    delays = [a[1] for a in attempts]
    assert delays[4] > delays[0] + 0.5  # 0.05 s doubling: the fifth failure waits 0.8 s
    assert min(delays[5:20]) >= 0.8  # locked: no hash, the longest delay
    latencies.sort()
    p99 = latencies[int(0.99 * (len(latencies) - 1))]
    assert len(latencies) > 100 and p99 < 0.020, (len(latencies), p99, latencies[-5:])
    logs = capsys.readouterr().out
    assert logs.count("login refused") >= 2 * 21  # a warning or debug line and an audit line each
    assert "login lockout" in logs
    with capsys.disabled():
        print(
            f"modbus during the attack: {len(latencies)} reads, p50 {latencies[len(latencies) // 2] * 1e3:.1f} ms, "
            f"p99 {p99 * 1e3:.1f} ms, max {latencies[-1] * 1e3:.1f} ms; attempts took {[round(d, 2) for d in delays]}"
        )
