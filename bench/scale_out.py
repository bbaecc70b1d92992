"""Scale-out on this machine: replicas x boards into one Mosquitto broker, measured.

    .venv/bin/python bench/scale_out.py [--replicas 4] [--boards 10] [--rate 1000] [--seconds 30] [--batch 1.0]

Runs ``--replicas`` bridge processes (``shard.count`` replicas sharing one device list, Modbus and
the Sparkplug B front on, OPC UA off unless ``--opcua``), one simulator process per replica running
``--boards`` household boards at ``--rate`` samples per second, and a Sparkplug host application
subscribed to ``spBv1.0/#``. After a warm-up it counts, over ``--seconds``, the messages and bytes the
host receives per board (payload bytes, and the MQTT PUBLISH bytes on the wire: fixed header,
remaining length, topic), and the CPU each replica used per board-second of signal. The broker's
load per board is what sizes a broker cluster; the replica's CPU per board-second what sizes a shard.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common import cpu_seconds  # noqa: E402

from tests.cluster import Cluster, SparkplugHost  # noqa: E402
from tests.harness import wait_for  # noqa: E402
from tests.mqtt_host import listening, mosquitto  # noqa: E402

HOUSEHOLD = ROOT / "device" / "simulator" / "scenarios" / "household.yaml"


def wire_bytes(topic: str, payload: int) -> int:
    """An MQTT 3.1.1 PUBLISH at QoS 0: 1 header byte, the remaining length (1-4 bytes), 2 + topic."""
    remaining = 2 + len(topic.encode()) + payload
    return 1 + (1 if remaining < 128 else 2 if remaining < 16384 else 3) + remaining


async def run(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="openstrom-scale-") as d:
        tmp = Path(d)
        scenario = yaml.safe_load(HOUSEHOLD.read_text())
        scenario["sample_rate_hz"] = args.rate
        scenario_file = tmp / "household.yaml"
        scenario_file.write_text(yaml.safe_dump(scenario))
        async with mosquitto(tmp) as port:
            cluster = Cluster(
                tmp, port, shards=args.replicas, boards_per_shard=args.boards, batch_s=args.batch, publish_s=args.batch
            )
            cluster.opcua = args.opcua
            cluster.write_configs()
            host = SparkplugHost()
            try:
                async with listening(host, port):
                    await cluster.start_replicas()
                    await cluster.start_boards(scenario_file, None)
                    boards = args.replicas * args.boards
                    with contextlib.suppress(TimeoutError):
                        await wait_for(lambda: len(host.devices_born()) >= boards, 60, "every board born")
                    print(f"{len(host.devices_born())}/{boards} boards born; warming up")
                    await asyncio.sleep(8)
                    pids = [r.proc.pid for r in cluster.replicas if r.proc is not None]
                    cpu0 = [cpu_seconds(p) for p in pids]
                    n0, t0 = len(host.got), time.monotonic()
                    await asyncio.sleep(args.seconds)
                    elapsed = time.monotonic() - t0
                    cpu = [cpu_seconds(p) - c for p, c in zip(pids, cpu0, strict=True)]
                    window = host.got[n0:]
            finally:
                await cluster.close()
    per_board = boards * elapsed
    data = [(t, n) for t, n, _ in window if "/DDATA/" in t]
    payload = sum(n for _, n, _ in window)
    wire = sum(wire_bytes(t, n) for t, n, _ in window)
    ms_per_board_s = [1000 * c / (args.boards * elapsed) for c in cpu]
    print(
        f"{args.replicas} replicas x {args.boards} boards at {args.rate:g} samples/s, batch {args.batch:g} s, "
        f"{elapsed:.1f} s measured"
    )
    print(
        f"broker -> host: {len(window) / per_board:.2f} messages/s per board ({len(data) / per_board:.2f} DDATA), "
        f"{payload / per_board:,.0f} payload bytes/s per board, {wire / per_board:,.0f} bytes/s on the wire"
    )
    print(
        "replica CPU: "
        + ", ".join(f"{m:.1f}" for m in ms_per_board_s)
        + f" ms per board-second (median {statistics.median(ms_per_board_s):.1f}): "
        f"{1000 / statistics.median(ms_per_board_s):,.0f} such boards per core"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--replicas", type=int, default=4)
    p.add_argument("--boards", type=int, default=10, help="boards per replica")
    p.add_argument("--rate", type=float, default=1000.0, help="samples per second per channel (1000..7812.5)")
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--batch", type=float, default=1.0, help="analysis.batch_s and publish_s")
    p.add_argument("--opcua", action="store_true", help="OPC UA on in every replica too")
    asyncio.run(run(p.parse_args()))


if __name__ == "__main__":
    main()
