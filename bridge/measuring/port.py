"""What the session needs of a measurer, wherever it measures."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from bridge.errors import BridgeError

from .jobs import Measured, Request

Handler = Callable[[Measured], None]


class MeasuringFailed(BridgeError):
    """The measuring process ended: nothing more can be measured, so the bridge stops (its supervisor
    starts it again; every block not acknowledged is sent again by its device)."""

    code = "measuring"


class Measurer(Protocol):
    def register(self, device: str, handler: Handler) -> None:
        """Where the device's answers go (called in the event loop, in the order of its requests)."""

    def unregister(self, device: str) -> None: ...

    def send(self, req: Request) -> None:
        """Queue a request; never blocks."""

    async def settle(self, device: str | None = None) -> None:
        """Return once the device's (or every device's) held blocks are measured and every answer to
        what was sent before is applied."""

    async def start(self) -> None: ...

    async def watch(self) -> None:
        """Return never; raise :class:`MeasuringFailed` when measuring cannot go on."""

    async def close(self) -> None: ...
