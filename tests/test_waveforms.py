"""Waveforms from a running bridge: an HDF5 capture of the live stream (opened and checked against the
analytic load) with its plot, and COMTRADE records of a scripted dip and of a manual trigger, read back
by an independent reader (the ``comtrade`` package)."""

from __future__ import annotations

import asyncio
import json
import math
import sys
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml
from asyncua import ua

from bridge.config import Config
from bridge.model import Model, SampleBlock
from bridge.session.recorder import DETECTION_SLACK_S, EventRecorder
from device.simulator.process import SimulatorProcess
from tests.harness import bridge_config, running_bridge, wait_for, wait_for_value
from tests.test_commands_e2e import cli
from tests.test_opcua_e2e import _config as opcua_config
from tests.test_opcua_e2e import _connect as opcua_connect
from tests.test_opcua_e2e import trusted_client

pytestmark = pytest.mark.e2e
SCENARIOS = Path(__file__).parent / "scenarios"
FS = 7812.5


def _record_files(cfg: str) -> tuple[str, bytes]:
    return Path(cfg).read_text(), Path(cfg).with_suffix(".dat").read_bytes()


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.asarray(x, dtype=np.float64) ** 2)))


async def test_capture_writes_hdf5_with_the_analytic_signal_and_plots_it(tmp_path: Path) -> None:
    config, ports = bridge_config(tmp_path)
    api = ["--api", f"127.0.0.1:{ports['http']}"]
    sim = SimulatorProcess(["--connect", f"127.0.0.1:{ports['device']}", "--scenario", str(SCENARIOS / "steady.yaml")])
    async with running_bridge(config, tmp_path) as app, sim:
        dev = app.model.devices["board1"]
        await wait_for(lambda: dev.online, 20, "online")
        out, png = tmp_path / "cap.h5", tmp_path / "cap.png"
        code, stdout, err = await cli("capture", "board1", "--circuits", "1,3", "--seconds", "2", "--out", str(out),
                                      "--plot", str(png), *api)  # fmt: skip
        assert code == 0, err
        assert "captured 2.00 s of circuits 1,3" in stdout
        # an unknown circuit and an unknown device are refused before anything streams
        code, _, err = await cli("capture", "board1", "--circuits", "11", "--seconds", "1", "--out", "x.h5", *api)
        assert code == 3 and "1..10" in err
        code, _, err = await cli("capture", "nosuch", "--seconds", "1", "--out", "x.h5", *api)
        assert code == 3 and "unknown device" in err
    with h5py.File(out, "r") as f:
        assert f.attrs["format"] == "openstrom-capture/1" and f.attrs["serial_number"] == "OS-SIM-0001"
        assert f.attrs["sample_rate_hz"] == FS and f.attrs["dropped_blocks"] == 0
        t = f["timestamp"][:]
        assert t.size == round(2 * FS)
        assert np.allclose(np.diff(t), 1 / FS, atol=1e-6)  # one clock, no gap
        assert abs(t[0] - f["blocks"][0]["t0_s"]) < 1e-9
        whole = int(FS / 50 * 100) // 1  # 100 cycles (2 s) of 156.25 samples: 15625 samples
        v, i = f["circuit_01/voltage"][:whole], f["circuit_01/current"][:whole]
        assert f["circuit_01/voltage"].attrs["units"] == "V"
        # the steady scenario: a 2000 W heater on clean 230 V mains (ADC quantisation is well inside 1e-4)
        assert _rms(v) == pytest.approx(230.0, rel=2e-4)
        assert _rms(i) == pytest.approx(2000 / 230, rel=2e-4)
        assert float(np.mean(v.astype(np.float64) * i)) == pytest.approx(2000.0, rel=3e-4)
        assert _rms(f["circuit_03/current"][:]) < 0.01  # nothing on circuit 3
    from matplotlib.image import imread

    img = imread(png)
    assert img.shape[0] > 900 and img.shape[1] > 900 and float(img[..., :3].std()) > 0.05  # drawn, not blank


