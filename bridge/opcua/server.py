"""OPC UA front: a typed address space over the live model, served by asyncua.

Types: OpenStromDeviceType and OpenStromCircuitType (measurements as AnalogItemType with EURange and
EngineeringUnits, Relay as a writable TwoStateDiscreteType, methods SwitchOn/SwitchOff, RunSelfTest,
Calibrate). Values carry the window's source timestamp; an offline device's values turn
Uncertain_LastUsableValue (Bad_NoCommunication before any data). Writes and method calls check the
user's role and go through the command path.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import dataclasses
import datetime as dt
import math
import socket
import sqlite3
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from asyncua import Server, ua
from asyncua.common.instantiate_util import instantiate
from asyncua.crypto.cert_gen import setup_self_signed_certificate
from asyncua.crypto.permission_rules import SimpleRoleRuleset, User, UserRole
from asyncua.server.history_sql import HistorySQLite
from asyncua.server.internal_session import InternalSession
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from ..commands import CommandPath, Origin
from ..config import Config
from ..errors import BridgeError, CommandRejected, CommandTimeout, DeviceOffline, DeviceUnknown
from ..logs import get_logger
from ..passwords import verify_password
from ..quantities import QUANTITIES
from ..state import DeviceState, Model
from ..store import Store
from .model import (
    ALARM_SEVERITY,
    CIRCUIT_AGGREGATES,
    CIRCUIT_MEASUREMENTS,
    FREQUENCY,
    NAMESPACE,
    ROLES,
    UNITS,
    Measurement,
)

log = get_logger("bridge.opcua")
_session: contextvars.ContextVar[InternalSession | None] = contextvars.ContextVar("opcua_session", default=None)
_FRONTS: dict[int, OpcUaFront] = {}


class SharedDataValue(ua.DataValue):
    """A DataValue the bridge never mutates after writing it.

    asyncua deep-copies the value once per monitored item on every change (most of the cost of an
    update with clients subscribed). Python's copy protocol lets a class say that a deep copy of it is
    itself; ours are built fresh for every write and never touched again, so sharing is safe and the
    update cost no longer grows with the number of subscribers. Serialisation is unchanged (asyncua
    encodes by the declared field type, DataValue).
    """

    def __deepcopy__(self, memo: dict[int, object]) -> SharedDataValue:
        return self


GOOD = ua.StatusCode(ua.StatusCodes.Good)
UNCERTAIN_LAST = ua.StatusCode(ua.StatusCodes.UncertainLastUsableValue)
BAD_NO_COMM = ua.StatusCode(ua.StatusCodes.BadNoCommunication)
WAITING = ua.StatusCode(ua.StatusCodes.BadWaitingForInitialData)


# ------------------------------------------------------------------------------------------- sessions


def _install_session_hooks() -> None:
    """Make the calling session visible to our write and method handlers (asyncua passes neither the
    user nor the session to them). Installed once; only our relay nodes are intercepted."""
    if getattr(InternalSession, "_openstrom_hooked", False):
        return
    orig_write = InternalSession.write
    orig_call = InternalSession.call

    async def write(self: InternalSession, params: ua.WriteParameters) -> list[ua.StatusCode]:
        front = _FRONTS.get(id(self.iserver))
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

    InternalSession.write = write  # type: ignore[method-assign]
    InternalSession.call = call  # type: ignore[method-assign]
    InternalSession._openstrom_hooked = True  # type: ignore[attr-defined]


class ConfigUsers:
    """asyncua user manager over the configured users (scrypt hashes); our role is kept by name."""

    def __init__(self, config: Config) -> None:
        self.users = {u.name: u for u in config.opcua.users}
        self.allow_anonymous = config.opcua.allow_anonymous

    def get_user(
        self, iserver: Any, username: str | None = None, password: str | None = None, certificate: Any = None
    ) -> User | None:
        if username is None:
            return User(role=UserRole.User, name="anonymous") if self.allow_anonymous else None
        u = self.users.get(username)
        if u is None or password is None or not verify_password(password, u.password_hash):
            log.warning("OPC UA login refused", user=username)
            return None
        return User(role=UserRole.User, name=username)

    def role(self, name: str | None) -> str:
        if name == "anonymous" and self.allow_anonymous:
            return "viewer"
        u = self.users.get(name or "")
        return u.role if u else "viewer"


def _origin(users: ConfigUsers) -> Origin:
    sess = _session.get()
    name = sess.user.name if sess is not None and sess.user is not None else None
    client = sess.name if sess is not None else ""
    return Origin(front="opcua", user=name or "?", client=client, role=users.role(name))


def _status_for(exc: BridgeError) -> ua.StatusCode:
    if isinstance(exc, DeviceOffline | CommandTimeout):
        return ua.StatusCode(
            ua.StatusCodes.BadNoCommunication if isinstance(exc, DeviceOffline) else ua.StatusCodes.BadTimeout
        )
    if isinstance(exc, DeviceUnknown):
        return ua.StatusCode(ua.StatusCodes.BadNodeIdUnknown)
    if isinstance(exc, CommandRejected):
        if exc.code == "role":
            return ua.StatusCode(ua.StatusCodes.BadUserAccessDenied)
        return ua.StatusCode(ua.StatusCodes.BadRequestNotAllowed)
    return ua.StatusCode(ua.StatusCodes.BadDeviceFailure)


# ------------------------------------------------------------------------------------------- conditions

CONDITION_ALARMS = ("dip", "swell", "interruption", "overcurrent", "relay_mismatch", "relay_wear")


@dataclass(slots=True)
class Condition:
    device: str
    circuit: int
    alarm: str
    node: ua.NodeId
    active: bool = False
    acked: bool = True
    confirmed: bool = True
    message: str = ""
    seen_count: int = 0  # activations of the model's alarm already reported
    event_ids: set[bytes] = dataclasses.field(default_factory=set)


# ------------------------------------------------------------------------------------------- front


class OpcUaFront:
    def __init__(
        self, config: Config, model: Model, commands: CommandPath | None, store: Store | None, state_dir: Path
    ) -> None:
        self.config = config
        self.model = model
        self.commands = commands
        self.store = store
        self.state_dir = state_dir
        self.users = ConfigUsers(config)
        self.server = Server(user_manager=self.users)  # type: ignore[arg-type]
        self.idx = 0
        self.endpoint = config.opcua.endpoint
        self._values: dict[tuple[str, int, str], ua.NodeId] = {}  # (device, circuit, field) -> value node
        self._device_vars: dict[tuple[str, str], ua.NodeId] = {}
        self._relay_nodes: dict[ua.NodeId, tuple[str, int]] = {}
        self._emitters: dict[tuple[str, int], Any] = {}
        self._conditions: dict[tuple[str, int, str], Condition] = {}
        self._by_node: dict[ua.NodeId, Condition] = {}
        self._pending: set[str] = set()
        self._known: set[str] = set()  # devices whose nodes exist
        self._tasks: set[asyncio.Task[None]] = set()
        self._historized: set[ua.NodeId] = set()  # measurement nodes with a history table
        self._history: _History | None = None
        self._written: dict[ua.NodeId, tuple[Any, ua.VariantType, int]] = {}  # see _put
        self._shown: dict[str, tuple[int | None, int]] = {}  # device -> (snapshot number, status) written
        self.updates = 0

    # --------------------------------------------------------------- build

    async def build(self) -> None:
        s = self.server
        await s.init()
        s.set_endpoint(self.endpoint)
        s.set_server_name(self.config.bridge.name)
        await s.set_application_uri("urn:openstrom:bridge:server")
        self.idx = await s.register_namespace(NAMESPACE)
        self.circuit_type, self.device_type = await self._build_types()
        self.root = await s.nodes.objects.add_folder(
            ua.NodeId("OpenStrom", self.idx), ua.QualifiedName("OpenStrom", self.idx)
        )
        for dev in self.model.devices.values():
            await self._add_device(dev)
            self._known.add(dev.name)

    async def _analog(self, parent: Any, prefix: str, m: Measurement) -> Any:
        idx = self.idx
        node = (
            await instantiate(
                parent,
                self.server.get_node(ua.ObjectIds.AnalogItemType),
                nodeid=ua.NodeId(f"{prefix}.{m.browse_name}", idx),
                bname=ua.QualifiedName(m.browse_name, idx),
                idx=idx,
                instantiate_optional=False,
            )
        )[0]
        await node.write_attribute(
            ua.AttributeIds.DataType, ua.DataValue(ua.Variant(ua.NodeId(ua.ObjectIds.Double), ua.VariantType.NodeId))
        )
        await node.write_value(ua.DataValue(ua.Variant(0.0, ua.VariantType.Double)))
        await node.write_attribute(
            ua.AttributeIds.Description,
            ua.DataValue(ua.Variant(ua.LocalizedText(m.description), ua.VariantType.LocalizedText)),
        )
        eurange = await node.get_child(["0:EURange"])
        await eurange.write_value(ua.Range(Low=m.low, High=m.high))
        unit = UNITS[m.unit]
        eu = await node.add_property(
            ua.NodeId(f"{prefix}.{m.browse_name}.EngineeringUnits", idx),
            "0:EngineeringUnits",
            ua.EUInformation(
                NamespaceUri="http://www.opcfoundation.org/UA/units/un/cefact",
                UnitId=unit.unit_id,
                DisplayName=ua.LocalizedText(unit.symbol),
                Description=ua.LocalizedText(unit.name),
            ),
        )
        return node, eurange, eu

    async def _build_types(self) -> tuple[Any, Any]:
        s, idx = self.server, self.idx
        vt = ua.VariantType
        base = s.nodes.base_object_type
        ct = await base.add_object_type(
            ua.NodeId("OpenStromCircuitType", idx), ua.QualifiedName("OpenStromCircuitType", idx)
        )
        for m in (*CIRCUIT_MEASUREMENTS, FREQUENCY, *CIRCUIT_AGGREGATES):
            node, eurange, eu = await self._analog(ct, "OpenStromCircuitType", m)
            for n in (node, eurange, eu):
                await n.set_modelling_rule(True)
        relay = (
            await instantiate(
                ct,
                s.get_node(ua.ObjectIds.TwoStateDiscreteType),
                nodeid=ua.NodeId("OpenStromCircuitType.Relay", idx),
                bname=ua.QualifiedName("Relay", idx),
                idx=idx,
                instantiate_optional=False,
            )
        )[0]
        await relay.write_attribute(
            ua.AttributeIds.DataType, ua.DataValue(ua.Variant(ua.NodeId(ua.ObjectIds.Boolean), ua.VariantType.NodeId))
        )
        await relay.write_value(ua.DataValue(ua.Variant(False, ua.VariantType.Boolean)))
        await (await relay.get_child(["0:TrueState"])).write_value(ua.LocalizedText("On"))
        await (await relay.get_child(["0:FalseState"])).write_value(ua.LocalizedText("Off"))
        await relay.set_writable(True)
        await relay.set_modelling_rule(True)
        for ch in await relay.get_children():
            await ch.set_modelling_rule(True)
        await self._add_type_methods(
            ct, "OpenStromCircuitType", (("SwitchOn", [], []), ("SwitchOff", [], []), ("Select", [vt.Boolean], []))
        )
        for name, kind in (
            ("RelayOperations", ua.VariantType.UInt32),
            ("Dips", ua.VariantType.UInt32),
            ("Swells", ua.VariantType.UInt32),
            ("Interruptions", ua.VariantType.UInt32),
        ):
            v = await ct.add_variable(
                ua.NodeId(f"OpenStromCircuitType.{name}", idx), ua.QualifiedName(name, idx), 0, kind
            )
            await v.set_modelling_rule(True)

        dtp = await base.add_object_type(
            ua.NodeId("OpenStromDeviceType", idx), ua.QualifiedName("OpenStromDeviceType", idx)
        )
        for name in ("SerialNumber", "PartNumber", "WifiMac", "LanMac", "FirmwareVersion"):
            p = await dtp.add_property(ua.NodeId(f"OpenStromDeviceType.{name}", idx), ua.QualifiedName(name, idx), "")
            await p.set_modelling_rule(True)
        for name, value, kind in (
            ("Connected", False, ua.VariantType.Boolean),
            ("LastSampleTime", dt.datetime(1970, 1, 1, tzinfo=dt.UTC), ua.VariantType.DateTime),
            ("Gaps", 0, ua.VariantType.UInt32),
            ("LostBlocks", 0, ua.VariantType.UInt32),
            ("SramFill", 0.0, ua.VariantType.Double),
            ("AuxOutput", False, ua.VariantType.Boolean),
        ):
            v = await dtp.add_variable(
                ua.NodeId(f"OpenStromDeviceType.{name}", idx), ua.QualifiedName(name, idx), value, kind
            )
            await v.set_modelling_rule(True)
        circuits = await dtp.add_folder(
            ua.NodeId("OpenStromDeviceType.Circuits", idx), ua.QualifiedName("Circuits", idx)
        )
        await circuits.set_modelling_rule(True)
        await self._add_type_methods(
            dtp,
            "OpenStromDeviceType",
            (
                ("RunSelfTest", [], [vt.String]),
                ("Calibrate", [vt.UInt32, vt.String, vt.Double, vt.Double], [vt.String]),
                ("SwitchAuxOn", [], []),
                ("SwitchAuxOff", [], []),
                ("SetMaintenanceLock", [vt.UInt32, vt.Boolean], []),
            ),
        )
        return ct, dtp

    async def _add_type_methods(
        self, type_node: Any, type_name: str, methods: tuple[tuple[str, list[Any], list[Any]], ...]
    ) -> None:
        """Methods of an ObjectType: (name, input types, output types), each a mandatory placeholder."""
        idx = self.idx
        for name, inputs, outputs in methods:
            meth = await type_node.add_method(
                ua.NodeId(f"{type_name}.{name}", idx), ua.QualifiedName(name, idx), self._type_method, inputs, outputs
            )
            await meth.set_modelling_rule(True)

    @staticmethod
    async def _type_method(parent: ua.NodeId, *args: Any) -> ua.StatusCode:
        return ua.StatusCode(ua.StatusCodes.BadNotImplemented)  # the type's own method; instances have theirs

    async def _add_device(self, dev: DeviceState) -> None:
        self._written.clear()  # new nodes hold their initial values: nothing written before applies to them
        self._shown.pop(dev.name, None)
        s, idx, name = self.server, self.idx, dev.name
        obj = await self.root.add_object(
            ua.NodeId(name, idx), ua.QualifiedName(name, idx), objecttype=self.device_type.nodeid
        )
        for field in (
            "SerialNumber",
            "Connected",
            "LastSampleTime",
            "Gaps",
            "LostBlocks",
            "SramFill",
            "AuxOutput",
            "PartNumber",
            "WifiMac",
            "LanMac",
            "FirmwareVersion",
        ):
            self._device_vars[(name, field)] = ua.NodeId(f"{name}.{field}", idx)
        await s.get_node(self._device_vars[(name, "SerialNumber")]).write_value(dev.config.serial_number)
        folder = s.get_node(ua.NodeId(f"{name}.Circuits", idx))
        s.link_method(s.get_node(ua.NodeId(f"{name}.RunSelfTest", idx)), self._method(name, 0, "selftest"))
        s.link_method(s.get_node(ua.NodeId(f"{name}.Calibrate", idx)), self._method(name, 0, "calibrate"))
        s.link_method(s.get_node(ua.NodeId(f"{name}.SwitchAuxOn", idx)), self._method(name, 0, "aux_on"))
        s.link_method(s.get_node(ua.NodeId(f"{name}.SwitchAuxOff", idx)), self._method(name, 0, "aux_off"))
        s.link_method(s.get_node(ua.NodeId(f"{name}.SetMaintenanceLock", idx)), self._method(name, 0, "maintenance"))
        await obj.set_event_notifier([ua.EventNotifier.SubscribeToEvents, ua.EventNotifier.HistoryRead])
        self._emitters[(name, 0)] = obj
        await self._add_conditions(obj, name, 0, ("offline",))
        for cs in dev.circuits:
            cname = f"Circuit{cs.index:02d}"
            prefix = f"{name}.{cname}"
            cobj = await folder.add_object(
                ua.NodeId(prefix, idx), ua.QualifiedName(cname, idx), objecttype=self.circuit_type.nodeid
            )
            if cs.name != cname:
                await cobj.write_attribute(
                    ua.AttributeIds.DisplayName,
                    ua.DataValue(ua.Variant(ua.LocalizedText(cs.name), ua.VariantType.LocalizedText)),
                )
            for m in (*CIRCUIT_MEASUREMENTS, FREQUENCY, *CIRCUIT_AGGREGATES):
                self._values[(name, cs.index, m.field)] = ua.NodeId(f"{prefix}.{m.browse_name}", idx)
            for f in ("RelayOperations", "Dips", "Swells", "Interruptions"):
                self._values[(name, cs.index, f)] = ua.NodeId(f"{prefix}.{f}", idx)
            relay_id = ua.NodeId(f"{prefix}.Relay", idx)
            self._values[(name, cs.index, "relay")] = relay_id
            self._relay_nodes[relay_id] = (name, cs.index)
            s.link_method(s.get_node(ua.NodeId(f"{prefix}.SwitchOn", idx)), self._method(name, cs.index, "on"))
            s.link_method(s.get_node(ua.NodeId(f"{prefix}.SwitchOff", idx)), self._method(name, cs.index, "off"))
            s.link_method(s.get_node(ua.NodeId(f"{prefix}.Select", idx)), self._method(name, cs.index, "select"))
            await cobj.set_event_notifier([ua.EventNotifier.SubscribeToEvents, ua.EventNotifier.HistoryRead])
            self._emitters[(name, cs.index)] = cobj
            await self._add_conditions(cobj, prefix, cs.index, CONDITION_ALARMS, device=name)

    async def _add_conditions(
        self, parent: Any, prefix: str, circuit: int, alarms: tuple[str, ...], device: str | None = None
    ) -> None:
        """One node per alarm: the ConditionId its events carry and Acknowledge/Confirm address."""
        device = device or prefix
        folder = await parent.add_folder(ua.NodeId(f"{prefix}.Alarms", self.idx), ua.QualifiedName("Alarms", self.idx))
        for alarm in alarms:
            node = await folder.add_object(
                ua.NodeId(f"{prefix}.Alarms.{alarm}", self.idx), ua.QualifiedName(alarm, self.idx)
            )
            cond = Condition(device=device, circuit=circuit, alarm=alarm, node=node.nodeid)
            self._conditions[(device, circuit, alarm)] = cond
            self._by_node[node.nodeid] = cond

    # --------------------------------------------------------------- start / stop

    async def _ensure_certificate(self) -> tuple[Path, Path]:
        pki = self.state_dir / "pki"
        own = pki / "own"
        for d in (own, pki / "trusted", pki / "rejected"):
            d.mkdir(parents=True, exist_ok=True)
        cert, key = own / "server_cert.der", own / "server_key.pem"
        host = urlparse(self.endpoint).hostname or socket.gethostname()
        await setup_self_signed_certificate(
            key,
            cert,
            "urn:openstrom:bridge:server",
            host,
            [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
            {"countryName": "DE", "organizationName": "OpenStrom", "commonName": "OpenStrom Bridge"},
        )
        return cert, key

    async def _validate_client(self, cert: x509.Certificate, app: ua.ApplicationDescription) -> None:
        """Trust list: certificates in pki/trusted are accepted; others are copied to pki/rejected
        (an admin moves them to trusted) and refused."""
        pki = self.state_dir / "pki"
        der = cert.public_bytes(serialization.Encoding.DER)
        thumb = cert.fingerprint(hashes.SHA1()).hex()
        if self.config.opcua.trust_all_clients:
            return
        for f in (pki / "trusted").glob("*"):
            try:
                data = f.read_bytes()
                if data == der or (
                    b"BEGIN CERTIFICATE" in data
                    and x509.load_pem_x509_certificate(data).public_bytes(serialization.Encoding.DER) == der
                ):
                    return
            except (OSError, ValueError):
                continue
        target = pki / "rejected" / f"{thumb}.der"
        if not target.exists():
            target.write_bytes(der)
            log.warning(
                "OPC UA client certificate rejected; move it to pki/trusted to accept it",
                application=app.ApplicationUri,
                file=str(target),
            )
        raise ua.UaStatusCodeError(ua.StatusCodes.BadCertificateUntrusted)

    async def start(self) -> None:
        _install_session_hooks()
        await self.build()
        s = self.server
        policies = [
            ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
            ua.SecurityPolicyType.Basic256Sha256_Sign,
            ua.SecurityPolicyType.Aes128Sha256RsaOaep_SignAndEncrypt,
            ua.SecurityPolicyType.Aes128Sha256RsaOaep_Sign,
        ]
        if self.config.opcua.allow_none_security:
            policies.append(ua.SecurityPolicyType.NoSecurity)
        s.set_security_policy(policies, permission_ruleset=SimpleRoleRuleset())
        tokens: list[type] = [ua.UserNameIdentityToken]
        if self.config.opcua.allow_anonymous:
            tokens.append(ua.AnonymousIdentityToken)
        s.set_identity_tokens(tokens)
        cert, key = await self._ensure_certificate()
        await s.load_certificate(str(cert))
        await s.load_private_key(str(key))
        s.set_certificate_validator(self._validate_client)  # type: ignore[arg-type]
        _FRONTS[id(s.iserver)] = self
        await s.start()
        await self._setup_history()
        s.link_method(s.get_node(ua.ObjectIds.AcknowledgeableConditionType_Acknowledge), self._acknowledge)
        s.link_method(s.get_node(ua.ObjectIds.AcknowledgeableConditionType_Confirm), self._confirm)
        s.link_method(s.get_node(ua.ObjectIds.ConditionType_ConditionRefresh), self._condition_refresh)
        self.model.subscribe(self._on_change)
        for dev in self.model.devices.values():
            self._schedule(dev.name)
        log.info("OPC UA server ready", endpoint=self.endpoint, policies=[p.name for p in policies])

    async def _setup_history(self) -> None:
        path = self.state_dir / "opcua_history.sqlite"
        storage = _History(str(path))
        await storage.init()
        self.server.iserver.history_manager.set_storage(storage)
        self._history = storage
        await self._historize(list(self._values))
        task = asyncio.get_running_loop().create_task(self._prune_history())
        self._tasks.add(task)
        for emitter in self._emitters.values():
            # no period for asyncua: it would run a DELETE on every insert; retention is pruned hourly
            await self.server.historize_node_event(emitter, period=None, count=0)

    async def _historize(self, keys: list[tuple[str, int, str]]) -> None:
        """Give the historized measurements among ``keys`` their tables. write_device stores their
        values itself, one transaction per device update: asyncua's historize_node_data_change would
        route every value through an internal subscription and commit each row on its own."""
        if self._history is None:
            return
        fields = {m.field for m in CIRCUIT_MEASUREMENTS if m.historized}
        for key in keys:
            nid = self._values[key]
            if key[2] in fields and nid not in self._historized:
                await self._history.new_historized_node(nid, None, 0)
                self._historized.add(nid)

    async def _prune_history(self) -> None:
        keep = dt.timedelta(days=self.config.opcua.history_retention_days)
        assert self._history is not None
        while True:
            cutoff = dt.datetime.now(dt.UTC) - keep
            for nid in list(self._historized):  # a device accepted meanwhile may add nodes
                table = self._history._get_table_name(nid)
                await self._history.execute_sql_delete("SourceTimestamp < ?", (cutoff,), table, nid)
            await asyncio.sleep(3600)

    async def stop(self) -> None:
        _FRONTS.pop(id(self.server.iserver), None)
        for t in list(self._tasks):
            t.cancel()
        await self.server.stop()

    # --------------------------------------------------------------- model -> address space

    def _on_change(self, dev: DeviceState, what: str) -> None:
        if what == "added":  # an auto-accepted device: give it its nodes, then its values
            task = asyncio.get_running_loop().create_task(self._add_late(dev))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        elif what in ("snapshot", "link", "status", "alarm", "identity", "event", "selftest"):
            self._schedule(dev.name)

    async def _add_late(self, dev: DeviceState) -> None:
        try:
            await self._add_device(dev)
            await self._historize([k for k in self._values if k[0] == dev.name])
            self._known.add(dev.name)
        except Exception as exc:
            log.error("OPC UA could not add the device's nodes", device=dev.name, error=repr(exc))
        self._schedule(dev.name)

    def _schedule(self, name: str) -> None:
        # coalesce: one pending update per device however many windows arrived meanwhile
        if name in self._pending:
            return
        self._pending.add(name)
        task = asyncio.get_running_loop().create_task(self._update(name))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _update(self, name: str) -> None:
        await asyncio.sleep(0)
        self._pending.discard(name)
        dev = self.model.devices.get(name)
        if dev is None or name not in self._known:
            return  # nodes not built yet (a late device): _add_late schedules again
        try:
            await self.write_device(dev)
            await self._alarms(dev)
        except Exception as exc:  # an address-space hiccup must not stop the bridge
            log.error("OPC UA update failed", device=name, error=repr(exc))

    async def _put(
        self,
        node: ua.NodeId,
        value: Any,
        vtype: ua.VariantType,
        status: ua.StatusCode = GOOD,
        src: dt.datetime | None = None,
        now: dt.datetime | None = None,
    ) -> None:
        """Write a value only when it or its quality changed (the OPC UA meaning of SourceTimestamp:
        when the value last changed). Counters, aggregates, relay and device variables mostly stand
        still between updates, and a write costs ~30-50 us in asyncua even with nobody subscribed.
        The bridge is the only writer of these nodes (client writes to Relay are commands, see
        handle_write), so what it wrote last is what the node holds."""
        key = (value, vtype, status.value)
        if self._written.get(node) == key:
            return
        self._written[node] = key
        await self.server.write_attribute_value(
            node, SharedDataValue(ua.Variant(value, vtype), StatusCode=status, SourceTimestamp=src, ServerTimestamp=now)
        )

    async def write_device(self, dev: DeviceState) -> None:
        """Write one device's values: the window's measurements, with its source timestamp and quality,
        when there is a new window or the quality changed (history: once per new window); everything
        else when it changed."""
        w = self.server.write_attribute_value
        put = self._put
        snap = dev.snapshot
        now = dt.datetime.now(dt.UTC)
        if snap is None:
            status, src = BAD_NO_COMM, now
        else:
            status = GOOD if dev.online else UNCERTAIN_LAST
            src = dt.datetime.fromtimestamp(snap.time_s, dt.UTC)
        name = dev.name
        double, uint32, boolean = ua.VariantType.Double, ua.VariantType.UInt32, ua.VariantType.Boolean
        history: list[tuple[ua.NodeId, dt.datetime, dt.datetime, int, float]] = []
        # link, status and alarm changes also call for an update: the window's values are written
        # (and historized) again only when there is a new window or their quality changed
        shown = (None if snap is None else snap.number, status.value)
        previous = self._shown.get(name)
        fresh = previous != shown
        new_window = snap is not None and (previous is None or previous[0] != snap.number)
        self._shown[name] = shown
        for cs in dev.circuits:
            c = cs.index
            cv = snap.circuits[c - 1] if snap is not None and c <= len(snap.circuits) else None
            for m in (*CIRCUIT_MEASUREMENTS, FREQUENCY) if fresh else ():
                if cv is None:
                    value = 0.0
                elif m is FREQUENCY:
                    value = snap.freq_hz if snap is not None else math.nan
                else:
                    value = float(getattr(cv, m.field))
                node = self._values[(name, c, m.field)]
                dv = SharedDataValue(
                    ua.Variant(value, double), StatusCode=status, SourceTimestamp=src, ServerTimestamp=now
                )
                await w(node, dv)
                if new_window and node in self._historized:
                    history.append((node, now, src, status.value, value))
            for m in CIRCUIT_AGGREGATES:
                agg = QUANTITIES[m.field].read(dev, c)
                # an interval not yet complete has no value: WaitingForInitialData, not a stale zero
                await put(
                    self._values[(name, c, m.field)],
                    0.0 if agg is None else float(agg),
                    double,
                    WAITING if agg is None else status,
                    src,
                    now,
                )
            relay_status = (
                GOOD
                if (cs.relay_on is not None and dev.online)
                else (UNCERTAIN_LAST if cs.relay_on is not None else BAD_NO_COMM)
            )
            await put(self._values[(name, c, "relay")], bool(cs.relay_on), boolean, relay_status, now, now)
            for f, val in (
                ("RelayOperations", cs.relay_operations),
                ("Dips", cs.dips),
                ("Swells", cs.swells),
                ("Interruptions", cs.interruptions),
            ):
                await put(self._values[(name, c, f)], val, uint32, GOOD, now, now)
        hello, st = dev.hello, dev.status
        v = self._device_vars
        await put(v[(name, "Connected")], dev.online, boolean, GOOD, now, now)
        if snap is not None:
            await put(v[(name, "LastSampleTime")], src, ua.VariantType.DateTime, GOOD, src, now)
        await put(v[(name, "Gaps")], dev.link.gaps, uint32)
        await put(v[(name, "LostBlocks")], dev.link.lost_blocks, uint32)
        if st is not None and st.sram_capacity_blocks:
            await put(v[(name, "SramFill")], 100.0 * st.sram_fill_blocks / st.sram_capacity_blocks, double)
        if dev.aux_on is not None:
            await put(v[(name, "AuxOutput")], dev.aux_on, boolean)
        if hello is not None:
            for field, attr in (
                ("PartNumber", "part_number"),
                ("WifiMac", "wifi_mac"),
                ("LanMac", "lan_mac"),
                ("FirmwareVersion", "firmware_version"),
            ):
                await put(v[(name, field)], str(getattr(hello, attr)), ua.VariantType.String)
        if history and self._history is not None:
            self._history.save_many(history)
        self.updates += 1

    async def _alarms(self, dev: DeviceState) -> None:
        """Alarm state changes become condition events (AlarmConditionType)."""
        checks = [(0, "offline", dev.alarms["offline"])]
        for cs in dev.circuits:
            checks += [(cs.index, a, cs.alarms[a]) for a in CONDITION_ALARMS]
        for circuit, alarm, al in checks:
            cond = self._conditions.get((dev.name, circuit, alarm))
            if cond is None:
                continue
            missed = al.count > cond.seen_count and not al.active and not cond.active
            cond.seen_count = al.count
            if missed:  # activated and cleared between two updates: report both edges
                await self._set(cond, True, al.message)
            if cond.active != al.active:
                await self._set(cond, al.active, al.message)

    async def _set(self, cond: Condition, active: bool, message: str) -> None:
        cond.active = active
        cond.message = message
        if active:  # a new occurrence needs a new acknowledgement and confirmation
            cond.acked = cond.confirmed = False
            cond.event_ids.clear()
        await self._fire(cond)

    async def _fire(self, cond: Condition) -> None:
        """One event carrying the condition's whole state; Retain while active or unacknowledged."""
        gen = await self.server.get_event_generator(
            ua.ObjectIds.AlarmConditionType, self._emitters[(cond.device, cond.circuit)]
        )
        where = f"{cond.device} circuit {cond.circuit}" if cond.circuit else cond.device
        state = "active" if cond.active else "cleared"
        text = f"{cond.alarm.replace('_', ' ')} {state} on {where}" + (
            f": {cond.message}" if cond.message and cond.active else ""
        )
        ev = gen.event
        ev.Message = ua.LocalizedText(text)
        ev.Severity = ALARM_SEVERITY.get(cond.alarm, 500)
        ev.SourceName = where
        ev.ConditionName = cond.alarm
        ev.NodeId = cond.node  # the ConditionId clients pass to Acknowledge / Confirm
        ev.Retain = cond.active or not cond.acked
        ev.ActiveState = ua.LocalizedText("Active" if cond.active else "Inactive")
        ev.AckedState = ua.LocalizedText("Acknowledged" if cond.acked else "Unacknowledged")
        ev.ConfirmedState = ua.LocalizedText("Confirmed" if cond.confirmed else "Unconfirmed")
        ev.EnabledState = ua.LocalizedText("Enabled")
        for field, value in (
            ("ActiveState/Id", cond.active),
            ("AckedState/Id", cond.acked),
            ("ConfirmedState/Id", cond.confirmed),
            ("EnabledState/Id", True),
        ):
            setattr(ev, field, value)
        await gen.trigger(message=text)
        event_id = ev.EventId
        cond.event_ids.add(event_id.Value if isinstance(event_id, ua.Variant) else event_id)

    async def _acknowledge(self, parent: ua.NodeId, *args: Any) -> Any:
        return await self._ack_or_confirm(parent, args, confirm=False)

    async def _confirm(self, parent: ua.NodeId, *args: Any) -> Any:
        return await self._ack_or_confirm(parent, args, confirm=True)

    async def _ack_or_confirm(self, parent: ua.NodeId, args: tuple[Any, ...], *, confirm: bool) -> Any:
        cond = self._by_node.get(parent)
        if cond is None:
            return ua.StatusCode(ua.StatusCodes.BadNodeIdInvalid)
        origin = _origin(self.users)
        if ROLES[origin.role] < ROLES["operator"]:
            return ua.StatusCode(ua.StatusCodes.BadUserAccessDenied)
        event_id = args[0].Value if args and isinstance(args[0], ua.Variant) else (args[0] if args else None)
        if event_id not in cond.event_ids:  # any event of the current occurrence may be acknowledged
            return ua.StatusCode(ua.StatusCodes.BadEventIdUnknown)
        if confirm:
            if not cond.acked:
                return ua.StatusCode(ua.StatusCodes.BadConditionBranchAlreadyConfirmed)
            if cond.confirmed:
                return ua.StatusCode(ua.StatusCodes.BadConditionBranchAlreadyConfirmed)
            cond.confirmed = True
        else:
            if cond.acked:
                return ua.StatusCode(ua.StatusCodes.BadConditionBranchAlreadyAcked)
            cond.acked = True
        log.info(
            "alarm " + ("confirmed" if confirm else "acknowledged"),
            device=cond.device,
            circuit=cond.circuit,
            alarm=cond.alarm,
            user=origin.user,
            client=origin.client,
        )
        await self._fire(cond)
        return []

    async def _condition_refresh(self, parent: ua.NodeId, *args: Any) -> Any:
        """Re-send every retained condition (Part 9 ConditionRefresh), e.g. after a client reconnects."""
        for cond in self._conditions.values():
            if cond.active or not cond.acked:
                await self._fire(cond)
        return []

    # --------------------------------------------------------------- writes and methods

    async def handle_write(
        self,
        session: InternalSession,
        params: ua.WriteParameters,
        orig: Callable[[InternalSession, ua.WriteParameters], Awaitable[list[ua.StatusCode]]],
    ) -> list[ua.StatusCode]:
        ours = [
            (k, wv)
            for k, wv in enumerate(params.NodesToWrite)
            if wv.NodeId in self._relay_nodes and wv.AttributeId == ua.AttributeIds.Value
        ]
        if not ours:
            return await orig(session, params)
        results: list[ua.StatusCode | None] = [None] * len(params.NodesToWrite)
        rest = [wv for k, wv in enumerate(params.NodesToWrite) if all(k != j for j, _ in ours)]
        for k, wv in ours:
            device, circuit = self._relay_nodes[wv.NodeId]
            value = wv.Value.Value.Value if wv.Value is not None and wv.Value.Value is not None else None
            if not isinstance(value, bool):
                results[k] = ua.StatusCode(ua.StatusCodes.BadTypeMismatch)
                continue
            results[k] = await self._relay(device, circuit, value)
        if rest:
            sub = await orig(session, ua.WriteParameters(NodesToWrite=rest))
            it = iter(sub)
            results = [r if r is not None else next(it) for r in results]
        return [r if r is not None else GOOD for r in results]

    async def _relay(self, device: str, circuit: int, on: bool) -> ua.StatusCode:
        origin = _origin(self.users)
        if ROLES[origin.role] < ROLES["operator"]:
            log.warning("OPC UA relay command denied: viewer role", user=origin.user, device=device, circuit=circuit)
            return ua.StatusCode(ua.StatusCodes.BadUserAccessDenied)
        assert self.commands is not None
        try:
            await self.commands.switch_relay(device, circuit, on, origin)
        except BridgeError as exc:
            return _status_for(exc)
        self._schedule(device)
        return GOOD

    def _method(self, device: str, circuit: int, action: str) -> Callable[..., Awaitable[Any]]:
        async def call(parent: ua.NodeId, *args: ua.Variant) -> Any:
            origin = _origin(self.users)
            assert self.commands is not None
            if action in ("on", "off"):
                return await self._relay(device, circuit, action == "on")
            if ROLES[origin.role] < ROLES["operator"]:
                return ua.StatusCode(ua.StatusCodes.BadUserAccessDenied)
            try:
                if action in ("aux_on", "aux_off"):
                    await self.commands.switch_aux(device, action == "aux_on", origin)
                    return []
                if action == "selftest":
                    faults = await self.commands.self_test(device, origin)
                    text = "; ".join(f"{f['code']} [{f['block']}] {f['text']}" for f in faults) or "passed"
                    return [ua.Variant(text, ua.VariantType.String)]
                values = [a.Value if isinstance(a, ua.Variant) else a for a in args]
                if action == "select":
                    self.commands.select(device, circuit, bool(values[0]), origin)
                    return []
                if action == "maintenance":
                    self.commands.set_maintenance_lock(device, int(values[0]), bool(values[1]), origin)
                    return []
                if action == "calibrate":
                    c, ch, gain, offset = (a.Value if isinstance(a, ua.Variant) else a for a in args)
                    before, after = await self.commands.calibrate(
                        device, int(c), str(ch), float(gain), float(offset), origin
                    )
                    return [ua.Variant(f"circuit {c} {ch}: gain/offset {before} -> {after}", ua.VariantType.String)]
            except BridgeError as exc:
                return _status_for(exc)
            except (TypeError, ValueError):
                return ua.StatusCode(ua.StatusCodes.BadInvalidArgument)
            return ua.StatusCode(ua.StatusCodes.BadNotImplemented)

        return call


