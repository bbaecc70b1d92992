"""Reconnect with exponential backoff: the one loop both ends of a link use to dial (or open a serial
port) again after a failure or a closed connection."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import NoReturn, TypeVar

T = TypeVar("T")


class Backoff:
    """Delays that double from ``first_s`` up to ``max_s``; ``failures`` counts the current outage.

    >>> b = Backoff(0.2, 1.0)
    >>> [b.failed() for _ in range(5)], b.failures
    ([0.2, 0.4, 0.8, 1.0, 1.0], 5)
    """

    def __init__(self, first_s: float = 0.2, max_s: float = 10.0) -> None:
        if not 0 < first_s <= max_s:
            raise ValueError(f"backoff needs 0 < first_s <= max_s, got {first_s} and {max_s}")
        self.first_s = first_s
        self.max_s = max_s
        self.failures = 0
        self._next = first_s

    def failed(self) -> float:
        """One more failed attempt; returns how long to wait before the next."""
        delay = self._next
        self.failures += 1
        self._next = min(self._next * 2, self.max_s)
        return delay

    def reset(self) -> int:
        """Connected: start over; returns how many attempts had failed."""
        failed, self.failures, self._next = self.failures, 0, self.first_s
        return failed


async def reconnect_forever(
    connect: Callable[[], Awaitable[T]],
    serve: Callable[[T], Awaitable[object]],
    backoff: Backoff,
    *,
    retry_on: tuple[type[BaseException], ...] = (OSError,),
    on_failure: Callable[[BaseException, int, float], None] | None = None,
    on_connected: Callable[[int], None] | None = None,
    on_closed: Callable[[], None] | None = None,
) -> NoReturn:
    """Connect, serve until the connection ends, and again, for ever.

    ``on_failure(error, attempt, delay_s)`` hears of every failed attempt of an outage (1, 2, ...), so a
    caller can log the first and stay quiet on repeats; ``on_connected(failed_attempts)`` and
    ``on_closed()`` frame each connection. A closed connection is retried after ``backoff.first_s``.
    """
    while True:
        try:
            conn = await connect()
        except retry_on as exc:
            delay = backoff.failed()
            if on_failure is not None:
                on_failure(exc, backoff.failures, delay)
            await asyncio.sleep(delay)
            continue
        failed = backoff.reset()
        if on_connected is not None:
            on_connected(failed)
        await serve(conn)
        if on_closed is not None:
            on_closed()
        await asyncio.sleep(backoff.first_s)
