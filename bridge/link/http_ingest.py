"""The seed's web-service path: a device that can only speak HTTP(S) POSTs packages of protocol
messages (``device/protocol/package.py``) and gets in the response what the bridge would have sent
on a stream link: the ACK of what is now durable, and the commands waiting for it.

Each device has an HTTP session: a stream the device hub serves like any link (HELLO, admission,
the certificate or token bound to the serial, sequence numbers, durability), fed one POST at a time.
A POST is answered after its messages were processed and committed, so its ACK says exactly what is
durable; a retried POST repeats blocks the stream already counted, which count nothing again.
aiohttp serves it: the bridge's HTTP library already (health, metrics, control API), with TLS from
the standard library and request size limits built in.

Authentication: HTTPS with the device's link certificate (its serial in the certificate), or a
per-device bearer token (``devices[].http_token_sha256``) for devices without TLS client
certificates; plain HTTP only on loopback, as for every link.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import ssl
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from cryptography import x509

from bridge.config import Config
from bridge.logs import audit, get_logger
from bridge.pki import device_serial_of, subject_of
from device.protocol import Connection, ConnectionClosed, EncodedSamples, FrameError, Hello, Message, Role
from device.protocol.errors import ProtocolError
from device.protocol.framing import Encoding
from device.protocol.package import Format, decode_package, encode_package

log = get_logger("bridge.link")
Handler = Callable[[Any, str | None], Coroutine[Any, Any, None]]  # DeviceHub.handle(stream, expected)
MAX_BODY = 4 * 1024 * 1024  # bytes on the wire (compressed); inflated packages are bounded too
PROCESS_TIMEOUT_S = 10.0
_TYPES: dict[str, Format] = {"application/json": "json", "application/xml": "xml", "text/xml": "xml"}


class HttpStream:
    """One device's HTTP session as the hub sees a link: the POSTs' frames in, the bridge's frames
    collected for the next response."""

    kind = "http"

    def __init__(self, peer: str, identity: str, subject: str) -> None:
        self.peer = peer
        self.identity: str | None = identity
        self.subject = subject
        self._in: asyncio.Queue[bytes] = asyncio.Queue()
        self._out = bytearray()
        self.idle = asyncio.Event()  # the hub waits for more: everything fed was processed

    def feed(self, data: bytes) -> None:
        self.idle.clear()
        self._in.put_nowait(data)

    def take(self) -> bytes:
        out, self._out = bytes(self._out), bytearray()
        return out

    async def read(self) -> bytes:
        if self._in.empty():
            self.idle.set()
        return await self._in.get()

    async def write(self, data: bytes) -> None:
        self._out += data

    def write_nowait(self, data: bytes) -> None:
        self._out += data

    async def close(self) -> None:
        self._in.put_nowait(b"")


@dataclass(slots=True)
class _Session:
    stream: HttpStream
    task: asyncio.Task[None]
    # the device's end of the link, kept for the session: it frames the POSTs' messages for the hub
    # and reads the hub's frames back, as the device itself would on a stream
    device_side: Connection = field(default_factory=lambda: Connection(Role.DEVICE, encoding=Encoding.JSON))
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    last_post: float = 0.0


def token_hash(token: str) -> str:
    """What ``devices[].http_token_sha256`` holds: tokens are random, so a plain hash suffices."""
    return hashlib.sha256(token.encode()).hexdigest()


class HttpIngest:
    def __init__(self, config: Config, handle: Handler, commit: Callable[[str], Awaitable[None]]) -> None:
        self.config = config
        self.handle = handle
        self.commit = commit
        self.sessions: dict[str, _Session] = {}
        self.reconfigure(config)
        self._refused: set[tuple[str, str]] = set()

    def reconfigure(self, config: Config) -> None:
        """A reload's device list: tokens of added devices work at once, removed ones no longer."""
        self.config = config
        self.tokens = {d.http_token_sha256: d.serial_number for d in config.devices if d.http_token_sha256}

    # ------------------------------------------------------------------ who is posting

    def _refuse(self, status: int, peer: str, reason: str, text: str) -> web.Response:
        if (peer, reason) not in self._refused:  # once per peer and reason: a loop cannot flood the log
            self._refused.add((peer, reason))
            log.warning("http package refused", peer=peer, reason=reason, detail=text)
            audit("http package refused", front="http-ingest", client=peer, reason=reason, detail=text)
        headers = {"WWW-Authenticate": 'Bearer realm="openstrom-devices"'} if status == 401 else None
        return web.Response(
            status=status,
            text=json.dumps({"error": text, "code": reason}),
            content_type="application/json",
            headers=headers,
        )

    def _identity(self, request: web.Request) -> tuple[str | None, str]:
        """(serial, subject): from the TLS client certificate, else from the bearer token."""
        tls = request.transport.get_extra_info("ssl_object") if request.transport else None
        der = tls.getpeercert(binary_form=True) if tls is not None else None
        if der:
            cert = x509.load_der_x509_certificate(der)
            return device_serial_of(cert), subject_of(cert)
        auth = request.headers.get("Authorization", "")
        if auth[:7].lower() == "bearer ":
            given = token_hash(auth[7:].strip())
            for known, serial in self.tokens.items():
                if hmac.compare_digest(known, given):
                    return serial, "token"
        return None, ""

    # ------------------------------------------------------------------ a POST

    async def post(self, request: web.Request) -> web.Response:
        peer = f"{request.remote or '?'}"
        serial, subject = self._identity(request)
        if serial is None:
            return self._refuse(401, peer, "not-authenticated", "no device certificate and no valid device token")
        if serial in self.config.links.revoked:
            return self._refuse(403, peer, "revoked", f"device {serial} is in links.revoked")
        ctype = request.content_type
        fmt = _TYPES.get(ctype)
        if fmt is None:
            return self._refuse(415, peer, "media-type", f"Content-Type {ctype!r}: send application/json or xml")
        coding = request.headers.get("Content-Encoding", "identity").lower()
        if coding not in ("identity", "gzip"):
            return self._refuse(415, peer, "encoding", f"Content-Encoding {coding!r}: send gzip or none")
        session = self.sessions.get(serial)
        now = time.monotonic()
        interval = self.config.links.http_min_interval_s
        if session is not None and now - session.last_post < interval:
            return web.Response(
                status=429,
                text=json.dumps({"error": f"at most one package every {interval:g} s", "code": "rate"}),
                content_type="application/json",
                headers={"Retry-After": str(max(1, round(interval)))},
            )
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return self._refuse(413, peer, "too-large", f"body over {MAX_BODY} bytes")
        try:
            messages = decode_package(body, fmt, gzipped=coding == "gzip")
        except ProtocolError as exc:
            return web.Response(
                status=400,
                text=json.dumps({"error": str(exc), "code": getattr(exc, "code", "package")}),
                content_type="application/json",
            )
        if session is None or session.task.done():
            if not messages or not isinstance(messages[0], Hello):
                return web.Response(
                    status=409,
                    text=json.dumps({"error": "no session: the first package starts with HELLO", "code": "hello"}),
                    content_type="application/json",
                )
            stream = HttpStream(f"{peer} (http)", serial, subject)
            session = _Session(stream, asyncio.get_running_loop().create_task(self.handle(stream, None)))
            self.sessions[serial] = session
        async with session.lock:
            session.last_post = time.monotonic()
            return await self._exchange(session, messages, fmt, serial)

    async def _exchange(self, session: _Session, messages: list[object], fmt: Format, serial: str) -> web.Response:
        device_side = session.device_side
        session.stream.feed(b"".join(device_side.send(m) for m in messages))  # type: ignore[arg-type]
        idle = asyncio.ensure_future(session.stream.idle.wait())
        try:
            done, _ = await asyncio.wait([idle, session.task], timeout=PROCESS_TIMEOUT_S, return_when="FIRST_COMPLETED")
        finally:
            idle.cancel()
        if not done:
            return web.Response(
                status=503,
                text=json.dumps({"error": "the bridge is busy", "code": "busy"}),
                content_type="application/json",
                headers={"Retry-After": "1"},
            )
        if not session.task.done():
            await self.commit(serial)  # the blocks just counted are durable before they are acknowledged
        answers: list[Message] = []
        out = session.stream.take()
        for ev in device_side.events(out) if out else ():  # (no bytes would read as end of stream)
            if isinstance(ev, ConnectionClosed | FrameError | EncodedSamples):  # (a device side defers none)
                continue
            answers.append(ev)
        if session.task.done():
            self.sessions.pop(serial, None)
            error = next((a for a in answers if a.TYPE.name == "ERROR"), None)
            text = getattr(error, "text", "the session was closed")
            return web.Response(
                status=403,
                text=json.dumps({"error": text, "code": getattr(error, "code", "closed")}),
                content_type="application/json",
            )
        body = encode_package(list(answers), fmt)
        return web.Response(body=body, content_type="application/json" if fmt == "json" else "application/xml")

    # ------------------------------------------------------------------ lifetime

    async def expire_forever(self) -> None:
        """Close sessions no POST came for in links.http_session_idle_s: the device goes offline as a
        dropped link does, and its next package starts a new session with HELLO."""
        while True:
            await asyncio.sleep(1.0)
            limit = self.config.links.http_session_idle_s
            for serial, s in list(self.sessions.items()):
                if time.monotonic() - s.last_post > limit and not s.lock.locked():
                    self.sessions.pop(serial, None)
                    await s.stream.close()

    async def close(self) -> None:
        for s in list(self.sessions.values()):
            await s.stream.close()
        self.sessions.clear()


async def serve_http_ingest(
    ingest: HttpIngest, host: str, port: int, tls: ssl.SSLContext | None, started: asyncio.Event | None = None
) -> None:
    app = web.Application(client_max_size=MAX_BODY)
    app.router.add_post("/v1/packages", ingest.post)
    # our own, bounded gunzip (a small body must not inflate without limit): aiohttp's is turned off
    runner = web.AppRunner(app, access_log=None, auto_decompress=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=tls)
    await site.start()
    log.info("device http ingest ready", listen=f"{host}:{port}", tls="https" if tls else "plain http (loopback only)")
    if started is not None:
        started.set()
    expire = asyncio.get_running_loop().create_task(ingest.expire_forever())
    try:
        await asyncio.Event().wait()
    finally:
        expire.cancel()
        await ingest.close()
        await runner.cleanup()
