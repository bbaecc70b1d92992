"""The METROLOGY.md analytic vectors, and the project's own cases, against closed-form truth."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bridge.core import analyze
from tests.analytic import FS, U, waveform

REL = 5e-4  # RMS and P: 0.05 %


def synced(r, name):  # type: ignore[no-untyped-def]
    return getattr(r, name)[r.synced]


def check(r, *, p, q1, s, pf=None, angle=None, v_rms=None, i_rms=None, thd_i=None, thd_v=None):
    # THD is held to 0.01 point here, ten times tighter than METROLOGY.md's suggested 0.1  # type: ignore[no-untyped-def]
    assert synced(r, "p_w") == pytest.approx(p, rel=REL, abs=REL * s)
    assert np.abs(synced(r, "q_var") - q1).max() <= 1e-3 * s
    assert synced(r, "s_va") == pytest.approx(s, rel=REL)
    if pf is not None:
        assert np.abs(synced(r, "pf") - pf).max() <= 1e-3
    if angle is not None:
        assert np.abs(synced(r, "angle_deg") - angle).max() <= 0.05
    if v_rms is not None:
        assert synced(r, "v_rms") == pytest.approx(v_rms, rel=REL)
    if i_rms is not None:
        assert synced(r, "i_rms") == pytest.approx(i_rms, rel=REL)
    if thd_i is not None:
        assert np.abs(synced(r, "thd_i") - thd_i).max() <= 0.01
    if thd_v is not None:
        assert np.abs(synced(r, "thd_v") - thd_v).max() <= 0.01


def test_t1_unity_power_factor() -> None:
    r = analyze(*waveform(2), FS)
    assert r.synced.sum() >= 8
    check(r, p=2300, q1=0, s=2300, pf=1.0, angle=0.0, v_rms=230, i_rms=10, thd_v=0.0, thd_i=0.0)
    assert np.abs(synced(r, "freq_hz") - 50).max() < 1e-3


@pytest.mark.parametrize("f", [45.0, 49.5, 50.0, 50.02, 55.0, 60.0, 60.2, 65.0])
def test_clean_and_lightly_distorted_sines_read_their_true_thd(f: float) -> None:
    # 10 cycles at 7812.5 Hz are a fractional number of samples (1562.5 at 50 Hz), so the FFT frame
    # leaks the fundamental into every order: ~0.1 point of THD on a clean sine before the leakage was
    # taken out. Weak orders (below the 2 % that buys an exact DFT) are where it showed.
    nom = 60.0 if f > 55.0 else 50.0
    r = analyze(*waveform(3, f=f, i_parts=[(1, 10.0, -30.0), (3, 0.15, 0.0), (7, 0.1, 0.0)]), FS, f_nominal=nom)
    assert r.synced.sum() >= 10
    assert np.abs(synced(r, "thd_v")).max() <= 1e-3
    assert np.abs(synced(r, "thd_i") - math.hypot(1.5, 1.0)).max() <= 1e-3
    h = synced(r, "harmonics_i")
    assert np.abs(h[:, 2] - 0.15).max() <= 1e-4 and np.abs(h[:, 6] - 0.1).max() <= 1e-4


@pytest.mark.parametrize(("deg", "q1", "pf", "angle"), [(-36.870, 1380, 0.8, 36.87), (36.870, -1380, 0.8, -36.87)])
def test_t2_t3_inductive_positive_capacitive_negative(deg: float, q1: float, pf: float, angle: float) -> None:
    r = analyze(*waveform(2, i_parts=[(1, 10.0, deg)]), FS)
    check(r, p=1840, q1=q1, s=2300, pf=pf, angle=angle)
    assert np.abs(synced(r, "dpf") - 0.8).max() < 1e-3


def test_t4_quadrature_and_export() -> None:
    r = analyze(*waveform(2, i_parts=[(1, 10.0, -90.0)]), FS)
    check(r, p=0, q1=2300, s=2300, pf=0.0)
    r = analyze(*waveform(2, i_parts=[(1, 10.0, 180.0)]), FS)
    check(r, p=-2300, q1=0, s=2300, pf=-1.0)
    assert r.export_wh > 0 and r.import_wh == 0


def test_t5_current_harmonics() -> None:
    parts = [(1, 10.0, -30.0), (3, 8.0, 0.0), (5, 6.0, 0.0), (7, 4.0, 0.0), (9, 2.0, 0.0)]
    r = analyze(*waveform(2, i_parts=parts), FS)
    check(r, p=1991.858, q1=1150.0, s=3411.451, pf=0.58387, thd_i=109.545)
    assert np.abs(synced(r, "dpf") - 0.86603).max() < 1e-3
    h = r.harmonics_i[r.synced][0]
    # strong orders are measured by an exact DFT over the fractional window: within 0.01 % of reading
    assert h[[0, 2, 4, 6, 8]] == pytest.approx([10, 8, 6, 4, 2], rel=1e-4)
    # weak orders come from the FFT over whole samples, cleaned of the strong tones' leakage
    assert np.nanmax(h[[1, 3, 5, 7]]) < 1e-3


@pytest.mark.parametrize("every", [1, 15])
def test_every_synchronised_window_carries_a_true_spectrum(every: int) -> None:
    # the service measures the spectrum in one window of 15; the windows in between (and the capture's
    # unsynchronised start) must carry a synchronised window's spectrum, never a partial window's
    parts = [(1, 10.0, -30.0), (5, 5.5, 0.0), (7, 3.0, 0.0)]
    r = analyze(*waveform(3, v_harm={5: 4}, i_parts=parts), FS, harmonics_every=every)
    hv, hi = r.harmonics_v[r.synced], r.harmonics_i[r.synced]
    assert hv[:, [0, 4]] == pytest.approx(np.tile([U, 0.04 * U], (len(hv), 1)), rel=1e-4)
    assert hi[:, [0, 4, 6]] == pytest.approx(np.tile([10, 5.5, 3], (len(hi), 1)), rel=1e-4)
    assert np.nanmax(hv[:, [1, 2, 3, 5]]) < 1e-2 and np.nanmax(hi[:, [1, 2, 3, 5]]) < 1e-3


@pytest.mark.parametrize(("f", "f_nom"), [(49.5, 50.0), (50.02, 50.0), (60.2, 60.0)])
def test_t9_off_nominal_frequency_with_voltage_distortion(f: float, f_nom: float) -> None:
    v, i = waveform(3, f=f, v_harm={3: 3, 5: 5, 7: 2}, i_parts=[(1, 10.0, -36.870)])
    r = analyze(v, i, FS, f_nominal=f_nom)
    check(r, p=1840, q1=1380, s=2304.366, pf=0.79848, thd_v=6.164)
    assert np.abs(synced(r, "freq_hz") - f).max() < 1e-3
    cycles = 10 if f_nom == 50 else 12
    assert synced(r, "duration_s") == pytest.approx(cycles / f, rel=1e-6)


def _envelope(seconds: float, start: float, cycles: int, depth: float, f: float = 50.0) -> np.ndarray:
    t = np.arange(round(seconds * FS)) / FS
    env = np.ones_like(t)
    env[(t >= start) & (t < start + cycles / f)] = depth
    return env


def test_t10_dip_to_70_percent_for_5_cycles() -> None:
    env = _envelope(2, 0.5, 5, 0.7)
    r = analyze(*waveform(2, envelope=env), FS)
    (ev,) = r.events
    assert ev.kind == "dip"
    assert ev.extreme_v == pytest.approx(161.0, rel=5e-3)
    assert ev.duration_s(FS) == pytest.approx(0.100, abs=0.010 + 1e-9)  # +-1/2 cycle per edge
    assert r.event.sum() >= 1 and not r.event[0]


def test_t11_swell_to_115_percent_for_10_cycles() -> None:
    env = _envelope(2, 0.73, 10, 1.15)
    r = analyze(*waveform(2, envelope=env), FS)
    (ev,) = r.events
    assert ev.kind == "swell"
    assert ev.extreme_v == pytest.approx(264.5, rel=5e-3)
    assert ev.duration_s(FS) == pytest.approx(0.200, abs=0.010 + 1e-9)


def test_interruption_keeps_windows_running_and_is_reported() -> None:
    env = _envelope(3, 1.0, 25, 0.0)
    r = analyze(*waveform(3, envelope=env), FS)
    (ev,) = r.events
    assert ev.kind == "interruption" and ev.extreme_v < 0.05 * U
    assert ev.duration_s(FS) == pytest.approx(0.5, abs=0.02)
    # windows kept coming through the outage, and every sample was integrated
    assert r.duration_s.sum() == pytest.approx(3.0, abs=1 / FS)
    assert (~r.synced).sum() >= 2


@pytest.mark.parametrize(("pf_deg", "p", "q1"), [(0.0, 3.2527, 0.0), (-60.0, 1.6263, 2.8169)])
def test_t12_one_five_thousandth_of_full_scale(pf_deg: float, p: float, q1: float) -> None:
    amps = 0.014142
    v, i = waveform(10.0, i_parts=[(1, amps, pf_deg)])
    r = analyze(v, i, FS)
    ok = r.synced
    w = r.duration_s[ok]
    p_avg = float((r.p_w[ok] * w).sum() / w.sum())
    q_avg = float((r.q_var[ok] * w).sum() / w.sum())
    assert p_avg == pytest.approx(p, rel=1e-3)
    assert q_avg == pytest.approx(q1, abs=1e-3 * 3.2527)


def test_t15_energy_registers_fill_in_both_directions() -> None:
    v1, i1 = waveform(36, i_parts=[(1, 10.0, -36.870)])
    v2, i2 = waveform(36, i_parts=[(1, 10.0, 180.0)])
    r = analyze(np.concatenate((v1, v2)), np.concatenate((i1, i2)), FS)
    assert r.import_wh == pytest.approx(18.400, abs=0.0184)  # 0.1 %
    assert r.export_wh == pytest.approx(23.000, abs=0.023)
    assert r.q_ind_varh == pytest.approx(13.800, abs=0.0138)
    assert r.s_vah == pytest.approx(46.0, rel=1e-3)
    assert r.duration_s.sum() == pytest.approx(72.0, abs=1 / FS)


def test_dc_offsets_are_reported_and_do_not_bias_power() -> None:
    r = analyze(*waveform(2, i_parts=[(1, 10.0, -36.870)], v_dc=3.0, i_dc=0.2), FS)
    check(r, p=1840, q1=1380, s=2300, pf=0.8)
    assert synced(r, "v_dc") == pytest.approx(3.0, rel=1e-3)
    assert synced(r, "i_dc") == pytest.approx(0.2, rel=1e-3)
    assert np.abs(synced(r, "freq_hz") - 50).max() < 1e-3


def test_noise_leaves_power_unbiased() -> None:
    v, i = waveform(10, i_parts=[(1, 10.0, -36.870)])
    rng = np.random.default_rng(1234)
    v = v + rng.normal(0, 2.0, v.size)  # 2 V rms noise on V, 50 mA on I, independent
    i = i + rng.normal(0, 0.05, i.size)
    r = analyze(v, i, FS)
    ok = r.synced
    p_mean = float(r.p_w[ok].mean())
    # standard error of P over ~50 windows is ~0.02 W; allow 0.05 %
    assert p_mean == pytest.approx(1840, rel=5e-4)
    assert float(r.q_var[ok].mean()) == pytest.approx(1380, abs=2.3)
    # noise adds in quadrature to RMS, as it physically does
    assert float(r.v_rms[ok].mean()) == pytest.approx(math.hypot(230, 2.0), rel=5e-4)
    assert np.abs(r.freq_hz[ok] - 50).max() < 0.01


def test_clipped_samples_flag_the_window() -> None:
    v, i = waveform(1, i_parts=[(1, 60.0, 0.0)])
    rail = 80.0
    i = np.clip(i, -rail, rail)
    r = analyze(v, i, FS, i_clip=rail)
    assert r.clipped[r.synced].all()
    r2 = analyze(*waveform(1), FS, i_clip=rail)
    assert not r2.clipped.any()


def test_60_hz_system_uses_12_cycle_windows() -> None:
    v, i = waveform(2, f=60.0, u=120.0, i_parts=[(1, 5.0, -25.842)])
    r = analyze(v, i, FS, f_nominal=60.0, u_nominal=120.0)
    check(r, p=540.0, q1=120 * 5 * math.sin(math.radians(25.842)), s=600.0, pf=0.9)
    assert synced(r, "duration_s") == pytest.approx(0.2, rel=1e-9)
    assert not r.events


def test_class_a_frequency_over_absolute_10_s_with_noise() -> None:
    from bridge.core import AnalyzerSettings, StreamAnalyzer

    f = 49.97
    v, i = waveform(31, f=f)
    v = v + np.random.default_rng(9).normal(0, 3.0, v.size)  # 3 V rms of noise
    sa = StreamAnalyzer(1, AnalyzerSettings(fs=FS), origin_s=1_000_000_003.7)
    got: list[tuple[float, float]] = []
    aggs = []
    for k in range(0, v.size, 625):
        up = sa.feed(v[k : k + 625], i[k : k + 625])
        got += up.freq_10s
        aggs += up.aggregates
    starts = [t for t, _ in got]
    assert starts[:2] == [1_000_000_010.0, 1_000_000_020.0]
    for _, hz in got:
        assert hz == pytest.approx(f, abs=0.010)
    three = [a for a in aggs if a.kind == "3s"]
    assert len(three) >= 9 and all(a.windows == 15 for a in three[1:-1])
    assert three[1].duration_s == pytest.approx(3.0, rel=1e-3)
    assert three[1].mean["p_w"][0] == pytest.approx(2300, rel=5e-4)
    assert three[1].minimum["v_rms"][0] <= three[1].mean["v_rms"][0] <= three[1].maximum["v_rms"][0]


def test_clock_intervals_are_complete_only_when_the_windows_cover_them() -> None:
    # the stream starts 2 s before a 15 min (and 10 min) tick: that first block is partial and must
    # say so; the next 15 min block and the 10 min interval in it are whole
    from bridge.core import AnalyzerSettings, StreamAnalyzer

    tick = 1_800_000_000.0  # a multiple of 900 s and of 600 s
    v, i = waveform(2.0)  # 100 whole cycles: chunks repeat seamlessly
    sa = StreamAnalyzer(1, AnalyzerSettings(fs=FS), origin_s=tick - 2.0)
    aggs = []
    for _ in range(452):  # 904 s of 230 V x 10 A
        aggs += sa.feed(v, i).aggregates
    demand = [a for a in aggs if a.kind == "15min-demand"]
    ten = [a for a in aggs if a.kind == "10min"]
    assert [(a.t_start_s, a.complete) for a in demand] == [(tick - 900.0, False), (tick, True)]
    assert demand[1].duration_s == pytest.approx(900.0, abs=0.2)
    assert demand[1].mean["p_w"][0] == pytest.approx(2300.0, rel=REL)
    assert [(a.t_start_s, a.complete) for a in ten] == [(tick - 600.0, False), (tick, True)]
    three = [a for a in aggs if a.kind == "3s"]
    # the 10 min tick cuts the running 150-cycle sequence short (IEC resync): incomplete. From the
    # tick on, 200 whole sequences fill the next 10 minutes, so that is the only short one.
    assert [a.complete for a in three] == [a.windows == 15 for a in three]
    assert [a.complete for a in three].count(False) == 1 and not three[0].complete


@pytest.mark.parametrize("fs", [1000.0, 2000.0, 3906.25])
@pytest.mark.parametrize(("f", "f_nom"), [(49.93, 50.0), (59.95, 60.0)])
def test_lower_sample_rates_in_the_device_spec(fs: float, f: float, f_nom: float) -> None:
    # the device samples at 1 - 7.8 kHz; at 1 kHz a 60 Hz cycle is under 17 samples. Clean signals
    # keep every tolerance, frequency included. With 3/5/2 % voltage harmonics the crossings move with
    # the sampling phase, so the per-window frequency is held to 5 mHz there, and THD to METROLOGY.md's
    # 0.1 point rather than this file's tighter 0.01 (docs/measurements.md has the figures)
    r = analyze(*waveform(3, f=f, fs=fs, i_parts=[(1, 10.0, -36.870)]), fs, f_nominal=f_nom)
    check(r, p=1840.0, q1=1380.0, s=2300.0, pf=0.8, angle=36.87, thd_v=0.0)
    assert np.abs(synced(r, "freq_hz") - f).max() <= 1e-3
    v_harm = {3: 3.0, 5: 5.0, 7: 2.0}
    r = analyze(*waveform(3, f=f, fs=fs, v_harm=v_harm, i_parts=[(1, 10.0, -36.870)]), fs, f_nominal=f_nom)
    check(r, p=1840.0, q1=1380.0, s=2304.366, pf=0.79848)
    assert np.abs(synced(r, "thd_v") - 6.164).max() <= 0.1
    assert np.abs(synced(r, "freq_hz") - f).max() <= 5e-3


def test_a_150_cycle_sequence_does_not_run_across_lost_samples() -> None:
    # blocks 40..44 (0.4 s) never arrive: the 3 s sequence they cut is closed short (not published)
    # and a new one starts after the gap; the 3 s values on either side are whole
    from bridge.core import AnalyzerSettings, StreamAnalyzer

    v, i = waveform(2.0)  # 100 whole cycles: 25 blocks of 625 samples repeat seamlessly
    sa = StreamAnalyzer(1, AnalyzerSettings(fs=FS), origin_s=1_000_000_000.0)
    three = []
    for seq in range(100):  # 8 s of blocks
        if 40 <= seq < 45:
            continue
        k = (seq % 25) * 625
        up = sa.feed(v[k : k + 625], i[k : k + 625], seq=seq, t0_s=1_000_000_000.0 + seq * 0.08)
        three += [a for a in up.aggregates if a.kind == "3s"]
    gap_start, gap_end = 1_000_000_000.0 + 40 * 0.08, 1_000_000_000.0 + 45 * 0.08
    spanning = [a for a in three if a.t_start_s < gap_start < a.t_start_s + a.duration_s + 0.25]
    assert spanning and not any(a.complete for a in spanning)
    after = [a for a in three if a.t_start_s >= gap_end - 0.01]
    assert after and all(a.complete and a.windows == 15 for a in after)
    # (the first window after a gap, like the first of all, is the short stretch up to the first
    # crossing: those two sequences hold 15 windows in 2.82 s, the others 3.0 s)
    assert all(a.duration_s == pytest.approx(3.0, abs=0.2) for a in three if a.complete)


def test_analyze_refuses_samples_that_are_not_numbers() -> None:
    v, i = waveform(1)
    v[500] = np.nan
    with pytest.raises(ValueError, match=r"v has 1 samples that are not finite .* index 500"):
        analyze(v, i, FS)
    v[500], i[7] = 0.0, np.inf
    with pytest.raises(ValueError, match=r"i has 1 samples .* index 7"):
        analyze(v, i, FS)
