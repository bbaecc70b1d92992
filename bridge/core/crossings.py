"""Zero crossings of the fundamental, found block by block with the same result however blocks are cut.

A crossing is a sign change of the voltage that follows an excursion beyond the hysteresis band on the
other side (so noise and notches near zero never count twice). Its position is refined by a
least-squares cubic through the 2K samples around it (K from the sample rate), in fractional samples.
A DC offset moves every rising crossing by the same amount, so periods and whole-cycle windows are
unaffected by it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
FIT_HALF = 4  # K at full rate: samples on each side of a crossing used by the cubic fit
FIT_SPAN_S = 0.8e-3  # K is the number of samples in this time, 2..4


def fit_half(fs: float) -> int:
    """K for a sample rate. The fit must span a small part of a cycle: a cubic through 8 samples
    covers 1 ms at 7812.5 Hz, but 8 ms (40 % of a cycle) at 1 kHz, where the sine's fifth-order term
    moved crossings by up to 1.4 mHz on a clean 60 Hz wave (18 mHz with 3/5/2 % voltage harmonics);
    with K = 2 (the cubic through the 4 nearest samples) it is 0.02 mHz (4.5 mHz). Full rate keeps
    K = 4, whose least-squares fit also averages the noise."""
    return int(min(FIT_HALF, max(2, round(FIT_SPAN_S * fs))))


@functools.lru_cache(maxsize=8)
def _cubic_fit(k: int) -> FloatArray:
    offsets = np.arange(-k, k, dtype=np.float64) + 0.5  # relative to the midpoint n-0.5
    pinv = np.linalg.pinv(np.vander(offsets, 4, increasing=True))  # (4, 2K) least squares
    return np.asarray(pinv, dtype=np.float64)


@dataclass(frozen=True, slots=True)
class Crossings:
    """Fractional global sample positions and direction (+1 rising, -1 falling), ascending."""

    position: FloatArray
    rising: npt.NDArray[np.bool_]


class CrossingDetector:
    """Streaming detector over one channel; ``push`` returns the crossings it can now settle."""

    def __init__(self, hysteresis: float, *, half: int = FIT_HALF) -> None:
        if hysteresis <= 0:
            raise ValueError(f"hysteresis must be > 0 volts, got {hysteresis}")
        if not 2 <= half <= 16:
            raise ValueError(f"the crossing fit needs 2..16 samples on each side, got {half}")
        self.hysteresis = hysteresis
        self.half = half  # K: samples on each side of a crossing in the fit
        self._pinv = _cubic_fit(half)
        self._state = 0  # -1 last excursion below -h, +1 above +h, 0 none yet
        self._last_rising: bool | None = None
        self.settled_until = half  # global index n of the next sample pair (n-1, n) to test

    def push(self, x: FloatArray, start: int) -> Crossings:
        """``x`` holds global samples ``start .. start+len(x)`` and must begin at or before
        ``settled_until - half`` (callers keep that much history)."""
        k = self.half
        lo = self.settled_until - start
        if lo < k:
            raise ValueError(f"crossing detector needs history from sample {self.settled_until - k}")
        hi = x.size - k  # the fit needs k samples after n
        if hi <= lo:
            return Crossings(np.empty(0), np.empty(0, dtype=bool))
        seg = x[lo - 1 : hi]  # seg[k] is global sample start+lo-1+k
        # sign changes are few: find them and the excursions beyond the band with a handful of passes
        # over the samples, then decide each candidate on its own
        nonneg = seg >= 0
        cand = np.flatnonzero(nonneg[1:] != nonneg[:-1])  # the pair (cand, cand+1) changes sign
        excursion = np.flatnonzero(np.abs(seg) > self.hysteresis)
        # state before the pair = the side of the last excursion at or before cand
        if excursion.size:
            last = np.searchsorted(excursion, cand, side="right") - 1
            side = np.where(seg[excursion[np.maximum(last, 0)]] > 0, 1, -1)
            prev_state = np.where(last >= 0, side, self._state)
        else:
            prev_state = np.full(cand.size, self._state)
        up = nonneg[cand + 1] & (prev_state == -1)
        down = ~nonneg[cand + 1] & (prev_state == 1)
        keep_hit = up | down
        hits = cand[keep_hit]
        rising = up[keep_hit]
        if hits.size:
            # wiggles inside the band could repeat a direction: keep the first of each run
            keep = np.ones(hits.size, dtype=bool)
            keep[1:] = rising[1:] != rising[:-1]
            if self._last_rising is not None:
                keep[0] = bool(rising[0]) != self._last_rising
            hits, rising = hits[keep], rising[keep]
        n = hits + lo
        pos = (n + start).astype(np.float64) + self._refine(x, n, k, self._pinv)
        if excursion.size:
            self._state = 1 if seg[excursion[-1]] > 0 else -1
        self.settled_until = start + hi
        if rising.size:
            self._last_rising = bool(rising[-1])
        return Crossings(pos, rising)

    @staticmethod
    def _refine(x: FloatArray, n: npt.NDArray[np.intp], k: int, pinv: FloatArray) -> FloatArray:
        """Offsets (relative to n) of the zero of a cubic least-squares fit through the 2K samples
        around each crossing: a line would be biased by the curvature of a distorted wave, and that
        bias would change from cycle to cycle as the sampling phase slides."""
        if n.size == 0:
            return np.empty(0)
        win = x[n[:, None] + np.arange(-k, k)]
        coef = win @ pinv.T  # (k, 4): c0 + c1 t + c2 t^2 + c3 t^3, t relative to n - 0.5
        lin = x[n - 1] / (x[n - 1] - x[n]) - 0.5  # linear interpolation, relative to n - 0.5
        t = lin.copy()
        c0, c1, c2, c3 = coef.T
        with np.errstate(divide="ignore", invalid="ignore"):
            for _ in range(3):  # Newton from the interpolated point; converges in 2 steps on mains
                f = ((c3 * t + c2) * t + c1) * t + c0
                d = (3 * c3 * t + 2 * c2) * t + c1
                t = t - f / d
        ok = np.isfinite(t) & (np.abs(t - lin) < 1.0)
        return np.where(ok, t, lin) - 0.5
