"""COMTRADE records (IEEE C37.111-2013): the ``.cfg`` text and the ``BINARY`` (or ``BINARY32``) ``.dat``.

Analog samples are stored as the ADC counts the device sent, with each channel's multiplier ``a`` and
offset ``b`` (value = a x count + b, the device's LSB size times the bridge's calibration): nothing is
rounded twice, and a reader gets volts and amperes exactly as the bridge measured them. Times are UTC
on the device clock (which the bridge keeps set), microseconds from the first sample.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

REV_YEAR = 2013


@dataclass(frozen=True, slots=True)
class AnalogChannel:
    name: str  # ch_id, e.g. "C01 V"
    phase: str  # ph, e.g. "L1" (may be empty)
    component: str  # ccbm: the circuit being monitored
    unit: str  # uu: "V" or "A"
    a: float
    b: float


def _stamp(t_s: float) -> str:
    d = dt.datetime.fromtimestamp(t_s, dt.UTC)
    return f"{d:%d/%m/%Y},{d:%H:%M:%S}.{d.microsecond:06d}"


def _clean(text: str) -> str:
    return text.replace(",", " ").replace("\n", " ")[:64]  # a comma would split the field


def record(
    *,
    station: str,
    device_id: str,
    channels: list[AnalogChannel],
    counts: npt.NDArray[np.integer],
    fs: float,
    f_line: float,
    start_s: float,
    trigger_s: float,
) -> tuple[str, bytes]:
    """(cfg text, dat bytes) of one record; ``counts`` is (channels, samples)."""
    nch, n = counts.shape
    if nch != len(channels):
        raise ValueError(f"{nch} rows of samples for {len(channels)} channels")
    wide = bool(counts.size) and (int(counts.max()) > 32767 or int(counts.min()) < -32767)
    kind, dtype, lim = ("BINARY32", "<i4", 2**31 - 1) if wide else ("BINARY", "<i2", 32767)
    lines = [
        f"{_clean(station)},{_clean(device_id)},{REV_YEAR}",
        f"{nch},{nch}A,0D",
    ]
    for k, ch in enumerate(channels, 1):
        lines.append(
            f"{k},{_clean(ch.name)},{_clean(ch.phase)},{_clean(ch.component)},{ch.unit},{ch.a!r},{ch.b!r},0,"
            f"{-lim},{lim},1,1,P"
        )
    lines += [
        f"{f_line:g}",
        "1",
        f"{fs:g},{n}",
        _stamp(start_s),
        _stamp(trigger_s),
        kind,
        "1",  # timemult: timestamps in microseconds
        "+0h00,+0h00",  # time_code, local_code: UTC
        "A,0",  # tmq_code (clock within 10 ms: the bridge sets the device clock), leap second
    ]
    rows = np.zeros(n, dtype=[("n", "<u4"), ("t", "<u4"), ("a", dtype, (nch,))])
    rows["n"] = np.arange(1, n + 1)
    rows["t"] = np.round(np.arange(n) * (1e6 / fs)).astype(np.uint32)
    rows["a"] = counts.T
    return "\r\n".join(lines) + "\r\n", rows.tobytes()
