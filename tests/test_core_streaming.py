"""Streaming form == analyze(), however the samples are cut into blocks; idempotent on replays."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.core import AnalyzerSettings, StreamAnalyzer, WindowMetrics, analyze
from tests.analytic import FS, waveform

VOLT, CUR = waveform(1.6, f=49.8, v_harm={5: 4}, i_parts=[(1, 7.0, -20.0), (3, 2.0, 10.0)])
ENV = np.ones_like(VOLT)
ENV[5000:5600] = 0.6
VOLT = VOLT * ENV
VOLT = VOLT + np.random.default_rng(5).normal(0, 0.3, VOLT.size)
REFERENCE = analyze(VOLT, CUR, FS)


def _as_tuple(w: WindowMetrics) -> tuple[object, ...]:
    return tuple(v.tobytes() if isinstance(v, np.ndarray) else v for v in dataclasses.astuple(w))


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(1, 3000), min_size=1, max_size=30))
def test_any_block_cuts_give_identical_results(sizes: list[int]) -> None:
    sa = StreamAnalyzer(1, AnalyzerSettings(fs=FS))
    windows: list[WindowMetrics] = []
    events = []
    pos = 0
    seq = 0
    while pos < VOLT.size:
        n = sizes[seq % len(sizes)]
        up = sa.feed(VOLT[pos : pos + n], CUR[pos : pos + n], seq=seq)
        windows += up.windows
        events += up.events
        pos += n
        seq += 1
    tail = sa.flush()
    windows += tail.windows
    events += tail.events
    ref = REFERENCE
    assert len(windows) == ref.p_w.size
    assert np.array_equal(np.array([w.p_w[0] for w in windows]), ref.p_w)
    assert np.array_equal(np.array([w.q_var[0] for w in windows]), ref.q_var)
    assert np.array_equal(np.array([w.freq_hz for w in windows]), ref.freq_hz, equal_nan=True)
    assert np.array_equal(np.array([w.thd_v[0] for w in windows]), ref.thd_v, equal_nan=True)
    assert [(e.kind, e.start, e.end, e.extreme_v) for e in events] == [
        (e.kind, e.start, e.end, e.extreme_v) for e in ref.events if e.end is not None
    ]
    assert sa.energy[0].values() == {
        "import_wh": ref.import_wh,
        "export_wh": ref.export_wh,
        "q_ind_varh": ref.q_ind_varh,
        "q_cap_varh": ref.q_cap_varh,
        "s_vah": ref.s_vah,
    }


def test_replayed_blocks_are_not_counted_twice_and_gaps_resync() -> None:
    sa = StreamAnalyzer(1, AnalyzerSettings(fs=FS))
    n = 625
    blocks = [(VOLT[k : k + n], CUR[k : k + n]) for k in range(0, VOLT.size - n + 1, n)]
    for seq, (v, i) in enumerate(blocks[:10]):
        sa.feed(v, i, seq=seq)
    before = sa.energy[0].values()
    for seq in (3, 9, 0):  # a device resending after a reconnect
        assert sa.feed(*blocks[seq], seq=seq).windows == []
    assert sa.energy[0].values() == before
    assert sa.duplicates == 3
    sa.feed(*blocks[12], seq=12)  # blocks 10 and 11 lost
    assert sa.gaps == 1
    sa.feed(*blocks[13], seq=13)
    after = sa.energy[0].values()
    assert after["import_wh"] > before["import_wh"]


def test_multi_circuit_matches_single_circuit() -> None:
    v2 = np.stack([VOLT, VOLT])
    i2 = np.stack([CUR, 0.5 * CUR])
    sa = StreamAnalyzer(2, AnalyzerSettings(fs=FS))
    up = sa.feed(v2, i2)
    tail = sa.flush()
    ws = up.windows + tail.windows
    assert np.array_equal(np.array([w.p_w[0] for w in ws]), REFERENCE.p_w)
    assert np.allclose(np.array([w.p_w[1] for w in ws]), 0.5 * REFERENCE.p_w, rtol=1e-12)


def _run(sa: StreamAnalyzer, v: np.ndarray, i: np.ndarray, sizes: list[int], **feed: object) -> list[WindowMetrics]:
    out: list[WindowMetrics] = []
    pos = seq = 0
    while pos < v.shape[-1]:
        n = sizes[seq % len(sizes)]
        out += sa.feed(v[..., pos : pos + n], i[..., pos : pos + n], seq=seq, **feed).windows  # type: ignore[arg-type]
        pos += n
        seq += 1
    return out + sa.flush().windows


@settings(max_examples=15, deadline=None)
@given(
    st.lists(st.integers(1, 4000), min_size=1, max_size=20),
    st.sampled_from([0.0, 0.2, 1.0, 3.0]),
    st.floats(0.0, 0.99),
)
def test_spectrum_every_nth_window_and_any_batch_size_change_no_bit(
    sizes: list[int], batch_s: float, phase: float
) -> None:
    """With the spectrum measured in one window of three, the windows in between carry it over; the
    batch size, its phase and block cuts change nothing."""
    settings_ = AnalyzerSettings(fs=FS, harmonics_every=3, min_batch_s=batch_s, batch_phase=phase)
    got = _run(StreamAnalyzer(1, settings_), VOLT, CUR, sizes)
    ref = _run(StreamAnalyzer(1, AnalyzerSettings(fs=FS, harmonics_every=3, min_batch_s=0.0)), VOLT, CUR, [VOLT.size])
    assert [_as_tuple(w) for w in got] == [_as_tuple(w) for w in ref]
    # one synchronised window in three measures (the first one first); unsynchronised ones never do
    count, expected = -1, []
    for w in got:
        count += w.synced
        expected.append(bool(w.synced and count % 3 == 0))
    assert [w.harmonics_fresh for w in got] == expected
    src = None
    for w in got:
        src = w if w.harmonics_fresh else src
        if src is None:  # before the first synchronised window there is no spectrum
            assert np.isnan(w.thd_v[0]) and np.isnan(w.harmonics_i).all()
        else:
            assert w.thd_v[0] == src.thd_v[0] and np.array_equal(w.harmonics_i, src.harmonics_i, equal_nan=True)
    # the fresh windows hold what measuring every window gives
    full = REFERENCE
    fresh = [k for k, w in enumerate(got) if w.harmonics_fresh]
    assert np.array_equal(np.array([got[k].thd_i[0] for k in fresh]), full.thd_i[fresh])
    # everything else is untouched by the cadence
    assert np.array_equal(np.array([w.p_w[0] for w in got]), full.p_w)


def test_a_batch_phase_brings_the_first_batch_forward_by_its_share() -> None:
    """Boards that connect together are measured at different moments: the first batch of a board
    with phase p comes after (1 - p) of the batch's signal, the ones after it a whole batch apart."""
    block = round(0.08 * FS)  # 80 ms blocks, one second a batch
    volt, cur = waveform(3.3, f=50.0)
    for phase, first in ((0.0, 13), (0.5, 7), (0.9, 2)):
        sa = StreamAnalyzer(1, AnalyzerSettings(fs=FS, min_batch_s=1.0, batch_phase=phase))
        measured = []
        for k in range(40):
            lo = k * block
            if sa.feed(volt[..., lo : lo + block], cur[..., lo : lo + block], seq=k).windows:
                measured.append(k + 1)  # blocks in when a batch was measured
        assert measured[0] == first, phase
        assert len(measured) >= 3, measured
        assert all(b - a in (12, 13) for a, b in itertools.pairwise(measured)), measured


