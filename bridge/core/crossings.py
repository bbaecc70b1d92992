"""Zero crossings of the fundamental, found block by block with the same result however blocks are cut.

A crossing is a sign change of the voltage that follows an excursion beyond the hysteresis band on the
other side (so noise and notches near zero never count twice). Its position is refined by a
least-squares line through the 2K samples around it, in fractional samples. A DC offset moves every
rising crossing by the same amount, so periods and whole-cycle windows are unaffected by it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
FIT_HALF = 4  # K: samples on each side of a crossing used by the line fit

_OFFSETS = np.arange(-FIT_HALF, FIT_HALF, dtype=np.float64) + 0.5  # relative to the midpoint n-0.5
_PINV = np.linalg.pinv(np.vander(_OFFSETS, 4, increasing=True))  # (4, 2K) least-squares cubic


@dataclass(frozen=True, slots=True)
class Crossings:
    """Fractional global sample positions and direction (+1 rising, -1 falling), ascending."""

    position: FloatArray
    rising: npt.NDArray[np.bool_]


class CrossingDetector:
    """Streaming detector over one channel; ``push`` returns the crossings it can now settle."""

    def __init__(self, hysteresis: float) -> None:
        if hysteresis <= 0:
            raise ValueError(f"hysteresis must be > 0 volts, got {hysteresis}")
        self.hysteresis = hysteresis
        self._state = 0  # -1 last excursion below -h, +1 above +h, 0 none yet
        self._last_rising: bool | None = None
        self.settled_until = FIT_HALF  # global index n of the next sample pair (n-1, n) to test

    def push(self, x: FloatArray, start: int) -> Crossings:
        """``x`` holds global samples ``start .. start+len(x)`` and must begin at or before
        ``settled_until - FIT_HALF`` (callers keep that much history)."""
        lo = self.settled_until - start
        if lo < FIT_HALF:
            raise ValueError(f"crossing detector needs history from sample {self.settled_until - FIT_HALF}")
        hi = x.size - FIT_HALF  # the fit needs FIT_HALF samples after n
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
        pos = (n + start).astype(np.float64) + self._refine(x, n)
        if excursion.size:
            self._state = 1 if seg[excursion[-1]] > 0 else -1
        self.settled_until = start + hi
        if rising.size:
            self._last_rising = bool(rising[-1])
        return Crossings(pos, rising)

    @staticmethod
    def _refine(x: FloatArray, n: npt.NDArray[np.intp]) -> FloatArray:
        """Offsets (relative to n) of the zero of a cubic least-squares fit through the 2K samples
        around each crossing: a line would be biased by the curvature of a distorted wave, and that
        bias would change from cycle to cycle as the sampling phase slides."""
        if n.size == 0:
            return np.empty(0)
        win = x[n[:, None] + np.arange(-FIT_HALF, FIT_HALF)]
        coef = win @ _PINV.T  # (k, 4): c0 + c1 t + c2 t^2 + c3 t^3, t relative to n - 0.5
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
