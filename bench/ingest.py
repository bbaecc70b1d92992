"""Ingest capacity: many boards at full rate into one bridge with every front on, from a load generator
that replays pre-encoded blocks over real TCP (a hundred simulator processes do not fit two cores).

    .venv/bin/python bench/ingest.py [--boards 100] [--seconds 30] [--no-opcua] [--no-mqtt]

The generator makes 25 blocks (2 s, exactly 100 mains cycles, so the replay joins without a seam) of a
household board once, encodes them, and for each board opens a TCP link, says HELLO with the board's
own serial and then sends one block every 80 ms of wall time, patching only the block number, the
timestamp and the frame's CRCs. The bridge runs `openstrom-bridge run` with both Modbus maps, OPC UA
with history (unless --no-opcua) and the Sparkplug B front to a local Mosquitto (unless --no-mqtt or
no mosquitto is installed). Measured over --seconds after a warm-up: the bridge's CPU per
device-second (its measuring process included), hence full-rate devices per core; whether it kept
up (blocks it counted against blocks sent); the window-to-Modbus and window-to-OPC UA latency
p50/p99 from its own histogram; its memory (the proportional set sizes of its processes, shared
pages counted once). Results go to bench/results/latest.json (ingest_*).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import re
import shutil
import struct
import sys
import tempfile
import time
import urllib.request
import zlib
from pathlib import Path

import yaml
from common import cpu_seconds, free_port, memory_mb, probe, ready, save_results

from device.protocol import Connection, Role
from device.protocol.framing import HEADER, HEADER_CRC, TRAILER, crc16
from device.simulator.device import Identity, SimulatedDevice
from device.simulator.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[1]
HOUSEHOLD = ROOT / "device" / "simulator" / "scenarios" / "household.yaml"
BLOCK_S = 625 / 7812.5
TEMPLATE_BLOCKS = 25


def scrape(port: int) -> str:
    return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()


def total(text: str, name: str, **labels: str) -> float:
    out = 0.0
    for line in text.splitlines():
        m = re.match(rf"^{name}(?:\{{([^}}]*)\}})? ([0-9.eE+-]+|NaN)$", line)
        if m and all(f'{k}="{v}"' in (m.group(1) or "") for k, v in labels.items()):
            out += float(m.group(2))
    return out


def quantile(before: str, after: str, front: str, q: float) -> float:
    """From the histogram's bucket counts added between two scrapes."""
    buckets = []
    for line in after.splitlines():
        m = re.match(r'^openstrom_window_latency_seconds_bucket\{front="(\w+)",le="([^"]+)"\} (\S+)$', line)
        if m and m.group(1) == front:
            le = m.group(2)
            was = total(before, "openstrom_window_latency_seconds_bucket", front=front, le=le)
            buckets.append((float("inf") if le == "+Inf" else float(le), float(m.group(3)) - was))
    buckets.sort()
    if not buckets or buckets[-1][1] <= 0:
        return float("nan")
    goal = q * buckets[-1][1]
    return next(le for le, n in buckets if n >= goal)


def _ms(seconds: float) -> float:
    return round(1000 * seconds) if math.isfinite(seconds) else float("nan")


def templates() -> tuple[Connection, list[bytes], object]:
    """(a device connection, the encoded SAMPLES payloads, a HELLO) of a board that joins seamlessly."""
    doc = yaml.safe_load(HOUSEHOLD.read_text())
    doc.setdefault("mains", {})["drift_hz"] = 0.0  # 25 blocks = 100 cycles exactly: the loop has no seam
    path = Path(tempfile.mkdtemp()) / "household.yaml"
    path.write_text(yaml.safe_dump(doc))
    dev = SimulatedDevice(load_scenario(path), identity=Identity.for_serial("OS-LOAD-00000"), seed=1)
    from device.protocol.encoding import encode_samples_binary

    payloads = []
    for _ in range(TEMPLATE_BLOCKS):
        block, _ = dev.generate()
        payloads.append(encode_samples_binary(block))
    return Connection(Role.DEVICE), payloads, dev.hello()


