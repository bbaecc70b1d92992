"""Dips, swells and interruptions from Urms(1/2) (IEC 61000-4-30), per circuit.

Urms(1/2) is the rms over one cycle that starts at a zero crossing, refreshed every half cycle. A dip
starts when it falls below the dip threshold and ends when it is back at or above threshold plus
hysteresis; swells mirror that above the swell threshold; an interruption is a dip whose residual
falls below the interruption threshold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True, kw_only=True)
class Thresholds:
    """Shares of the declared voltage (defaults: IEC 61000-4-30 usual settings)."""

    dip: float = 0.90
    swell: float = 1.10
    interruption: float = 0.05
    hysteresis: float = 0.02

    def __post_init__(self) -> None:
        if not 0 < self.interruption < self.dip < 1 < self.swell:
            raise ValueError(
                f"need 0 < interruption ({self.interruption}) < dip ({self.dip}) < 1 < swell ({self.swell})"
            )
        if not 0 <= self.hysteresis < 1 - self.dip:
            raise ValueError(f"hysteresis {self.hysteresis} must be between 0 and 1 - dip threshold")


@dataclass(frozen=True, slots=True, kw_only=True)
class VoltageEvent:
    """A finished (or, with ``end`` None, ongoing) dip, swell or interruption on one circuit.

    Positions are fractional global sample indices of the Urms(1/2) values that crossed the
    thresholds; ``extreme_v`` is the residual (minimum) voltage of a dip/interruption, the maximum
    of a swell.
    """

    circuit: int  # index into the analyzer's circuits
    kind: str  # "dip", "swell" or "interruption"
    start: float
    end: float | None
    extreme_v: float

    def duration_s(self, fs: float) -> float:
        return math.nan if self.end is None else (self.end - self.start) / fs


class EventDetector:
    """State machine per circuit fed with Urms(1/2) values in time order."""

    def __init__(self, circuits: int, u_nominal: float, thresholds: Thresholds) -> None:
        self.u = u_nominal
        self.th = thresholds
        self._kind: list[str | None] = [None] * circuits
        self._start = [0.0] * circuits
        self._extreme = [0.0] * circuits

    def active(self) -> npt.NDArray[np.bool_]:
        return np.array([k is not None for k in self._kind], dtype=bool)

    def ongoing(self) -> list[VoltageEvent]:
        return [
            VoltageEvent(circuit=c, kind=k, start=self._start[c], end=None, extreme_v=self._extreme[c])
            for c, k in enumerate(self._kind)
            if k is not None
        ]

    def push(self, pos: FloatArray, urms: FloatArray) -> tuple[list[VoltageEvent], npt.NDArray[np.bool_]]:
        """``pos`` (k,) positions, ``urms`` (circuits, k) values. Returns finished events and, per value,
        whether any event was active on its circuit (circuits, k)."""
        th, u = self.th, self.u
        low, high = th.dip * u, th.swell * u
        in_dip = urms < low
        in_swell = urms > high
        flagged = in_dip | in_swell
        finished: list[VoltageEvent] = []
        for c in range(urms.shape[0]):
            if self._kind[c] is None and not flagged[c].any():
                continue  # the common case: nothing happening, no per-value work
            for k in range(urms.shape[1]):
                x = float(urms[c, k])
                kind = self._kind[c]
                if kind is None:
                    if x < low:
                        self._kind[c], self._start[c], self._extreme[c] = "dip", float(pos[k]), x
                    elif x > high:
                        self._kind[c], self._start[c], self._extreme[c] = "swell", float(pos[k]), x
                elif kind == "swell":
                    self._extreme[c] = max(self._extreme[c], x)
                    if x <= high - th.hysteresis * u:
                        finished.append(self._close(c, float(pos[k])))
                else:
                    self._extreme[c] = min(self._extreme[c], x)
                    if x < th.interruption * u:
                        self._kind[c] = "interruption"
                    if x >= low + th.hysteresis * u:
                        finished.append(self._close(c, float(pos[k])))
                flagged[c, k] |= self._kind[c] is not None
        return finished, flagged

    def _close(self, c: int, end: float) -> VoltageEvent:
        kind = self._kind[c]
        assert kind is not None
        ev = VoltageEvent(circuit=c, kind=kind, start=self._start[c], end=end, extreme_v=self._extreme[c])
        self._kind[c] = None
        return ev
