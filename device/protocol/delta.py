"""The resumable delta codec for sample channels (numpy-vectorised, no I/O).

Every block starts from absolute values ("heads"), so any block decodes on its own and a stream resumes
after a lost block. Per channel the encoder picks the difference order (0 = raw, 1 = first difference,
2 = second difference) and the narrowest signed width (0, 1, 2, 3 or 4 bytes) that carries every
residual exactly: a full-scale 24-bit sine moves ~3.4e5 LSB per sample, too much for 16 bits as a first
difference but only ~1.4e4 LSB as a second difference. Nothing is ever clipped to fit.

All residuals are big-endian two's complement; width 0 means "all residuals are zero" and carries no
bytes (a switched-off circuit costs only its heads).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from .errors import LocalProtocolError, RemoteProtocolError

MAX_ORDER = 2
_LIMITS = ((0, 0), (1, 127), (2, 32767), (3, 8388607), (4, 2147483647))
_DTYPES: dict[int, np.dtype[np.signedinteger[Any]]] = {
    1: np.dtype(">i1"),
    2: np.dtype(">i2"),
    4: np.dtype(">i4"),
}

IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True, kw_only=True)
class EncodedChannel:
    """One channel of one block on the wire: difference order, heads, residual width and bytes."""

    order: int
    heads: tuple[int, ...]
    width: int
    residuals: bytes

    def __post_init__(self) -> None:
        if not 0 <= self.order <= MAX_ORDER:
            raise RemoteProtocolError(f"delta order {self.order} is not 0, 1 or 2", code="delta-order")
        if len(self.heads) != self.order:
            raise RemoteProtocolError(
                f"delta order {self.order} needs {self.order} heads, got {len(self.heads)}",
                code="delta-heads",
            )
        if self.width not in (0, 1, 2, 3, 4):
            raise RemoteProtocolError(f"residual width {self.width} is not 0..4 bytes", code="delta-width")


def _width_for(max_abs: int) -> int | None:
    for width, limit in _LIMITS:
        if max_abs <= limit:
            return width
    return None


def _pack(values: npt.NDArray[np.int64], width: int) -> bytes:
    if width == 0:
        return b""
    if width == 3:
        be = values.astype(">i4").view(np.uint8).reshape(-1, 4)
        return be[:, 1:].tobytes()
    return bytes(values.astype(_DTYPES[width]).tobytes())


def _unpack(data: bytes, width: int, count: int) -> npt.NDArray[np.signedinteger[Any]]:
    """Residuals as signed integers (a read-only view of ``data`` where the width allows)."""
    if width == 0:
        if data:
            raise RemoteProtocolError("a width-0 channel must carry no residual bytes", code="delta-length")
        return np.zeros(count, dtype=np.int64)
    if len(data) != width * count:
        raise RemoteProtocolError(
            f"channel carries {len(data)} residual bytes, expected {count} x {width}", code="delta-length"
        )
    if width == 3:
        raw = np.frombuffer(data, dtype=np.uint8).reshape(-1, 3)
        sign = np.where(raw[:, 0] & 0x80, 0xFF, 0x00).astype(np.uint8)
        return np.column_stack((sign, raw)).view(">i4").ravel()
    return np.frombuffer(data, dtype=_DTYPES[width])


def encode_channels(samples: npt.ArrayLike) -> list[EncodedChannel]:
    """Encode a ``(channels, n)`` integer array, choosing order and width per channel.

    >>> ch = encode_channels([[1000 * k * k for k in range(20)]])[0]
    >>> ch.order, ch.heads, ch.width, len(ch.residuals)
    (2, (0, 1000), 2, 36)
    """
    x = np.asarray(samples)
    if x.ndim != 2 or x.shape[1] < 1:
        raise LocalProtocolError(f"samples must be shaped (channels, n>=1), got {x.shape}", code="delta-shape")
    if not np.issubdtype(x.dtype, np.integer):
        raise LocalProtocolError(f"samples must be integer ADC counts, got {x.dtype}", code="delta-dtype")
    x = x.astype(np.int64, copy=False)
    n = x.shape[1]
    levels = [x]
    for _ in range(min(MAX_ORDER, n - 1)):
        levels.append(np.diff(levels[-1], axis=-1))
    # max |residual| per channel and order, in one pass per order
    peaks = [np.abs(level).max(axis=-1) if level.shape[1] else np.zeros(x.shape[0], np.int64) for level in levels]
    out: list[EncodedChannel] = []
    for c in range(x.shape[0]):
        fits: list[tuple[int, int, int]] = []  # (bytes, order, width)
        for order, peak in enumerate(peaks):
            width = _width_for(int(peak[c]))
            if width is not None:  # else this order's residuals overflow 32 bits; a lower one may fit
                fits.append((width * (n - order) + 4 * order, order, width))
        # the cheapest, except that a higher order within 1 % of it wins: at the same width a second
        # difference costs a few bytes more than a first (its extra head), and channels that share a
        # layout are decoded together (one numpy group per block instead of one per layout)
        cheapest = min(fits, default=None)
        best = max(
            (f for f in fits if cheapest is not None and f[0] <= cheapest[0] * 1.01),
            key=lambda f: f[1],
            default=None,
        )
        if best is None:
            raise LocalProtocolError(
                f"channel {c} holds values beyond 32 bits: samples must be signed ADC counts",
                code="delta-range",
            )
        _, order, width = best
        heads = tuple(int(levels[k][c, 0]) for k in range(order))
        out.append(EncodedChannel(order=order, heads=heads, width=width, residuals=_pack(levels[order][c], width)))
    return out


def decode_channel(channel: EncodedChannel, n: int) -> IntArray:
    """Rebuild ``n`` absolute samples from one encoded channel (cumulative sums in int64)."""
    if n < channel.order or n < 1:
        raise RemoteProtocolError(
            f"block of {n} samples cannot carry a delta order of {channel.order}", code="delta-order"
        )
    values = _unpack(channel.residuals, channel.width, n - channel.order).astype(np.int64)
    for head in reversed(channel.heads):
        values = np.cumsum(np.concatenate(([head], values)), dtype=np.int64)
    return values


def decode_channels(channels: list[EncodedChannel], n: int) -> IntArray:
    """Decode every channel of a block into a ``(channels, n)`` int64 array.

    Channels sharing order and width (nearly all of them, block after block) are decoded together:
    one frombuffer and one cumulative sum per group instead of per channel.
    """
    groups: dict[tuple[int, int], Group] = {}
    for c, ch in enumerate(channels):
        if n < ch.order or n < 1:
            raise RemoteProtocolError(
                f"block of {n} samples cannot carry a delta order of {ch.order}", code="delta-order"
            )
        if len(ch.residuals) != ch.width * (n - ch.order):
            raise RemoteProtocolError(
                f"channel {c} carries {len(ch.residuals)} residual bytes, expected {n - ch.order} x {ch.width}",
                code="delta-length",
            )
        g = groups.setdefault((ch.order, ch.width), Group())
        g.rows.append(c)
        g.heads.extend(ch.heads)
        g.parts.append(ch.residuals)
    return decode_groups(groups, len(channels), n)


@dataclass(slots=True)
class Group:
    """Channels of one block that share a difference order and residual width, gathered for
    :func:`decode_groups`: their row numbers, heads in row order, and residual bytes."""

    rows: list[int] = field(default_factory=list)
    heads: list[int] = field(default_factory=list)
    parts: list[bytes | memoryview] = field(default_factory=list)


def decode_groups(groups: dict[tuple[int, int], Group], channels: int, n: int) -> IntArray:
    """Rebuild a ``(channels, n)`` int64 block from its channel groups (lengths already checked).

    Every row is first written in second-difference form ``[x0, d0, r0, r1, ...]`` (a lower-order
    channel's residuals are differenced up to it), then two running sums over the whole block, the
    first starting at column 1, give the samples: ``-> [x0, d0, d1, ...] -> [x0, x1, x2, ...]``.
    Two sums over one array instead of one or two per group keep the numpy calls per block few.
    """
    out = np.empty((channels, n), dtype=np.int64)
    if n < 3:  # too short for the second-difference form; such blocks are never sent at rate
        for (order, width), g in groups.items():
            block = np.empty((len(g.rows), n), dtype=np.int64)
            block[:, :order] = np.array(g.heads, dtype=np.int64).reshape(len(g.rows), order)
            block[:, order:] = _unpack(b"".join(g.parts), width, len(g.rows) * (n - order)).reshape(len(g.rows), -1)
            for level in range(order - 1, -1, -1):
                np.add.accumulate(block[:, level:], axis=1, out=block[:, level:])
            out[g.rows] = block
        return out
    for (order, width), g in groups.items():
        k = len(g.rows)
        whole = k == channels
        rows: Any = slice(None) if whole else g.rows
        res = _unpack(b"".join(g.parts), width, k * (n - order)).reshape(k, n - order)
        if order == 2:
            out[rows, 2:] = res
            out[rows, :2] = np.array(g.heads, dtype=np.int64).reshape(k, 2)
            continue
        lifted = res.astype(np.int64)
        if order == 0:
            out[rows, 0] = lifted[:, 0]
            lifted = np.diff(lifted, axis=1)
        else:
            out[rows, 0] = g.heads
        out[rows, 1] = lifted[:, 0]
        out[rows, 2:] = np.diff(lifted, axis=1)
    np.add.accumulate(out[:, 1:], axis=1, out=out[:, 1:])
    np.add.accumulate(out, axis=1, out=out)
    return out
