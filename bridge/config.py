"""The bridge configuration: one schema (pydantic), TOML or YAML files, errors with file, key and line.

Parsed once into frozen models; nothing downstream re-reads or mutates the raw dictionaries.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from bridge.core.events import Thresholds
from device.protocol import BOARD_CIRCUITS, SERIAL_BAUDRATE

from .config_source import format_validation, line_of, read_document
from .errors import ConfigError

__all__ = ["Config", "format_validation", "line_of", "load_config", "read_document"]

DEFAULT_DEVICE_PORT = 7700
DEFAULT_MODBUS_PORT = 5020
DEFAULT_SUNSPEC_PORT = 5021
DEFAULT_OPCUA_PORT = 4840
DEFAULT_METRICS_PORT = 9840
_WILDCARD = {"", "0.0.0.0", "::", "[::]"}


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


HostPort = Annotated[str, Field(pattern=r"^[^\s:]*:\d{1,5}$", description="HOST:PORT")]


class BridgeSection(_Model):
    name: str = Field("OpenStrom Bridge", description="shown in Modbus device identification and OPC UA")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    state_dir: str = Field("var", description="SQLite database and certificates (relative to the config file)")
    commit_interval_s: float = Field(2.0, gt=0, le=60, description="energy counters are committed this often")
    offline_after_s: float = Field(
        5.0, gt=0, le=3600, description="a device whose newest counted data is older than this is offline"
    )
    loss_alarm_hold_s: float = Field(
        900.0, gt=0, le=86400, description="sram_loss and stream_restart clear when no new loss came for this long"
    )
    auto_accept: bool = Field(False, description="accept devices whose serial number is not configured")


def is_loopback(host: str) -> bool:
    """A host that only this machine reaches (127.0.0.0/8, ::1, localhost).

    >>> is_loopback("127.0.0.2"), is_loopback("0.0.0.0"), is_loopback("localhost")
    (True, False, True)
    """
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class DialLink(_Model):
    host: str
    port: int = Field(DEFAULT_DEVICE_PORT, ge=1, le=65535)
    device: str | None = Field(None, description="expected device name (checked against HELLO)")
    tls: bool | None = Field(None, description="mutual TLS to the device (default: links.tls decides by address)")


class SerialLink(_Model):
    port: str = Field(description="serial device path, e.g. /dev/ttyUSB0")
    baudrate: int = Field(SERIAL_BAUDRATE, ge=1200, le=3_000_000, description="as the device's (both default alike)")
    device: str | None = None


class LinksSection(_Model):
    listen: HostPort | None = Field(f"0.0.0.0:{DEFAULT_DEVICE_PORT}", description="where devices dial in")
    http_listen: HostPort | None = Field(
        None,
        description="HTTP(S) package ingest for devices that can only POST (off by default; HTTPS beyond loopback)",
    )
    http_min_interval_s: float = Field(0.2, ge=0, le=60, description="least time between two POSTs of one device")
    http_session_idle_s: float = Field(
        30.0, gt=0, le=3600, description="a device's HTTP session ends when no POST came this long"
    )
    dial: tuple[DialLink, ...] = ()
    serial: tuple[SerialLink, ...] = ()
    reconnect_max_s: float = Field(10.0, gt=0, le=600)
    tls: Literal["auto", "always"] = Field(
        "auto",
        description="auto: mutual TLS on every non-loopback listen and dial address, plain TCP on loopback "
        "only; always: TLS on loopback too",
    )
    pki_dir: str | None = Field(None, description="CA and bridge certificate (default: state_dir/link-pki)")
    revoked: tuple[str, ...] = Field((), description="device serial numbers whose certificates are refused")
    hello_timeout_s: float = Field(10.0, gt=0, le=300, description="a link without HELLO by then is closed")
    time_sync_interval_s: float = Field(
        3600.0, ge=0, le=86400, description="set each device's clock this often (0: at connect only); clocks drift"
    )
    max_unidentified: int = Field(64, ge=1, le=10000, description="links not yet past HELLO, in all")
    max_unidentified_per_host: int = Field(8, ge=1, le=1000, description="links not yet past HELLO, per address")

    def tls_for(self, host: str, explicit: bool | None = None) -> bool:
        """Whether a link to or from ``host`` must use mutual TLS."""
        if not is_loopback(host):
            return True  # never plain TCP beyond this machine, whatever a link says
        return explicit if explicit is not None else self.tls == "always"


RoleName = Literal["viewer", "operator", "admin"]


def _same_roles() -> dict[str, RoleName]:
    return {"viewer": "viewer", "operator": "operator", "admin": "admin"}


class ModbusServer(_Model):
    map: str = Field(description="register map name (built-in or file stem in map_dirs)")
    host: str = "0.0.0.0"
    port: int = Field(ge=1, le=65535)
    word_order: Literal["big", "little"] | None = Field(None, description="override the map's word order")
    offline: Literal["exception", "nan"] = Field(
        "exception",
        description="offline device: gateway exception 0x0B, or NaN/0x8000 values plus quality flag",
    )
    read_only: bool = Field(False, description="refuse every write (exception 01); reads are served")
    write_allow: tuple[str, ...] | None = Field(
        None,
        description="networks (CIDR) whose clients may write; others get exception 01. Default: loopback only "
        "on a plain server, any address on a TLS server (there the certificate's role decides)",
    )
    tls: bool = Field(False, description="Modbus/TCP Security: mutual TLS, the client certificate's role decides")
    tls_cert: str | None = Field(None, description="server certificate (default: the link PKI's bridge certificate)")
    tls_key: str | None = Field(None, description="its private key")
    tls_ca: str | None = Field(None, description="CA that client certificates must chain to (default: the link CA)")
    role_map: dict[str, RoleName] = Field(
        default_factory=_same_roles,
        description="certificate role (extension 1.3.6.1.4.1.50316.802.1) -> bridge role; others read only",
    )
    max_connections: int = Field(
        32, ge=1, le=1024, description="clients at once; one more closes the connection unused the longest"
    )
    idle_timeout_s: float = Field(
        120.0, ge=0, le=86400, description="close a client silent this long (0: never); SCADA polls every few s"
    )

    @field_validator("write_allow")
    @classmethod
    def _networks(cls, v: tuple[str, ...] | None) -> tuple[str, ...] | None:
        for k, net in enumerate(v or ()):
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError:
                raise ValueError(
                    f"write_allow[{k}]: {net!r} is not a network in CIDR notation (e.g. 10.1.2.0/24)"
                ) from None
        return v

    def writers(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        nets = self.write_allow
        if nets is None:
            nets = ("0.0.0.0/0", "::/0") if self.tls else ("127.0.0.0/8", "::1/128")
        return [ipaddress.ip_network(n, strict=False) for n in nets]


def _default_modbus_servers() -> tuple[ModbusServer, ...]:
    return (
        ModbusServer(map="openstrom", port=DEFAULT_MODBUS_PORT),
        ModbusServer(map="sunspec", port=DEFAULT_SUNSPEC_PORT),
    )


class ModbusRtuServer(_Model):
    """A Modbus RTU slave on a serial line (RS-485): the same maps as TCP, one unit ID per device."""

    port: str = Field(description="serial device path, e.g. /dev/ttyUSB1 or /dev/ttyAMA0")
    map: str = Field("openstrom", description="register map name (built-in or file stem in map_dirs)")
    baudrate: int = Field(19200, ge=1200, le=921600, description="the Modbus serial-line default is 19 200")
    parity: Literal["E", "O", "N"] = Field("E", description="even by default, as the serial-line spec says")
    stopbits: Literal[1, 2] = 1
    units: dict[Annotated[int, Field(ge=1, le=247)], str] = Field(
        default_factory=dict,
        description="unit ID -> device name on this line (default: each device's unit_id, as on TCP)",
    )
    role: Literal["viewer", "operator"] = Field(
        "viewer",
        description="what a master on this line may do: viewer reads only, operator also switches relays "
        "(a serial line has no authentication: give it operator only where the wiring is the authority)",
    )
    word_order: Literal["big", "little"] | None = Field(None, description="override the map's word order")
    offline: Literal["exception", "nan"] = Field("exception", description="as on the TCP servers")
    silence_floor_s: float = Field(
        0.0,
        ge=0,
        le=0.1,
        description="least silence that ends a frame, beyond 3.5 characters: a USB adapter's latency timer "
        "(e.g. 0.016) can split one frame into reads that far apart",
    )
    strict_timing: bool = Field(
        True, description="discard a frame whose bytes are more than 1.5 characters apart (native UARTs)"
    )

    @property
    def read_only(self) -> bool:
        return self.role == "viewer"


class ModbusSection(_Model):
    enabled: bool = True
    servers: tuple[ModbusServer, ...] = Field(default_factory=_default_modbus_servers)
    rtu: tuple[ModbusRtuServer, ...] = Field((), description="Modbus RTU slaves on serial lines")
    map_dirs: tuple[str, ...] = Field(
        (), description="extra folders with register-map YAML files (relative to the config file)"
    )

    def map_folders(self, base: Path) -> tuple[str, ...]:
        """``map_dirs`` with relative folders taken from ``base`` (the config file's folder)."""
        return tuple(d if Path(d).is_absolute() else str(base / d) for d in self.map_dirs)

    @model_validator(mode="after")
    def _unique_ports(self) -> ModbusSection:
        seen: dict[tuple[str, int], int] = {}
        for k, s in enumerate(self.servers):
            if (s.host, s.port) in seen:
                raise ValueError(f"servers[{k}] uses {s.host}:{s.port} like servers[{seen[(s.host, s.port)]}]")
            seen[(s.host, s.port)] = k
        lines: dict[str, int] = {}
        for k, r in enumerate(self.rtu):
            if r.port in lines:
                raise ValueError(f"rtu[{k}] uses serial port {r.port} like rtu[{lines[r.port]}]")
            lines[r.port] = k
        return self


class OpcUaUser(_Model):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    password_hash: str = Field(description="scrypt hash from `openstrom-bridge hash-password`")
    role: RoleName = "viewer"


class OpcUaSection(_Model):
    enabled: bool = True
    endpoint: str = f"opc.tcp://0.0.0.0:{DEFAULT_OPCUA_PORT}/openstrom"
    hostnames: tuple[str, ...] = Field(
        (),
        description="DNS names and addresses clients reach the server by, for its certificate (the host's own "
        "names are added; {hostname} is replaced, e.g. '{hostname}.openstrom-bridge.plant.svc.cluster.local')",
    )
    allow_none_security: bool = Field(False, description="also offer SecurityPolicy None (not for production)")
    allow_anonymous: bool = False
    trust_all_clients: bool = Field(False, description="accept any client certificate (commissioning only)")
    users: tuple[OpcUaUser, ...] = ()
    history_retention_days: float = Field(7.0, gt=0, le=3650)
    energy_model: bool = Field(True, description="each circuit also as an OPC 34100 (ECM) EnergyMeasurementType object")
    historized: tuple[str, ...] = Field(
        ("Voltage", "Current", "ActivePower", "ActiveEnergyImport"),
        description="circuit measurements (OPC UA browse names) kept for HistoryRead, raw and processed",
    )
    max_sessions: int = Field(
        50, ge=1, le=1000, description="OPC UA connections at once (asyncua refuses more at connect)"
    )
    login_max_failures: int = Field(
        5, ge=1, le=1000, description="failed logins from one address, or for one user, before a lockout"
    )
    login_window_s: float = Field(300.0, gt=0, le=86400, description="failures older than this are forgotten")
    login_lockout_s: float = Field(300.0, gt=0, le=86400, description="how long a lockout lasts")
    login_delay_s: float = Field(
        0.5, ge=0, le=10, description="answer to a failed login waits this long, doubling per failure (max 8 s)"
    )


class MqttSection(_Model):
    """Northbound MQTT: the bridge as a Sparkplug B 3.0 edge node, each device a Sparkplug device."""

    enabled: bool = False
    url: str = Field(
        "mqtt://127.0.0.1:1883",
        pattern=r"^mqtts?://[^/:\s]+(:\d{1,5})?/?$",
        description="broker: mqtt://HOST[:PORT] (plain, loopback only) or mqtts://HOST[:PORT] (TLS)",
    )
    group_id: str = Field("OpenStrom", pattern=r"^[^/+#\s]{1,64}$", description="Sparkplug group id")
    edge_node_id: str = Field("bridge", pattern=r"^[^/+#\s]{1,64}$", description="Sparkplug edge node id")
    username: str | None = None
    password: str | None = None
    password_file: str | None = Field(
        None, description="read the password from this file at each connect (a mounted secret), instead of password"
    )
    tls_ca: str | None = Field(None, description="CA of the broker's certificate (mqtts; default: the system's)")
    tls_cert: str | None = Field(None, description="client certificate for the broker (mqtts)")
    tls_key: str | None = None
    command_role: RoleName = Field(
        "viewer",
        description="what a DCMD from the broker may do: viewer (nothing), operator (relays, aux, self-test)",
    )
    primary_host_id: str | None = Field(
        None,
        pattern=r"^[^/+#\s]{1,64}$",
        description="the Sparkplug primary host application: publish only while its STATE says online",
    )
    store_forward_max: int = Field(
        100_000, ge=0, le=10_000_000, description="changes kept while the broker or the primary host is away"
    )

    @model_validator(mode="after")
    def _one_password(self) -> MqttSection:
        if self.password is not None and self.password_file is not None:
            raise ValueError("give password or password_file, not both")
        return self

    @model_validator(mode="after")
    def _plain_on_loopback_only(self) -> MqttSection:
        host = urlsplit(self.url).hostname or ""
        if self.url.startswith("mqtt://") and not is_loopback(host):
            raise ValueError(f"url {self.url}: plain MQTT to {host} is not allowed beyond loopback; use mqtts://")
        return self


class ShardSection(_Model):
    """Scale-out: replicas that share one device list, each serving the boards assigned to it."""

    count: int = Field(1, ge=1, le=1024, description="replicas sharing the device list (1: no sharding)")
    ordinal: int | Literal["hostname"] = Field(
        0,
        description="this replica's number, 0..count-1, or 'hostname': the trailing -N of the host name "
        "(a Kubernetes StatefulSet pod's ordinal); `run --shard-ordinal N` overrides it",
    )

    @field_validator("ordinal")
    @classmethod
    def _non_negative(cls, v: int | str) -> int | str:
        if isinstance(v, int) and v < 0:
            raise ValueError(f"ordinal {v} is negative: replicas are numbered from 0")
        return v


class MetricsSection(_Model):
    enabled: bool = True
    listen: HostPort = f"0.0.0.0:{DEFAULT_METRICS_PORT}"


class RelayPolicy(_Model):
    circuit: int = Field(ge=1, le=BOARD_CIRCUITS)
    min_interval_s: float | None = Field(None, ge=0, le=86400)
    daily_limit: int | None = Field(None, ge=0, le=100000)
    locked: bool = Field(False, description="interlock: refuse every switching of this relay")
    select_before_operate: bool | None = None
    safe_state: Literal["keep", "on", "off"] | None = None
    wear_alarm_operations: int | None = Field(None, ge=1)
    wiring: Literal["NO", "NC"] | None = Field(
        None, description="NO or NC: sent to the device at every connect (unset: the device's own setting)"
    )


class CommandsSection(_Model):
    timeout_s: float = Field(5.0, gt=0, le=120, description="device acknowledgement deadline")
    confirm_timeout_s: float = Field(3.0, gt=0, le=120, description="STATUS confirming the new state")
    min_interval_s: float = Field(2.0, ge=0, le=86400, description="between two switchings of one relay")
    daily_limit: int = Field(500, ge=0, le=100000)
    select_before_operate: bool = False
    select_timeout_s: float = Field(10.0, gt=0, le=600)
    safe_state: Literal["keep", "on", "off"] = "keep"
    relay_rated_operations: int = Field(100_000, ge=1)
    wear_alarm_share: float = Field(0.9, gt=0, le=1, description="alarm when this share of rated life is used")


class AnalysisSection(_Model):
    batch_s: float = Field(
        0.5,
        ge=0.08,
        le=10,
        description="measure when this much new signal has arrived: events and alarms are seen this often",
    )
    publish_s: float = Field(
        1.0,
        ge=0,
        le=60,
        description="live values (Modbus, OPC UA and its history, MQTT) take the newest window this often"
        " (to the nearest batch); 0 or at most batch_s: every batch",
    )
    harmonics_every: int = Field(
        15,
        ge=1,
        le=3000,
        description="harmonic spectrum and THD from one window in this many (15: every 3 s at 50 Hz)",
    )
    processes: int = Field(
        1,
        ge=0,
        le=1,
        description="1: devices are decoded and measured in a process of their own, beside the one that"
        " serves clients (two cores used); 0: in the same process (one core)",
    )


class RecordsSection(_Model):
    """COMTRADE records of every dip, swell and interruption (and of a manual trigger)."""

    enabled: bool = True
    folder: str = Field("records", description="where records go (relative to state_dir)")
    pre_cycles: int = Field(10, ge=1, le=500, description="mains cycles kept before the trigger")
    post_cycles: int = Field(40, ge=1, le=3000, description="mains cycles after the trigger")
    max_mb: float = Field(500.0, gt=0, le=1_000_000, description="the oldest records go when the folder exceeds this")
    max_age_days: float = Field(90.0, gt=0, le=36500, description="records older than this go")


class PowerQualityLimits(_Model):
    """Event and alarm limits. Voltage limits are shares of the declared voltage (IEC 61000-4-30's
    usual settings by default); frequency limits default to the nominal frequency +/- 1 % (EN 50160
    for interconnected systems); the seed's device range is 45..70 Hz."""

    dip: float = Field(0.90, gt=0, lt=1, description="a dip starts below this share of the declared voltage")
    swell: float = Field(1.10, gt=1, le=2, description="a swell starts above this share")
    interruption: float = Field(0.05, gt=0, lt=1, description="an interruption starts below this share")
    hysteresis: float = Field(0.02, ge=0, lt=0.5, description="an event ends this share inside its threshold")
    freq_low_hz: float | None = Field(None, ge=40, le=70, description="under-frequency alarm (default nominal - 1 %)")
    freq_high_hz: float | None = Field(None, ge=40, le=70, description="over-frequency alarm (default nominal + 1 %)")

    @model_validator(mode="after")
    def _ordered(self) -> PowerQualityLimits:
        self.thresholds()  # the event detector's own check of the voltage limits (a ValueError names them)
        if self.freq_low_hz is not None and self.freq_high_hz is not None and self.freq_low_hz >= self.freq_high_hz:
            raise ValueError(f"freq_low_hz ({self.freq_low_hz}) must be below freq_high_hz ({self.freq_high_hz})")
        return self

    def thresholds(self) -> Thresholds:
        return Thresholds(dip=self.dip, swell=self.swell, interruption=self.interruption, hysteresis=self.hysteresis)

    def frequency_band(self, f_nominal: float) -> tuple[float, float]:
        low = self.freq_low_hz if self.freq_low_hz is not None else 0.99 * f_nominal
        high = self.freq_high_hz if self.freq_high_hz is not None else 1.01 * f_nominal
        return low, high


class Device(_Model):
    name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,39}$", description="used in OPC UA browse paths")
    serial_number: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}$",
        description="as the device announces it in HELLO: letters, digits and . _ : / - (no spaces)",
    )
    unit_id: int = Field(ge=1, le=247, description="Modbus unit ID of this device")
    f_nominal: Literal[50, 60] = 50
    u_nominal: float = Field(230.0, gt=0, le=400)
    circuit_names: dict[Annotated[int, Field(ge=1, le=BOARD_CIRCUITS)], str] = Field(default_factory=dict)
    relays: tuple[RelayPolicy, ...] = ()
    overcurrent_a: float = Field(40.0, gt=0, le=200, description="overcurrent alarm threshold per circuit")
    circuit_overcurrent_a: dict[
        Annotated[int, Field(ge=1, le=BOARD_CIRCUITS)], Annotated[float, Field(gt=0, le=200)]
    ] = Field(default_factory=dict, description="overcurrent threshold of single circuits, overriding overcurrent_a")
    http_token_sha256: str | None = Field(
        None,
        pattern=r"^[0-9a-f]{64}$",
        description="SHA-256 (hex) of the device's HTTP ingest token, for devices without a TLS client certificate "
        "(openstrom-bridge device-token makes one)",
    )
    pq: PowerQualityLimits | None = Field(None, description="this device's limits instead of the bridge's [pq]")
    shard: int | None = Field(
        None, ge=0, description="the replica that serves this device (default: by rendezvous hash of its serial)"
    )

    @field_validator("relays")
    @classmethod
    def _one_policy_per_relay(cls, v: tuple[RelayPolicy, ...]) -> tuple[RelayPolicy, ...]:
        seen = set()
        for k, r in enumerate(v):
            if r.circuit in seen:
                raise ValueError(f"relays[{k}]: circuit {r.circuit} has a policy already")
            seen.add(r.circuit)
        return v

    def policy(self, circuit: int) -> RelayPolicy:
        for r in self.relays:
            if r.circuit == circuit:
                return r
        return RelayPolicy(circuit=circuit)


