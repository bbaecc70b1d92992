"""Energy registers: the array bank the analyzer uses keeps the scalar registers' arithmetic exactly."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.core import EnergyBank, EnergyCounters, WindowMetrics

POWER = st.floats(-5e4, 5e4, allow_nan=False, allow_infinity=False)


def _window(p: list[float], q: list[float], duration_s: float) -> WindowMetrics:
    """A window carrying only what the registers read (the split of P by direction, Q1, S)."""
    pa, qa = np.array(p), np.array(q)
    nan = np.full(pa.size, np.nan)
    return WindowMetrics(
        start=0.0, end=1.0, duration_s=duration_s, freq_hz=50.0, synced=True,
        v_rms=nan, i_rms=nan, v_dc=nan, i_dc=nan, p_w=pa, q_var=qa, s_va=np.hypot(pa, qa) * 1.01, n_va=nan,
        pf=nan, dpf=nan, angle_deg=nan, v1_rms=nan, i1_rms=nan, thd_v=nan, thd_i=nan,
        harmonics_v=np.zeros((pa.size, 40)), harmonics_i=np.zeros((pa.size, 40)), harmonics_fresh=True,
        clipped=np.zeros(pa.size, bool), p_import_w=np.maximum(pa, 0.0), p_export_w=np.maximum(-pa, 0.0),
        event=np.zeros(pa.size, bool),
    )  # fmt: skip


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.tuples(st.lists(st.tuples(POWER, POWER), min_size=3, max_size=3), st.floats(0.01, 0.3)), max_size=60)
)
def test_bank_equals_scalar_registers(windows: list[tuple[list[tuple[float, float]], float]]) -> None:
    bank = EnergyBank(3)
    scalar = [EnergyCounters() for _ in range(3)]
    ws = [_window([p for p, _ in pq], [q for _, q in pq], d) for pq, d in windows]
    bank.add_windows(ws)
    for w in ws:
        for c, reg in enumerate(scalar):
            reg.add_window(
                float(w.p_import_w[c]), float(w.p_export_w[c]), float(w.q_var[c]), float(w.s_va[c]), w.duration_s
            )
    for c in range(3):
        assert bank[c].values() == scalar[c].values()
        assert bank[c] == scalar[c]
    assert bank.values() == [reg.values() for reg in scalar]  # the whole bank at once, to the last bit


def test_nan_window_adds_nothing_and_restore_sets_a_register() -> None:
    bank = EnergyBank(2)
    bank.restore(1, "export_wh", 12_345, 0.25)
    bank.add_windows([_window([100.0, float("nan")], [-50.0, 10.0], 36.0)])
    assert bank[0].values() == {"import_wh": 1.0, "export_wh": 0.0, "q_ind_varh": 0.0, "q_cap_varh": 0.5,
                                "s_vah": bank[0].s_vah.value}  # fmt: skip
    assert bank[1].values() == {"import_wh": 0.0, "export_wh": 12_345.25, "q_ind_varh": 0.0, "q_cap_varh": 0.0,
                                "s_vah": 0.0}  # fmt: skip