class Board:
    def __init__(self, serial: str, hello: object, payloads: list[bytes], start_ns: int) -> None:
        self.serial = serial
        self.hello = hello
        self.payloads = payloads
        self.start_ns = start_ns
        self.sent = 0

    async def run(self, port: int, stop: float) -> None:
        import dataclasses

        r, w = await asyncio.open_connection("127.0.0.1", port)
        conn = Connection(Role.DEVICE)
        w.write(conn.send(dataclasses.replace(self.hello, serial_number=self.serial, next_block_seq=0)))  # type: ignore[type-var]
        tx = conn._tx_seq  # the frame sequence the connection reached: ours continues it

        async def drain() -> None:  # ACKs and TIME_SYNCs: read and let go
            while await r.read(65536):
                pass

        reader = asyncio.ensure_future(drain())
        t0 = time.monotonic()
        k = 0
        try:
            while time.monotonic() < stop:
                due = t0 + (k + 1) * BLOCK_S
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                body = bytearray(self.payloads[k % TEMPLATE_BLOCKS])
                struct.pack_into(">IQ", body, 0, k, self.start_ns + round(k * BLOCK_S * 1e9))
                head = HEADER.pack(b"OS", 1, 0x10, 0, 0, tx & 0xFFFFFFFF, len(body))
                w.write(head + HEADER_CRC.pack(crc16(head)) + bytes(body) + TRAILER.pack(zlib.crc32(body)))
                tx += 1
                k += 1
                self.sent = k
        finally:
            reader.cancel()
            w.close()


