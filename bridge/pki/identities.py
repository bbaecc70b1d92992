"""What a peer's certificate says about it: a device's serial number, a Modbus/TCP Security client's
role, a subject to name in the audit."""

from __future__ import annotations

from cryptography import x509
from cryptography.x509.oid import NameOID

# Modbus/TCP Security (MB-TCP-Security v36): the role a client certificate grants, an ASN.1
# UTF8String in a non-critical extension under the Modbus Organization's arc
MODBUS_ROLE_OID = x509.ObjectIdentifier("1.3.6.1.4.1.50316.802.1")
DEVICE_URI_PREFIX = "urn:openstrom:device:"


def encode_role(role: str) -> bytes:
    """DER of a UTF8String (tag 0x0C), the extension value the Modbus/TCP Security spec defines.

    >>> encode_role("operator")
    b'\\x0c\\x08operator'
    """
    data = role.encode()
    if len(data) > 127:
        raise ValueError("a role name longer than 127 bytes is not supported")
    return bytes((0x0C, len(data))) + data


def decode_role(der: bytes) -> str | None:
    """The role of an extension value, or None when it is not a short UTF8String (or PrintableString)."""
    if len(der) < 2 or der[0] not in (0x0C, 0x13) or der[1] != len(der) - 2:
        return None
    try:
        return der[2:].decode()
    except UnicodeDecodeError:
        return None


def subject_of(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string()


def device_serial_of(cert: x509.Certificate) -> str | None:
    """The device serial a certificate is issued to: its SAN URI urn:openstrom:device:SERIAL, else
    its common name."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        for uri in san.get_values_for_type(x509.UniformResourceIdentifier):
            if uri.startswith(DEVICE_URI_PREFIX):
                return uri[len(DEVICE_URI_PREFIX) :]
    except x509.ExtensionNotFound:
        pass
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else None


def modbus_role_of(cert: x509.Certificate) -> str | None:
    try:
        ext = cert.extensions.get_extension_for_oid(MODBUS_ROLE_OID).value
    except x509.ExtensionNotFound:
        return None
    if not isinstance(ext, x509.UnrecognizedExtension):
        return None
    return decode_role(ext.value)
