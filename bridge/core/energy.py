"""Energy registers: integer watt-hours plus a float64 residual, so small increments never vanish.

A float32 counter at 1 MWh resolves only 0.06 Wh steps and silently drops a 200 ms window of a small
load; integer Wh plus a residual in [0, 1) keeps every increment for centuries of operation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

REGISTERS = ("import_wh", "export_wh", "q_ind_varh", "q_cap_varh", "s_vah")


@dataclass(slots=True)
class Register:
    whole: int = 0
    residual: float = 0.0

    def add(self, amount: float) -> None:
        if amount < 0 or not math.isfinite(amount):
            raise ValueError(f"energy increments are non-negative and finite, got {amount}")
        self.residual += amount
        if self.residual >= 1.0:
            whole = math.floor(self.residual)
            self.whole += whole
            self.residual -= whole

    @property
    def value(self) -> float:
        return self.whole + self.residual


@dataclass(slots=True)
class EnergyCounters:
    """The five registers of one circuit."""

    import_wh: Register = field(default_factory=Register)
    export_wh: Register = field(default_factory=Register)
    q_ind_varh: Register = field(default_factory=Register)
    q_cap_varh: Register = field(default_factory=Register)
    s_vah: Register = field(default_factory=Register)

    def add_window(self, p_import_w: float, p_export_w: float, q_var: float, s_va: float, duration_s: float) -> None:
        """One window: active energy by direction (split per cycle by the core), Q1 by sign
        (+ inductive, - capacitive), apparent."""
        h = duration_s / 3600.0
        self.import_wh.add(p_import_w * h)
        self.export_wh.add(p_export_w * h)
        if q_var >= 0:
            self.q_ind_varh.add(q_var * h)
        else:
            self.q_cap_varh.add(-q_var * h)
        self.s_vah.add(s_va * h)

    def values(self) -> dict[str, float]:
        return {name: getattr(self, name).value for name in REGISTERS}


def add_windows(
    counters: list[EnergyCounters],
    p_import: npt.NDArray[np.float64],
    p_export: npt.NDArray[np.float64],
    q: npt.NDArray[np.float64],
    s: npt.NDArray[np.float64],
    duration_s: float,
) -> None:
    """Add one window of every circuit (NaN results, e.g. from an empty window, add nothing)."""
    for c, reg in enumerate(counters):
        vals = (float(p_import[c]), float(p_export[c]), float(q[c]), float(s[c]))
        if all(math.isfinite(x) for x in vals):
            reg.add_window(*vals, duration_s)