def test_adc_counts_with_scale_and_offset_equal_volts_and_amperes() -> None:
    """The service feeds ADC counts with per-channel scale and offset; the analyzer scales them as it
    copies them in, to the same bits as scaling first."""
    rng = np.random.default_rng(3)
    counts_v = rng.integers(-(2**23), 2**23, size=(2, 7000))
    counts_i = rng.integers(-(2**23), 2**23, size=(2, 7000))
    scale = np.array([3e-5, 2.9e-5, 1.1e-5, 1.2e-5])
    offset = np.array([0.5, -0.25, 0.01, 0.0])
    volts = counts_v * scale[:2, None] + offset[:2, None]
    amps = counts_i * scale[2:, None] + offset[2:, None]
    a = _run(StreamAnalyzer(2, AnalyzerSettings(fs=FS)), counts_v, counts_i, [625], scale=scale, offset=offset)
    b = _run(StreamAnalyzer(2, AnalyzerSettings(fs=FS)), volts, amps, [625])
    assert len(a) == len(b) > 0
    assert [_as_tuple(w) for w in a] == [_as_tuple(w) for w in b]


@pytest.mark.parametrize("wide", [1, 2**9])  # 24-bit counts, and counts no int32 holds
def test_counts_are_held_as_counts_and_a_calibration_mid_batch_scales_each_run_by_its_own(wide: int) -> None:
    """ADC counts stay int32 in the buffer (half of float64), each run of blocks scaled by the scale
    it came with: the windows are the same bits as volts scaled block by block, and so when floats
    follow counts in one batch, or the counts do not fit 32 bits (they go in as volts)."""
    rng = np.random.default_rng(5)
    cv = rng.integers(-(2**23), 2**23, size=(2, 9000)) * wide
    ci = rng.integers(-(2**23), 2**23, size=(2, 9000)) * wide
    first = (np.array([3e-5, 2.9e-5, 1.1e-5, 1.2e-5]) / wide, np.array([0.5, -0.25, 0.01, 0.0]))
    second = (np.array([3.1e-5, 2.8e-5, 1.0e-5, 1.3e-5]) / wide, np.array([0.25, 0.0, 0.0, 0.02]))

    def run(how: str) -> list[tuple[object, ...]]:
        sa = StreamAnalyzer(2, AnalyzerSettings(fs=FS, min_batch_s=1.0))
        out = []
        for k in range(18):
            scale, offset = first if k < 7 else second  # a calibration lands in the middle of the first batch
            v, i = cv[:, k * 500 : (k + 1) * 500], ci[:, k * 500 : (k + 1) * 500]
            if how == "volts" or (how == "mixed" and k >= 11):
                v, i = v * scale[:2, None] + offset[:2, None], i * scale[2:, None] + offset[2:, None]
                out += sa.feed(v, i, seq=k).windows
            else:
                out += sa.feed(v, i, seq=k, scale=scale, offset=offset).windows
            if how == "counts" and k == 8:
                assert (sa._buf.dtype == np.int32) == (wide == 1)
                assert len(sa._segments) == (2 if wide == 1 else 0)
        return [_as_tuple(w) for w in out + sa.flush().windows]

    want = run("volts")
    assert len(want) >= 5
    assert run("counts") == want
    assert run("mixed") == want