async def test_a_scripted_dip_and_a_manual_trigger_become_comtrade_records(tmp_path: Path) -> None:
    import comtrade

    dip = tmp_path / "dip.yaml"
    doc = yaml.safe_load((SCENARIOS / "shallowdip.yaml").read_text())
    doc["events"] = [{"at": 3.0, "kind": "sag", "depth": 0.5, "duration": 0.2}]  # to 115 V for 10 cycles
    dip.write_text(yaml.safe_dump(doc))
    config, ports = opcua_config(tmp_path)
    cert, key = await trusted_client(tmp_path, "records")
    api = ["--api", f"127.0.0.1:{ports['http']}"]
    sim = SimulatorProcess(["--connect", f"127.0.0.1:{ports['device']}", "--scenario", str(dip)])
    async with running_bridge(config, tmp_path) as app, sim:
        dev = app.model.devices["board1"]
        await wait_for(lambda: dev.records, 30, "a record of the dip")
        await wait_for(lambda: dev.events, 10, "the dip in the event log")
        code, out, err = await cli("record", "board1", *api)
        assert code == 0, err
        await wait_for(lambda: any(r.kind == "manual" for r in dev.records), 10, "the manual record")
        code, out, err = await cli("records", "board1", "--json", *api)
        assert code == 0, err
        listed = json.loads(out)["records"]
        code, table, _ = await cli("records", *api)
        assert code == 0 and "dip" in table and "manual" in table
        event_start = dev.events[-1].start_s
        # OPC UA: the records' paths, times and kinds, and ReadRecord returns the files (viewer may read)
        client = await opcua_connect(config, cert, key, "viewer", "view-secret")
        try:
            idx = await client.get_namespace_index("urn:openstrom:bridge")
            obj = client.get_node(ua.NodeId("board1", idx))

            async def read(browse: str) -> object:
                return await client.get_node(ua.NodeId(f"board1.{browse}", idx)).read_value()

            await wait_for_value(lambda: read("RecordKinds"), ["dip", "manual"])
            files = await read("RecordFiles")
            times = await read("RecordTimes")
            assert [await read("RecordCircuits")] == [[1, 0]]
            assert abs(times[0].timestamp() - event_start) < 1e-3  # type: ignore[index]
            cfg_text, dat = await obj.call_method(ua.QualifiedName("ReadRecord", idx), Path(files[0]).stem)  # type: ignore[index]
            read_back = (files[0], cfg_text, dat)  # type: ignore[index]
            with pytest.raises(ua.UaStatusCodeError, match="BadNotFound"):
                await obj.call_method(ua.QualifiedName("ReadRecord", idx), "../../bridge.sqlite")
        finally:
            await client.disconnect()
        assert dev.hello is not None
        wide = max(dev.hello.v_adc_bits, dev.hello.i_adc_bits) > 16
    cfg_file, cfg_text, dat = read_back
    assert (cfg_text, dat) == _record_files(cfg_file)
    assert [r["kind"] for r in listed] == ["dip", "manual"]  # the mains dip on ten circuits: one record
    rec = listed[0]
    assert rec["circuit"] == 1 and Path(rec["cfg"]).parent == tmp_path / "state" / "records"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the reader accepts the files without complaint
        r = comtrade.Comtrade()
        r.load(rec["cfg"], rec["dat"])
    assert r.rev_year == "2013" and r.ft == ("BINARY32" if wide else "BINARY")  # counts as the ADC gave them
    assert r.analog_count == 20 and r.analog_channel_ids[0] == "C01 V" and r.analog_channel_ids[10] == "C01 I"
    assert r.cfg.sample_rates[0][0] == FS and r.frequency == 50
    pre, post = 10 / 50, 40 / 50  # the default records.pre_cycles and post_cycles
    assert r.total_samples == pytest.approx((pre + post) * FS, abs=2)
    # the trigger sits pre-trigger cycles after the first sample, at the event's start (device clock)
    assert (r.trigger_timestamp - r.start_timestamp).total_seconds() == pytest.approx(pre, abs=1.5 / FS)
    assert r.trigger_timestamp.timestamp() == pytest.approx(event_start, abs=1e-3)
    v = np.asarray(r.analog[0])
    cyc = FS / 50
    before = v[: int(5 * cyc)]
    during = v[int(pre * FS + 2 * cyc) : int(pre * FS + 7 * cyc)]  # inside the 10-cycle sag
    after = v[-int(5 * cyc) :]
    assert _rms(before) == pytest.approx(230.0, rel=1e-3)
    assert _rms(during) == pytest.approx(115.0, rel=1e-3)
    assert _rms(after) == pytest.approx(230.0, rel=1e-3)
    assert _rms(np.asarray(r.analog[10])[: int(5 * cyc)]) == pytest.approx(2000 / 230, rel=2e-3)
    manual = comtrade.Comtrade()
    manual.load(listed[1]["cfg"], listed[1]["dat"])
    assert manual.total_samples == pytest.approx((pre + post) * FS, abs=2)