_DOUBLE = struct.Struct("<Bd")


def _log_history_error(done: concurrent.futures.Future[None]) -> None:
    exc = done.exception()
    if exc is not None:
        log.error("OPC UA history could not store values", error=repr(exc))


class _History(HistorySQLite):  # type: ignore[misc]
    """asyncua's SQLite history, with table names safe for our readable string NodeIds
    ("board1.Circuit01.Voltage" would otherwise trip its SQL-injection guard on the quotes)."""

    def _get_table_name(self, node_id: ua.NodeId) -> str:
        ident = "".join(ch if ch.isalnum() else "_" for ch in str(node_id.Identifier))
        return f"{node_id.NamespaceIndex}_{ident}"

    async def init(self) -> None:
        await super().init()
        # A second connection of our own writes the measurements, one transaction per device update,
        # on one worker thread: asyncua's save_node_value makes a thread hop and a commit per row.
        # WAL lets HistoryRead (asyncua's connection) read while a batch is written; NORMAL sync is
        # enough for history (the energy registers live in the bridge's own store).
        self._writer = sqlite3.connect(self._db_file, check_same_thread=False)
        self._writer.execute("PRAGMA journal_mode=WAL")
        self._writer.execute("PRAGMA synchronous=NORMAL")
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="opcua-history")
        self._tables: dict[ua.NodeId, str] = {}

    async def stop(self) -> None:
        self._pool.shutdown(wait=True)
        self._writer.close()
        await super().stop()

    def save_many(self, rows: list[tuple[ua.NodeId, dt.datetime, dt.datetime, int, float]]) -> None:
        """Queue a device update's measurements for the history thread: (node, server time, source
        time, status, value). Not awaited: the update is done when its values are in the address
        space; the single worker thread keeps the rows in order, and stop() waits for them."""
        batch = []
        for node_id, server_ts, source_ts, status, value in rows:
            table = self._tables.get(node_id)
            if table is None:
                table = self._tables[node_id] = self._get_table_name(node_id)
            # asyncua's binary Variant of a Double: type byte 11, then the IEEE double little-endian
            batch.append((table, (server_ts, source_ts, status, str(value), "Double", _DOUBLE.pack(11, value))))
        self._pool.submit(self._write, batch).add_done_callback(_log_history_error)

    def _write(self, batch: list[tuple[str, tuple[Any, ...]]]) -> None:
        with self._writer:  # one transaction
            for table, row in batch:
                self._writer.execute(f'INSERT INTO "{table}" VALUES (NULL, ?, ?, ?, ?, ?, ?)', row)