def _board_counts(seconds: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ADC counts of a simulated 10-circuit household board (harmonic-rich loads) and its scales."""
    from device.simulator.device import Identity, SimulatedDevice
    from device.simulator.scenario import default_scenario

    dev = SimulatedDevice(default_scenario(), identity=Identity.for_serial("CUTS"), seed=2)
    blocks = [dev.generate()[0] for _ in range(int(seconds * dev.board.fs / dev.board.n))]
    v = np.concatenate([b.v for b in blocks], axis=1)
    i = np.concatenate([b.i for b in blocks], axis=1)
    return v, i, np.concatenate((np.asarray(dev.v_lsb), np.asarray(dev.i_lsb)))


BOARD_V, BOARD_I, BOARD_SCALE = _board_counts(4.0)


@settings(max_examples=8, deadline=None)
@given(st.lists(st.integers(1, 5000), min_size=1, max_size=8), st.sampled_from([0.0, 0.5, 1.0, 2.0]))
def test_full_board_in_service_settings_is_cut_and_batch_independent(sizes: list[int], batch_s: float) -> None:
    """Ten circuits of ADC counts, spectrum every 15th window, clip limits: windows and energy
    registers are the same bits however the stream is cut and batched."""

    def run(cuts: list[int], batch: float) -> tuple[list[tuple[object, ...]], np.ndarray, np.ndarray]:
        s = AnalyzerSettings(fs=FS, harmonics_every=15, min_batch_s=batch, v_clip=(300.0,) * 10, i_clip=(30.0,) * 10)
        sa = StreamAnalyzer(10, s)
        ws = _run(sa, BOARD_V, BOARD_I, cuts, scale=BOARD_SCALE)
        return [_as_tuple(w) for w in ws], sa.energy.whole.copy(), sa.energy.residual.copy()

    got, ref = run(sizes, batch_s), run([BOARD_V.shape[1]], 0.0)
    assert len(got[0]) == len(ref[0]) >= 19
    assert got[0] == ref[0]
    assert np.array_equal(got[1], ref[1]) and np.array_equal(got[2], ref[2])


@settings(max_examples=30, deadline=None)
@given(
    st.floats(0.3, 1.6),
    st.sampled_from([0.0, 0.5]),  # an interruption (no crossings: boundaries put in) or a dip
    st.sampled_from([78, 625, 1563, 4883]),  # block lengths in samples: 10 ms .. 0.625 s
    st.sampled_from([0.08, 0.5, 1.0]),
)
def test_an_event_is_noticed_within_a_batch_a_block_and_the_recorders_slack(
    start_s: float, depth: float, block: int, batch_s: float
) -> None:
    """The event recorder keeps the pre-trigger cycles before the earliest moment an event not yet
    noticed can have started: the newest sample less a batch, the block that completed it and
    ``DETECTION_SLACK_S``; once a batch is measured, its end less ``DETECTION_SLACK_S``. An event
    noticed later than either would find its pre-trigger samples gone."""
    from bridge.session.recorder import DETECTION_SLACK_S

    envelope = np.ones(round(2.5 * FS))
    envelope[round(start_s * FS) : round((start_s + 0.3) * FS)] = depth
    v, i = waveform(2.5, envelope=envelope)
    an = StreamAnalyzer(1, AnalyzerSettings(fs=FS, min_batch_s=batch_s))
    for k in range(0, v.size, block):
        out = an.feed(v[k : k + block], i[k : k + block])
        starts = [ev.start for ev in (*an.events.ongoing(), *out.events)]
        if starts:
            newest = min(k + block, v.size)
            assert abs(min(starts) / FS - start_s) < 0.015  # the event, not a stray one
            assert (newest - min(starts)) / FS <= batch_s + block / FS + DETECTION_SLACK_S
            return
        if an.measured_until == an.end:  # a batch ran and did not notice it: it had not begun by then
            assert an.end / FS < start_s + DETECTION_SLACK_S
    pytest.fail("the event was never noticed")
