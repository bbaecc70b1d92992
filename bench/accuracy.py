"""Measured errors against the METROLOGY.md analytic vectors (the tests assert the tolerances; this
prints how far inside them the core is).

    .venv/bin/python bench/accuracy.py
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bridge.core import analyze
from tests.analytic import FS, waveform


def worst(values: np.ndarray, truth: float, scale: float | None = None) -> float:
    return float(np.max(np.abs(values - truth)) / (scale if scale else abs(truth) or 1.0))


def main() -> None:
    rows = []
    r = analyze(*waveform(2), FS)
    rows.append(("T1 THD_V of a clean sine (points)", worst(r.thd_v[r.synced], 0.0, 1.0)))
    r = analyze(*waveform(2, i_parts=[(1, 10.0, -36.870)]), FS)
    ok = r.synced
    rows.append(("T2 P rel. error", worst(r.p_w[ok], 1840.0)))
    rows.append(("T2 Q1 error / S", worst(r.q_var[ok], 1380.0, 2300.0)))
    rows.append(("T2 Vrms rel. error", worst(r.v_rms[ok], 230.0)))
    rows.append(("T2 PF abs. error", worst(r.pf[ok], 0.8, 1.0)))
    rows.append(("T2 f abs. error (Hz)", worst(r.freq_hz[ok], 50.0, 1.0)))
    parts = [(1, 10.0, -30.0), (3, 8.0, 0.0), (5, 6.0, 0.0), (7, 4.0, 0.0), (9, 2.0, 0.0)]
    r = analyze(*waveform(2, i_parts=parts), FS)
    ok = r.synced
    rows.append(("T5 P rel. error", worst(r.p_w[ok], 1991.858)))
    rows.append(("T5 S rel. error", worst(r.s_va[ok], 3411.451)))
    rows.append(("T5 THD_I abs. error (points)", worst(r.thd_i[ok], 109.545, 1.0)))
    for f, nom in ((49.5, 50.0), (50.02, 50.0), (60.2, 60.0)):
        r = analyze(*waveform(3, f=f, v_harm={3: 3, 5: 5, 7: 2}, i_parts=[(1, 10.0, -36.870)]), FS, f_nominal=nom)
        ok = r.synced
        rows.append((f"T9 {f} Hz P rel. error", worst(r.p_w[ok], 1840.0)))
        rows.append((f"T9 {f} Hz f abs. error (Hz)", worst(r.freq_hz[ok], f, 1.0)))
        rows.append((f"T9 {f} Hz THD_V abs. error (points)", worst(r.thd_v[ok], 6.164, 1.0)))
    v, i = waveform(10, i_parts=[(1, 0.014142, 0.0)])
    r = analyze(v, i, FS)
    ok = r.synced
    p = float((r.p_w[ok] * r.duration_s[ok]).sum() / r.duration_s[ok].sum())
    rows.append(("T12 1/5000 FS P rel. error (10 s)", abs(p - 3.2527) / 3.2527))
    v1, i1 = waveform(36, i_parts=[(1, 10.0, -36.870)])
    v2, i2 = waveform(36, i_parts=[(1, 10.0, 180.0)])
    r = analyze(np.concatenate((v1, v2)), np.concatenate((i1, i2)), FS)
    rows.append(("T15 import rel. error", abs(r.import_wh - 18.4) / 18.4))
    rows.append(("T15 export rel. error", abs(r.export_wh - 23.0) / 23.0))
    env = np.ones(round(2 * FS))
    t = np.arange(env.size) / FS
    env[(t >= 0.5) & (t < 0.6)] = 0.7
    r = analyze(*waveform(2, envelope=env), FS)
    (ev,) = r.events
    rows.append(("T10 dip duration error (s)", abs(ev.duration_s(FS) - 0.1)))
    rows.append(("T10 residual rel. error", abs(ev.extreme_v - 161.0) / 161.0))
    width = max(len(n) for n, _ in rows)
    for name, err in rows:
        shown = f"{err:.2e}" if math.isfinite(err) else "nan"
        print(f"{name:<{width}}  {shown}")
    print()
    sample_rates()


def sample_rates() -> None:
    """The device's sample-rate range (1 - 7.8 kHz): worst errors over five frequencies, T2 clean and
    with T9's voltage harmonics, then T5's current harmonics; the tables in docs/measurements.md."""
    freqs = ((50.0, 50.0), (49.93, 50.0), (50.07, 50.0), (60.0, 60.0), (59.95, 60.0))
    print(
        "| sample rate | P (rel.) clean / distorted | THD_V (points) clean / distorted "
        + "| f per window (mHz) clean / distorted |"
    )
    print("|---|---|---|---|")
    for fs in (1000.0, 2000.0, 3906.25, 7812.5):
        worst_of: dict[str, tuple[float, float, float]] = {}
        for v_harm, tag, thd in ((None, "clean", 0.0), ({3: 3.0, 5: 5.0, 7: 2.0}, "dist", 6.164)):
            p_err = thd_err = f_err = 0.0
            for f, nom in freqs:
                v, i = waveform(3, f=f, fs=fs, v_harm=v_harm, i_parts=[(1, 10.0, -36.870)])
                r = analyze(v, i, fs, f_nominal=nom)
                ok = r.synced
                p_err = max(p_err, worst(r.p_w[ok], 1840.0))
                thd_err = max(thd_err, worst(r.thd_v[ok], thd, 1.0))
                f_err = max(f_err, worst(r.freq_hz[ok], f, 1.0) * 1e3)
            worst_of[tag] = (p_err, thd_err, f_err)
        c, d = worst_of["clean"], worst_of["dist"]
        print(f"| {fs:g} Hz | {c[0]:.1e} / {d[0]:.1e} | {c[1]:.4f} / {d[1]:.3f} | {c[2]:.3f} / {d[2]:.3f} |")
    print()
    print("| sample rate | T5 at 50 Hz +- 0.07 Hz: P (rel.) | Q1 (/ S) | THD_I (points) |")
    print("|---|---|---|---|")
    parts = [(1, 10.0, -30.0), (3, 8.0, 0.0), (5, 6.0, 0.0), (7, 4.0, 0.0), (9, 2.0, 0.0)]
    for fs in (1000.0, 1500.0, 2000.0, 3906.25, 7812.5):
        p_err = q_err = thd_err = 0.0
        for f in (50.0, 49.93, 50.07):
            r = analyze(*waveform(3, f=f, fs=fs, i_parts=parts), fs)
            ok = r.synced
            p_err = max(p_err, worst(r.p_w[ok], 1991.858))
            q_err = max(q_err, worst(r.q_var[ok], 1150.0, 3411.451))
            thd_err = max(thd_err, worst(r.thd_i[ok], 109.545, 1.0))
        print(f"| {fs:g} Hz | {p_err:.1e} | {q_err:.1e} | {thd_err:.3f} |")


if __name__ == "__main__":
    main()
