"""The bridge's own certificate authority: the CA, the bridge's link certificate, device and client
certificates and the identities they carry (TLS contexts: device.link.tls, shared with the
simulator)."""

from .authority import PkiPaths, init_pki, issue_client, issue_device
from .identities import MODBUS_ROLE_OID, device_serial_of, modbus_role_of, subject_of

__all__ = [
    "MODBUS_ROLE_OID",
    "PkiPaths",
    "device_serial_of",
    "init_pki",
    "issue_client",
    "issue_device",
    "modbus_role_of",
    "subject_of",
]
