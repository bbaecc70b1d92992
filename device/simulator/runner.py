"""asyncio shell around :class:`SimulatedDevice`: pacing, TCP (dial or listen) and serial links.

Like the real device it keeps sampling whether or not a bridge is connected; blocks wait in SRAM until
acknowledged and are resent oldest first after a reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import ssl
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from device.link import Backoff, client_context, reconnect_forever, server_context
from device.protocol import (
    SERIAL_BAUDRATE,
    Ack,
    Connection,
    ConnectionClosed,
    EncodedSamples,
    Encoding,
    FrameError,
    Message,
    ProtocolError,
    Role,
)
from device.protocol.package import Format, decode_package, encode_package

from .device import SimulatedDevice

WRITE_HIGH_WATER = 1 << 20  # bytes queued in the transport before we stop pushing blocks
STATUS_INTERVAL_S = 1.0
SERIAL_HELLO_INTERVAL_S = 2.0
HTTP_MAX_BLOCKS = 16  # blocks in one package (~0.5 MB of JSON; a backlog after an outage goes in several)


def log(message: str) -> None:
    print(f"openstrom-device-sim: {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkSpec:
    connect: tuple[str, int] | None = None
    listen: tuple[str, int] | None = None
    serial: str | None = None
    http: str | None = None  # a bridge's package ingest URL (the seed's web-service path)
    token: str | None = None  # the device's bearer token there, when it has no TLS certificate
    post_interval_s: float = 0.5
    baudrate: int = SERIAL_BAUDRATE
    tls: tuple[Path, Path, Path] | None = None  # (certificate, key, CA) for mutual TLS on TCP links


class Runner:
    def __init__(
        self,
        device: SimulatedDevice,
        *,
        speed: float = 1.0,
        duration_s: float | None = None,
        encoding: Encoding = Encoding.BINARY,
        compress: bool = False,
    ) -> None:
        self.device = device
        self.speed = speed
        self.duration_s = duration_s
        self.encoding = encoding
        self.compress = compress
        self._conn: Connection | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._sent_seq: int | None = None
        self._last_status = 0.0
        self._done = asyncio.Event()
        self._outbox: list[Message] | None = None  # messages for the next POST (--http)

    # ---------------------------------------------------------------- sending

    def _write(self, msg: Message) -> None:
        if self._outbox is not None:  # the web-service path: goes in the next POST
            self._outbox.append(msg)
            return
        if self._conn is None or self._writer is None:
            return
        self._writer.write(self._conn.send(msg))

    def _pump(self) -> None:
        """Push unsent blocks while the transport has room; then STATUS if due."""
        w = self._writer
        if self._conn is None or w is None or w.is_closing():
            return
        for block in self.device.unsent_after(self._sent_seq):
            if w.transport.get_write_buffer_size() > WRITE_HIGH_WATER:
                break
            self._write(block)
            self._sent_seq = block.block_seq
        now = time.monotonic()
        if self.device.status_dirty or now - self._last_status >= STATUS_INTERVAL_S:
            self._last_status = now
            self._write(self.device.status())

    # ---------------------------------------------------------------- sampling

    async def _sample_forever(self) -> None:
        dev = self.device
        start = time.monotonic()
        block_s = dev.board.n / dev.board.fs
        while self.duration_s is None or dev.sim_time_s < self.duration_s:
            due = start + (dev.next_index + 1) * block_s / self.speed
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                await asyncio.sleep(0)
            _, results = dev.generate()
            for r in results:
                self._write(r)
            self._pump()
        # let the bridge acknowledge the tail, then stop
        deadline = time.monotonic() + 5.0
        while dev.sram and time.monotonic() < deadline:
            self._pump()
            await asyncio.sleep(0.05)
        log(f"duration reached after {dev.next_index} blocks; {len(dev.sram)} unacknowledged")
        self._done.set()

    # ---------------------------------------------------------------- links

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, serial: bool) -> None:
        conn = Connection(Role.DEVICE, encoding=self.encoding, compress=self.compress)
        self._conn, self._writer, self._sent_seq = conn, writer, None
        self._write(self.device.hello())
        self._pump()
        last_hello = time.monotonic()
        try:
            while True:
                try:
                    timeout = SERIAL_HELLO_INTERVAL_S if serial else None
                    data = await asyncio.wait_for(reader.read(65536), timeout)
                except TimeoutError:
                    data = None
                if (
                    serial
                    and time.monotonic() - last_hello >= SERIAL_HELLO_INTERVAL_S
                    and self.device.acked_seq is None
                ):
                    # nobody listening yet on the line: announce again
                    self._write(self.device.hello())
                    last_hello = time.monotonic()
                if data is None:
                    continue
                for ev in conn.events(data):
                    if isinstance(ev, ConnectionClosed):
                        return
                    if isinstance(ev, FrameError):
                        log(f"skipped bad frame from bridge: {ev.error}")
                        continue
                    assert not isinstance(ev, EncodedSamples)  # only a connection that defers makes these
                    for answer in self.device.handle(ev):
                        self._write(answer)
                    if isinstance(ev, Ack):
                        self._pump()
                if not data:
                    return
                await writer.drain()
        except (ProtocolError, ConnectionError, OSError) as exc:
            log(f"link dropped: {exc}")
        finally:
            if self._conn is conn:
                self._conn, self._writer = None, None
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _dial(self, host: str, port: int, tls: tuple[Path, Path, Path] | None) -> None:
        ctx = client_context(*tls) if tls else None  # the bridge's certificate must match the host dialled

        async def connect() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
            return await asyncio.open_connection(host, port, ssl=ctx)

        async def serve(pair: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> None:
            await self._session(*pair, serial=False)

        def failed(exc: BaseException, attempt: int, delay: float) -> None:
            # the first failure of an outage, then a reminder every 20 tries, not a flood
            if attempt % 20 == 1:
                why = getattr(exc, "strerror", None) or exc
                log(f"cannot reach bridge at {host}:{port} ({why}); retrying with backoff")

        def connected(failed_attempts: int) -> None:
            after = f" after {failed_attempts} failed tries" if failed_attempts else ""
            log(f"connected to bridge at {host}:{port}{after}")

        await reconnect_forever(
            connect,
            serve,
            Backoff(0.1, 5.0),
            on_failure=failed,
            on_connected=connected,
            on_closed=lambda: log("connection to bridge closed; reconnecting"),
        )

    async def _listen(self, host: str, port: int, tls: tuple[Path, Path, Path] | None) -> None:
        current: asyncio.Task[Any] | None = None

        async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal current
            if current is not None:
                current.cancel()  # one bridge at a time: the newest wins
            current = asyncio.current_task()
            log(f"bridge connected from {writer.get_extra_info('peername')}")
            with contextlib.suppress(asyncio.CancelledError):
                await self._session(reader, writer, serial=False)

        server = await asyncio.start_server(on_client, host, port, ssl=server_context(*tls) if tls else None)
        log(f"listening for a bridge on {host}:{port}" + (" (mutual TLS)" if tls else ""))
        async with server:
            await server.serve_forever()

    async def _serial(self, path: str, baudrate: int) -> None:
        import serial_asyncio_fast

        async def connect() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
            try:
                return await serial_asyncio_fast.open_serial_connection(url=path, baudrate=baudrate)
            except Exception as exc:  # pyserial raises SerialException (an OSError subclass) or ValueError
                raise OSError(str(exc)) from None

        async def serve(pair: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> None:
            await self._session(*pair, serial=True)

        await reconnect_forever(
            connect,
            serve,
            Backoff(1.0, 1.0),
            on_failure=lambda exc, _n, delay: log(f"cannot open serial port {path}: {exc}; retry in {delay:g} s"),
            on_connected=lambda _n: log(f"serial line {path} open at {baudrate} baud"),
        )

    async def _http(self, link: LinkSpec) -> None:
        """The web-service path: every post interval one package of what a stream link would carry
        (HELLO first in a session, the unsent blocks, STATUS when due, answers to commands); the
        response's ACK frees SRAM, its commands are carried out and answered in the next POST. A
        failed POST sends its blocks again (the bridge counts nothing twice)."""
        import aiohttp  # only this mode needs an HTTP client

        assert link.http is not None
        fmt: Format = "xml" if self.encoding is Encoding.XML else "json"
        headers = {"Content-Type": f"application/{fmt}"}
        if link.token:
            headers["Authorization"] = f"Bearer {link.token}"
        if self.compress:
            headers["Content-Encoding"] = "gzip"
        ctx = client_context(*link.tls) if link.tls else None
        hello_due, answers = True, list[Message]()
        self._outbox = []
        verify: ssl.SSLContext | bool = ctx if ctx is not None else True
        backoff = Backoff(0.1, 5.0)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as http:
            while True:
                package: list[Any] = [self.device.hello()] if hello_due else []
                package += answers + self._outbox
                self._outbox.clear()
                blocks = self.device.unsent_after(self.device.acked_seq)[:HTTP_MAX_BLOCKS]
                package += blocks
                now = time.monotonic()
                if self.device.status_dirty or now - self._last_status >= STATUS_INTERVAL_S:
                    self._last_status = now
                    package.append(self.device.status())
                body = encode_package(package, fmt)
                if self.compress:
                    body = gzip.compress(body, mtime=0)
                try:
                    async with http.post(link.http, data=body, headers=headers, ssl=verify) as resp:
                        payload = await resp.read()
                        if resp.status == 409:  # the bridge has no session for us (it restarted, or we were idle)
                            hello_due = True
                            continue
                        if resp.status != 200:
                            raise OSError(f"HTTP {resp.status}: {payload[:200]!r}")
                    hello_due, answers = False, list[Message]()
                    for msg in decode_package(payload, fmt):
                        answers += self.device.handle(msg)  # type: ignore[arg-type]
                    backoff.reset()
                except (aiohttp.ClientError, OSError, TimeoutError, ProtocolError) as exc:
                    delay = backoff.failed()
                    log(f"http post failed ({exc}); again in {delay:.1f} s")
                    await asyncio.sleep(delay)
                    continue
                await asyncio.sleep(link.post_interval_s / self.speed)

    async def run(self, link: LinkSpec) -> None:
        if link.http:
            link_coro = self._http(link)
        elif link.connect:
            link_coro = self._dial(*link.connect, link.tls)
        elif link.listen:
            link_coro = self._listen(*link.listen, link.tls)
        elif link.serial:
            link_coro = self._serial(link.serial, link.baudrate)
        else:
            raise ValueError("no link given")
        link_task = asyncio.create_task(link_coro)
        sample_task = asyncio.create_task(self._sample_forever())
        done_wait = asyncio.create_task(self._done.wait())
        try:
            finished, _ = await asyncio.wait({link_task, done_wait}, return_when=asyncio.FIRST_COMPLETED)
            for t in finished:
                if t is link_task:
                    t.result()  # re-raise a link failure
        finally:
            for t in (link_task, sample_task, done_wait):
                t.cancel()
            await asyncio.gather(link_task, sample_task, done_wait, return_exceptions=True)
