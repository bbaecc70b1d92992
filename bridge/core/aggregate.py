"""Aggregation of ~200 ms windows (IEC 61000-4-30): 150/180-cycle (3 s) and clock-aligned 10 min
values with min / max / average, 15 min block demand for P, and Class A frequency over absolute 10 s
intervals from zero crossings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from .window import WindowMetrics

FloatArray = npt.NDArray[np.float64]
RMS_LIKE = ("v_rms", "i_rms")  # aggregated as the root of the mean square
MEAN_LIKE = ("p_w", "q_var", "s_va", "pf", "thd_v", "thd_i")
QUANTITIES = RMS_LIKE + MEAN_LIKE
# how far the windows may fall short of a clock interval's ends and still cover it: windows do not
# start on the tick, so the first may begin up to one window (~0.2 s) after it
_COVER_SLACK_S = 1.0
# consecutive windows abut exactly (their edges are sample positions); a larger step is samples lost
_GAP_S = 0.01


@dataclass(frozen=True, slots=True, kw_only=True)
class Aggregate:
    """One aggregation interval; dict values are per-circuit arrays."""

    kind: str  # "3s", "10min" or "15min-demand"
    t_start_s: float
    duration_s: float
    windows: int
    mean: dict[str, FloatArray]
    minimum: dict[str, FloatArray]
    maximum: dict[str, FloatArray]
    freq_hz: float  # mean window frequency (NaN if no synced window)
    flagged: npt.NDArray[np.bool_]  # any window of the interval touched by an event
    # the windows cover the whole interval: False for the clock interval the stream started in, one cut
    # by a gap in the samples, or a 150-cycle sequence cut short by the 10 min resync or a gap. The service
    # publishes complete intervals only, so a "15 min demand" is never the mean of two seconds.
    complete: bool


@dataclass(slots=True)
class _Acc:
    t_start_s: float
    circuits: int
    first_s: float  # start of the first window
    n: int = 0
    dur: float = 0.0
    f_sum: float = 0.0
    f_n: int = 0
    sums: FloatArray | None = None  # (quantities, circuits), duration-weighted
    mins: FloatArray | None = None
    maxs: FloatArray | None = None
    flagged: npt.NDArray[np.bool_] | None = None

    def add(self, w: WindowMetrics, x: FloatArray, val: FloatArray) -> None:
        """``x``: the window's quantities (quantities, circuits); ``val``: their duration-weighted
        contributions to the mean (squares for rms-like ones, NaN as 0)."""
        d = w.duration_s
        if self.sums is None or self.mins is None or self.maxs is None or self.flagged is None:
            self.sums, self.mins, self.maxs, self.flagged = val.copy(), x.copy(), x.copy(), w.event.copy()
        else:
            self.sums += val
            np.fmin(self.mins, x, out=self.mins)
            np.fmax(self.maxs, x, out=self.maxs)
            self.flagged |= w.event
        if w.synced and math.isfinite(w.freq_hz):
            self.f_sum += w.freq_hz * d
            self.f_n += 1
        self.n += 1
        self.dur += d

    def close(
        self, kind: str, *, period_s: float | None = None, windows: int | None = None, cut: bool = False
    ) -> Aggregate:
        """``period_s``: the clock interval's length (the windows must cover it); ``windows``: the
        number of windows a full interval holds; ``cut``: samples were lost inside the interval."""
        assert self.sums is not None and self.mins is not None and self.maxs is not None
        avg = self.sums / self.dur
        avg[: len(RMS_LIKE)] = np.sqrt(avg[: len(RMS_LIKE)])
        mean = dict(zip(QUANTITIES, avg, strict=True))
        f_dur = self.dur if self.f_n == self.n else math.nan
        return Aggregate(
            kind=kind,
            t_start_s=self.t_start_s,
            duration_s=self.dur,
            windows=self.n,
            mean=mean,
            minimum=dict(zip(QUANTITIES, self.mins, strict=True)),
            maximum=dict(zip(QUANTITIES, self.maxs, strict=True)),
            freq_hz=self.f_sum / f_dur if self.f_n else math.nan,
            flagged=self.flagged if self.flagged is not None else np.zeros(self.circuits, bool),
            complete=not cut
            and (windows is None or self.n >= windows)
            and (
                period_s is None
                or (self.first_s - self.t_start_s <= _COVER_SLACK_S and self.dur >= period_s - _COVER_SLACK_S)
            ),
        )


class Aggregator:
    """Feed windows in time order; returns the intervals they close."""

    def __init__(self, circuits: int, *, windows_per_3s: int = 15) -> None:
        self.c = circuits
        self.per_3s = windows_per_3s  # 150 cycles / 10 at 50 Hz, 180 / 12 at 60 Hz
        self._a3: _Acc | None = None
        self._a10: _Acc | None = None
        self._d15: _Acc | None = None
        self._end_s: float | None = None  # end of the last window added

    @staticmethod
    def _tick(t: float, period: float) -> float:
        return math.floor(t / period) * period

    def add_windows(self, windows: list[WindowMetrics]) -> list[Aggregate]:
        """Windows in time order; the intervals they close, in order."""
        if not windows:
            return []
        # the quantities of every window at once (windows, quantities, circuits), and their
        # duration-weighted contributions to the means: squares for rms-like ones, NaN as nothing
        x = np.array([[getattr(w, q) for q in QUANTITIES] for w in windows], dtype=np.float64)
        val = x.copy()
        val[:, : len(RMS_LIKE)] **= 2
        val = np.where(np.isfinite(val), val, 0.0) * np.array([w.duration_s for w in windows])[:, None, None]
        out: list[Aggregate] = []
        for k, w in enumerate(windows):
            out.extend(self._add(w, x[k], val[k]))
        return out

    def _add(self, w: WindowMetrics, x: FloatArray, val: FloatArray) -> list[Aggregate]:
        out: list[Aggregate] = []
        t = w.t_start_s
        if self._a3 is not None and self._end_s is not None and t - self._end_s > _GAP_S:
            # samples were lost: the 150-cycle sequence cannot run across them (it closes short, so
            # it is not published) and restarts with this window
            out.append(self._a3.close("3s", windows=self.per_3s, cut=True))
            self._a3 = None
        self._end_s = t + w.duration_s
        tick10 = self._tick(t, 600.0)
        # a 10 min tick closes the 10 min value and restarts the 150-cycle sequence (IEC resync)
        if self._a10 is not None and tick10 != self._tick(self._a10.t_start_s, 600.0):
            out.append(self._a10.close("10min", period_s=600.0))
            self._a10 = None
            if self._a3 is not None:
                out.append(self._a3.close("3s", windows=self.per_3s))
                self._a3 = None
        if self._d15 is not None and self._tick(t, 900.0) != self._tick(self._d15.t_start_s, 900.0):
            out.append(self._d15.close("15min-demand", period_s=900.0))
            self._d15 = None
        if self._a10 is None:
            self._a10 = _Acc(t_start_s=tick10, circuits=self.c, first_s=t)
        if self._d15 is None:
            self._d15 = _Acc(t_start_s=self._tick(t, 900.0), circuits=self.c, first_s=t)
        if self._a3 is None:
            self._a3 = _Acc(t_start_s=t, circuits=self.c, first_s=t)
        for acc in (self._a3, self._a10, self._d15):
            acc.add(w, x, val)
        if self._a3.n >= self.per_3s:
            out.append(self._a3.close("3s", windows=self.per_3s))
            self._a3 = None
        return out


class ClassAFrequency:
    """Frequency per absolute 10 s interval: whole cycles between the first and last rising crossing
    inside the interval, divided by their time span (IEC 61000-4-30 Class A)."""

    def __init__(self) -> None:
        self._interval: float | None = None
        self._first: float | None = None
        self._last: float | None = None
        self._count = 0
        self._partial = True  # the interval the stream starts in is incomplete: not reported

    def add(self, crossings_s: FloatArray) -> list[tuple[float, float]]:
        """Rising crossing times (s, ascending); returns finished ``(interval_start_s, hz)`` pairs."""
        out: list[tuple[float, float]] = []
        if not crossings_s.size:
            return out
        ticks = np.floor(crossings_s / 10.0) * 10.0
        for tick in np.unique(ticks):
            sel = crossings_s[ticks == tick]
            if self._interval is not None and tick != self._interval:
                if self._count >= 2 and self._first is not None and self._last is not None and not self._partial:
                    out.append((self._interval, (self._count - 1) / (self._last - self._first)))
                self._interval, self._first, self._count, self._partial = None, None, 0, False
            if self._interval is None:
                self._interval, self._first = float(tick), float(sel[0])
            self._last = float(sel[-1])
            self._count += sel.size
        return out