def _blocks(model: Model, seconds: float, t0: float = 1.8e9) -> list[SampleBlock]:
    n, lsb = 625, 0.01
    out = []
    for k in range(int(seconds * FS / n)):
        t = t0 + k * n / FS
        idx = np.arange(n) + k * n
        v = np.round(325 * np.sin(2 * math.pi * 50 * idx / FS) / lsb).astype(np.int64)
        counts = np.tile(v, (20, 1))
        out.append(SampleBlock("board1", k, t, FS, counts[:10], counts[10:], np.full(20, lsb), np.zeros(20)))
    return out


def _record_lengths(folder: Path) -> list[int]:
    """Samples a channel of every COMTRADE record in ``folder``, read back by the comtrade package."""
    import comtrade

    lengths = []
    for cfg in folder.glob("*.cfg"):
        r = comtrade.Comtrade()
        r.load(str(cfg), str(cfg.with_suffix(".dat")))
        lengths.append(r.total_samples)
    return sorted(lengths)


def test_retention_keeps_the_folder_inside_its_size(tmp_path: Path) -> None:
    doc = bridge_config(tmp_path)[0].model_dump()
    doc["records"] = {"max_mb": 0.9}  # one record of 20 channels x 1 s is about 0.36 MB
    config = Config.model_validate(doc)
    model = Model(config)
    rec = EventRecorder(config, model, tmp_path)
    blocks = _blocks(model, 12)
    for k, b in enumerate(blocks):
        model.samples.publish(b)
        if k in (30, 60, 90, 120):
            rec.manual("board1")
    names = [r.name for r in model.devices["board1"].records]
    assert rec.saved == 4 and len(names) == 2  # the two oldest went
    sizes = sum(p.stat().st_size for p in (tmp_path / "records").iterdir())
    assert sizes <= 0.9e6
    assert names == sorted(names)


def test_a_trigger_older_than_the_ring_writes_no_record(tmp_path: Path) -> None:
    config = bridge_config(tmp_path)[0]
    model = Model(config)
    rec = EventRecorder(config, model, tmp_path)
    blocks = _blocks(model, 5)
    for b in blocks:
        model.samples.publish(b)
    from bridge.model import Trigger

    model.samples.trigger(Trigger("board1", blocks[0].t0_s + 0.1, "dip", 2))  # 5 s ago: gone from the ring
    assert rec.saved == 0 and not list((tmp_path / "records").glob("*.cfg"))


async def test_the_status_view_shows_the_plant_once_as_json_as_text_and_refreshing(tmp_path: Path) -> None:
    config, ports = bridge_config(tmp_path)
    api = ["--api", f"127.0.0.1:{ports['http']}"]
    sim = SimulatorProcess(["--connect", f"127.0.0.1:{ports['device']}", "--scenario", str(SCENARIOS / "steady.yaml")])
    async with running_bridge(config, tmp_path) as app, sim:
        dev = app.model.devices["board1"]
        await wait_for(lambda: dev.online and dev.snapshot is not None and dev.status is not None, 20, "values")
        code, out, err = await cli("status", "--once", "--json", *api)
        assert code == 0, err
        board = json.loads(out)["devices"][0]
        assert board["name"] == "board1" and board["online"] and board["data_age_s"] < 3
        c1 = board["circuits"][0]
        assert c1["p_w"] == pytest.approx(2000, rel=1e-3) and c1["v_rms"] == pytest.approx(230, rel=1e-3)
        assert c1["relay_on"] is True and c1["alarms"] == [] and board["alarms"] == []
        code, out, err = await cli("status", "--once", *api)
        assert code == 0 and "board1" in out and "2,000 W" in out and "online" in out, out + err
        # refreshing (not a terminal here: one view per interval, appended)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bridge.cli", "status", "--interval", "0.3", *api,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        await asyncio.sleep(2.0)
        proc.terminate()
        views, _ = await asyncio.wait_for(proc.communicate(), 10)
        assert views.decode().count("board1 (OS-SIM-0001)") >= 3
    code, _, err = await cli("status", "--once", *api)  # the bridge has stopped
    assert code == 1 and "cannot reach" in err


