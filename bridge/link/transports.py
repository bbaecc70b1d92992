"""Listeners and dialers that hand byte streams to the device handler, reconnecting with backoff."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable

from cryptography import x509

from bridge.logs import get_logger
from bridge.pki.identities import device_serial_of, subject_of
from device.link import Backoff, reconnect_forever

from .streams import AsyncioStream

Handler = Callable[[AsyncioStream, str | None], Awaitable[None]]  # (stream, expected device name)

log = get_logger("bridge.link")


def _peer_identity(writer: asyncio.StreamWriter) -> tuple[str | None, str]:
    """(device serial, subject) of the certificate a TLS peer presented; (None, "") without TLS."""
    tls = writer.get_extra_info("ssl_object")
    der = tls.getpeercert(binary_form=True) if tls is not None else None
    if not der:
        return None, ""
    cert = x509.load_der_x509_certificate(der)
    return device_serial_of(cert), subject_of(cert)


def _stream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: str, kind: str) -> AsyncioStream:
    identity, subject = _peer_identity(writer)
    return AsyncioStream(
        reader, writer, peer=peer, kind=kind + ("+tls" if subject else ""), identity=identity, subject=subject
    )


async def serve_tcp(
    host: str, port: int, handler: Handler, started: asyncio.Event | None = None, tls: ssl.SSLContext | None = None
) -> None:
    """Accept devices that dial in (the seed's model: the device is the client). With ``tls``, every
    peer must complete a mutual-TLS handshake with a certificate from our CA first."""

    async def on_conn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        name = f"{peer[0]}:{peer[1]}" if peer else "?"
        await handler(_stream(reader, writer, name, "tcp-in"), None)

    server = await asyncio.start_server(on_conn, host, port, ssl=tls, ssl_handshake_timeout=10 if tls else None)
    log.info("device listener ready", listen=f"{host}:{port}", tls="mutual TLS" if tls else "plain TCP (loopback only)")
    if started is not None:
        started.set()
    async with server:
        await server.serve_forever()


async def _with_backoff(
    what: str, connect: Callable[[], Awaitable[AsyncioStream]], handler: Handler, device: str | None, max_delay: float
) -> None:
    def failed(exc: BaseException, attempt: int, delay: float) -> None:
        # first failure of an outage at warning, repeats at debug: no log flood
        (log.warning if attempt == 1 else log.debug)(
            "device link unavailable, retrying", link=what, error=str(exc), retry_s=round(delay, 1)
        )

    def connected(failed_attempts: int) -> None:
        if failed_attempts:
            log.info("device link restored", link=what, failed_attempts=failed_attempts)

    async def serve(stream: AsyncioStream) -> None:
        await handler(stream, device)

    await reconnect_forever(
        connect,
        serve,
        Backoff(min(0.2, max_delay), max_delay),
        retry_on=(OSError, ValueError),
        on_failure=failed,
        on_connected=connected,
    )


async def dial_tcp(
    host: str, port: int, handler: Handler, device: str | None, max_delay: float, tls: ssl.SSLContext | None = None
) -> None:
    """The bridge dials a device that listens (with ``tls``: mutual TLS, the device's certificate
    must be from our CA; the session binds it to the device's HELLO)."""

    async def connect() -> AsyncioStream:
        reader, writer = await asyncio.open_connection(host, port, ssl=tls, ssl_handshake_timeout=10 if tls else None)
        return _stream(reader, writer, f"{host}:{port}", "tcp-out")

    await _with_backoff(f"tcp {host}:{port}", connect, handler, device, max_delay)


async def open_serial(port: str, baudrate: int, handler: Handler, device: str | None, max_delay: float) -> None:
    import serial_asyncio_fast

    async def connect() -> AsyncioStream:
        try:
            reader, writer = await serial_asyncio_fast.open_serial_connection(url=port, baudrate=baudrate)
        except Exception as exc:  # pyserial's SerialException: translate once, here
            raise OSError(f"cannot open serial port {port}: {exc}") from None
        return AsyncioStream(reader, writer, peer=port, kind="serial")

    await _with_backoff(f"serial {port}", connect, handler, device, max_delay)
