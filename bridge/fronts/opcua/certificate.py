"""The server's application certificate: self-signed, under state_dir/pki/own, with every name a
client may reach the server by.

Clients check the certificate's URI against the server's ApplicationUri and, many of them, the
endpoint URL's host against its DNS and IP names. A server that binds 0.0.0.0 in a container is
reached as a Service or pod DNS name the bind address does not tell, so those names come from
``opcua.hostnames``; the host name, its fully qualified name and its address (a StatefulSet pod's
``name-N.service.namespace.svc.cluster.local`` and pod IP) are added by themselves. A certificate that
lacks a wanted name, has another URI or has expired is made anew, and the log says why: clients that
trusted the old one must trust the new one.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import socket
from pathlib import Path
from urllib.parse import urlparse

from asyncua.crypto.cert_gen import generate_private_key, generate_self_signed_app_certificate
from asyncua.crypto.uacrypto import load_private_key
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from bridge.logs import get_logger

log = get_logger("bridge.opcua")
VALID_DAYS = 5 * 365  # a plant's clients trust a server certificate by hand: do not make them do it yearly
RENEW_BEFORE = dt.timedelta(days=30)
_WILDCARD = {"", "0.0.0.0", "::"}


def wanted_names(endpoint: str, hostnames: tuple[str, ...] = ()) -> tuple[list[str], list[str]]:
    """(DNS names, IP addresses) the certificate must carry."""
    dns: list[str] = ["localhost"]
    ips: list[str] = ["127.0.0.1"]
    local = [socket.gethostname(), socket.getfqdn()]
    with contextlib.suppress(OSError):
        local.append(socket.gethostbyname(socket.gethostname()))
    bind = (urlparse(endpoint).hostname or "").strip("[]")
    for name in [*(h.replace("{hostname}", socket.gethostname()) for h in hostnames), *local, bind]:
        if name in _WILDCARD:
            continue
        try:
            ips.append(str(ipaddress.ip_address(name)))
        except ValueError:
            dns.append(name)
    return list(dict.fromkeys(dns)), list(dict.fromkeys(ips))


def _missing(cert: x509.Certificate, uri: str, dns: list[str], ips: list[str]) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ["every name (no subjectAltName)"]
    have_ips = {str(a) for a in san.get_values_for_type(x509.IPAddress)}
    out = [] if uri in san.get_values_for_type(x509.UniformResourceIdentifier) else [f"URI {uri}"]
    out += [n for n in dns if n not in san.get_values_for_type(x509.DNSName)]
    out += [a for a in ips if a not in have_ips]
    if cert.not_valid_after_utc - RENEW_BEFORE < dt.datetime.now(dt.UTC):
        out.append(f"validity (ends {cert.not_valid_after_utc:%Y-%m-%d})")
    return out


async def ensure_certificate(
    state_dir: Path,
    endpoint: str,
    application_uri: str,
    hostnames: tuple[str, ...] = (),
    common_name: str = "OpenStrom Bridge",
) -> tuple[Path, Path]:
    """The server's certificate and key files, made or renewed when they do not fit."""
    pki = state_dir / "pki"
    own = pki / "own"
    for d in (own, pki / "trusted", pki / "rejected"):
        d.mkdir(parents=True, exist_ok=True)
    cert_file, key_file = own / "server_cert.der", own / "server_key.pem"
    dns, ips = wanted_names(endpoint, hostnames)
    if key_file.is_file():
        key = await load_private_key(key_file)
    else:
        key = generate_private_key()
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
            )
        )
        key_file.chmod(0o600)
    if cert_file.is_file():
        missing = _missing(x509.load_der_x509_certificate(cert_file.read_bytes()), application_uri, dns, ips)
        if not missing:
            return cert_file, key_file
        log.warning(
            "OPC UA server certificate made anew; clients that trusted the old one must trust this one",
            missing=", ".join(missing),
            file=str(cert_file),
        )
    sans: list[x509.GeneralName] = [x509.UniformResourceIdentifier(application_uri)]
    sans += [x509.DNSName(n) for n in dns] + [x509.IPAddress(ipaddress.ip_address(a)) for a in ips]
    cert = generate_self_signed_app_certificate(
        key,  # type: ignore[arg-type]
        common_name,
        {"countryName": "DE", "organizationName": "OpenStrom"},
        sans,
        extended=[ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
        days=VALID_DAYS,
    )
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.DER))
    return cert_file, key_file
