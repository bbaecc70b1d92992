"""TLS contexts for device links and Modbus/TCP Security, used by the bridge and the simulator alike:
TLS 1.2 at least (1.3 preferred by OpenSSL), a certificate the peer must present and that must chain
to the given CA."""

from __future__ import annotations

import ssl
from pathlib import Path


def server_context(cert: Path, key: Path, ca: Path) -> ssl.SSLContext:
    """For our listeners (device links, Modbus/TCP Security): mutual TLS, client certificate required."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    ctx.load_verify_locations(cafile=str(ca))
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def client_context(cert: Path, key: Path, ca: Path, *, check_hostname: bool = True) -> ssl.SSLContext:
    """For dialling out (the bridge to a listening device, a device to the bridge): verify the server
    against our CA and present our own certificate."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    ctx.load_verify_locations(cafile=str(ca))
    ctx.check_hostname = check_hostname
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx
