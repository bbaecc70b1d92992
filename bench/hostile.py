"""Memory of a bridge process under hostile connections on every port, side by side with the same
bridge idle, in one run.

    .venv/bin/python bench/hostile.py [--per-port 200] [--hold 15]

Starts `openstrom-bridge run` (Modbus on both maps, OPC UA, HTTP) and one simulator process, waits
for the device to stream, reads the bridge's RSS, then opens ``--per-port`` connections to each port
from 25 loopback addresses: on the device port a third announce a 4 MiB frame before any HELLO,
a third send one byte (slow-loris), a third stay idle; on the other ports they stay idle. After
``--hold`` seconds it reads RSS again (and the peak, VmHWM), the connections the bridge closed, and
whether the device's stream had a gap.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import rss_mb
from service import BIN, free_port, scrape, wait_until

from device.protocol.framing import HEADER, HEADER_CRC, MAGIC, VERSION, crc16


def memory_mb(pid: int) -> tuple[float, float]:
    """(resident, peak resident) in MB."""
    return rss_mb(pid), rss_mb(pid, "VmHWM")


async def flood(ports: dict[str, int], per_port: int, hold: float) -> tuple[int, int]:
    head = HEADER.pack(MAGIC, VERSION, 0x01, 0x01, 0, 0, 4 * 1024 * 1024)
    huge = head + HEADER_CRC.pack(crc16(head))
    conns = []
    for k in range(per_port):
        for name, port in ports.items():
            try:
                r, w = await asyncio.open_connection("127.0.0.1", port, local_addr=(f"127.0.0.{2 + k % 25}", 0))
            except OSError:
                continue
            if name == "device":
                w.write(huge if k % 3 == 0 else b"O" if k % 3 == 1 else b"")
            conns.append((r, w))
    await asyncio.sleep(hold)
    closed = sum(1 for r, _ in conns if r.at_eof() or r.exception() is not None)
    for _, w in conns:
        w.close()
    return len(conns), closed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--per-port", type=int, default=200)
    ap.add_argument("--hold", type=float, default=15.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="openstrom-hostile-") as tmpdir:
        tmp = Path(tmpdir)
        ports = {k: free_port() for k in ("device", "modbus", "sunspec", "opcua", "http")}
        doc = {
            "bridge": {"state_dir": str(tmp / "state"), "log_level": "error"},
            "links": {"listen": f"127.0.0.1:{ports['device']}", "hello_timeout_s": 10.0},
            "modbus": {
                "servers": [
                    {"map": "openstrom", "host": "127.0.0.1", "port": ports["modbus"]},
                    {"map": "sunspec", "host": "127.0.0.1", "port": ports["sunspec"]},
                ]
            },
            "opcua": {"endpoint": f"opc.tcp://127.0.0.1:{ports['opcua']}/openstrom"},
            "metrics": {"listen": f"127.0.0.1:{ports['http']}"},
            "devices": [{"name": "board1", "serial_number": "OS-SIM-0001", "unit_id": 1}],
        }
        config = tmp / "bridge.yaml"
        config.write_text(yaml.safe_dump(doc))
        metrics = f"http://127.0.0.1:{ports['http']}/metrics"
        env = {**os.environ, "PYTHONWARNINGS": "ignore"}
        bridge = subprocess.Popen([str(BIN / "openstrom-bridge"), "run", "--config", str(config)], cwd=tmp, env=env)
        sim = subprocess.Popen(
            [str(BIN / "openstrom-device-sim"), "--connect", f"127.0.0.1:{ports['device']}"],
            cwd=tmp,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_until(lambda: scrape(metrics).get("openstrom_device_online", 0) == 1, 60, "the device")
            time.sleep(5)
            idle_rss, _ = memory_mb(bridge.pid)
            before = scrape(metrics)
            opened, closed = asyncio.run(flood(ports, args.per_port, args.hold))
            rss, peak = memory_mb(bridge.pid)
            after = scrape(metrics)
        finally:
            for p in (sim, bridge):
                p.terminate()
                p.wait(timeout=15)
    gaps = after.get("openstrom_lost_blocks_total", 0) - before.get("openstrom_lost_blocks_total", 0)
    print(f"bridge RSS idle with one device: {idle_rss:.0f} MB")
    print(
        f"with {opened} hostile connections ({args.per_port} per port) held {args.hold:g} s: RSS {rss:.0f} MB, "
        f"peak {peak:.0f} MB (+{rss - idle_rss:.0f} MB, ratio {rss / idle_rss:.2f})"
    )
    print(f"closed by the bridge meanwhile: {closed} of {opened}; device blocks lost: {gaps:.0f}")


if __name__ == "__main__":
    main()
