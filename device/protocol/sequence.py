"""u32 sequence numbers (frame and block numbers) that wrap at 2**32, compared serial-number style
(RFC 1982): ``a`` is after ``b`` when it is less than half the number space ahead."""

from __future__ import annotations

MODULUS = 1 << 32
HALF = 1 << 31


def wrap(n: int) -> int:
    """``n`` as a u32 sequence number.

    >>> wrap(-1), wrap(2**32)
    (4294967295, 0)
    """
    return n % MODULUS


def next_seq(n: int) -> int:
    return (n + 1) % MODULUS


def prev_seq(n: int) -> int:
    return (n - 1) % MODULUS


def distance(a: int, b: int) -> int:
    """How many steps forward from ``b`` to ``a`` (0 .. 2**32-1)."""
    return (a - b) % MODULUS


def is_after(a: int, b: int) -> bool:
    """Is ``a`` after ``b``?

    >>> is_after(0, 2**32 - 1), is_after(5, 5), is_after(5, 6)
    (True, False, False)
    """
    return 0 < distance(a, b) < HALF


def at_or_before(a: int, b: int) -> bool:
    """Is ``a`` equal to ``b`` or before it (within half the number space)?"""
    return distance(b, a) < HALF
