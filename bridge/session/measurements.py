"""From the core's results to the live model's terms: the snapshot of a window, and the alarm rules
applied to every window of a batch (voltage events in progress, overcurrent, clipping)."""

from __future__ import annotations

import time
from collections.abc import Sequence

from bridge.core import WindowMetrics
from bridge.measuring import Measured
from bridge.model import CircuitValues, DeviceSnapshot
from bridge.model.live import AlarmChange

_FIELDS = (
    "v_rms", "i_rms", "p_w", "q_var", "s_va", "n_va", "pf", "dpf", "angle_deg",
    "thd_v", "thd_i", "v_dc", "i_dc", "clipped", "event", "harmonics_v", "harmonics_i",
)  # fmt: skip


def snapshot_of(measured: Measured, w: WindowMetrics, number: int) -> DeviceSnapshot:
    """The model's snapshot of window ``w``, with the energy counters of the same answer."""
    energy = measured.energy.values()
    # whole arrays to Python values at once (the same floats as float() of each element)
    col = {name: getattr(w, name).tolist() for name in _FIELDS}
    urms_half = measured.last_urms_half.tolist()
    circuits = tuple(
        CircuitValues(
            v_rms=col["v_rms"][c],
            i_rms=col["i_rms"][c],
            p_w=col["p_w"][c],
            q_var=col["q_var"][c],
            s_va=col["s_va"][c],
            n_va=col["n_va"][c],
            pf=col["pf"][c],
            dpf=col["dpf"][c],
            angle_deg=col["angle_deg"][c],
            thd_v=col["thd_v"][c],
            thd_i=col["thd_i"][c],
            v_dc=col["v_dc"][c],
            i_dc=col["i_dc"][c],
            clipped=col["clipped"][c],
            event=col["event"][c],
            urms_half=urms_half[c],
            harmonics_v=tuple(col["harmonics_v"][c]),
            harmonics_i=tuple(col["harmonics_i"][c]),
            **energy[c],
        )
        for c in range(measured.c)
    )
    return DeviceSnapshot(
        number=number,
        time_s=w.t_start_s,
        duration_s=w.duration_s,
        freq_hz=w.freq_hz,
        synced=w.synced,
        circuits=circuits,
        received_monotonic=time.monotonic(),
    )


def window_alarms(
    w: WindowMetrics, ongoing: dict[int, str], overcurrent_a: Sequence[float], freq_band: tuple[float, float]
) -> list[AlarmChange]:
    """The alarms one window implies. ``ongoing``: circuit index (0-based) -> the kind of voltage
    event in progress there; ``overcurrent_a`` per circuit; ``freq_band`` (low, high) in Hz."""
    out: list[AlarmChange] = []
    i_rms, clipped = w.i_rms.tolist(), w.clipped.tolist()
    for c in range(len(i_rms)):
        n = c + 1
        kind = ongoing.get(c)
        limit = overcurrent_a[c] if c < len(overcurrent_a) else overcurrent_a[-1]
        over = i_rms[c] > limit
        out += [
            (n, "dip", kind == "dip", "voltage dip in progress"),
            (n, "swell", kind == "swell", "voltage swell in progress"),
            (n, "interruption", kind == "interruption", "supply interrupted"),
            (n, "overcurrent", over, f"{i_rms[c]:.1f} A > {limit:g} A" if over else ""),
            (n, "clipped", clipped[c], "samples at the ADC rail"),
        ]
    f, (low, high) = w.freq_hz, freq_band
    if w.synced and f == f:  # a window without a measured frequency (NaN, unsynchronised) says nothing
        off = f < low or f > high
        text = f"{f:.3f} Hz outside {low:g}..{high:g} Hz" if off else ""
        out.append((0, "frequency", off, text))
    return out
