"""ADC counts to volts and amperes: the device's LSB sizes (from HELLO) times the bridge-side
calibration gain, plus the calibration offset; and where each channel's ADC rail lies after scaling."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from device.protocol import Hello

Calibration = Mapping[tuple[int, str], tuple[float, float]]  # (circuit, "v"/"i") -> (gain, offset)


class Scales:
    """Per-channel scale and offset in the order the analyzer takes them: voltages, then currents."""

    def __init__(self, hello: Hello, calibration: Calibration) -> None:
        n = hello.circuit_count

        def cal(c: int, ch: str) -> tuple[float, float]:
            return calibration.get((c + 1, ch), (1.0, 0.0))

        self.v = np.array([hello.v_lsb_volts[c] * cal(c, "v")[0] for c in range(n)])
        self.i = np.array([hello.i_lsb_amps[c] * cal(c, "i")[0] for c in range(n)])
        self.v_offset = np.array([cal(c, "v")[1] for c in range(n)])
        self.i_offset = np.array([cal(c, "i")[1] for c in range(n)])
        self.scale = np.concatenate((self.v, self.i))
        offset = np.concatenate((self.v_offset, self.i_offset))
        self.offset: np.ndarray | None = offset if offset.any() else None  # None while every offset is zero

    def v_rails(self, bits: int) -> tuple[float, ...]:
        return _rails(bits, self.v, self.v_offset)

    def i_rails(self, bits: int) -> tuple[float, ...]:
        return _rails(bits, self.i, self.i_offset)


def _rails(bits: int, scale: np.ndarray, offset: np.ndarray) -> tuple[float, ...]:
    """Values at the ADC rail per circuit (a hair inside, so a railed sample always counts)."""
    return tuple(float(x) for x in np.abs((2 ** (bits - 1) - 1) * scale) * 0.999999 + np.abs(offset))
