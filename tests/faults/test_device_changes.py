"""A device that reappears as another board behind the same serial: fewer circuits, newer firmware.
Its new blocks are measured at once (not skipped), what was counted per circuit is kept, the circuits
it no longer has read "not available", and the change is logged. In-memory link, no sockets."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from bridge.fronts.modbus.register_map import load_map
from bridge.model.quantities import QUANTITIES
from device.protocol import Samples
from tests.test_session_durability import FakeDeviceLink, _device, _hub


def _fewer(block: Samples, n: int) -> Samples:
    return dataclasses.replace(block, circuits=block.circuits[:n], v=block.v[:n], i=block.i[:n])


async def test_a_board_with_fewer_circuits_and_other_firmware_is_measured_at_once(tmp_path: Path) -> None:
    hub, store = _hub(tmp_path)
    rt = hub.runtimes["board1"]
    dev = _device()
    link = FakeDeviceLink(hub, dev)
    await link.send(dev.hello())
    for _ in range(40):
        await link.send(dev.generate()[0])
    await link.pump()
    rt.commit()
    await link.close()
    state = hub.model.devices["board1"]
    assert state.snapshot is not None and len(state.snapshot.circuits) == 10
    energy_10 = store.energy("board1")
    before_c1, before_c10 = energy_10[(1, "import_wh")], energy_10[(10, "import_wh")]
    blocks_before = state.link.blocks

    # the same serial comes back with 8 circuits and new firmware; its numbering goes on
    h = dev.hello()
    hello = dataclasses.replace(
        h, circuit_count=8, v_lsb_volts=h.v_lsb_volts[:8], i_lsb_amps=h.i_lsb_amps[:8], firmware_version="0.9.0"
    )
    link2 = FakeDeviceLink(hub, dev)
    await link2.send(hello)
    for _ in range(40):
        await link2.send(_fewer(dev.generate()[0], 8))
    await link2.pump()
    assert state.link.blocks == blocks_before + 40  # measured, not skipped
    assert state.snapshot is not None and len(state.snapshot.circuits) == 8
    assert state.hello is not None and state.hello.firmware_version == "0.9.0"
    c1 = state.snapshot.circuits[0].import_wh
    assert c1 > before_c1[0] + before_c1[1]  # circuit 1 counts on from what was counted
    assert QUANTITIES["circuit.v_rms"].read(state, 9) is None  # a circuit it has no more: not available
    rmap = load_map("openstrom")
    assert any(p.quantity is not None and p.quantity.name == "circuit.v_rms" and p.circuit == 9 for p in rmap.points)
    rt.commit()
    assert store.energy("board1")[(10, "import_wh")] == before_c10  # kept as it was
    await link2.close()
