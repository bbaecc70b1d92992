"""Measuring apart from the event loop: the measuring process gives the live model, the counters and
the acknowledgements the loop's own measuring gives, bit for bit; a commit never includes a block
still being measured; a link waits while its blocks do; the bridge stops when the process dies."""

from __future__ import annotations

import asyncio
import collections
import os
import signal
from pathlib import Path

import numpy as np
import pytest

from bridge.app import BridgeApp
from bridge.commands.port import Calibrated
from bridge.measuring import LocalMeasurer, Measurer, MeasuringFailed, Request
from bridge.measuring.process import ProcessMeasurer
from bridge.model import Model
from bridge.session import DeviceHub
from bridge.session.runtime import BACKLOG_BATCHES
from bridge.store import Store
from device.protocol import Samples
from tests.harness import bridge_config, wait_for
from tests.test_session_durability import CONFIG, FakeDeviceLink, _device


class HeldMeasurer(LocalMeasurer):
    """Answers only when told: the measuring process at its slowest, one request at a time."""

    def __init__(self) -> None:
        super().__init__()
        self.queue: collections.deque[Request] = collections.deque()

    def send(self, req: Request) -> None:
        self.queue.append(req)

    def answer(self, count: int | None = None) -> None:
        for _ in range(len(self.queue) if count is None else count):
            super().send(self.queue.popleft())

    async def settle(self, device: str | None = None) -> None:
        await super().settle(device)  # its flushes join the queue ...
        self.answer()  # ... and everything up to them is answered


def _hub(tmp: Path, measurer: Measurer) -> tuple[DeviceHub, Store]:
    store = Store(tmp / "state.sqlite")
    return DeviceHub(CONFIG, Model(CONFIG), store, measurer=measurer), store


async def _stream(hub: DeviceHub, blocks: list[Samples], calibrate_at: int, hello: object) -> FakeDeviceLink:
    """HELLO and the blocks, with a calibration between two blocks: the blocks before it must be
    measured with the old scales, those after with the new, wherever they are measured."""
    link = FakeDeviceLink(hub, _device())
    health = hub.model.devices["board1"].link
    await link.send(hello)
    for k, block in enumerate(blocks):
        if k == calibrate_at:
            await wait_for(lambda k=k: health.blocks == k, 10, "the blocks before the calibration")
            hub.runtimes["board1"].record(Calibrated(circuit=1, channel="i", gain=1.25, offset=0.0, device_lsb=None))
        await link.send(block)
    await wait_for(lambda: health.blocks == len(blocks), 10, "every block counted")
    await link.pump()
    return link


async def test_the_measuring_process_gives_what_the_loop_gives_bit_for_bit(tmp_path: Path) -> None:
    dev = _device()
    hello = dev.hello()
    blocks = [dev.generate()[0] for _ in range(120)]
    del blocks[70:72]  # a gap: what came before it is measured at once
    process = ProcessMeasurer()
    await process.start()
    try:
        results = []
        for name, measurer in (("loop", LocalMeasurer()), ("process", process)):
            hub, store = _hub(tmp_path / name, measurer)
            link = await _stream(hub, blocks, 40, hello)
            rt = hub.runtimes["board1"]
            await rt.settle()
            hub.commit_all()
            await link.pump()
            assert rt.measured is not None
            state = hub.model.devices["board1"]
            results.append((rt.measured, state.snapshot, list(state.events), link.acked, store.progress("board1")))
            await link.close()
            store.close()
    finally:
        await process.close()
    (loop, snap_loop, events_loop, acked_loop, pos_loop), (proc, snap_proc, events_proc, acked_proc, pos_proc) = results
    assert np.array_equal(loop.energy.whole, proc.energy.whole)
    assert np.array_equal(loop.energy.residual, proc.energy.residual)
    assert loop.energy.values()[0]["import_wh"] > 0
    assert (loop.integrated_until, loop.end) == (proc.integrated_until, proc.end)
    assert snap_loop is not None and snap_proc is not None
    assert snap_loop.number == snap_proc.number and snap_loop.time_s == snap_proc.time_s
    assert [c.i_rms for c in snap_loop.circuits] == [c.i_rms for c in snap_proc.circuits]
    assert [c.import_wh for c in snap_loop.circuits] == [c.import_wh for c in snap_proc.circuits]
    assert events_loop == events_proc
    assert acked_loop == acked_proc and acked_loop is not None
    assert pos_loop == pos_proc


