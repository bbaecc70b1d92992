"""``openstrom-bridge pki``: a small CA under state_dir/link-pki, the bridge's link certificate, and
device and Modbus/TCP Security client certificates issued from it (EC P-256, SHA-256).

Private keys are written with mode 0600. The CA key never leaves the bridge's state_dir.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from bridge.errors import ConfigError

from .identities import DEVICE_URI_PREFIX, MODBUS_ROLE_OID, encode_role

CA_YEARS = 20
LEAF_YEARS = 10
ROLES = ("viewer", "operator", "admin")


@dataclass(frozen=True, slots=True)
class PkiPaths:
    root: Path

    @classmethod
    def under(cls, state_dir: Path) -> PkiPaths:
        return cls(state_dir / "link-pki")

    @property
    def ca_cert(self) -> Path:
        return self.root / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.root / "ca.key"

    @property
    def bridge_cert(self) -> Path:
        return self.root / "bridge.crt"

    @property
    def bridge_key(self) -> Path:
        return self.root / "bridge.key"

    def exists(self) -> bool:
        return all(p.exists() for p in (self.ca_cert, self.ca_key, self.bridge_cert, self.bridge_key))

    def require(self) -> None:
        if not self.exists():
            raise ConfigError(
                f"no link PKI under {self.root}: TLS links need it. Run `openstrom-bridge pki init --config FILE` "
                "once, then issue each device's certificate with `pki issue-device`"
            )


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    os.chmod(path, 0o600)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _load(paths: PkiPaths) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    paths.require()
    cert = x509.load_pem_x509_certificate(paths.ca_cert.read_bytes())
    key = serialization.load_pem_private_key(paths.ca_key.read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return cert, key


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "OpenStrom"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _leaf(
    ca: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    common_name: str,
    sans: list[x509.GeneralName],
    usages: list[x509.ObjectIdentifier],
    extra: list[x509.ExtensionType] | None = None,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=365 * LEAF_YEARS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, True, False, True, False, False, False, False), critical=True
        )  # digital signature, key encipherment, key agreement (ECDHE)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    for ext in extra or ():
        builder = builder.add_extension(ext, critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


def init_pki(state_dir: Path, hosts: list[str] | None = None, *, force: bool = False) -> PkiPaths:
    """Create the CA and the bridge's link certificate (server and client use, so it serves device
    listeners and dials devices). Existing files are kept unless ``force``."""
    paths = PkiPaths.under(state_dir)
    if paths.exists() and not force:
        return paths
    paths.root.mkdir(parents=True, exist_ok=True)
    os.chmod(paths.root, 0o700)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("OpenStrom Bridge link CA"))
        .issuer_name(_name("OpenStrom Bridge link CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=365 * CA_YEARS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    _write_key(paths.ca_key, ca_key)
    _write_cert(paths.ca_cert, ca)
    names = ["localhost", socket.gethostname(), *(hosts or [])]
    sans: list[x509.GeneralName] = [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    for h in dict.fromkeys(names):
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            sans.append(x509.DNSName(h))
    cert, key = _leaf(
        ca, ca_key, "OpenStrom Bridge", sans, [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    )
    _write_key(paths.bridge_key, key)
    _write_cert(paths.bridge_cert, cert)
    return paths


def _issue_into(out: Path, stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey, ca_pem: bytes) -> None:
    out.mkdir(parents=True, exist_ok=True)
    _write_key(out / f"{stem}.key", key)
    _write_cert(out / f"{stem}.crt", cert)
    (out / "ca.crt").write_bytes(ca_pem)


def issue_device(state_dir: Path, serial: str, out: Path) -> tuple[Path, Path, Path]:
    """A device certificate bound to ``serial`` (CN and SAN URI); files device.key, device.crt, ca.crt."""
    paths = PkiPaths.under(state_dir)
    ca, ca_key = _load(paths)
    cert, key = _leaf(
        ca,
        ca_key,
        serial,
        [x509.UniformResourceIdentifier(DEVICE_URI_PREFIX + serial)],
        [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH],  # devices dial, or listen
    )
    _issue_into(out, "device", cert, key, paths.ca_cert.read_bytes())
    return out / "device.crt", out / "device.key", out / "ca.crt"


def issue_client(state_dir: Path, name: str, role: str, out: Path) -> tuple[Path, Path, Path]:
    """A Modbus/TCP Security client certificate carrying ``role`` in the role extension; files
    NAME.crt, NAME.key, ca.crt."""
    if role not in ROLES:
        raise ConfigError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    paths = PkiPaths.under(state_dir)
    ca, ca_key = _load(paths)
    role_ext = x509.UnrecognizedExtension(MODBUS_ROLE_OID, encode_role(role))
    cert, key = _leaf(ca, ca_key, name, [], [ExtendedKeyUsageOID.CLIENT_AUTH], [role_ext])
    _issue_into(out, name, cert, key, paths.ca_cert.read_bytes())
    return out / f"{name}.crt", out / f"{name}.key", out / "ca.crt"