def test_the_ring_holds_post_trigger_cycles_only_while_a_record_waits_for_them(tmp_path: Path) -> None:
    """Idle, a device's ring spans the pre-trigger cycles and the detection delay; an event noticed
    that late still gets its whole record, pre- and post-trigger samples, from the ring."""
    config = bridge_config(tmp_path)[0]
    model = Model(config)
    rec = EventRecorder(config, model, tmp_path)
    pre, post = config.records.pre_cycles / 50, config.records.post_cycles / 50
    block_s = 625 / FS
    # the latest an event is noticed: a batch, the block that completed it, and some of the slack
    delay = config.analysis.batch_s + block_s + 0.8 * DETECTION_SLACK_S
    blocks = _blocks(model, 8)
    for b in blocks[:60]:
        model.samples.publish(b)

    def span() -> float:
        ring = rec._ring["board1"]
        return max(h.t1_s for h in ring) - min(h.t0_s for h in ring)

    idle = pre + config.analysis.batch_s + block_s + DETECTION_SLACK_S
    assert span() <= idle + block_s  # whole blocks
    assert span() < pre + post + config.analysis.batch_s  # not the post-trigger cycles too
    from bridge.model import Trigger

    t = blocks[59].t0_s + block_s - delay
    model.samples.trigger(Trigger("board1", t, "dip", 3))
    for b in blocks[60:]:
        model.samples.publish(b)
    assert rec.saved == 1
    assert _record_lengths(tmp_path / "records") == [pytest.approx((pre + post) * FS, abs=2)]
    assert span() <= idle + block_s  # idle again


def test_once_a_batch_is_measured_the_ring_keeps_only_the_pre_trigger_cycles_before_its_end(tmp_path: Path) -> None:
    """Every event that started before a measured batch's end (less the detector's settling) has
    been triggered: the ring then keeps the pre-trigger cycles before that and the blocks since, not
    the whole detection delay; an event noticed a batch later, right at the settling margin, still
    gets its whole record."""
    from bridge.model import Trigger

    config = bridge_config(tmp_path)[0]
    model = Model(config)
    rec = EventRecorder(config, model, tmp_path)
    pre, post = config.records.pre_cycles / 50, config.records.post_cycles / 50
    block_s = 625 / FS
    per_batch = 7  # 80 ms blocks: the one that brings 0.5 s of new signal completes a batch
    blocks = _blocks(model, 8)

    def span() -> float:
        ring = rec._ring["board1"]
        return max(h.t1_s for h in ring) - min(h.t0_s for h in ring)

    between = []
    for k, b in enumerate(blocks[:63], 1):
        model.samples.publish(b)
        if k % per_batch == 0:
            model.samples.decided("board1", b.t0_s + block_s)
            between.append(span())
    assert max(between) <= pre + DETECTION_SLACK_S + block_s  # whole blocks
    assert max(between) < pre + config.analysis.batch_s  # less than the detection delay asks
    decided = blocks[62].t0_s + block_s
    for b in blocks[63:70]:  # the next batch, which notices an event in the settling margin
        model.samples.publish(b)
    model.samples.trigger(Trigger("board1", decided - 0.95 * DETECTION_SLACK_S, "dip", 1))
    for b in blocks[70:]:
        model.samples.publish(b)
    assert rec.saved == 1
    assert _record_lengths(tmp_path / "records") == [pytest.approx((pre + post) * FS, abs=2)]


@pytest.mark.parametrize("gap_s", [1.55, 60.0])  # within the ring's span, and far beyond it
def test_a_record_waiting_when_the_device_goes_silent_is_written_with_what_came_before(
    tmp_path: Path, gap_s: float
) -> None:
    """An event just before an outage the device could not buffer through (its mains gone, say): the
    block after the gap would push the event's samples out of the ring, so the record is written
    with what it has first, not lost or cut."""
    config = bridge_config(tmp_path)[0]
    model = Model(config)
    rec = EventRecorder(config, model, tmp_path)
    pre = config.records.pre_cycles / 50
    blocks = _blocks(model, 2)
    for b in blocks:
        model.samples.publish(b)
    rec.manual("board1")
    assert rec.saved == 0  # waiting for its post-trigger cycles
    later = _blocks(model, 0.2, t0=blocks[-1].t0_s + 625 / FS + gap_s)
    for b in later:
        model.samples.publish(b)
    assert rec.saved == 1
    assert _record_lengths(tmp_path / "records") == [pytest.approx(pre * FS, abs=2)]  # none after the gap


