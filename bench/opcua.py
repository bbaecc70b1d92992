"""OPC UA value-update cost with a client subscribed to every variable, side by side in one run.

    .venv/bin/python bench/opcua.py [--devices 10] [--rounds 10]

Paths compared (same server, same subscription, the same values written per window: the circuits'
measurements, relays, spectra and their OPC 34100 energy-model values):
  plain   Node.write_value() per variable (asyncua's documented client-style API)
  bridge  the bridge's path: Server.write_attribute_value() with ready-made DataValues
          (asyncua's documented fast path: no per-write node lookup, type check or wrapping)
The subscribed client runs in its own process: the figure is value updates per second of the
server's CPU, writes and publishing both (a client decoding in the same process would count too).
Also checks that the client receives every change (no loss) at 10 devices x 10 circuits x 17
variables updated every window. Result: opcua_update_ratio_vs_asyncua in bench/results/latest.json.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import tempfile
import time
from pathlib import Path

from asyncua import ua
from common import free_port, save_results

from bridge.config import Config
from bridge.fronts.opcua.catalogue import CIRCUIT_AGGREGATES, ECM_MEASUREMENTS
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


CLIENT = """
import asyncio, sys
from asyncua import Client

class Count:
    n = 0
    def datachange_notification(self, node, val, data):
        Count.n += 1

async def main(url, path):
    ids = open(path).read().split()
    async with Client(url, timeout=30) as client:
        sub = await client.create_subscription(100, Count())
        nodes = [client.get_node(i) for i in ids]
        for k in range(0, len(nodes), 500):
            await sub.subscribe_data_change(nodes[k : k + 500], queuesize=2)
        print("subscribed", flush=True)
        loop = asyncio.get_running_loop()
        while (await loop.run_in_executor(None, sys.stdin.readline)).strip():
            print(Count.n, flush=True)

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=10)
    args = ap.parse_args()
    port = free_port()
    cfg = config(args.devices, port)
    model = Model(cfg)
    for d in model.devices.values():
        d.link.connected = True
        d.alarms["offline"].active = False
        d.snapshot = snapshot(0)
    tmp = Path(tempfile.mkdtemp())
    front = OpcUaFront(cfg, model, None, tmp)
    await front.start()
    gc.freeze()  # as the bridge does once every front serves (both paths gain alike)
    # the variables a window drives (counters and the 3 s / 10 min / 15 min aggregates change at
    # their own pace, so a window does not change them and they would never notify here)
    aggregated = {m.field for m in CIRCUIT_AGGREGATES}
    plain_targets = [
        (key, nid)
        for key, nid in front.space.nodes.values.items()
        if key[2] not in ("RelayOperations", "Dips", "Swells", "Interruptions", "RelayWiring", "RelayCoil")
        and key[2] not in aggregated
    ]
    # the OPC 34100 energy model's values (EnergyMeasurementType per circuit) change with every window too
    ecm_fields = {e.browse_name: (e.source, getattr(ua.VariantType, e.vtype)) for e in ECM_MEASUREMENTS}
    ecm_targets = [(*ecm_fields[browse], nid) for ecm in front.space.nodes.ecm.values() for browse, nid in ecm.items()]
    per_round = len(plain_targets) + len(ecm_targets)  # values written per window
    subscribed = len(plain_targets)
    (tmp / "nodes.txt").write_text("\n".join(nid.to_string() for _, nid in plain_targets))
    client = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CLIENT, cfg.opcua.endpoint, str(tmp / "nodes.txt"),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert client.stdin is not None and client.stdout is not None

    async def received() -> int:
        assert client.stdin is not None and client.stdout is not None
        await asyncio.sleep(1.0)  # the last publish reaches the client
        client.stdin.write(b"count\n")
        await client.stdin.drain()
        return int(await client.stdout.readline())

    try:
        assert (await asyncio.wait_for(client.stdout.readline(), 120)).strip() == b"subscribed"
        await asyncio.sleep(1.0)
        results: dict[str, list[tuple[float, int, int]]] = {}
        rounds_done = 0
        for name in ("plain", "bridge", "plain", "bridge"):
            base = await received()
            cpu = 0.0
            for _ in range(args.rounds):
                rounds_done += 1
                num = rounds_done  # every variable changes every round (the relay toggles)
                t = time.process_time()
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
                    freq = snapshot(num).freq_hz
                    for field, vtype, nid in ecm_targets:
                        x = freq if field == "freq_hz" else float(getattr(cv, field))
                        await front.server.get_node(nid).write_value(x, vtype)
                await asyncio.sleep(0.25)  # one window: the subscription publishes (its CPU counts too)
                cpu += time.process_time() - t
            got = await received() - base
            results.setdefault(name, []).append((per_round * args.rounds / cpu, got, subscribed * args.rounds))
    finally:
        client.stdin.close()
        await client.wait()
        await front.stop()
    print(f"{args.devices} devices x 10 circuits: {per_round} values written per window (the circuits' "
          f"measurements and their OPC 34100 energy model), {subscribed} of them subscribed by one client in "
          "its own process")  # fmt: skip
    for name, runs in results.items():
        best = max(r[0] for r in runs)
        got, expected = runs[-1][1], runs[-1][2]
        verdict = "no loss" if got >= expected else "LOSS"
        print(f"{name:<7} {best:12,.0f} value updates per CPU second (writes and publishing)   "
              f"notifications {got}/{expected} ({verdict})")  # fmt: skip
    ratio = max(r[0] for r in results["bridge"]) / max(r[0] for r in results["plain"])
    print(f"bridge/plain update rate: {ratio:.2f}")
    save_results({"opcua_update_ratio_vs_asyncua": round(ratio, 2)})


if __name__ == "__main__":
    asyncio.run(main())
