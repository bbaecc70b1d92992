"""Who a Modbus client is and what it may do: its address, the certificate it presented on a
Modbus/TCP Security server, and the role those map to (read_only, write_allow, role_map)."""

from __future__ import annotations

import contextvars
import ipaddress
from dataclasses import dataclass
from typing import Any

from cryptography import x509

from bridge.commands import Origin, Role
from bridge.config import ModbusServer as ServerConfig
from bridge.logs import audit, get_logger
from bridge.pki import modbus_role_of, subject_of

log = get_logger("bridge.modbus")


@dataclass(frozen=True, slots=True)
class Client:
    address: str  # "host:port"
    host: str
    subject: str = ""  # certificate subject on a TLS server
    cert_role: str | None = None  # the role extension's value


def client_of(transport: Any) -> Client:
    addr = transport.get_extra_info("peername") if transport is not None else None
    host, address = (addr[0], f"{addr[0]}:{addr[1]}") if addr else ("?", "?")
    tls = transport.get_extra_info("ssl_object") if transport is not None else None
    der = tls.getpeercert(binary_form=True) if tls is not None else None
    if not der:
        return Client(address, host)
    cert = x509.load_der_x509_certificate(der)
    return Client(address, host, subject_of(cert), modbus_role_of(cert))


class Access:
    """The role of a client on one server."""

    def __init__(self, cfg: ServerConfig) -> None:
        self.cfg = cfg
        self._writers = cfg.writers()

    def may_write_from(self, host: str) -> bool:
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(ip in net for net in self._writers)

    def role_of(self, client: Client) -> Role:
        if self.cfg.read_only or not self.may_write_from(client.host):
            return Role.VIEWER
        if self.cfg.tls:
            name = self.cfg.role_map.get(client.cert_role or "")
            return Role.named(name) if name else Role.VIEWER
        return Role.OPERATOR  # a plain server: reaching it from an allowed network is the authority

    def origin(self, client: Client) -> Origin:
        front = "modbus-tls" if self.cfg.tls else "modbus"
        return Origin(front=front, user=client.subject, client=client.address, role=self.role_of(client))


# the calling client's origin, set by the connection handler for each request it answers
_current: contextvars.ContextVar[Origin | None] = contextvars.ContextVar("modbus_origin", default=None)
NOBODY = Origin(front="modbus", client="?", role=Role.VIEWER)


def current_origin() -> Origin:
    return _current.get() or NOBODY  # no handler set it: nobody, who may not write


def set_origin(origin: Origin) -> None:
    _current.set(origin)


class Refusals:
    """Refused clients and writes: logged at warning and audited once per (client host, reason),
    repeats at debug, so a scanner cannot flood the log."""

    def __init__(self) -> None:
        self._seen: set[tuple[str, str]] = set()

    def refuse_once(self, origin: Origin, reason: str, detail: str, **fields: object) -> None:
        host = origin.client.rpartition(":")[0]
        who = {"client": origin.client, "certificate": origin.user or None, "role": str(origin.role)}
        if (host, reason) in self._seen:
            log.debug("modbus refused again", reason=reason, **who)
            return
        self._seen.add((host, reason))
        log.warning(f"modbus refused: {detail}", reason=reason, front=origin.front, **who, **fields)
        audit("modbus refused", reason=reason, detail=detail, front=origin.front, **who, **fields)
