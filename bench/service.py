"""The whole bridge under load: CPU per device-second of signal, end to end, in separate processes.

    .venv/bin/python bench/service.py [--devices 10] [--speed 1] [--seconds 20] [--no-opcua] [--tls] [--mqtt]

Starts ``openstrom-bridge run`` (Modbus on both maps, OPC UA on, BLAS on one thread as the service
runs it) and ``--devices`` simulator processes dialling in, each sending ``--speed`` times real time
(4 devices at speed 5 are 20 full-rate devices' worth of blocks, but a simulator sends STATUS and the
bridge commits energy once per wall second, so above real time those per-device costs shrink). After a
warm-up, the bridge process's CPU time (user + system, from /proc) is set against the blocks it
acknowledged (from /metrics) over ``--seconds``. The figure is signal seconds per CPU second, i.e. the
full-rate devices one core carries with everything the service does per block: framing, decoding,
acknowledgement, the measurement core, alarms, the live model behind Modbus and OPC UA, energy
commits. No client is connected. The simulators share the machine: the bench reports whether they
kept up (if not, the figure is still per block, but fewer blocks were measured).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml
from common import cpu_seconds, free_port

from bridge.pki import init_pki, issue_device

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
BLOCK_S = 625 / 7812.5  # 80 ms of signal per block at full rate


def scrape(url: str) -> dict[str, float]:
    """Sum of each counter/gauge family over its labels."""
    text = urllib.request.urlopen(url, timeout=5).read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        m = re.match(r"^(openstrom_[a-z_]+)(?:\{[^}]*\})? ([0-9.eE+-]+)$", line)
        if m:
            out[m.group(1)] = out.get(m.group(1), 0.0) + float(m.group(2))
    return out


def write_config(
    tmp: Path, devices: int, opcua: bool, tls: bool, mqtt_port: int | None = None
) -> tuple[Path, dict[str, int]]:
    ports = {k: free_port() for k in ("device", "modbus", "sunspec", "opcua", "http")}
    doc = {
        "bridge": {"name": "bench", "state_dir": str(tmp / "state"), "log_level": "warning"},
        "links": {"listen": f"127.0.0.1:{ports['device']}", "tls": "always" if tls else "auto"},
        "modbus": {
            "servers": [
                {"map": "openstrom", "host": "127.0.0.1", "port": ports["modbus"]},
                {"map": "sunspec", "host": "127.0.0.1", "port": ports["sunspec"]},
            ]
        },
        "opcua": {"enabled": opcua, "endpoint": f"opc.tcp://127.0.0.1:{ports['opcua']}/openstrom"},
        "metrics": {"listen": f"127.0.0.1:{ports['http']}"},
        "mqtt": {"enabled": mqtt_port is not None, "url": f"mqtt://127.0.0.1:{mqtt_port or 1883}"},
        "devices": [
            {"name": f"dev{k:02d}", "serial_number": f"OS-BENCH-{k:04d}", "unit_id": k} for k in range(1, devices + 1)
        ],
    }
    path = tmp / "bridge.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path, ports


def wait_until(predicate: object, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if predicate():  # type: ignore[operator]
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"bench: waited {timeout:g} s for {what}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", type=int, default=10, help="simulator processes")
    ap.add_argument("--speed", type=float, default=1.0, help="each simulator's speed (1 = real time)")
    ap.add_argument("--seconds", type=float, default=20.0, help="measured interval (wall)")
    ap.add_argument("--warmup", type=float, default=8.0, help="seconds before measuring")
    ap.add_argument("--no-opcua", action="store_true")
    ap.add_argument("--mqtt", action="store_true", help="also the Sparkplug B front, to a local Mosquitto")
    ap.add_argument("--tls", action="store_true", help="device links over mutual TLS (certificates issued here)")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="openstrom-bench-") as tmpdir:
        tmp = Path(tmpdir)
        broker = None
        mqtt_port = None
        if args.mqtt:
            mqtt_port = free_port()
            (tmp / "mosquitto.conf").write_text(f"listener {mqtt_port} 127.0.0.1\nallow_anonymous true\n")
            exe = shutil.which("mosquitto", path=os.environ.get("PATH", "") + ":/usr/sbin") or "mosquitto"
            broker = subprocess.Popen([exe, "-c", str(tmp / "mosquitto.conf")], stderr=subprocess.DEVNULL)
        config, ports = write_config(tmp, args.devices, not args.no_opcua, args.tls, mqtt_port)
        tls_args: dict[int, list[str]] = {}
        if args.tls:
            init_pki(tmp / "state")
            for k in range(1, args.devices + 1):
                crt, key, ca = issue_device(tmp / "state", f"OS-BENCH-{k:04d}", tmp / f"dev{k}")
                tls_args[k] = ["--tls-cert", str(crt), "--tls-key", str(key), "--tls-ca", str(ca)]
        metrics = f"http://127.0.0.1:{ports['http']}"
        bridge = subprocess.Popen([str(BIN / "openstrom-bridge"), "run", "--config", str(config)], cwd=tmp)
        sims: list[subprocess.Popen[bytes]] = []
        try:
            # /health answers 503 until the devices are online: /metrics says the service is up
            wait_until(lambda: urllib.request.urlopen(f"{metrics}/metrics", timeout=2).status == 200, 60, "the bridge")
            for k in range(1, args.devices + 1):
                cmd = [str(BIN / "openstrom-device-sim"), "--connect", f"127.0.0.1:{ports['device']}"]
                cmd += ["--serial-number", f"OS-BENCH-{k:04d}", "--seed", str(k), "--speed", str(args.speed)]
                cmd += tls_args.get(k, [])
                sims.append(subprocess.Popen(cmd, cwd=tmp))

            def online() -> bool:
                return scrape(f"{metrics}/metrics").get("openstrom_device_online", 0.0) == args.devices

            wait_until(online, 60, "every simulator to connect")
            time.sleep(args.warmup)

            def sims_cpu() -> float:
                return sum(cpu_seconds(s.pid) for s in sims)

            m0, c0, s0, t0 = scrape(f"{metrics}/metrics"), cpu_seconds(bridge.pid), sims_cpu(), time.monotonic()
            time.sleep(args.seconds)
            m1, c1, s1, t1 = scrape(f"{metrics}/metrics"), cpu_seconds(bridge.pid), sims_cpu(), time.monotonic()
        finally:
            procs = [*sims, bridge, *([broker] if broker is not None else [])]
            for p in procs:
                p.terminate()
            for p in procs:
                try:
                    p.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    p.kill()

    blocks = m1.get("openstrom_blocks_total", 0.0) - m0.get("openstrom_blocks_total", 0.0)
    lost = m1.get("openstrom_lost_blocks_total", 0.0)
    errors = m1.get("openstrom_frame_errors_total", 0.0)
    wall, cpu, sim_cpu = t1 - t0, c1 - c0, s1 - s0
    signal = blocks * BLOCK_S
    offered = args.devices * args.speed * wall
    load = args.devices * args.speed
    link = "mutual TLS" if args.tls else "plain TCP"
    print(f"load: {args.devices} simulators x speed {args.speed:g} = {load:g} full-rate devices offered ({link})")
    print(
        f"measured {wall:.1f} s: {blocks:,.0f} blocks acknowledged = {signal:,.1f} s of signal "
        f"({signal / offered:.0%} of offered)"
    )
    print(f"bridge CPU {cpu:.2f} s ({cpu / wall:.0%} of one core); simulators {sim_cpu:.2f} s")
    if cpu > 0:
        print(
            f"bridge: {signal / cpu:,.0f} full-rate devices per core, end to end "
            f"({cpu / signal * 1e3:.1f} ms CPU per device-second)"
        )
    print(f"lost blocks {lost:.0f}, frame errors {errors:.0f}")


if __name__ == "__main__":
    main()
