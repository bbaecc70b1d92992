"""kill -9 of the bridge at 20 seeded random moments while a device streams: every sample the device
produced is counted exactly once, against the truth of the scenario (a 2000 W heater on clean mains).

The bridge runs as its own process and is killed with SIGKILL, restarted at once each time. At the
end the committed energy of circuit 1 must equal 2000 W times the signal its committed stream
position covers, to 5e-5: one block counted twice (or lost) in the 3000 the device sends is 3.3e-4.
And the position must cover every block the device was acknowledged (it freed them), and no more
than it produced.
"""

from __future__ import annotations

import asyncio
import random
import signal
import sqlite3
import sys
import urllib.request
from pathlib import Path

import pytest
import yaml

from device.simulator.process import SimulatorProcess
from tests.harness import ROOT, free_port

pytestmark = pytest.mark.e2e
FS, BLOCK, P_W = 7812.5, 625, 2000.0
STEADY = ROOT / "tests" / "scenarios" / "steady.yaml"
SIGNAL_S = 240.0  # of device time, sent at 4 x real time
KILLS = 20
SEED = 20261201


async def _up(port: int, timeout: float = 30) -> None:
    loop = asyncio.get_running_loop()

    def probe() -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1) as resp:
                return resp.status == 200
        except OSError:
            return False

    async with asyncio.timeout(timeout):
        while not await loop.run_in_executor(None, probe):
            await asyncio.sleep(0.1)


async def _start(config: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bridge.cli", "run", "--config", str(config),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip


async def test_kill_9_at_random_moments_counts_every_sample_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ports = {k: free_port() for k in ("device", "modbus", "sunspec", "http")}
    doc = {
        "bridge": {"state_dir": str(tmp_path / "state"), "commit_interval_s": 0.5, "log_level": "error"},
        "links": {"listen": f"127.0.0.1:{ports['device']}"},
        "modbus": {
            "servers": [
                {"map": "openstrom", "host": "127.0.0.1", "port": ports["modbus"]},
                {"map": "sunspec", "host": "127.0.0.1", "port": ports["sunspec"]},
            ]
        },
        "opcua": {"enabled": False},
        "metrics": {"listen": f"127.0.0.1:{ports['http']}"},
        "devices": [{"name": "board1", "serial_number": "OS-SIM-0001", "unit_id": 1}],
    }
    config = tmp_path / "bridge.yaml"
    config.write_text(yaml.safe_dump(doc))
    rng = random.Random(SEED)
    bridge = await _start(config)
    await _up(ports["http"])
    sim = SimulatorProcess(
        [
            "--connect", f"127.0.0.1:{ports['device']}", "--scenario", str(STEADY), "--speed", "4",
            "--duration", str(SIGNAL_S), "--boot-id", "k9",
        ]
    )  # fmt: skip
    await sim.start()
    recovery: list[float] = []
    loop = asyncio.get_running_loop()
    try:
        for _ in range(KILLS):
            await asyncio.sleep(rng.uniform(0.2, 1.2))
            bridge.send_signal(signal.SIGKILL)  # no shutdown, no final commit
            await bridge.wait()
            t = loop.time()
            bridge = await _start(config)
            await _up(ports["http"])
            recovery.append(loop.time() - t)
        async with asyncio.timeout(120):
            assert await sim.wait() == 0, "\n".join(sim.log)
    finally:
        bridge.send_signal(signal.SIGTERM)
        await asyncio.wait_for(bridge.wait(), 30)
        await sim.stop()
    # "duration reached after N blocks; K unacknowledged": the device's own account
    final = next(line for line in sim.log if "duration reached" in line)
    produced, unacked = int(final.split("after ")[1].split()[0]), int(final.split("; ")[1].split()[0])
    with sqlite3.connect(tmp_path / "state" / "bridge.sqlite") as db:
        seq, offset = db.execute("SELECT block_seq, sample_offset FROM progress WHERE device = 'board1'").fetchone()
        whole, residual = db.execute(
            "SELECT whole, residual FROM energy WHERE device = 'board1' AND circuit = 1 AND register = 'import_wh'"
        ).fetchone()
        (restarts,) = db.execute("SELECT restarts FROM streams WHERE device = 'board1'").fetchone()
    counted = (seq + 1) * BLOCK + offset  # the stream starts at block 0
    assert restarts == 0  # the device never restarted: every bridge restart resumed the same stream
    # everything the device was told is safe is counted; what it still holds is the last batch, which
    # it would send again (nothing lost); and nothing beyond what it produced
    assert unacked <= 20, final
    assert (produced - unacked) * BLOCK <= counted <= produced * BLOCK
    expected_wh = P_W * counted / FS / 3600
    assert whole + residual == pytest.approx(expected_wh, rel=5e-5)
    with capsys.disabled():
        print(
            f"\nkill -9 x{KILLS}: {produced} blocks produced, {unacked} still held by the device at the end, "
            f"energy off by {(whole + residual) / expected_wh - 1:+.2e}; restart to serving "
            f"{min(recovery):.2f}-{max(recovery):.2f} s"
        )
