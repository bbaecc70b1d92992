"""OPC UA address-space build cost per device, side by side in one run: with and without the OPC 34100
energy model (the condition instances are in both).

    .venv/bin/python bench/opcua_build.py [--devices 10]

Prints the time to add one device (10 circuits, their measurements, 65 condition instances and,
with the energy model, 10 EnergyMeasurementType objects), the nodes it adds, and how many of those
are made at once (a copied circuit's or device's nodes are made when first looked up).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import time

from asyncua import Server

from bridge.config import Device
from bridge.fronts.opcua.address_space import AddressSpace
from bridge.model.state import DeviceState


async def build(devices: int, energy: bool) -> tuple[float, float, int, int]:
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
    return first, per_device, nodes, made


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--devices", type=int, default=10)
    args = p.parse_args()
    logging.disable(logging.WARNING)  # asyncua's instantiate warns about every AnalogItem attribute
    rows = []
    for energy in (False, True):
        first, per_device, nodes, made = await build(args.devices, energy)
        rows.append(per_device)
        label = "with energy model" if energy else "without energy model"
        print(f"{label:<22} types + first device {first:5.2f} s, each further device {per_device * 1000:6.0f} ms, "
              f"{nodes:,} nodes, {made:,} made at once")  # fmt: skip
    print(f"energy model / without: {rows[1] / rows[0]:.2f} x the build time per device")


if __name__ == "__main__":
    asyncio.run(main())