def test_a_device_clock_set_back_starts_the_ring_again_and_keeps_recording(tmp_path: Path) -> None:
    """A board whose clock is set back by a day: the record waiting on the old clock is written
    with what the ring held, and records on the new clock are whole (the ring kept the old blocks'
    newest time and dropped every new block before)."""
    config = bridge_config(tmp_path)[0]
    model = Model(config)
    rec = EventRecorder(config, model, tmp_path)
    pre, post = config.records.pre_cycles / 50, config.records.post_cycles / 50
    old = _blocks(model, 2, t0=1.8e9)
    for b in old:
        model.samples.publish(b)
    rec.manual("board1")  # waits for post-trigger samples that never come on this clock
    new = _blocks(model, 3, t0=1.8e9 - 86_400)
    for k, b in enumerate(new, 1):
        model.samples.publish(b)
        if k % 7 == 0:
            model.samples.decided("board1", b.t0_s + 625 / FS)  # the analyzer's word on the new clock
        if k == 12:
            trigger = rec.manual("board1")
            assert abs(trigger.t_s - b.t0_s - 625 / FS) < 1e-6  # the newest sample on the new clock
    assert rec.saved == 2
    # the old clock's record with what there was, the new clock's whole
    assert _record_lengths(tmp_path / "records") == [
        pytest.approx(pre * FS, abs=2),
        pytest.approx((pre + post) * FS, abs=2),
    ]


@pytest.mark.parametrize(
    ("low", "high", "width"),
    [
        (-(2**15), 2**15 - 1, 2),
        (-(2**15) - 1, 0, 3),
        (0, 2**15, 3),
        (-(2**23), 2**23 - 1, 3),
        (0, 2**23, 4),
        (-(2**31), 2**31 - 1, 4),
    ],
)
def test_the_ring_holds_counts_in_as_few_bytes_as_they_need_and_gives_them_back_exactly(
    low: int, high: int, width: int
) -> None:
    """16-bit counts in two bytes, a 24-bit ADC's in three, wider ones in four; every value back
    as it came, the extremes and the sign included."""
    from bridge.session.recorder import _hold, _wide

    rng = np.random.default_rng(7)
    counts = rng.integers(low, high, size=(20, 625), endpoint=True, dtype=np.int64)
    counts[0, :2] = low, high
    held = _hold(SampleBlock("board1", 0, 0.0, FS, counts[:10], counts[10:], np.ones(20), np.zeros(20)))
    assert held.counts is not None and held.wire is None  # no payload to keep: the counts, narrowed
    stored = held.counts.nbytes + (0 if held.high is None else held.high.nbytes)
    assert stored == width * counts.size
    back = _wide(held)
    assert back.dtype.kind == "i" and np.array_equal(back, counts)


@pytest.mark.parametrize(
    ("skip", "wide", "as_payload"),
    [(0, False, True), (1, False, True), (400, False, False), (0, True, False)],
)
def test_a_binary_block_is_held_as_its_payload_and_gives_its_counts_back_exactly(
    skip: int, wide: bool, as_payload: bool
) -> None:
    """A block that came as binary costs the ring its payload where that is smaller than its counts
    at 24 bits (the device's delta coding makes it so for mains signals), else its counts; a record
    gets every count back as sent, less those counted before."""
    from bridge.session.recorder import _hold, _wide
    from device.protocol import Samples
    from device.protocol.encoding import decode_samples_binary, encode_samples_binary

    rng = np.random.default_rng(3)
    k = np.arange(625)
    v = np.round(2**22 * np.sin(2 * math.pi * 50 * k / FS))[None, :] + rng.integers(-40, 40, (10, 625))
    # 31-bit noise: four bytes a sample on the wire, more than 24-bit counts would take
    i = rng.integers(-(2**30), 2**30, (10, 625)) if wide else np.round(v / 7)
    sent = Samples(block_seq=9, t0_ns=0, sample_rate_hz=FS, circuits=tuple(range(1, 11)),
                   v=v.astype(np.int64), i=i.astype(np.int64))  # fmt: skip
    got = decode_samples_binary(encode_samples_binary(sent))
    block = SampleBlock("board1", 9, 0.0, FS, got.v[:, skip:], got.i[:, skip:], np.ones(20), np.zeros(20),
                        got.wire, skip)  # fmt: skip
    held = _hold(block)
    assert (held.wire is not None) is as_payload
    if as_payload:
        assert held.wire is not None and len(held.wire) < 3 * 20 * (625 - skip)
    expected = np.concatenate((sent.v[:, skip:], sent.i[:, skip:]))
    assert np.array_equal(_wide(held), expected)
