"""Measuring in the caller's thread: every request answered before ``send`` returns."""

from __future__ import annotations

import asyncio

from bridge.core import StreamAnalyzer

from .jobs import Flush, Request
from .meters import Meters
from .port import Handler


class LocalMeasurer:
    def __init__(self) -> None:
        self.meters = Meters()
        self._handlers: dict[str, Handler] = {}

    def register(self, device: str, handler: Handler) -> None:
        self._handlers[device] = handler

    def unregister(self, device: str) -> None:
        self._handlers.pop(device, None)

    def send(self, req: Request) -> None:
        answer = self.meters.handle(req)
        handler = self._handlers.get(req.device)
        if answer is not None and handler is not None:
            handler(answer)

    async def settle(self, device: str | None = None) -> None:
        for name in [device] if device is not None else list(self._handlers):
            self.send(Flush(name, 0))

    def analyzer(self, device: str) -> StreamAnalyzer | None:
        """The device's analyzer itself (for tests and tools in the same process)."""
        meter = self.meters.meters.get(device)
        return None if meter is None else meter.analyzer

    async def start(self) -> None:
        pass

    async def watch(self) -> None:
        await asyncio.get_running_loop().create_future()  # in the loop's own thread: it cannot fail apart

    async def close(self) -> None:
        pass
