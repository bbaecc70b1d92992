"""The simulator as a real process, over real TCP and a real pty, decoded by the real codec."""

from __future__ import annotations

import asyncio
import os
import tty
from pathlib import Path

import numpy as np
import pytest

from device.protocol import (
    Ack,
    CommandResult,
    Connection,
    ConnectionClosed,
    FrameError,
    Hello,
    RelayCommand,
    Role,
    Samples,
    SelfTestRequest,
    SelfTestResult,
    Status,
)
from device.simulator.device import Identity, SimulatedDevice
from device.simulator.process import SimulatorProcess
from device.simulator.scenario import load_scenario
from device.simulator.waveforms import I_LSB

pytestmark = pytest.mark.e2e

SCENARIOS = Path(__file__).parent / "scenarios"
PLANT = Path(__file__).parents[1] / "device" / "simulator" / "scenarios" / "plant.yaml"


def ground_truth(scenario: Path, seed: int, blocks: int) -> list[Samples]:
    dev = SimulatedDevice(load_scenario(scenario), identity=Identity.for_serial("X"), seed=seed)
    return [dev.generate()[0] for _ in range(blocks)]


class Receiver:
    """A minimal bridge side: decode, de-duplicate by block sequence, acknowledge."""

    def __init__(self) -> None:
        self.blocks: dict[int, Samples] = {}
        self.wire_order: list[int] = []
        self.replayed_equal = True
        self.others: list[object] = []
        self.hellos: list[Hello] = []

    def take(self, conn: Connection, data: bytes, ack: bool) -> list[bytes]:
        out: list[bytes] = []
        for ev in conn.events(data):
            if isinstance(ev, Samples):
                self.wire_order.append(ev.block_seq)
                if ev.block_seq in self.blocks:
                    self.replayed_equal &= self.blocks[ev.block_seq] == ev
                self.blocks[ev.block_seq] = ev
                if ack:
                    out.append(conn.send(Ack(block_seq=ev.block_seq)))
            elif isinstance(ev, Hello):
                self.hellos.append(ev)
            elif isinstance(ev, ConnectionClosed):
                break
            elif isinstance(ev, FrameError):
                raise AssertionError(f"frame error from simulator: {ev.error}")
            else:
                self.others.append(ev)
        return out


