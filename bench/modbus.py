"""Modbus TCP serving cost: the bridge against a bare pymodbus server of the same size, side by side.

    .venv/bin/python bench/modbus.py [--seconds 8] [--connections 8]

Two reads, as SCADA polls them:
  30 input registers at 1000 of the `openstrom` map (circuit 1's values), function 4
  60 holding registers at 40002 of the `sunspec` map (the common model and the meter), function 3
Each is served by (a) `openstrom-bridge run` with one simulated board streaming at full rate and (b) a
pymodbus server with plain sequential data blocks of the same register count, in its own process.
``--connections`` clients (raw MBAP over asyncio sockets, one request in flight each) read for
``--seconds``; the figures are requests per second and the server's CPU per request (its process CPU
time during the load, less its idle rate measured just before: the bridge's measuring of the board is
not counted against Modbus). Results go to bench/results/latest.json (modbus_ratio_vs_bare_pymodbus_*).
"""

from __future__ import annotations

import argparse
import asyncio
import struct
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import yaml
from common import cpu_seconds, free_port, save_results

READS = {"30_input": (4, 1000, 30, "openstrom"), "60_holding": (3, 40002, 60, "sunspec")}

BARE = textwrap.dedent(
    """
    import asyncio, sys
    from pymodbus.server import StartAsyncTcpServer
    from pymodbus.simulator import DataType, SimData, SimDevice

    port = int(sys.argv[1])
    # as many registers as the bridge's maps span (input 0..7100, holding 0..41400); pymodbus 3.16's
    # SimDevice (its sequential data blocks are deprecated wrappers of it)
    bits = [SimData(0, count=16, values=False, datatype=DataType.BITS)]
    device = SimDevice(id=1, simdata=(
        bits, bits,
        [SimData(0, count=41400, values=1, datatype=DataType.REGISTERS)],
        [SimData(0, count=7100, values=1, datatype=DataType.REGISTERS)],
    ))
    asyncio.run(StartAsyncTcpServer(device, address=("127.0.0.1", port)))
    """
)


async def wait_port(port: int) -> None:
    async with asyncio.timeout(30):
        while True:
            try:
                _, w = await asyncio.open_connection("127.0.0.1", port)
                w.close()
                return
            except OSError:
                await asyncio.sleep(0.1)


async def load(port: int, fc: int, address: int, count: int, connections: int, seconds: float) -> tuple[int, int]:
    """(good answers, exception answers) from ``connections`` clients in ``seconds``."""
    stop = time.monotonic() + seconds
    good = bad = 0

    async def client() -> None:
        nonlocal good, bad
        r, w = await asyncio.open_connection("127.0.0.1", port)
        tid = 0
        while time.monotonic() < stop:
            tid = (tid + 1) & 0xFFFF
            w.write(struct.pack(">HHHBBHH", tid, 0, 6, 1, fc, address, count))
            head = await r.readexactly(7)
            length = struct.unpack(">H", head[4:6])[0]
            body = await r.readexactly(length - 1)
            if body[0] & 0x80:
                bad += 1
            else:
                good += 1
        w.close()

    await asyncio.gather(*(client() for _ in range(connections)))
    return good, bad


async def measure(pid: int, port: int, read: tuple[int, int, int, str], args: argparse.Namespace) -> dict[str, float]:
    fc, address, count, _ = read
    await load(port, fc, address, count, args.connections, 1.0)  # warm-up
    idle0, t0 = cpu_seconds(pid), time.monotonic()
    await asyncio.sleep(2.0)
    idle_rate = (cpu_seconds(pid) - idle0) / (time.monotonic() - t0)
    c0, t0 = cpu_seconds(pid), time.monotonic()
    good, bad = await load(port, fc, address, count, args.connections, args.seconds)
    elapsed = time.monotonic() - t0
    cpu = cpu_seconds(pid) - c0 - idle_rate * elapsed
    return {"rps": good / elapsed, "errors": bad, "cpu_us_per_request": 1e6 * max(cpu, 0.0) / max(good, 1)}


async def run(args: argparse.Namespace) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="openstrom-modbus-bench-") as d:
        tmp = Path(d)
        ports = {k: free_port() for k in ("device", "openstrom", "sunspec", "http", "bare")}
        cfg = tmp / "bridge.yaml"
        cfg.write_text(yaml.safe_dump({
            "bridge": {"state_dir": str(tmp / "state"), "log_level": "warning"},
            "links": {"listen": f"127.0.0.1:{ports['device']}"},
            "modbus": {"servers": [
                {"map": "openstrom", "host": "127.0.0.1", "port": ports["openstrom"], "max_connections": 64},
                {"map": "sunspec", "host": "127.0.0.1", "port": ports["sunspec"], "max_connections": 64},
            ]},
            "opcua": {"enabled": False},
            "metrics": {"listen": f"127.0.0.1:{ports['http']}"},
            "devices": [{"name": "board1", "serial_number": "OS-SIM-0001", "unit_id": 1}],
        }))  # fmt: skip
        quiet = {"stdout": asyncio.subprocess.DEVNULL, "stderr": asyncio.subprocess.DEVNULL}
        bridge = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bridge.cli", "run", "--config", str(cfg), **quiet
        )
        sim = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "device.simulator.cli", "--connect", f"127.0.0.1:{ports['device']}", **quiet
        )
        bare = await asyncio.create_subprocess_exec(sys.executable, "-c", BARE, str(ports["bare"]), **quiet)
        out: dict[str, float] = {}
        try:
            for p in (ports["openstrom"], ports["sunspec"], ports["bare"]):
                await wait_port(p)
            await asyncio.sleep(4)  # the board online, values in the registers
            for key, read in READS.items():
                mine = await measure(bridge.pid, ports[read[3]], read, args)
                base = await measure(bare.pid, ports["bare"], read, args)
                ratio = mine["rps"] / base["rps"]
                print(
                    f"{key}: bridge {mine['rps']:,.0f} req/s ({mine['cpu_us_per_request']:.0f} us CPU each, "
                    f"{mine['errors']} exceptions), bare pymodbus {base['rps']:,.0f} req/s "
                    f"({base['cpu_us_per_request']:.0f} us): ratio {ratio:.2f}"
                )
                out[f"modbus_ratio_vs_bare_pymodbus_{key}"] = round(ratio, 3)
                out[f"modbus_cpu_us_per_request_{key}"] = round(mine["cpu_us_per_request"], 1)
                out[f"bare_pymodbus_cpu_us_per_request_{key}"] = round(base["cpu_us_per_request"], 1)
        finally:
            for p in (sim, bridge, bare):
                p.terminate()
                await asyncio.wait_for(p.wait(), 10)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--connections", type=int, default=8)
    save_results(asyncio.run(run(p.parse_args())))


if __name__ == "__main__":
    main()