async def run(args: argparse.Namespace) -> dict[str, float]:
    _, payloads, hello = templates()
    mqtt = not args.no_mqtt and (shutil.which("mosquitto", path=os.environ.get("PATH", "") + ":/usr/sbin"))
    with tempfile.TemporaryDirectory(prefix="openstrom-ingest-") as d:
        tmp = Path(d)
        ports = {k: free_port() for k in ("device", "modbus", "sunspec", "opcua", "http", "mqtt")}
        serials = [f"OS-LOAD-{k:05d}" for k in range(1, args.boards + 1)]
        cfg = tmp / "bridge.yaml"
        cfg.write_text(yaml.safe_dump({
            "bridge": {"state_dir": str(tmp / "state"), "log_level": "warning"},
            "links": {"listen": f"127.0.0.1:{ports['device']}", "max_unidentified_per_host": 256,
                      "max_unidentified": 512},
            "modbus": {"servers": [
                {"map": "openstrom", "host": "127.0.0.1", "port": ports["modbus"]},
                {"map": "sunspec", "host": "127.0.0.1", "port": ports["sunspec"]},
            ]},
            "opcua": {"enabled": not args.no_opcua, "endpoint": f"opc.tcp://127.0.0.1:{ports['opcua']}/openstrom"},
            "metrics": {"listen": f"127.0.0.1:{ports['http']}"},
            "mqtt": {"enabled": bool(mqtt), "url": f"mqtt://127.0.0.1:{ports['mqtt']}"},
            "analysis": {**({"batch_s": args.batch} if args.batch else {}),
                         **({"processes": args.processes} if args.processes is not None else {})},
            "devices": [{"name": f"b{k:03d}", "serial_number": s, "unit_id": k % 247 + 1}
                        for k, s in enumerate(serials, 1)],
        }))  # fmt: skip
        procs = []
        if mqtt:
            (tmp / "mosquitto.conf").write_text(f"listener {ports['mqtt']} 127.0.0.1\nallow_anonymous true\n")
            procs.append(await asyncio.create_subprocess_exec(str(mqtt), "-c", str(tmp / "mosquitto.conf"),
                                                              stderr=asyncio.subprocess.DEVNULL))  # fmt: skip
        bridge = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bridge.cli", "run", "--config", str(cfg),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        procs.append(bridge)
        try:
            async with asyncio.timeout(600):
                while not await asyncio.to_thread(ready, ports["http"]):  # noqa: ASYNC110 - another process
                    await asyncio.sleep(0.2)
            warm, span = 10.0, args.seconds
            stop = time.monotonic() + warm + span + 1
            start_ns = time.time_ns()
            boards = [Board(s, hello, payloads, start_ns) for s in serials]
            tasks = [asyncio.ensure_future(b.run(ports["device"], stop)) for b in boards]
            await asyncio.sleep(warm)
            before, c0, g0, t0 = scrape(ports["http"]), cpu_seconds(bridge.pid), time.process_time(), time.monotonic()
            m0 = cpu_seconds(bridge.pid, descendants=False)
            sent0 = sum(b.sent for b in boards)
            probe_stop = asyncio.Event()
            prober = asyncio.create_task(probe(ports["modbus"], probe_stop))  # the loop's stalls, seen from outside
            rss: list[tuple[float, float]] = []  # (seconds into the measurement, MB)
            while (now := time.monotonic()) < t0 + span:
                rss.append((now - t0, memory_mb(bridge.pid)))
                await asyncio.sleep(min(args.rss_every, t0 + span - now))
            rss.append((time.monotonic() - t0, memory_mb(bridge.pid)))
            after, c1, g1, t1 = scrape(ports["http"]), cpu_seconds(bridge.pid), time.process_time(), time.monotonic()
            m1 = cpu_seconds(bridge.pid, descendants=False)
            sent1 = sum(b.sent for b in boards)
            probe_stop.set()
            answers = sorted(await prober) or [float("nan")]
            await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            # the bridge first, while its broker is still there, as a plant stops it: its MQTT front
            # says its deaths and disconnects (stopped the other way round, it met a broker gone)
            shutdown_s = float("nan")
            for p in reversed(procs):
                stopping = time.monotonic()
                p.terminate()
                try:
                    await asyncio.wait_for(p.wait(), 90)
                except TimeoutError:
                    p.kill()
                    await p.wait()
                if p is bridge:
                    shutdown_s = time.monotonic() - stopping
    counted = total(after, "openstrom_blocks_total") - total(before, "openstrom_blocks_total")
    online = total(after, "openstrom_device_online")
    cpu = c1 - c0
    signal_s = counted * BLOCK_S
    out = {
        "ingest_boards": args.boards,
        "ingest_loop_process_core_share": round((m1 - m0) / (t1 - t0), 3),
        "ingest_devices_per_core": round(signal_s / cpu, 1) if cpu else float("nan"),
        "ingest_cpu_ms_per_device_s": round(1000 * cpu / signal_s, 2) if signal_s else float("nan"),
        "ingest_kept_up": round(counted / max(sent1 - sent0, 1), 3),
        "latency_p50_ms_modbus": _ms(quantile(before, after, "modbus", 0.5)),
        "latency_p99_ms_modbus": _ms(quantile(before, after, "modbus", 0.99)),
        "ingest_shutdown_s": round(shutdown_s, 1),
        "ingest_modbus_answer_p99_ms": round(1000 * answers[int(0.99 * (len(answers) - 1))], 1),
        "ingest_modbus_answer_max_ms": round(1000 * answers[-1], 1),
        f"rss_mb_{args.boards}_devices": round(max(m for _, m in rss), 1),
    }
    if not args.no_opcua:
        out["latency_p99_ms_opcua"] = _ms(quantile(before, after, "opcua", 0.99))
    half = [m for t, m in rss if t >= span / 2]
    growth = max(half) - half[0]
    out["ingest_rss_growth_mb_second_half"] = round(growth, 1)
    print(
        f"{args.boards} boards ({online:.0f} online), OPC UA {'off' if args.no_opcua else 'on'}, MQTT "
        f"{'on' if mqtt else 'off'}: bridge {cpu / (t1 - t0):.0%} of a core (its event loop's process "
        f"{(m1 - m0) / (t1 - t0):.0%}), {out['ingest_devices_per_core']} "
        f"full-rate devices per core ({out['ingest_cpu_ms_per_device_s']} ms per device-second); counted "
        f"{out['ingest_kept_up']:.1%} of the blocks sent; window to Modbus p50 {out['latency_p50_ms_modbus']} ms, "
        f"p99 {out['latency_p99_ms_modbus']} ms; to OPC UA p99 {out.get('latency_p99_ms_opcua', '(off)')} ms; "
        f"a Modbus read every 20 ms answered in p50 {1000 * answers[len(answers) // 2]:.1f} ms, p99 "
        f"{out['ingest_modbus_answer_p99_ms']} ms, max {out['ingest_modbus_answer_max_ms']} ms; "
        f"generator {g1 - g0:.1f} s CPU; shutdown took {shutdown_s:.1f} s; resident memory "
        f"{rss[0][1]:.0f} -> {rss[-1][1]:.0f} MB (peak {max(m for _, m in rss):.0f}), "
        f"{growth:+.1f} MB over the second half"
    )
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--boards", type=int, default=100)
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--no-opcua", action="store_true")
    p.add_argument("--no-mqtt", action="store_true")
    p.add_argument("--batch", type=float, help="analysis.batch_s (default: the bridge's default)")
    p.add_argument("--processes", type=int, help="analysis.processes (default: the bridge's default)")
    p.add_argument("--rss-every", type=float, default=5.0, help="seconds between resident-memory samples")
    p.add_argument("--max-growth-mb", type=float, help="fail if memory grows more over the second half (soak)")
    p.add_argument(
        "--record-as",
        metavar="PREFIX",
        help="record the figures as PREFIX_<name> (make soak: 'soak'), beside make bench's rather than over them",
    )
    args = p.parse_args()
    out = asyncio.run(run(args))
    # the figures the targets name are those with every front on; a lighter run is recorded beside them
    tag = "".join(("_no_opcua" if args.no_opcua else "", "_no_mqtt" if args.no_mqtt else ""))
    prefix = f"{args.record_as}_" if args.record_as else ""
    save_results({f"{prefix}{k}{tag}": v for k, v in out.items()})  # a failed soak's figures are kept too
    growth = out["ingest_rss_growth_mb_second_half"]
    if args.max_growth_mb is not None and growth > args.max_growth_mb:
        raise SystemExit(f"resident memory grew {growth:.1f} MB over the second half (limit {args.max_growth_mb} MB)")


if __name__ == "__main__":
    main()
