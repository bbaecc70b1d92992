"""Which stream position the energy counters include: the blocks fed to the analyzer, in order, and
how far its integration has reached. Only a position whose energy is committed is acknowledged to
the device (so a block is freed from its SRAM only once it can never be lost)."""

from __future__ import annotations

import collections
from dataclasses import dataclass

from bridge.store import Progress
from device.protocol.sequence import prev_seq


@dataclass(slots=True)
class _Fed:
    seq: int
    start: int  # global sample index of the block's first fed sample
    n: int
    skipped: int  # samples at the block start not fed (already counted before a restart)


class FedBlocks:
    def __init__(self) -> None:
        self._fed: collections.deque[_Fed] = collections.deque()

    def clear(self) -> None:
        self._fed.clear()

    def append(self, seq: int, start: int, n: int, skipped: int) -> None:
        self._fed.append(_Fed(seq, start, n, skipped))

    def position(self, integrated_until: int, durable: Progress | None) -> Progress | None:
        """The stream position whose energy is inside the counters once they have integrated up to
        sample ``integrated_until``; ``durable`` is the last committed one."""
        pos: Progress | None = None
        while self._fed:
            f = self._fed[0]
            if f.start + f.n <= integrated_until:
                pos = Progress(f.seq, 0)
                self._fed.popleft()
            else:
                if f.start < integrated_until:
                    # the next block is partly counted: remember how far (plus what a restart skipped)
                    base = pos or durable
                    before = prev_seq(f.seq)
                    if base is None or base.block_seq == before:
                        return Progress(before, f.skipped + (integrated_until - f.start))
                break
        return pos or durable