async def test_a_commit_counts_only_blocks_whose_measurement_came_back(tmp_path: Path) -> None:
    """The counters and the acknowledged position come from one answer: blocks sent but not yet
    measured are in neither. A bridge that crashes then and starts again from its store, fed the
    blocks its device still holds, counts every sample once."""
    dev = _device()
    hello = dev.hello()
    blocks = [dev.generate()[0] for _ in range(100)]
    ref_hub, _ = _hub(tmp_path / "ref", LocalMeasurer())
    ref = await _stream(ref_hub, blocks, -1, hello)
    await ref_hub.runtimes["board1"].settle()
    ref_an = ref_hub.runtimes["board1"].analyzer
    assert ref_an is not None
    ref_an.flush()
    reference = ref_an.energy[0].values()
    await ref.close()

    held = HeldMeasurer()
    hub, store = _hub(tmp_path / "crash", held)
    link = FakeDeviceLink(hub, dev)
    await link.send(hello)
    await link.pump()
    for block in blocks[:61]:
        held.answer()
        await link.send(block)
        await link.pump()
    held.answer()
    rt = hub.runtimes["board1"]
    for block in blocks[61:]:  # sent on to the measurer, not answered (the link waits meanwhile)
        await link.send(block)
    await link.pump()
    assert rt.measured is not None and rt.backlogged
    measured = rt.measured
    hub.commit_all()
    await link.pump()
    saved = store.progress("board1")
    assert saved is not None and link.acked == saved.block_seq
    # what is acknowledged was measured: the blocks up to it, and the samples counted of the next,
    # lie before the first sample the answer's counters have not integrated
    k = [b.block_seq for b in blocks].index(saved.block_seq)
    assert (k + 1) * blocks[0].n + saved.sample_offset <= measured.integrated_until
    whole, residual = store.energy("board1")[(1, "import_wh")]
    assert (whole, residual) == (int(measured.energy.whole[0, 0]), float(measured.energy.residual[0, 0]))
    # crash with blocks still in the measurer: no final commit; the device resends what is not acknowledged
    link.task.cancel()
    store.close()
    hub2, _ = _hub(tmp_path / "crash", LocalMeasurer())
    link2 = FakeDeviceLink(hub2, dev)
    await link2.send(dev.hello())  # its next block after the last one it made
    for block in blocks[k + 1 :]:
        await link2.send(block)
    await link2.pump()
    rt2 = hub2.runtimes["board1"]
    await rt2.settle()
    assert rt2.state.link.duplicates == 0
    an = rt2.analyzer
    assert an is not None
    an.flush()
    got = an.energy[0].values()
    # active energy is the sum of v*i over every sample: one block counted twice or lost is 1 % of it
    assert got["import_wh"] == pytest.approx(reference["import_wh"], rel=1e-6)
    await link2.close()


