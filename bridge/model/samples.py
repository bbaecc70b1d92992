"""The raw signal beside the model: every counted block's samples, scaled to volts and amperes, for the
few that want them (a waveform capture, the event recorder). Nothing is scaled or copied while nobody
listens; a listener gets a block it must not keep a reference into beyond its call (copy what it keeps).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


class SampleBlock:
    """One block as the analyzer took it: ``v`` and ``i`` the ADC counts the device sent, each
    (circuits, n), read-only, with ``scale`` and ``offset`` per channel (voltages then currents), so
    that value = counts x scale + offset (``scaled`` gives the calibrated volts and amperes).
    ``wire`` is the binary payload the block was decoded from, if it was, of which the first
    ``skip`` samples were counted before (they are not in ``v`` and ``i``).

    A block made with :meth:`deferred` is decoded when ``v`` or ``i`` is first read: a listener that
    keeps the payload (the event recorder) costs no decoding in the receive path."""

    __slots__ = ("_decode", "_vi", "circuits", "device", "fs", "n", "offset", "scale", "seq", "skip", "t0_s", "wire")

    def __init__(
        self,
        device: str,
        seq: int,
        t0_s: float,  # device clock, seconds since the epoch, of the first sample
        fs: float,
        v: npt.NDArray[np.int64],
        i: npt.NDArray[np.int64],
        scale: FloatArray,
        offset: FloatArray,
        wire: bytes | None = None,
        skip: int = 0,
    ) -> None:
        self.device, self.seq, self.t0_s, self.fs = device, seq, t0_s, fs
        self.scale, self.offset, self.wire, self.skip = scale, offset, wire, skip
        self.circuits, self.n = int(v.shape[0]), int(v.shape[1])
        self._vi: tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]] | None = (v, i)
        self._decode: Callable[[], tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]] | None = None

    @classmethod
    def deferred(
        cls,
        device: str,
        seq: int,
        t0_s: float,
        fs: float,
        shape: tuple[int, int],
        decode: Callable[[], tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]],
        scale: FloatArray,
        offset: FloatArray,
        wire: bytes | None = None,
        skip: int = 0,
    ) -> SampleBlock:
        """A block of ``shape`` (circuits, n) whose counts ``decode`` gives when first wanted."""
        empty = np.empty((shape[0], shape[1]), dtype=np.int64)[:, :0]
        block = cls(device, seq, t0_s, fs, empty, empty, scale, offset, wire, skip)
        block.circuits, block.n = shape
        block._vi, block._decode = None, decode
        return block

    def _counts(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        if self._vi is None:
            assert self._decode is not None
            self._vi, self._decode = self._decode(), None
        return self._vi

    @property
    def v(self) -> npt.NDArray[np.int64]:
        return self._counts()[0]

    @property
    def i(self) -> npt.NDArray[np.int64]:
        return self._counts()[1]

    @property
    def counts(self) -> npt.NDArray[np.int64]:
        """Voltages then currents, (2 x circuits, n) (a new array)."""
        return np.concatenate((self.v, self.i))

    def scaled(self) -> tuple[FloatArray, FloatArray]:
        """(volts, amperes), each (circuits, n)."""
        x = self.counts * self.scale[:, None] + self.offset[:, None]
        c = self.circuits
        return x[:c], x[c:]


@dataclass(frozen=True, slots=True)
class Trigger:
    """A moment worth a waveform record: a voltage event's start, or an operator's request."""

    device: str
    t_s: float  # device clock, seconds since the epoch
    kind: str  # "dip", "swell", "interruption" or "manual"
    circuit: int  # 1.., or 0 for the whole device

    @property
    def reason(self) -> str:
        return self.kind if self.circuit == 0 else f"{self.kind} on circuit {self.circuit}"


SampleListener = Callable[[SampleBlock], None]
TriggerListener = Callable[[Trigger], None]
DecidedListener = Callable[[str, float], None]


class SampleTaps:
    """Who listens to which device's samples. The session publishes; listeners subscribe and must
    return quickly (they run in the receive path)."""

    def __init__(self) -> None:
        self._by_device: dict[str, set[SampleListener]] = {}
        self._everywhere: set[SampleListener] = set()
        self._triggers: list[TriggerListener] = []
        self._decided: list[DecidedListener] = []

    def subscribe(self, listener: SampleListener, device: str | None = None) -> Callable[[], None]:
        """Listen to one device (or every device); returns the call that ends it."""
        target = self._everywhere if device is None else self._by_device.setdefault(device, set())
        target.add(listener)
        return lambda: target.discard(listener)

    def wanted(self, device: str) -> bool:
        return bool(self._everywhere or self._by_device.get(device))

    def publish(self, block: SampleBlock) -> None:
        for listener in (*self._everywhere, *self._by_device.get(block.device, ())):
            listener(block)

    def on_trigger(self, listener: TriggerListener) -> None:
        self._triggers.append(listener)

    def trigger(self, trigger: Trigger) -> None:
        for listener in self._triggers:
            listener(trigger)

    def on_decided(self, listener: DecidedListener) -> None:
        self._decided.append(listener)

    def decided(self, device: str, t_s: float) -> None:
        """The device's samples are measured up to ``t_s`` (device clock): every voltage event that
        started before it, less the detector's settling (``DETECTION_SLACK_S``), has been triggered."""
        for listener in self._decided:
            listener(device, t_s)
