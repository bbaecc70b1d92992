"""The byte-stream interface every link speaks: read, write, close. TCP and serial both arrive as
asyncio stream pairs; the in-memory pair serves tests that need no socket."""

from __future__ import annotations

import asyncio
from typing import Protocol

CLOSE_TIMEOUT_S = 2.0


class ByteStream(Protocol):
    peer: str
    kind: str
    identity: str | None  # the device serial its TLS certificate proves; None on an unauthenticated link
    subject: str  # the certificate's subject, for logs and the audit ("" without TLS)

    async def read(self) -> bytes:
        """Some bytes, or b"" at end of stream."""
        ...

    async def write(self, data: bytes) -> None: ...

    def write_nowait(self, data: bytes) -> None:
        """Queue bytes without waiting (from synchronous code, e.g. a command sender)."""
        ...

    async def close(self) -> None: ...


class AsyncioStream:
    """TCP sockets and pyserial-asyncio ports both come as (StreamReader, StreamWriter)."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        peer: str,
        kind: str,
        identity: str | None = None,
        subject: str = "",
    ) -> None:
        self._r, self._w = reader, writer
        self.peer = peer
        self.kind = kind
        self.identity = identity
        self.subject = subject

    async def read(self) -> bytes:
        try:
            return await self._r.read(65536)
        except (ConnectionError, OSError):
            return b""

    async def write(self, data: bytes) -> None:
        self._w.write(data)
        await self._w.drain()

    def write_nowait(self, data: bytes) -> None:
        self._w.write(data)

    async def close(self) -> None:
        self._w.close()
        try:
            # a peer that stops reading keeps unsent bytes in the transport, which then never closes:
            # past this, the connection is dropped with them (a device resends what was not acknowledged)
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await self._w.wait_closed()
        except TimeoutError:
            self._w.transport.abort()
        except Exception:  # closing: the peer's reset or a TLS close alert changes nothing
            pass


class MemoryStream:
    """One end of an in-memory duplex pipe (see :func:`memory_pair`)."""

    def __init__(self, rx: asyncio.Queue[bytes], tx: asyncio.Queue[bytes], peer: str) -> None:
        self._rx, self._tx = rx, tx
        self.peer = peer
        self.kind = "memory"
        self.identity: str | None = None
        self.subject = ""
        self.closed = False

    async def read(self) -> bytes:
        if self.closed:
            return b""
        return await self._rx.get()

    async def write(self, data: bytes) -> None:
        if self.closed:
            raise ConnectionError("memory stream closed")
        self._tx.put_nowait(data)

    def write_nowait(self, data: bytes) -> None:
        self._tx.put_nowait(data)

    async def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._tx.put_nowait(b"")


def memory_pair() -> tuple[MemoryStream, MemoryStream]:
    a: asyncio.Queue[bytes] = asyncio.Queue()
    b: asyncio.Queue[bytes] = asyncio.Queue()
    return MemoryStream(a, b, "memory-a"), MemoryStream(b, a, "memory-b")
