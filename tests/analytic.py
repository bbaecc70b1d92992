"""Analytic test waveforms (METROLOGY.md): exact sines, so the truth is known in closed form."""

from __future__ import annotations

import math

import numpy as np

FS = 7812.5
U = 230.0


def phase(t: np.ndarray, f: float) -> np.ndarray:
    return 2 * math.pi * f * t


def waveform(
    seconds: float,
    *,
    f: float = 50.0,
    fs: float = FS,
    u: float = U,
    v_harm: dict[int, float] | None = None,
    i_parts: list[tuple[int, float, float]] = ((1, 10.0, 0.0),),  # type: ignore[assignment]
    envelope: np.ndarray | None = None,
    v_dc: float = 0.0,
    i_dc: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """v = sqrt2 U (sin phi + sum h% sin n phi); i = sum sqrt2 A sin(n phi + angle_deg)."""
    t = np.arange(round(seconds * fs)) / fs
    phi = phase(t, f)
    v = np.sin(phi)
    for n, pct in (v_harm or {}).items():
        v = v + pct / 100 * np.sin(n * phi)
    v = math.sqrt(2) * u * v
    if envelope is not None:
        v = v * envelope
    i = np.zeros_like(t)
    for n, amps, deg in i_parts:
        i += math.sqrt(2) * amps * np.sin(n * phi + math.radians(deg))
    return v + v_dc, i + i_dc
