"""OPC UA address-space build cost per device, side by side in one run: with and without the OPC 34100
energy model (the condition instances are in both).

    .venv/bin/python bench/opcua_build.py [--devices 10]

Prints the time to add one device (10 circuits, their measurements, 65 condition instances and,
with the energy model, 10 EnergyMeasurementType objects), the nodes it adds, and how many of those
are made at once (a copied circuit's or device's nodes are made when first looked up); then what a
browse of every node costs in resident memory and what the sweep of unchanged nodes gives back.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import time

from asyncua import Server, ua
from common import rss_mb

from bridge.config import Device
from bridge.fronts.opcua.address_space import AddressSpace
from bridge.fronts.opcua.catalogue import NAMESPACE
from bridge.model.state import DeviceState


async def build(devices: int, energy: bool) -> tuple[float, float, int, int, Server]:
    server = Server()
    await server.init()
    space = AddressSpace(server, lambda d, c, n: lambda *a: None, energy_model=energy)
    states = [DeviceState(config=Device(name=f"d{k}", serial_number=f"S{k}", unit_id=1 + k)) for k in range(devices)]
    t0 = time.perf_counter()
    await space.build(states[:1])
    first = time.perf_counter() - t0
    table = server.iserver.aspace._nodes
    before, made_before = len(table.keys()), len(table)
    t1 = time.perf_counter()
    for dev in states[1:]:
        await space.add_device(dev)
    per_device = (time.perf_counter() - t1) / max(1, devices - 1)
    nodes = (len(table.keys()) - before) // max(1, devices - 1)
    made = (len(table) - made_before) // max(1, devices - 1)
    return first, per_device, nodes, made, server


def make_everything(server: Server, idx: int) -> int:
    """Every node of namespace ``idx`` looked up, walking forward references from the Objects folder
    as a client's browse does (with NodeIds from the references, not held after)."""
    aspace = server.iserver.aspace
    seen: set[str] = set()
    todo = [ua.NodeId(ua.ObjectIds.ObjectsFolder)]
    while todo:
        for r in aspace[todo.pop()].references:
            target = r.NodeId
            if r.IsForward and target.NamespaceIndex == idx and target.Identifier not in seen:
                seen.add(target.Identifier)
                todo.append(target)
    return len(seen)


def browse_all(server: Server, idx: int) -> None:
    """What a client's browse of every node costs in memory and what the sweep gives back: resident
    memory after the build, with every node made, after the sweep, and with every node made again
    (the memory the sweep freed is reused)."""
    table = server.iserver.aspace._nodes
    rows = [("built", rss_mb(os.getpid()), len(table))]
    t0 = time.perf_counter()
    reached = make_everything(server, idx)
    made_s = time.perf_counter() - t0
    rows.append(("every node made", rss_mb(os.getpid()), len(table)))
    t1 = time.perf_counter()
    forgotten = sum(table.forget_unchanged(c) for c in table.all_copies())
    sweep_s = time.perf_counter() - t1
    gc.collect()
    rows.append(("after the sweep", rss_mb(os.getpid()), len(table)))
    make_everything(server, idx)
    rows.append(("every node made again", rss_mb(os.getpid()), len(table)))
    for label, rss, made in rows:
        print(f"  {label:<22} {made:>9,} nodes made, resident {rss:6.0f} MB")
    print(f"  a walk to {reached:,} nodes took {made_s:.2f} s; the sweep forgot {forgotten:,} in {sweep_s:.2f} s")


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--devices", type=int, default=10)
    args = p.parse_args()
    logging.disable(logging.WARNING)  # asyncua's instantiate warns about every AnalogItem attribute
    rows = []
    for energy in (False, True):
        first, per_device, nodes, made, server = await build(args.devices, energy)
        rows.append(per_device)
        label = "with energy model" if energy else "without energy model"
        print(f"{label:<22} types + first device {first:5.2f} s, each further device {per_device * 1000:6.0f} ms, "
              f"{nodes:,} nodes, {made:,} made at once")  # fmt: skip
    print(f"energy model / without: {rows[1] / rows[0]:.2f} x the build time per device")
    print(f"a browse of every node of {args.devices} devices (with the energy model):")
    browse_all(server, await server.get_namespace_index(NAMESPACE))


if __name__ == "__main__":
    asyncio.run(main())
