"""Analytic mains and appliance waveforms, generated block by block (numpy, deterministic).

Every block is a pure function of (scenario, seed, block index, relay mask), so a test can rebuild the
exact samples the simulator process sent. Time is the sample index k over the sample rate; mains phase
is the closed-form integral of the drifting, stepped frequency, so it is continuous across blocks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from device.protocol import BOARD_CIRCUITS

from .scenario import Circuit, Scenario

FloatArray = npt.NDArray[np.float64]
CIRCUITS = BOARD_CIRCUITS
V_FULL_SCALE_PEAK = 500.0  # V at the ADC rail
I_FULL_SCALE_PEAK = 100.0  # A at the ADC rail (70.7 A rms, so 1/5000 of it is 14.14 mA)
ADC_BITS = 24
V_LSB = V_FULL_SCALE_PEAK / 2 ** (ADC_BITS - 1)
I_LSB = I_FULL_SCALE_PEAK / 2 ** (ADC_BITS - 1)


@dataclass(frozen=True, slots=True)
class Component:
    """One current harmonic: rms amperes at declared voltage, angle (rad) it lags the voltage harmonic."""

    order: int
    amps: float
    lag_rad: float


def _inductive(p_w: float, pf: float, u: float, h3_pct: float = 0.0) -> list[Component]:
    i1 = p_w / (u * pf)
    comps = [Component(1, i1, math.acos(pf))]
    if h3_pct:
        comps.append(Component(3, i1 * h3_pct / 100, 3 * math.acos(pf)))
    return comps


def _smps(p_w: float, u: float) -> list[Component]:
    # capacitor-input rectifier: narrow current pulses at the voltage peaks -> odd harmonics of
    # alternating sign (a phase of pi for orders 3, 7, 11 ...), fundamental slightly leading
    lead = math.radians(8.0)
    i1 = p_w / (u * math.cos(lead))
    shares = {3: 0.80, 5: 0.55, 7: 0.30, 9: 0.12, 11: 0.08, 13: 0.06}
    comps = [Component(1, i1, -lead)]
    for n, share in shares.items():
        comps.append(Component(n, i1 * share, -n * lead + (math.pi if n % 4 == 3 else 0.0)))
    return comps


def _periodic(t: FloatArray, on_s: float, off_s: float, offset: float = 0.0) -> FloatArray:
    return (((t + offset) % (on_s + off_s)) < on_s).astype(np.float64)


class Board:
    """The ten circuits of one device, as analog signals before the ADC."""

    def __init__(self, scenario: Scenario, seed: int) -> None:
        self.scenario = scenario
        self.seed = seed
        self.fs = scenario.sample_rate_hz
        self.n = scenario.block_samples
        self.u = scenario.mains.voltage
        m = scenario.mains
        self._harm = {int(k): v / 100.0 for k, v in m.harmonics_pct.items()}
        # per circuit: how far each channel's analog front end is off (a board to calibrate)
        circuits = [scenario.circuit(c) for c in range(1, CIRCUITS + 1)]
        self._v_error = np.array([[c.v_gain_error] for c in circuits])
        self._i_error = np.array([[c.i_gain_error] for c in circuits])

    # ---------------------------------------------------------------- mains

    def phase(self, t: FloatArray) -> FloatArray:
        """Fundamental phase (rad) at times t: 2 pi times the integral of the instantaneous frequency."""
        m = self.scenario.mains
        cycles = m.frequency * t
        if m.drift_hz:
            w = 2 * math.pi / m.drift_period_s
            cycles = cycles + m.drift_hz / w * (1 - np.cos(w * t))
        for ev in self.scenario.events:
            if ev.kind == "frequency_step":
                cycles = cycles + ev.delta_hz * np.maximum(0.0, t - ev.at)
        return 2 * math.pi * cycles

    def envelope(self, t: FloatArray) -> FloatArray:
        """Voltage as a share of declared: sags, swells and interruptions."""
        env = np.ones_like(t)
        for ev in self.scenario.events:
            if ev.kind in ("sag", "swell", "interruption"):
                depth = 0.0 if ev.kind == "interruption" else ev.depth
                env[(t >= ev.at) & (t < ev.at + ev.duration)] = depth
        return env

    def voltage(self, phi: FloatArray, env: FloatArray) -> FloatArray:
        v = np.sin(phi)
        for n, share in self._harm.items():
            v = v + share * np.sin(n * phi)
        return math.sqrt(2) * self.u * env * v

    # ---------------------------------------------------------------- loads

    def _activity(self, c: Circuit, t: FloatArray) -> list[tuple[FloatArray, list[Component] | float]]:
        """(activity, load) pairs; load is components, or a conductance (S) for resistive parts."""
        p, u = c.power_w, self.u
        g = p / (u * u)
        ones = np.ones_like(t)
        match c.appliance:
            case "none":
                return []
            case "heater":
                return [(ones, g)]
            case "toaster":
                return [(_periodic(t, 120.0, 60.0), g)]
            case "refrigerator":
                on = _periodic(t, 600.0, 900.0)
                since = t % 1500.0
                inrush = 1.0 + 5.0 * np.exp(-since / 0.15)
                return [(on * inrush, _inductive(p, 0.75, u, h3_pct=5.0))]
            case "pool_pump":
                return [(ones, _inductive(p, 0.8, u, h3_pct=3.0))]
            case "washer":
                cyc = t % 1200.0
                return [
                    (((cyc >= 60) & (cyc < 360)).astype(np.float64), g),
                    (((cyc >= 360) & (cyc < 960)).astype(np.float64), _inductive(0.15 * p, 0.6, u)),
                    ((cyc >= 960).astype(np.float64), _inductive(0.25 * p, 0.7, u)),
                    ((cyc < 60).astype(np.float64), 10.0 / (u * u)),
                ]
            case "dryer":
                return [(_periodic(t, 60.0, 30.0), 0.9 * g), (ones, _inductive(0.1 * p, 0.65, u))]
            case "computer":
                return [(ones, _smps(p, u))]
            case "capacitive":
                return [(ones, [Component(1, p / (u * 0.3), -math.acos(0.3))])]
            case "custom":
                sign = -1.0 if c.leading else 1.0
                lag = sign * math.acos(c.pf)
                i1 = p / (u * c.pf)
                comps = [Component(1, i1, lag)]
                comps += [Component(int(n), i1 * s / 100, int(n) * lag) for n, s in c.harmonics_pct.items()]
                return [(ones, comps)]
        raise AssertionError(c.appliance)

    def currents(self, t: FloatArray, phi: FloatArray, v: FloatArray, env: FloatArray) -> FloatArray:
        out = np.zeros((CIRCUITS, t.size))
        over = self._overcurrent(t)
        for idx in range(CIRCUITS):
            for act, load in self._activity(self.scenario.circuit(idx + 1), t):
                if isinstance(load, float):
                    i = load * v  # a resistor follows the voltage, harmonics and all
                else:
                    i = np.zeros_like(t)
                    for comp in load:
                        i += math.sqrt(2) * comp.amps * np.sin(comp.order * phi - comp.lag_rad)
                    i *= env  # constant impedance: current follows a sag
                out[idx] += act * i
            out[idx] *= over[idx]
        return out

    def _overcurrent(self, t: FloatArray) -> FloatArray:
        f = np.ones((CIRCUITS, t.size))
        for ev in self.scenario.events:
            if ev.kind == "overcurrent" and ev.circuit is not None:
                f[ev.circuit - 1, (t >= ev.at) & (t < ev.at + ev.duration)] *= ev.factor
        return f

    # ---------------------------------------------------------------- blocks

    def times(self, index: int) -> FloatArray:
        k = np.arange(index * self.n, (index + 1) * self.n, dtype=np.float64)
        return k / self.fs

    def zero_crossing(self, index: int) -> int:
        """Sample offset within a block of the first fundamental zero crossing (relays switch there)."""
        t = self.times(index)
        half = np.floor(self.phase(t) / math.pi)
        hits = np.flatnonzero(np.diff(half) != 0)
        return int(hits[0] + 1) if hits.size else 0

    def block(self, index: int, energised: npt.NDArray[np.bool_]) -> tuple[FloatArray, FloatArray]:
        """Analog volts and amperes ``(10, n)`` for block ``index``; ``energised`` is ``(10, n)``."""
        t = self.times(index)
        phi = self.phase(t)
        env = self.envelope(t)
        v1 = self.voltage(phi, env)
        v = np.broadcast_to(v1, (CIRCUITS, t.size))
        i = self.currents(t, phi, v1, env) * energised
        return v, i

    def adc(self, index: int, v: FloatArray, i: FloatArray) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """Quantise to 24-bit counts with Gaussian noise, clipping at the rails like a real ADC."""
        rng = np.random.default_rng([self.seed, index])
        sigma = self.scenario.noise_lsb
        lo, hi = -(2 ** (ADC_BITS - 1)), 2 ** (ADC_BITS - 1) - 1
        vn = v * self._v_error / V_LSB + rng.normal(0.0, sigma, v.shape)
        in_ = i * self._i_error / I_LSB + rng.normal(0.0, sigma, i.shape)
        return (
            np.clip(np.rint(vn), lo, hi).astype(np.int64),
            np.clip(np.rint(in_), lo, hi).astype(np.int64),
        )
