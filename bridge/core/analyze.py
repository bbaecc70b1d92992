"""``analyze``: the streaming analyzer applied to a whole capture, for offline use."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from .events import Thresholds, VoltageEvent
from .stream import AnalyzerSettings, StreamAnalyzer
from .window import WindowMetrics

FloatArray = npt.NDArray[np.float64]

_FIELDS = (
    "v_rms",
    "i_rms",
    "v_dc",
    "i_dc",
    "p_w",
    "q_var",
    "s_va",
    "n_va",
    "pf",
    "dpf",
    "angle_deg",
    "thd_v",
    "thd_i",
    "v1_rms",
    "i1_rms",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Analysis:
    """Per-window arrays (one value per window) of one circuit, events and energy totals.

    ``t_start`` is seconds from the first sample; ``harmonics_v``/``harmonics_i`` are (windows, 40).
    """

    t_start: FloatArray
    duration_s: FloatArray
    freq_hz: FloatArray
    synced: npt.NDArray[np.bool_]
    v_rms: FloatArray
    i_rms: FloatArray
    v_dc: FloatArray
    i_dc: FloatArray
    p_w: FloatArray
    q_var: FloatArray
    s_va: FloatArray
    n_va: FloatArray
    pf: FloatArray
    dpf: FloatArray
    angle_deg: FloatArray
    thd_v: FloatArray
    thd_i: FloatArray
    v1_rms: FloatArray
    i1_rms: FloatArray
    harmonics_v: FloatArray
    harmonics_i: FloatArray
    clipped: npt.NDArray[np.bool_]
    event: npt.NDArray[np.bool_]
    events: list[VoltageEvent]
    import_wh: float
    export_wh: float
    q_ind_varh: float
    q_cap_varh: float
    s_vah: float


def collect(windows: list[WindowMetrics], circuit: int = 0) -> dict[str, FloatArray]:
    """Stack per-window values of one circuit into arrays."""
    out: dict[str, FloatArray] = {f: np.array([getattr(w, f)[circuit] for w in windows]) for f in _FIELDS}
    out["harmonics_v"] = np.array([w.harmonics_v[circuit] for w in windows]).reshape(-1, 40)
    out["harmonics_i"] = np.array([w.harmonics_i[circuit] for w in windows]).reshape(-1, 40)
    return out


def analyze(
    v: npt.ArrayLike,
    i: npt.ArrayLike,
    fs: float,
    *,
    f_nominal: float = 50.0,
    u_nominal: float = 230.0,
    thresholds: Thresholds | None = None,
    v_clip: float | None = None,
    i_clip: float | None = None,
    harmonics_every: int = 1,
) -> Analysis:
    """Measure one circuit's capture: ``v`` in volts and ``i`` in amperes, 1-D, same length.

    Windows are 10 cycles at 50 Hz (12 at 60 Hz) synchronised to the voltage's zero crossings; the
    stretch before the first crossing and after the last whole window are reported as unsynchronised
    windows so that energy covers every sample. ``harmonics_every`` > 1 measures the spectrum in one
    window out of that many (the service's cadence) and carries it over in between.

    >>> fs = 7812.5
    >>> t = np.arange(int(fs)) / fs
    >>> v = 230 * np.sqrt(2) * np.sin(2 * np.pi * 50 * t)
    >>> i = 10 * np.sqrt(2) * np.sin(2 * np.pi * 50 * t - np.radians(36.87))
    >>> r = analyze(v, i, fs)
    >>> ok = r.synced
    >>> p, q, pf = r.p_w[ok].mean(), r.q_var[ok].mean(), r.pf[ok].mean()
    >>> round(float(p), 1), round(float(q), 1), round(float(pf), 4)
    (1840.0, 1380.0, 0.8)
    """
    va = np.asarray(v, dtype=np.float64)
    ia = np.asarray(i, dtype=np.float64)
    if va.ndim != 1 or va.shape != ia.shape:
        raise ValueError(f"v and i must be 1-D arrays of equal length, got {va.shape} and {ia.shape}")
    for name, x in (("v", va), ("i", ia)):
        # a NaN would pass silently into every window it touches and into the energy totals
        bad = np.flatnonzero(~np.isfinite(x))
        if bad.size:
            raise ValueError(
                f"{name} has {bad.size} samples that are not finite numbers (NaN or infinite), the first at "
                f"index {bad[0]}: cut the capture around them or fill them before analysing"
            )
    settings = AnalyzerSettings(
        fs=fs,
        f_nominal=f_nominal,
        u_nominal=u_nominal,
        thresholds=thresholds or Thresholds(),
        v_clip=None if v_clip is None else (v_clip,),
        i_clip=None if i_clip is None else (i_clip,),
        harmonics_every=harmonics_every,
    )
    sa = StreamAnalyzer(1, settings)
    # fed in 10 s pieces: the analyzer's working memory stays a few MB however long the capture, and
    # the results are the same to the last bit as one call's (block cuts never change them)
    step = max(1, round(10.0 * fs))
    windows: list[WindowMetrics] = []
    events: list[VoltageEvent] = []
    for k in range(0, va.size, step):
        up = sa.feed(va[k : k + step], ia[k : k + step])
        windows += up.windows
        events += up.events
    tail = sa.flush()
    return to_analysis(windows + tail.windows, events + tail.events, sa)


def to_analysis(windows: list[WindowMetrics], events: list[VoltageEvent], sa: StreamAnalyzer) -> Analysis:
    cols: dict[str, Any] = dict(collect(windows))
    cols.update(sa.energy[0].values())
    return Analysis(
        t_start=np.array([w.t_start_s for w in windows]),
        duration_s=np.array([w.duration_s for w in windows]),
        freq_hz=np.array([w.freq_hz for w in windows]),
        synced=np.array([w.synced for w in windows], dtype=bool),
        clipped=np.array([w.clipped[0] for w in windows], dtype=bool),
        event=np.array([w.event[0] for w in windows], dtype=bool),
        events=events + sa.events.ongoing(),
        **cols,
    )
