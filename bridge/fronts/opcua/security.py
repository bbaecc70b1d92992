"""Who is calling: the configured users (scrypt hashes) and their roles, the calling session made
visible to write and method handlers, the server's application certificate and the client trust list."""

from __future__ import annotations

import contextvars
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

from asyncua import ua
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.server.internal_session import InternalSession
from asyncua.server.uaprocessor import UaProcessor
from asyncua.ua.ua_binary import struct_from_binary
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from bridge.commands import Origin, Role
from bridge.config import Config
from bridge.logs import get_logger

from .logins import PasswordLogins

log = get_logger("bridge.opcua")
APPLICATION_URI = "urn:openstrom:bridge:server"


def application_uri(config: Config) -> str:
    """The server's ApplicationUri: unique per application instance, so each shard has its own."""
    return APPLICATION_URI if config.shard.count == 1 else f"{APPLICATION_URI}:shard-{config.shard.ordinal}"


_session: contextvars.ContextVar[InternalSession | None] = contextvars.ContextVar("opcua_session", default=None)


class WriteInterceptor(Protocol):
    async def handle_write(
        self,
        session: InternalSession,
        params: ua.WriteParameters,
        orig: Callable[[InternalSession, ua.WriteParameters], Awaitable[list[ua.StatusCode]]],
    ) -> list[ua.StatusCode]: ...


_INTERCEPTORS: dict[int, WriteInterceptor] = {}  # id(iserver) -> the front answering its client writes
_LOGINS: dict[int, ConfigUsers] = {}  # id(iserver) -> its users, checked before asyncua activates a session
# (user, password, verdict) of the ActivateSession being processed, checked off the event loop
_verdict: contextvars.ContextVar[tuple[str, str, bool] | None] = contextvars.ContextVar("opcua_login", default=None)
_ACTIVATE = ua.NodeId(ua.ObjectIds.ActivateSessionRequest_Encoding_DefaultBinary)


def install_session_hooks() -> None:
    """Make the calling session visible to our write and method handlers (asyncua passes neither the
    user nor the session to them). Installed once; only our relay nodes are intercepted."""
    if getattr(InternalSession, "_openstrom_hooked", False):
        return
    orig_write = InternalSession.write
    orig_call = InternalSession.call
    orig_process = UaProcessor._process_message

    async def process(self: UaProcessor, typeid: ua.NodeId, requesthdr: Any, seqhdr: Any, body: Any) -> Any:
        # asyncua checks passwords synchronously inside ActivateSession: check it here first, in a
        # worker thread and throttled, and let the user manager take the verdict
        users = _LOGINS.get(id(self.iserver)) if typeid == _ACTIVATE and self.session is not None else None
        verdict = await users.precheck(self, body) if users is not None else None
        token = _verdict.set(verdict)
        try:
            return await orig_process(self, typeid, requesthdr, seqhdr, body)
        finally:
            _verdict.reset(token)

    async def write(self: InternalSession, params: ua.WriteParameters) -> list[ua.StatusCode]:
        front = _INTERCEPTORS.get(id(self.iserver))
        token = _session.set(self)
        try:
            if front is not None and self.external:  # the server's own writes are not commands
                return await front.handle_write(self, params, orig_write)
            return await orig_write(self, params)
        finally:
            _session.reset(token)

    async def call(self: InternalSession, params: list[ua.CallMethodRequest]) -> list[ua.CallMethodResult]:
        token = _session.set(self)
        try:
            return await orig_call(self, params)
        finally:
            _session.reset(token)

    UaProcessor._process_message = process  # type: ignore[method-assign]
    InternalSession.write = write  # type: ignore[method-assign]
    InternalSession.call = call  # type: ignore[method-assign]
    InternalSession._openstrom_hooked = True  # type: ignore[attr-defined]


