"""What the session asks of a device's measuring, and what comes back: plain, picklable records, the
same whether the analyzers run in the bridge's event loop or in the measuring process.

Requests for one device are handled in the order they were sent; that order is what makes a block
measured with the scales, thresholds and stream it was sent under."""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from bridge.core import AnalyzerSettings, EnergyBank, Thresholds, Update, VoltageEvent
from device.protocol import Samples

FloatArray = npt.NDArray[np.float64]
# between the bridge and its measuring process each message is this length, then a pickle of that length
HEAD = struct.Struct("<I")


@dataclass(frozen=True, slots=True)
class Create:
    """A new analyzer for the device (its first HELLO, another sample rate or circuit count)."""

    device: str
    circuits: int
    settings: AnalyzerSettings
    scale: FloatArray
    offset: FloatArray | None
    # (circuit index from 0, register, whole, residual): the stored counters to go on from
    restore: tuple[tuple[int, str, int, float], ...] = ()
    keep_energy: bool = False  # go on from the analyzer before's counters instead (same circuits)


@dataclass(frozen=True, slots=True)
class Block:
    """One counted block: measured once enough signal is held (or at once, ``now``: after a gap)."""

    device: str
    payload: bytes | Samples  # a binary block's payload (checked on arrival) or a decoded block
    skip: int  # leading samples counted before a restart: not counted again
    now: bool = False


@dataclass(frozen=True, slots=True)
class SetScales:
    """Calibration or ADC scales changed: what is held is measured with the old ones first."""

    device: str
    scale: FloatArray
    offset: FloatArray | None


@dataclass(frozen=True, slots=True)
class SetThresholds:
    device: str
    thresholds: Thresholds


@dataclass(frozen=True, slots=True)
class Restart:
    """The device numbers its blocks anew: what is held is measured, then the timeline restarts."""

    device: str


@dataclass(frozen=True, slots=True)
class Flush:
    """Measure what is held now and answer, whatever was held: the adapter answers it (by its
    ``ticket``) once every request before it is answered, even for a device without an analyzer."""

    device: str
    ticket: int


@dataclass(frozen=True, slots=True)
class Drop:
    device: str


Request = Create | Block | SetScales | SetThresholds | Restart | Flush | Drop


@dataclass(frozen=True, slots=True)
class Measured:
    """A device's analyzer after it measured: the results of what it was fed since its last answer,
    and its state as of the same instant (the counters and the position they integrated up to
    belong together: a commit takes both from one answer)."""

    device: str
    update: Update
    energy: EnergyBank  # a copy
    ongoing: tuple[VoltageEvent, ...]
    last_urms_half: FloatArray
    integrated_until: int
    end: int  # samples fed in all
    origin_s: float
    origin_idx: int
    fs: float
    decided_s: float | None  # a batch ran: every sample up to this device time is measured

    @property
    def c(self) -> int:
        return len(self.energy)

    def time_of(self, position: float) -> float:
        """Seconds (device clock) of a global sample position, as the analyzer had it."""
        return self.origin_s + (position - self.origin_idx) / self.fs
