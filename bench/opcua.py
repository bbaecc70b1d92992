"""OPC UA value-update cost with a client subscribed to every variable, side by side in one run.

    .venv/bin/python bench/opcua.py [--devices 10] [--rounds 10]

Paths compared (same server, same subscription, same values):
  plain   Node.write_value() per variable (asyncua's documented client-style API)
  bridge  the bridge's path: Server.write_attribute_value() with ready-made DataValues
          (asyncua's documented fast path: no per-write node lookup, type check or wrapping)
Also checks that the subscribed client receives every change (no loss) at 10 devices x 10 circuits x
15 variables updated every ~200 ms window.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from asyncua import Client

from bridge.config import Config
from bridge.fronts.opcua.catalogue import CIRCUIT_AGGREGATES
from bridge.fronts.opcua.server import OpcUaFront
from bridge.model import CircuitValues, DeviceSnapshot, Model


def config(devices: int, port: int) -> Config:
    return Config.model_validate(
        {
            "opcua": {
                "endpoint": f"opc.tcp://127.0.0.1:{port}/openstrom",
                "allow_none_security": True,
                "allow_anonymous": True,
                "trust_all_clients": True,
            },
            "devices": [{"name": f"dev{k:02d}", "serial_number": f"S{k}", "unit_id": k + 1} for k in range(devices)],
        }
    )


def snapshot(number: int) -> DeviceSnapshot:
    x = float(number) + 0.5
    cv = CircuitValues(
        v_rms=230 + x / 1000,
        i_rms=x,
        p_w=x,
        q_var=x,
        s_va=x,
        n_va=x,
        pf=0.5 + x / 1e4,
        dpf=0.9,
        angle_deg=x,
        thd_v=x,
        thd_i=x,
        v_dc=0,
        i_dc=0,
        clipped=False,
        event=False,
        import_wh=x,
        export_wh=x,
        q_ind_varh=x,
        q_cap_varh=x,
        s_vah=x,
        urms_half=230,
        harmonics_v=tuple(x / (k + 1) for k in range(40)),
        harmonics_i=tuple(x / (k + 2) for k in range(40)),
    )
    return DeviceSnapshot(
        number=number,
        time_s=time.time(),
        duration_s=0.2,
        freq_hz=50.0 + x / 1e4,
        synced=True,
        circuits=(cv,) * 10,
        received_monotonic=time.monotonic(),
    )


class Counter:
    def __init__(self) -> None:
        self.n = 0

    def datachange_notification(self, node: object, val: object, data: object) -> None:
        self.n += 1


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=10)
    args = ap.parse_args()
    port = 48555
    cfg = config(args.devices, port)
    model = Model(cfg)
    for d in model.devices.values():
        d.link.connected = True
        d.alarms["offline"].active = False
        d.snapshot = snapshot(0)
    front = OpcUaFront(cfg, model, None, Path(tempfile.mkdtemp()))
    await front.start()
    # the variables a window drives (counters and the 3 s / 10 min / 15 min aggregates change at
    # their own pace, so a window does not change them and they would never notify here)
    aggregated = {m.field for m in CIRCUIT_AGGREGATES}
    plain_targets = [
        (key, nid)
        for key, nid in front.space.nodes.values.items()
        if key[2] not in ("RelayOperations", "Dips", "Swells", "Interruptions", "RelayWiring", "RelayCoil")
        and key[2] not in aggregated
    ]
    value_nodes = [nid for _, nid in plain_targets]
    per_round = len(value_nodes)
    client = Client(cfg.opcua.endpoint, timeout=30)
    async with client:
        counter = Counter()
        sub = await client.create_subscription(100, counter)
        nodes = [client.get_node(n) for n in value_nodes]
        for k in range(0, len(nodes), 500):
            await sub.subscribe_data_change(nodes[k : k + 500], queuesize=2)
        await asyncio.sleep(1.0)
        results: dict[str, list[tuple[float, int, int]]] = {}
        rounds_done = 0
        for name in ("plain", "bridge", "plain", "bridge"):
            base = counter.n
            t = time.perf_counter()
            for _ in range(args.rounds):
                rounds_done += 1
                num = rounds_done  # every variable changes every round (the relay toggles)
                if name == "bridge":
                    for d in model.devices.values():
                        d.snapshot = snapshot(num)
                        for cs in d.circuits:
                            cs.relay_on = bool(num % 2)
                        await front.values.write_device(d)
                else:
                    cv = snapshot(num).circuits[0]
                    for (_, _, field), nid in plain_targets:
                        raw = getattr(cv, field, num)
                        value = (
                            bool(num % 2) if field == "relay" else list(raw) if isinstance(raw, tuple) else float(raw)
                        )
                        await front.server.get_node(nid).write_value(value)
                await asyncio.sleep(0.2)  # one window; lets the subscription publish
            elapsed = time.perf_counter() - t - 0.2 * args.rounds
            await asyncio.sleep(1.0)
            got = counter.n - base
            results.setdefault(name, []).append((per_round * args.rounds / elapsed, got, per_round * args.rounds))
        await sub.delete()
    await front.stop()
    per_circuit = per_round // (10 * args.devices)
    print(f"{args.devices} devices x 10 circuits x {per_circuit} variables = {per_round} values per window")
    for name, runs in results.items():
        best = max(r[0] for r in runs)
        got, expected = runs[-1][1], runs[-1][2]
        verdict = "no loss" if got >= expected else "LOSS"
        print(f"{name:<7} {best:12,.0f} value updates/s   notifications {got}/{expected} ({verdict})")
    ratio = max(r[0] for r in results["bridge"]) / max(r[0] for r in results["plain"])
    print(f"bridge/plain update rate: {ratio:.2f}")


if __name__ == "__main__":
    asyncio.run(main())
