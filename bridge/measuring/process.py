"""Measuring in a process of its own, fed through a pipe: the asyncio adapter on the bridge's side.

The event loop sends each request as a length-prefixed pickle and never waits for the child: writes
are buffered by the pipe transport, and each device's link reads are held back by the session while
its blocks wait (so the buffer stays bounded). Answers come back the same way and are applied in the
loop, in order. Pickles cross only between this bridge and the child it started itself."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import pickle
import struct
import sys
from pathlib import Path

from bridge.logs import get_logger

from .jobs import Flush, Measured, Request
from .port import Handler, MeasuringFailed

HEAD = struct.Struct("<I")  # the length of the pickle that follows
ROOT = str(Path(__file__).resolve().parents[2])  # where the child imports this same bridge from
log = get_logger("bridge.measuring")


class ProcessMeasurer:
    def __init__(self, *, stop_timeout_s: float = 10.0) -> None:
        self._handlers: dict[str, Handler] = {}
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._failed: asyncio.Future[str] | None = None
        self._waiting: dict[int, asyncio.Future[None]] = {}
        self._tickets = itertools.count(1)
        self._closing = False
        self._stop_timeout_s = stop_timeout_s

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def register(self, device: str, handler: Handler) -> None:
        self._handlers[device] = handler

    def unregister(self, device: str) -> None:
        self._handlers.pop(device, None)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p),
            # small matrix products: spread over cores by BLAS they cost twice the CPU in hand-offs
            "OPENBLAS_NUM_THREADS": "1",
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
        }
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bridge.measuring.child",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=env,
            limit=1 << 20,
        )
        self._failed = loop.create_future()
        self._reader = loop.create_task(self._read(), name="measuring-answers")
        log.info("measuring process started", pid=self._proc.pid)

    def send(self, req: Request) -> None:
        proc = self._proc
        if proc is None or proc.stdin is None:
            raise MeasuringFailed("the measuring process is not running (the bridge is starting or stopping)")
        data = pickle.dumps(req, protocol=pickle.HIGHEST_PROTOCOL)
        proc.stdin.write(HEAD.pack(len(data)))
        proc.stdin.write(data)

    async def settle(self, device: str | None = None) -> None:
        if self._failed is not None and self._failed.done():
            raise MeasuringFailed(self._failed.result())
        loop = asyncio.get_running_loop()
        waits = []
        for name in [device] if device is not None else list(self._handlers):
            ticket = next(self._tickets)
            fut = self._waiting[ticket] = loop.create_future()
            self.send(Flush(name, ticket))
            waits.append(fut)
        await asyncio.gather(*waits)

    async def watch(self) -> None:
        assert self._failed is not None, "start() first"
        raise MeasuringFailed(await asyncio.shield(self._failed))

    async def close(self) -> None:
        self._closing = True
        proc = self._proc
        if proc is None:
            return
        if proc.stdin is not None:
            proc.stdin.close()  # the child ends at the end of its input
        try:
            async with asyncio.timeout(self._stop_timeout_s):
                await proc.wait()
        except TimeoutError:
            log.warning("measuring process did not stop; killed", pid=proc.pid)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)
        self._proc = None

    async def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        out = self._proc.stdout
        try:
            while True:
                (size,) = HEAD.unpack(await out.readexactly(HEAD.size))
                ticket, answer = pickle.loads(await out.readexactly(size))
                if answer is not None:
                    self._deliver(answer)
                if ticket:
                    fut = self._waiting.pop(ticket, None)
                    if fut is not None and not fut.done():
                        fut.set_result(None)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        code = await self._proc.wait()
        if self._closing and code == 0:
            return
        why = f"the measuring process ended (exit status {code}): the bridge cannot measure and stops"
        log.error(why, pid=self._proc.pid, exit_status=code)
        self._fail(why)

    def _deliver(self, answer: Measured) -> None:
        handler = self._handlers.get(answer.device)
        if handler is None:
            return  # the device was removed meanwhile
        try:
            handler(answer)
        except Exception:  # one device's trouble must not stop the answers of the others
            log.exception("measurement not applied", device=answer.device)

    def _fail(self, why: str) -> None:
        if self._failed is not None and not self._failed.done():
            self._failed.set_result(why)
        for fut in self._waiting.values():
            if not fut.done():
                fut.set_exception(MeasuringFailed(why))
        self._waiting.clear()