async def test_a_link_waits_while_its_blocks_wait_to_be_measured(tmp_path: Path) -> None:
    held = HeldMeasurer()
    hub, _ = _hub(tmp_path, held)
    dev = _device()
    link = FakeDeviceLink(hub, dev)
    await link.send(dev.hello())
    await link.pump()
    held.answer()  # the analyzer is made
    rt = hub.runtimes["board1"]
    blocks = [dev.generate()[0] for _ in range(60)]
    for block in blocks:
        await link.send(block)
    await link.pump()
    batch = rt.measured.end if rt.measured else 0
    per_batch = 0.5 * 7812.5 / blocks[0].n  # analysis.batch_s of blocks
    counted = hub.model.devices["board1"].link.blocks
    assert batch == 0 and rt.backlogged
    assert counted <= (BACKLOG_BATCHES + 1) * per_batch + 1 < len(blocks)  # read no further than the bound
    for _ in range(50):
        held.answer()
        await link.pump()
    await wait_for(lambda: hub.model.devices["board1"].link.blocks == len(blocks), 5, "every block read")
    held.answer()
    assert not rt.backlogged
    await link.close()


async def test_the_bridge_stops_when_its_measuring_process_dies(tmp_path: Path) -> None:
    config, _ = bridge_config(tmp_path)
    app = BridgeApp(config, base_dir=tmp_path)
    assert isinstance(app.measurer, ProcessMeasurer)
    task = asyncio.create_task(app.run())
    async with asyncio.timeout(20):
        await app.ready.wait()
    pid = app.measurer.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(BaseExceptionGroup) as caught:
        async with asyncio.timeout(20):
            await task
    failures = [e for e in caught.value.exceptions if isinstance(e, MeasuringFailed)]
    assert failures and "exit status -9" in str(failures[0])


async def test_the_measuring_process_stops_with_the_bridge(tmp_path: Path) -> None:
    measurer = ProcessMeasurer()
    await measurer.start()
    pid = measurer.pid
    assert pid is not None
    await measurer.settle()  # nothing registered: at once
    await measurer.close()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_a_window_crosses_the_pipe_whole() -> None:
    """Windows pickle as one block of rows: every field comes back, equal to the last bit."""
    import dataclasses
    import pickle

    from bridge.core import AnalyzerSettings, StreamAnalyzer

    dev = _device()
    hello = dev.hello()
    an = StreamAnalyzer(hello.circuit_count, AnalyzerSettings(fs=hello.sample_rate_hz))
    windows = []
    for _ in range(20):
        block, _ = dev.generate()
        windows += an.feed(block.v * 0.01, block.i * 0.001).windows
    assert windows
    for w in windows:
        back = pickle.loads(pickle.dumps(w, protocol=pickle.HIGHEST_PROTOCOL))
        for f in dataclasses.fields(w):
            a, b = getattr(w, f.name), getattr(back, f.name)
            if isinstance(a, np.ndarray):
                assert a.dtype == b.dtype and np.array_equal(a, b, equal_nan=a.dtype.kind == "f"), f.name
            else:
                assert a == b or (a != a and b != b), f.name


@pytest.mark.parametrize("where", ["loop", "process"])
async def test_a_new_sample_rate_goes_on_from_the_counters(tmp_path: Path, where: str) -> None:
    """A HELLO with another sample rate makes a new analyzer; the energy counted goes on from the
    old one's counters, which no commit has stored yet."""
    import dataclasses

    measurer: Measurer = LocalMeasurer() if where == "loop" else ProcessMeasurer()
    await measurer.start()
    try:
        hub, store = _hub(tmp_path, measurer)
        dev = _device()
        hello = dev.hello()
        link = await _stream(hub, [dev.generate()[0] for _ in range(40)], -1, hello)
        rt = hub.runtimes["board1"]
        await rt.settle()
        assert rt.measured is not None
        before = rt.measured.energy.values()
        assert before[0]["import_wh"] > 0 and store.energy("board1") == {}  # nothing committed yet
        await link.send(dataclasses.replace(dev.hello(), sample_rate_hz=3906.25))
        await wait_for(lambda: rt.state.hello is not None and rt.state.hello.sample_rate_hz == 3906.25, 10, "HELLO")
        await rt.settle()
        assert rt.measured is not None and rt.measured.fs == 3906.25
        assert rt.measured.energy.values() == before
        await link.close()
        store.close()
    finally:
        await measurer.close()