class Config(_Model):
    bridge: BridgeSection = BridgeSection()
    links: LinksSection = LinksSection()
    modbus: ModbusSection = ModbusSection()
    opcua: OpcUaSection = OpcUaSection()
    metrics: MetricsSection = MetricsSection()
    mqtt: MqttSection = MqttSection()
    shard: ShardSection = ShardSection()
    records: RecordsSection = RecordsSection()
    commands: CommandsSection = CommandsSection()
    analysis: AnalysisSection = AnalysisSection()
    pq: PowerQualityLimits = PowerQualityLimits()
    devices: tuple[Device, ...] = ()

    def listeners(self) -> list[tuple[str, str, int]]:
        """(key, host, port) of every TCP port the bridge would listen on."""
        out: list[tuple[str, str, int]] = []
        if self.links.listen:
            host, _, port = self.links.listen.rpartition(":")
            out.append(("links.listen", host, int(port)))
        if self.links.http_listen:
            host, _, port = self.links.http_listen.rpartition(":")
            out.append(("links.http_listen", host, int(port)))
        if self.modbus.enabled:
            out += [(f"modbus.servers[{k}]", s.host, s.port) for k, s in enumerate(self.modbus.servers)]
        if self.opcua.enabled:
            u = urlsplit(self.opcua.endpoint)
            out.append(("opcua.endpoint", u.hostname or "", u.port or DEFAULT_OPCUA_PORT))
        if self.metrics.enabled:
            host, _, port = self.metrics.listen.rpartition(":")
            out.append(("metrics.listen", host, int(port)))
        return out

    @model_validator(mode="after")
    def _no_port_clash(self) -> Config:
        seen: list[tuple[str, str, int]] = []
        for key, host, port in self.listeners():
            for other, ohost, oport in seen:
                if port == oport and (host == ohost or _WILDCARD & {host, ohost}):
                    raise ValueError(
                        f"{key} port {port} is taken already by {other} ({ohost or '*'}:{oport}): give each "
                        "server its own port (or distinct addresses)"
                    )
            seen.append((key, host, port))
        return self

    @model_validator(mode="after")
    def _rtu_lines(self) -> Config:
        names = {d.name for d in self.devices}
        links = {s.port for s in self.links.serial}
        for k, r in enumerate(self.modbus.rtu):
            if r.port in links:
                raise ValueError(f"modbus.rtu[{k}].port {r.port} is a device link's serial port (links.serial)")
            for unit, name in r.units.items():
                if name not in names:
                    raise ValueError(f"modbus.rtu[{k}].units[{unit}]: no device named {name!r}")
        return self

    @model_validator(mode="after")
    def _shards_exist(self) -> Config:
        count = self.shard.count
        if isinstance(self.shard.ordinal, int) and self.shard.ordinal >= count:
            raise ValueError(f"shard.ordinal {self.shard.ordinal} is not below shard.count {count}")
        for k, d in enumerate(self.devices):
            if d.shard is not None and d.shard >= count:
                raise ValueError(f"devices[{k}].shard {d.shard} is not below shard.count {count}")
        return self

    @model_validator(mode="after")
    def _unique_devices(self) -> Config:
        for attr in ("name", "serial_number", "unit_id"):
            seen: dict[object, int] = {}
            for k, d in enumerate(self.devices):
                value = getattr(d, attr)
                if value in seen:
                    raise ValueError(f"devices[{k}].{attr} {value!r} is already used by devices[{seen[value]}]")
                seen[value] = k
        return self


# ---------------------------------------------------------------------------------------------- loading


def load_config(path: str | Path) -> Config:
    p = Path(path)
    data, lines = read_document(p)
    try:
        return Config.model_validate(data if data is not None else {})
    except ValidationError as exc:
        raise ConfigError(f"{p}: invalid configuration\n" + format_validation(exc, str(p), lines)) from None
