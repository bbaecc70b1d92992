"""Measuring in a process of its own, fed through a pipe: the asyncio adapter on the bridge's side.

The requests of one turn of the event loop go as one length-prefixed pickle, and the loop never
waits for the child: what the pipe cannot take yet waits in a queue written when it has room, and
each device's link reads are held back by the session while its blocks wait (so the queue stays
bounded). Answers come back the same way and are applied in the loop, in order. Pickles cross only
between this bridge and the child it started itself."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import fcntl
import itertools
import os
import pickle
import sys
from pathlib import Path

from bridge.logs import get_logger

from .jobs import HEAD, Flush, Measured, Request
from .port import Handler, MeasuringFailed

# 100 boards send ~35 MB/s of payloads: in Linux's default 64 kB pipe that is a refill every 2 ms, and
# the child reads only between batches; 1 MB (the unprivileged maximum) holds ~30 ms of it
PIPE_BYTES = 1 << 20
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
WRITEV_CHUNKS = 64
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
        # requests not yet in the pipe, as the pickles themselves: asyncio's pipe transport keeps one
        # bytearray it appends to and cuts from the front, which copied the whole backlog each time
        # (a fifth of the event loop's time at 100 boards when the child was behind)
        self._out: collections.deque[bytes | memoryview] = collections.deque()
        self._fd: int | None = None
        self._writing = False
        self._turn: list[Request] = []  # sent in this turn of the event loop, shipped at its end

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
        requests_r, requests_w = os.pipe()
        answers_r, answers_w = os.pipe()
        for fd in (requests_w, answers_r):
            with contextlib.suppress(OSError):  # a smaller pipe works, only less smoothly
                fcntl.fcntl(fd, F_SETPIPE_SZ, PIPE_BYTES)
        try:
            self._proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bridge.measuring.child", stdin=requests_r, stdout=answers_w, env=env
            )
        except BaseException:
            for fd in (requests_w, answers_r):
                os.close(fd)
            raise
        finally:
            os.close(requests_r)
            os.close(answers_w)
        os.set_blocking(requests_w, False)
        self._fd = requests_w
        reader = asyncio.StreamReader(limit=1 << 20, loop=loop)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(answers_r, "rb", 0))
        self._failed = loop.create_future()
        self._reader = loop.create_task(self._read(reader), name="measuring-answers")
        log.info("measuring process started", pid=self._proc.pid)

    def send(self, req: Request) -> None:
        if self._fd is None:
            raise MeasuringFailed("the measuring process is not running (the bridge is starting or stopping)")
        # what one turn of the event loop sends goes as one message: a hundred boards' blocks are
        # ~1 250 requests a second, and each message costs both sides reads, a pickle and a wake-up
        if not self._turn:
            asyncio.get_running_loop().call_soon(self._ship)
        self._turn.append(req)

    def _ship(self) -> None:
        turn, self._turn = self._turn, []
        if not turn or self._fd is None:
            return
        data = pickle.dumps(turn, protocol=pickle.HIGHEST_PROTOCOL)
        self._out.append(HEAD.pack(len(data)))
        self._out.append(data)
        if not self._writing:
            self._flush()

    def _flush(self) -> None:
        """Write what the pipe takes now; the rest when it has room again."""
        fd = self._fd
        if fd is None:
            return
        while self._out:
            chunks = list(itertools.islice(self._out, WRITEV_CHUNKS))
            try:
                n = os.writev(fd, chunks)
            except BlockingIOError:
                break
            except OSError as exc:  # the child is gone: its exit is reported by the reader
                self._out.clear()
                log.debug("measuring pipe closed", error=str(exc))
                break
            full = n < sum(len(c) for c in chunks)
            while n:
                head = self._out[0]
                if n >= len(head):
                    n -= len(head)
                    self._out.popleft()
                else:
                    self._out[0] = memoryview(head)[n:]
                    n = 0
            if full:  # the pipe took what it had room for
                break
        wanted = bool(self._out)
        if wanted != self._writing:
            loop = asyncio.get_running_loop()
            if wanted:
                loop.add_writer(fd, self._flush)
            else:
                loop.remove_writer(fd)
            self._writing = wanted

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
        if self._fd is not None:
            if self._writing:
                asyncio.get_running_loop().remove_writer(self._fd)
            os.close(self._fd)  # the child ends at the end of its input
            self._fd, self._writing = None, False
            self._out.clear()
            self._turn.clear()
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

    async def _read(self, out: asyncio.StreamReader) -> None:
        assert self._proc is not None
        try:
            while True:
                (size,) = HEAD.unpack(await out.readexactly(HEAD.size))
                answers: list[tuple[int, Measured | None]] = pickle.loads(await out.readexactly(size))
                for ticket, answer in answers:
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