async def test_tcp_stream_is_bit_exact_and_survives_a_cut() -> None:
    rx = Receiver()
    sessions: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()

    async def on_conn(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await sessions.put((r, w))

    server = await asyncio.start_server(on_conn, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    args = ["--connect", f"127.0.0.1:{port}", "--scenario", str(PLANT), "--seed", "7", "--speed", "8"]
    async with server, SimulatorProcess([*args, "--duration", "4"]) as sim:
        # first session: acknowledge the first 12 blocks, then stop acknowledging and cut the line
        reader, writer = await asyncio.wait_for(sessions.get(), 20)
        conn = Connection(Role.BRIDGE)
        while len(rx.blocks) < 20:
            data = await asyncio.wait_for(reader.read(65536), 10)
            assert data, sim.log
            for out in rx.take(conn, data, ack=len(rx.blocks) < 12):
                writer.write(out)
        writer.close()
        first_session = len(rx.wire_order)
        # second session: everything from block 12 on is resent, then the live stream continues
        reader, writer = await asyncio.wait_for(sessions.get(), 20)
        conn = Connection(Role.BRIDGE)
        while True:
            data = await asyncio.wait_for(reader.read(65536), 20)
            for out in rx.take(conn, data, ack=True):
                writer.write(out)
            if not data:
                break
        async with asyncio.timeout(10):
            assert await sim.wait() == 0, sim.log
    seqs = sorted(rx.blocks)
    assert seqs == list(range(len(seqs))), "gap in the de-duplicated sequence"
    assert len(seqs) == 50  # 4 s at 12.5 blocks/s
    replays = len(rx.wire_order) - len(seqs)
    assert replays >= first_session - 12 > 0, "unacknowledged blocks were not resent"
    assert rx.replayed_equal
    truth = ground_truth(PLANT, 7, len(seqs))
    for seq, expect in enumerate(truth):
        assert rx.blocks[seq] == expect, f"block {seq} differs from the simulator's ground truth"
    assert len(rx.hellos) == 2 and rx.hellos[1].next_block_seq > 12


async def _serve_until(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn: Connection, rx: Receiver, stop: object
) -> None:
    while not stop():  # type: ignore[operator]
        data = await asyncio.wait_for(reader.read(65536), 10)
        assert data
        for out in rx.take(conn, data, ack=True):
            writer.write(out)


async def test_relay_command_cuts_the_load_at_a_zero_crossing_and_self_test_reports_faults() -> None:
    rx = Receiver()
    ready: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()

    async def on_conn(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await ready.put((r, w))

    server = await asyncio.start_server(on_conn, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    scenario = SCENARIOS / "faulty.yaml"
    async with (
        server,
        SimulatorProcess(["--connect", f"127.0.0.1:{port}", "--scenario", str(scenario), "--speed", "4"]),
    ):
        reader, writer = await asyncio.wait_for(ready.get(), 20)
        conn = Connection(Role.BRIDGE)
        await _serve_until(reader, writer, conn, rx, lambda: len(rx.blocks) >= 3)
        writer.write(conn.send(RelayCommand(command_id=41, circuit=1, on=False)))
        writer.write(conn.send(SelfTestRequest(command_id=42)))
        await _serve_until(
            reader,
            writer,
            conn,
            rx,
            lambda: (
                any(isinstance(o, CommandResult) for o in rx.others)
                and any(isinstance(o, SelfTestResult) for o in rx.others)
                and any(isinstance(s, Status) and not s.circuit_on[0] for s in rx.others)
            ),
        )
        more = len(rx.blocks) + 3
        await _serve_until(reader, writer, conn, rx, lambda: len(rx.blocks) >= more)
        writer.close()
    result = next(o for o in rx.others if isinstance(o, CommandResult))
    assert (result.command_id, result.ok) == (41, True)
    selftest = next(o for o in rx.others if isinstance(o, SelfTestResult))
    assert selftest.command_id == 42
    assert {f.code for f in selftest.faults} == {"WIFI_TIMEOUT", "RELAY04_STUCK"}
    # find the block where the relay opened: before it ~9 A, after it nothing but ADC noise
    amps = {seq: np.sqrt(np.mean((b.i[0] * I_LSB) ** 2)) for seq, b in rx.blocks.items()}
    first, last = min(amps), max(amps)
    assert amps[first] == pytest.approx(2000 / 230, rel=0.01)
    assert amps[last] < 0.001
    switched = next(seq for seq in sorted(amps) if amps[seq] < 8.0)
    tail = rx.blocks[switched].i[0]
    cut = int(np.flatnonzero(np.abs(tail) > 50)[-1]) + 1
    v_at_cut = rx.blocks[switched].v[0][cut - 1 : cut + 1]
    assert np.sign(v_at_cut[0]) != np.sign(v_at_cut[1]) or np.min(np.abs(v_at_cut)) < 3000, "not at a zero crossing"


async def test_serial_link_over_a_pty() -> None:
    master, slave = os.openpty()
    tty.setraw(master)
    path = os.ttyname(slave)
    rx = Receiver()
    conn = Connection(Role.BRIDGE, skip_before_hello=True)
    loop = asyncio.get_running_loop()
    got = asyncio.Event()

    def readable() -> None:
        try:
            data = os.read(master, 65536)
        except OSError:
            return
        for out in rx.take(conn, data, ack=True):
            os.write(master, out)
        if len(rx.blocks) >= 25:
            got.set()

    loop.add_reader(master, readable)
    try:
        async with SimulatorProcess(["--serial", path, "--speed", "8", "--seed", "3", "--scenario", str(PLANT)]) as sim:
            await asyncio.wait_for(got.wait(), 30)
            assert sim.log
    finally:
        loop.remove_reader(master)
        os.close(master)
        os.close(slave)
    seqs = sorted(rx.blocks)
    assert seqs == list(range(len(seqs)))
    truth = ground_truth(PLANT, 3, len(seqs))
    assert all(rx.blocks[k] == truth[k] for k in seqs)
