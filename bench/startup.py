"""Start-up of `openstrom-bridge run` with N configured devices and every front on (Modbus on both maps,
OPC UA with history and the energy model, health): seconds until /health/ready says every front
serves, and the event loop's longest stall meanwhile, seen from outside as the slowest answer to a
Modbus read sent every 20 ms from the moment the Modbus port accepts (the loop that answers it is the
one building the rest). Also its memory once ready: the proportional set sizes of the bridge and its
measuring process (a page both map, the interpreter and numpy, counts once).

    .venv/bin/python bench/startup.py [--devices 10] [--devices 100]

Results go to bench/results/latest.json (startup_s_N, startup_max_stall_ms_N, rss_mb_N_devices_idle).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import yaml
from common import free_port, memory_mb, probe, ready, rss_mb, save_results, tree


async def one(devices: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="openstrom-startup-") as d:
        tmp = Path(d)
        ports = {k: free_port() for k in ("device", "modbus", "sunspec", "opcua", "http")}
        cfg = tmp / "bridge.yaml"
        cfg.write_text(yaml.safe_dump({
            "bridge": {"state_dir": str(tmp / "state"), "log_level": "warning"},
            "links": {"listen": f"127.0.0.1:{ports['device']}"},
            "modbus": {"servers": [
                {"map": "openstrom", "host": "127.0.0.1", "port": ports["modbus"]},
                {"map": "sunspec", "host": "127.0.0.1", "port": ports["sunspec"]},
            ]},
            "opcua": {"endpoint": f"opc.tcp://127.0.0.1:{ports['opcua']}/openstrom"},
            "metrics": {"listen": f"127.0.0.1:{ports['http']}"},
            "devices": [{"name": f"dev{k:03d}", "serial_number": f"OS-{k:05d}", "unit_id": k % 247 + 1}
                        for k in range(devices)],
        }))  # fmt: skip
        # the OPC UA certificate is made once per state folder: make it first, as a deployed bridge has it
        t0 = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bridge.cli", "run", "--config", str(cfg),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        stop = asyncio.Event()
        prober = asyncio.create_task(probe(ports["modbus"], stop))
        try:
            async with asyncio.timeout(300):
                while not await asyncio.to_thread(ready, ports["http"]):  # noqa: ASYNC110 - another process
                    await asyncio.sleep(0.02)
            elapsed = time.monotonic() - t0
            await asyncio.sleep(0.5)
            stop.set()
            answers = await prober
            memory = memory_mb(proc.pid)  # the bridge and its measuring process, shared pages once
            resident = sum(rss_mb(p) for p in tree(proc.pid))
        finally:
            proc.terminate()
            await asyncio.wait_for(proc.wait(), 30)
    stall = 1000 * max(answers) if answers else float("nan")
    print(f"{devices} devices: every front serving after {elapsed:.2f} s; longest Modbus answer during "
          f"start-up {stall:.0f} ms ({len(answers)} probes); memory {memory:.0f} MB (proportional set size of "
          f"the bridge's processes; their resident sizes add up to {resident:.0f} MB)")  # fmt: skip
    return {f"startup_s_{devices}": round(elapsed, 2), f"startup_max_stall_ms_{devices}": round(stall, 1),
            f"rss_mb_{devices}_devices_idle": round(memory, 1)}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--devices", type=int, action="append", help="configured devices (repeat); default 10")
    args = p.parse_args()
    out: dict[str, float] = {}
    for n in args.devices or [10]:
        out.update(asyncio.run(one(n)))
    save_results(out)


if __name__ == "__main__":
    main()