def intercept(iserver: Any, front: WriteInterceptor | None, users: ConfigUsers | None) -> None:
    """Route this server's client writes to ``front`` and its logins to ``users`` (None: stop)."""
    if front is None or users is None:
        _INTERCEPTORS.pop(id(iserver), None)
        _LOGINS.pop(id(iserver), None)
    else:
        _INTERCEPTORS[id(iserver)] = front
        _LOGINS[id(iserver)] = users


class ConfigUsers:
    """asyncua user manager over the configured users; our role is kept by name."""

    def __init__(self, config: Config) -> None:
        self.users = {u.name: u for u in config.opcua.users}
        self.allow_anonymous = config.opcua.allow_anonymous
        self.logins = PasswordLogins(config.opcua)

    def reconfigure(self, config: Config) -> None:
        """A reload's users: new ones may log in at once, removed ones no longer; sessions already open
        keep running under the role their user has now (a removed user's session has viewer's rights)."""
        self.users = {u.name: u for u in config.opcua.users}
        self.logins.hashes = {u.name: u.password_hash for u in config.opcua.users}

    async def precheck(self, processor: UaProcessor, body: Any) -> tuple[str, str, bool] | None:
        """The verdict on an ActivateSession's user name and password, or None when it carries none
        (asyncua then answers it as usual)."""
        try:
            params = struct_from_binary(ua.ActivateSessionParameters, body.copy())
            tok = params.UserIdentityToken
            if not isinstance(tok, ua.UserNameIdentityToken):
                return None
            username, password = processor.iserver.decrypt_user_token(processor.session, tok)
        except Exception:  # a malformed token: asyncua's own handling refuses it
            return None
        peer = processor.name
        address = str(peer[0]) if peer else "?"
        return username, password, await self.logins.check(username, password, address)

    def get_user(
        self, iserver: Any, username: str | None = None, password: str | None = None, certificate: Any = None
    ) -> User | None:
        if username is None:
            return User(role=UserRole.User, name="anonymous") if self.allow_anonymous else None
        verdict = _verdict.get()
        if verdict is None or verdict[:2] != (username, password):
            # not prechecked (cannot happen through our processor hook): refuse rather than hash here
            log.warning("OPC UA login refused: not checked", user=username)
            return None
        return User(role=UserRole.User, name=username) if verdict[2] else None

    def role(self, name: str | None) -> Role:
        if name == "anonymous" and self.allow_anonymous:
            return Role.VIEWER
        u = self.users.get(name or "")
        return Role.named(u.role) if u else Role.VIEWER

    def origin(self) -> Origin:
        """The calling session's identity, for the command path and the audit."""
        sess = _session.get()
        name = sess.user.name if sess is not None and sess.user is not None else None
        client = sess.name if sess is not None else ""
        return Origin(front="opcua", user=name or "?", client=client, role=self.role(name))


class TrustList:
    """Certificates in pki/trusted are accepted; others are copied to pki/rejected (an admin moves
    them to trusted) and refused."""

    def __init__(self, state_dir: Path, trust_all: bool) -> None:
        self.pki = state_dir / "pki"
        self.trust_all = trust_all

    async def validate(self, cert: x509.Certificate, app: ua.ApplicationDescription) -> None:
        if self.trust_all:
            return
        der = cert.public_bytes(serialization.Encoding.DER)
        for f in (self.pki / "trusted").glob("*"):
            try:
                data = f.read_bytes()
                if data == der or (
                    b"BEGIN CERTIFICATE" in data
                    and x509.load_pem_x509_certificate(data).public_bytes(serialization.Encoding.DER) == der
                ):
                    return
            except (OSError, ValueError):
                continue
        target = self.pki / "rejected" / f"{cert.fingerprint(hashes.SHA1()).hex()}.der"
        if not target.exists():
            target.write_bytes(der)
            log.warning(
                "OPC UA client certificate rejected; move it to pki/trusted to accept it",
                application=app.ApplicationUri,
                file=str(target),
            )
        raise ua.UaStatusCodeError(ua.StatusCodes.BadCertificateUntrusted)
