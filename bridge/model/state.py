"""What the live model holds, per device and circuit: the latest consistent snapshot, alarms, relay
states and link health. Plain data; :class:`bridge.model.live.Model` is the only code that changes it.

A window's results replace the device's ``snapshot`` in one assignment, so a reader sees every circuit
of one window or of the next, never a mix.
"""

from __future__ import annotations

import collections
import math
import time
from dataclasses import dataclass, field

from bridge.config import Device, PowerQualityLimits
from bridge.core.aggregate import Aggregate
from device.protocol import BOARD_CIRCUITS, Hello, Status


@dataclass(frozen=True, slots=True, kw_only=True)
class CircuitValues:
    """Measurements of one circuit over one window (SI units; energies in Wh/varh/VAh)."""

    v_rms: float
    i_rms: float
    p_w: float
    q_var: float
    s_va: float
    n_va: float
    pf: float
    dpf: float
    angle_deg: float
    thd_v: float
    thd_i: float
    v_dc: float
    i_dc: float
    clipped: bool
    event: bool
    import_wh: float
    export_wh: float
    q_ind_varh: float
    q_cap_varh: float
    s_vah: float
    urms_half: float
    harmonics_v: tuple[float, ...] = ()
    harmonics_i: tuple[float, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceSnapshot:
    """One window of every circuit. ``time_s`` is the window start on the device clock (Unix s)."""

    number: int
    time_s: float
    duration_s: float
    freq_hz: float
    synced: bool
    circuits: tuple[CircuitValues, ...]
    received_monotonic: float


@dataclass(slots=True)
class Alarm:
    name: str
    active: bool = False
    since_s: float | None = None
    message: str = ""
    count: int = 0  # how often it became active

    last_s: float | None = None  # when it was last raised (active again while active counts too)

    def set(self, active: bool, message: str = "", now_s: float | None = None) -> bool:
        """Returns True when the state changed."""
        now = now_s if now_s is not None else time.time()
        if active:
            self.last_s = now
        if active == self.active:
            if active and message:
                self.message = message
            return False
        self.active = active
        self.since_s = now
        if active:
            self.count += 1
            self.message = message
        return True


@dataclass(frozen=True, slots=True)
class Limits:
    """The alarm limits a device's measurements are checked against: the power-quality limits
    (voltage shares of the declared voltage, frequency band) and each circuit's overcurrent limit."""

    pq: PowerQualityLimits
    overcurrent_a: tuple[float, ...]  # circuit 1 first

    def as_dict(self, f_nominal: float) -> dict[str, object]:
        low, high = self.pq.frequency_band(f_nominal)
        return {
            **self.pq.model_dump(),
            "freq_band_hz": [low, high],
            "overcurrent_a": {str(c): a for c, a in enumerate(self.overcurrent_a, start=1)},
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class VoltageEventRecord:
    """One ended dip, swell or interruption: where, what, when (device clock, Unix s), how long and
    how deep (the residual voltage of a dip or interruption, the peak of a swell)."""

    circuit: int
    kind: str  # "dip", "swell" or "interruption"
    start_s: float
    duration_s: float
    extreme_v: float


EVENT_LOG_SIZE = 16  # the newest voltage events a device keeps for the fronts
EVENT_KINDS = {"dip": 1, "swell": 2, "interruption": 3}  # the code fronts show for a kind (0: none)


CIRCUIT_ALARMS = ("dip", "swell", "interruption", "overcurrent", "clipped", "relay_mismatch", "relay_wear")
DEVICE_ALARMS = ("offline", "sram_loss", "stream_restart", "fault", "frequency")
# raised by a loss and cleared when none followed for bridge.loss_alarm_hold_s
LOSS_ALARMS = ("sram_loss", "stream_restart")


@dataclass(slots=True)
class CircuitState:
    index: int  # 1-based circuit number
    name: str
    relay_on: bool | None = None  # from the device's STATUS
    relay_operations: int = 0  # counted by the bridge, persisted
    maintenance_lock: bool = False  # set by an admin, persisted
    selected: bool | None = None  # select-before-operate: the state armed for the next operation
    dips: int = 0  # persisted: voltage events ever recorded on this circuit, by kind
    swells: int = 0
    interruptions: int = 0
    alarms: dict[str, Alarm] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.alarms = {a: Alarm(a) for a in CIRCUIT_ALARMS}


@dataclass(slots=True)
class LinkHealth:
    connected: bool = False
    peer: str = ""
    transport: str = ""
    connected_since_s: float | None = None
    connected_monotonic: float | None = None
    last_rx_monotonic: float | None = None
    blocks: int = 0
    duplicates: int = 0
    gaps: int = 0
    lost_blocks: int = 0
    frame_errors: int = 0
    acked_seq: int | None = None
    last_counted_monotonic: float | None = None  # when a block was last counted (not just received)
    stream_restarts: int = 0  # the device started numbering anew (persisted)
    sram_dropped_blocks: int = 0  # blocks the device reported dropped from a full SRAM (persisted)
    clock_offset_s: float | None = None  # device clock minus bridge clock, from the freshest recent block
    scale_changes: int = 0  # HELLOs that announced other ADC scales than the one before


@dataclass(frozen=True, slots=True)
class WaveformRecord:
    """A COMTRADE record on disk: ``name`` is the file stem (``.cfg`` and ``.dat`` beside it)."""

    name: str
    trigger_s: float  # device clock
    kind: str  # dip, swell, interruption or manual
    circuit: int  # 0: the whole device
    folder: str


@dataclass(slots=True)
class DeviceState:
    config: Device
    hello: Hello | None = None
    status: Status | None = None
    snapshot: DeviceSnapshot | None = None
    link: LinkHealth = field(default_factory=LinkHealth)
    circuits: list[CircuitState] = field(default_factory=list)
    alarms: dict[str, Alarm] = field(default_factory=dict)
    aux_on: bool | None = None
    last_self_test: list[dict[str, str]] | None = None
    calibration: dict[tuple[int, str], tuple[float, float]] = field(default_factory=dict)  # (gain, offset)
    aggregates: dict[str, Aggregate] = field(default_factory=dict)  # latest "3s", "10min", "15min-demand"
    freq_10s: tuple[float, float] | None = None  # (interval start, Hz): latest Class A 10 s frequency
    relay_rated_operations: int = 100_000  # from commands.relay_rated_operations (the Model sets it)
    events: collections.deque[VoltageEventRecord] = field(
        default_factory=lambda: collections.deque(maxlen=EVENT_LOG_SIZE)
    )  # newest last
    events_total: int = 0  # voltage events ever recorded (persisted with the counters)
    limits: Limits = field(default_factory=lambda: Limits(PowerQualityLimits(), (40.0,) * BOARD_CIRCUITS))
    records: list[WaveformRecord] = field(default_factory=list)  # on disk now, oldest first

    def __post_init__(self) -> None:
        if not self.circuits:
            self.circuits = [
                CircuitState(index=c, name=self.config.circuit_names.get(c, f"Circuit{c:02d}"))
                for c in range(1, BOARD_CIRCUITS + 1)
            ]
        self.alarms = {a: Alarm(a) for a in DEVICE_ALARMS}
        self.alarms["offline"].active = True

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def online(self) -> bool:
        return self.link.connected and not self.alarms["offline"].active

    def data_age_s(self, now_monotonic: float | None = None) -> float:
        if self.snapshot is None:
            return math.inf
        return (now_monotonic if now_monotonic is not None else time.monotonic()) - self.snapshot.received_monotonic
