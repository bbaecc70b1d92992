"""Start the simulator as a separate OS process (for `openstrom-bridge demo` and the tests)."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Sequence
from types import TracebackType


class SimulatorProcess:
    """``async with SimulatorProcess(["--connect", "127.0.0.1:7700"]) as sim:`` runs one device.

    stderr lines are kept in ``sim.log`` (and echoed when ``echo`` is set) so a failing test can show
    what the device said.
    """

    def __init__(self, args: Sequence[str], *, echo: bool = False) -> None:
        self.args = list(args)
        self.echo = echo
        self.log: list[str] = []
        self.proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "device.simulator.cli",
            *self.args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        self._reader = asyncio.create_task(self._read_log())

    async def _read_log(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        async for raw in self.proc.stderr:
            line = raw.decode(errors="replace").rstrip()
            self.log.append(line)
            if self.echo:
                print(line, file=sys.stderr, flush=True)

    async def wait(self) -> int:
        """The exit code (wrap in ``asyncio.timeout`` to bound the wait)."""
        assert self.proc is not None
        return await self.proc.wait()

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 5)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._reader, 2)

    async def __aenter__(self) -> SimulatorProcess:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()
