"""Energy registers: integer watt-hours plus a float64 residual, so small increments never vanish.

A float32 counter at 1 MWh resolves only 0.06 Wh steps and silently drops a 200 ms window of a small
load; integer Wh plus a residual in [0, 1) keeps every increment for centuries of operation.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from .window import WindowMetrics

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


class EnergyBank:
    """The five registers of every circuit of a device, as arrays: one window adds to all of them with
    a few numpy operations instead of fifty Python calls. The arithmetic is :class:`Register`'s, so a
    bank and a list of counters fed the same windows hold the same values to the last bit.
    ``bank[c]`` is circuit ``c``'s :class:`EnergyCounters` (a copy: write back with :meth:`restore`)."""

    def __init__(self, circuits: int) -> None:
        self.whole = np.zeros((len(REGISTERS), circuits), dtype=np.int64)
        self.residual = np.zeros((len(REGISTERS), circuits))

    def __len__(self) -> int:
        return int(self.whole.shape[1])

    def copy(self) -> EnergyBank:
        bank = EnergyBank(0)
        bank.whole, bank.residual = self.whole.copy(), self.residual.copy()
        return bank

    def __getitem__(self, c: int) -> EnergyCounters:
        regs = [Register(int(self.whole[k, c]), float(self.residual[k, c])) for k in range(len(REGISTERS))]
        return EnergyCounters(*regs)

    def __iter__(self) -> Iterator[EnergyCounters]:
        return (self[c] for c in range(len(self)))

    def values(self) -> list[dict[str, float]]:
        """Every circuit's registers as :meth:`EnergyCounters.values` gives them (the same sums of a
        Python int and float), from two array conversions instead of fifty element reads."""
        whole, residual = self.whole.tolist(), self.residual.tolist()
        return [{name: whole[k][c] + residual[k][c] for k, name in enumerate(REGISTERS)} for c in range(len(self))]

    def restore(self, c: int, name: str, whole: int, residual: float) -> None:
        """Set one register (e.g. from the store after a restart)."""
        k = REGISTERS.index(name)
        self.whole[k, c], self.residual[k, c] = whole, residual

    def add_windows(self, windows: Sequence[WindowMetrics]) -> None:
        """Windows of every circuit, in time order: active energy by direction (split per cycle by the
        core), Q1 by sign (+ inductive, - capacitive), apparent. A circuit with a NaN result in a
        window (e.g. an empty window) adds nothing for it."""
        if not windows:
            return
        h = np.array([w.duration_s for w in windows])[:, None] / 3600.0
        q = np.array([w.q_var for w in windows])
        inc = np.stack(
            (
                np.array([w.p_import_w for w in windows]) * h,
                np.array([w.p_export_w for w in windows]) * h,
                np.maximum(q, 0.0) * h,
                np.maximum(-q, 0.0) * h,
                np.array([w.s_va for w in windows]) * h,
            ),
            axis=1,
        )  # (windows, registers, circuits)
        ok = np.isfinite(inc).all(axis=1, keepdims=True)
        inc = np.where(ok, inc, 0.0)
        if (inc < 0).any():
            raise ValueError(f"energy increments are non-negative, got {inc.min()}")
        whole = np.empty_like(self.residual)
        for k in range(inc.shape[0]):  # one window at a time: the same roundings however windows are batched
            r = self.residual + inc[k]
            np.floor(r, out=whole)
            self.whole += whole.astype(np.int64)
            self.residual = r - whole
