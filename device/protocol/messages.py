"""Typed OpenStrom messages: frozen, keyword-only, validated on construction.

Direction is part of each message's definition (``DIRECTION``): the connection refuses to send or accept
a message the wrong way. Sample values travel as raw signed ADC counts; the scale factors to volts and
amperes come once per connection in :class:`Hello` (and may be changed by :class:`Calibrate`).
"""

from __future__ import annotations

import enum
import functools
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from .errors import InvalidMessage

PROTOCOL_VERSION = 1
MAX_CIRCUITS = 16  # what the wire format can carry
BOARD_CIRCUITS = 10  # what an OpenStrom board has: relays, maps and config are sized by it
MAX_BLOCK_SAMPLES = 16384
HELLO_MAX_PAYLOAD = 16384  # a HELLO of 16 circuits is ~2 kB as JSON: what a peer not yet known may send


class MessageType(enum.IntEnum):
    HELLO = 0x01
    SAMPLES = 0x10
    STATUS = 0x11
    SELF_TEST_RESULT = 0x12
    COMMAND_RESULT = 0x13
    ACK = 0x20
    RELAY = 0x21
    AUX = 0x22
    SELF_TEST = 0x23
    CALIBRATE = 0x24
    TIME_SYNC = 0x25
    RELAY_WIRING = 0x26
    HEARTBEAT = 0x30
    ERROR = 0x3F


class Direction(enum.Enum):
    DEVICE_TO_BRIDGE = "device->bridge"
    BRIDGE_TO_DEVICE = "bridge->device"
    BOTH = "both"


def _check(cond: bool, message: str, code: str) -> None:
    if not cond:
        raise InvalidMessage(message, code=code)


def _check_circuit(circuit: int, what: str) -> None:
    _check(1 <= circuit <= MAX_CIRCUITS, f"{what}: circuit {circuit} is outside 1..{MAX_CIRCUITS}", "circuit")


@functools.lru_cache(maxsize=64)
def check_circuit_set(circuits: tuple[int, ...]) -> None:
    """A SAMPLES block's circuit set (cached: a device sends the same set block after block)."""
    _check(len(circuits) >= 1, "SAMPLES carries no circuit", "samples")
    _check(list(circuits) == sorted(set(circuits)), "SAMPLES circuits must ascend", "samples")
    for c in circuits:
        _check_circuit(c, "SAMPLES")


def _check_u32(value: int, what: str) -> None:
    _check(0 <= value <= 0xFFFFFFFF, f"{what}={value} is not an unsigned 32-bit number", "range")


@dataclass(frozen=True, slots=True, kw_only=True)
class Hello:
    """First message of every connection: who the device is and how to scale its samples."""

    TYPE: ClassVar[MessageType] = MessageType.HELLO
    DIRECTION: ClassVar[Direction] = Direction.DEVICE_TO_BRIDGE

    serial_number: str
    part_number: str
    wifi_mac: str
    lan_mac: str
    firmware_version: str
    protocol_version: int
    circuit_count: int
    sample_rate_hz: float
    v_adc_bits: int
    i_adc_bits: int
    v_lsb_volts: tuple[float, ...]
    i_lsb_amps: tuple[float, ...]
    sram_capacity_blocks: int
    next_block_seq: int
    # optional (v1 devices may leave it out): changes whenever the device starts numbering its blocks
    # anew (boot, SRAM lost, board replaced), so the bridge knows a new stream when it sees one
    boot_id: str = field(default="", metadata={"optional": True})

    def __post_init__(self) -> None:
        _check(0 < len(self.serial_number) <= 64, "HELLO serial_number must be 1..64 characters", "hello")
        _check(len(self.boot_id) <= 64, "HELLO boot_id must be at most 64 characters", "hello")
        _check(1 <= self.circuit_count <= MAX_CIRCUITS, f"HELLO circuit_count {self.circuit_count}", "hello")
        _check(500.0 <= self.sample_rate_hz <= 20000.0, f"HELLO sample_rate_hz {self.sample_rate_hz}", "hello")
        _check(8 <= self.v_adc_bits <= 24 and 8 <= self.i_adc_bits <= 24, "HELLO ADC bits outside 8..24", "hello")
        _check(
            len(self.v_lsb_volts) == self.circuit_count and len(self.i_lsb_amps) == self.circuit_count,
            "HELLO needs one v_lsb_volts and one i_lsb_amps per circuit",
            "hello",
        )
        _check(all(s > 0 for s in (*self.v_lsb_volts, *self.i_lsb_amps)), "HELLO LSB scales must be > 0", "hello")
        _check_u32(self.next_block_seq, "HELLO next_block_seq")


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class Samples:
    """One block of simultaneous V and I samples for a set of circuits.

    ``v`` and ``i`` are read-only int64 arrays shaped ``(len(circuits), n)`` in ADC counts; sample k of
    the block was taken at ``t0_ns + k / sample_rate_hz`` seconds (device clock, ns since the epoch).
    ``wire`` is the binary payload a received block was decoded from (None otherwise); it is not
    part of the message's content (encoding ignores it).
    """

    TYPE: ClassVar[MessageType] = MessageType.SAMPLES
    DIRECTION: ClassVar[Direction] = Direction.DEVICE_TO_BRIDGE

    block_seq: int
    t0_ns: int
    sample_rate_hz: float
    circuits: tuple[int, ...]
    v: npt.NDArray[np.int64] = field(repr=False)
    i: npt.NDArray[np.int64] = field(repr=False)
    # the binary payload the block was decoded from, when it was: a receiver that keeps the block a
    # while (an event recorder's ring) keeps these bytes, smaller than the counts, and decodes again
    wire: bytes | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        _check_u32(self.block_seq, "SAMPLES block_seq")
        _check(0 <= self.t0_ns < 2**64, "SAMPLES t0_ns must be an unsigned 64-bit time", "range")
        check_circuit_set(tuple(self.circuits))
        for name in ("v", "i"):
            arr = getattr(self, name)
            if not (isinstance(arr, np.ndarray) and arr.dtype == np.int64 and not arr.flags.writeable):
                arr = np.array(arr, dtype=np.int64)  # private copy: callers keep theirs
            _check(
                arr.ndim == 2 and arr.shape[0] == len(self.circuits) and 1 <= arr.shape[1] <= MAX_BLOCK_SAMPLES,
                f"SAMPLES {name} must be (circuits, 1..{MAX_BLOCK_SAMPLES}), got {arr.shape}",
                "samples",
            )
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)
        _check(self.v.shape == self.i.shape, "SAMPLES v and i differ in shape", "samples")

    @property
    def n(self) -> int:
        return int(self.v.shape[1])

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Samples):
            return NotImplemented
        return (
            (self.block_seq, self.t0_ns, self.sample_rate_hz, self.circuits)
            == (other.block_seq, other.t0_ns, other.sample_rate_hz, other.circuits)
            and np.array_equal(self.v, other.v)
            and np.array_equal(self.i, other.i)
        )

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True, slots=True, kw_only=True)
class Status:
    """Relay, fault and buffer state; sent on change and at least every few seconds."""

    TYPE: ClassVar[MessageType] = MessageType.STATUS
    DIRECTION: ClassVar[Direction] = Direction.DEVICE_TO_BRIDGE

    circuit_on: tuple[bool, ...]
    relay_wiring: tuple[str, ...]
    relay_operations: tuple[int, ...]
    aux_on: bool
    fault_codes: tuple[str, ...]
    sram_fill_blocks: int
    sram_capacity_blocks: int
    dropped_blocks: int
    uptime_s: float

    def __post_init__(self) -> None:
        _check(
            len(self.circuit_on) == len(self.relay_wiring) == len(self.relay_operations),
            "STATUS circuit_on, relay_wiring and relay_operations differ in length",
            "status",
        )
        _check(
            all(w in ("NO", "NC") for w in self.relay_wiring),
            "STATUS relay_wiring must be NO or NC",
            "status",
        )
        _check(0 <= self.sram_fill_blocks <= self.sram_capacity_blocks, "STATUS sram fill > capacity", "status")


@dataclass(frozen=True, slots=True, kw_only=True)
class Fault:
    """One entry of the self-test fault dictionary."""

    code: str
    block: str
    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SelfTestResult:
    TYPE: ClassVar[MessageType] = MessageType.SELF_TEST_RESULT
    DIRECTION: ClassVar[Direction] = Direction.DEVICE_TO_BRIDGE

    command_id: int
    faults: tuple[Fault, ...]

    @property
    def passed(self) -> bool:
        return not self.faults


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandResult:
    """The device's answer to RELAY, AUX, CALIBRATE or TIME_SYNC (``code`` is "ok" on success)."""

    TYPE: ClassVar[MessageType] = MessageType.COMMAND_RESULT
    DIRECTION: ClassVar[Direction] = Direction.DEVICE_TO_BRIDGE

    command_id: int
    ok: bool
    code: str
    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Ack:
    """Every block up to and including ``block_seq`` is durable at the bridge; the device may free it."""

    TYPE: ClassVar[MessageType] = MessageType.ACK
    DIRECTION: ClassVar[Direction] = Direction.BRIDGE_TO_DEVICE

    block_seq: int

    def __post_init__(self) -> None:
        _check_u32(self.block_seq, "ACK block_seq")


@dataclass(frozen=True, slots=True, kw_only=True)
class RelayCommand:
    """Switch one circuit on (energised) or off; the device switches at the next zero crossing."""

    TYPE: ClassVar[MessageType] = MessageType.RELAY
    DIRECTION: ClassVar[Direction] = Direction.BRIDGE_TO_DEVICE

    command_id: int
    circuit: int
    on: bool

    def __post_init__(self) -> None:
        _check_u32(self.command_id, "RELAY command_id")
        _check_circuit(self.circuit, "RELAY")


@dataclass(frozen=True, slots=True, kw_only=True)
class AuxCommand:
    """Switch the ZigBee auxiliary on/off device."""

    TYPE: ClassVar[MessageType] = MessageType.AUX
    DIRECTION: ClassVar[Direction] = Direction.BRIDGE_TO_DEVICE

    command_id: int
    on: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class SelfTestRequest:
    TYPE: ClassVar[MessageType] = MessageType.SELF_TEST
    DIRECTION: ClassVar[Direction] = Direction.BRIDGE_TO_DEVICE

    command_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Calibrate:
    """Replace one channel's scale: volts (or amperes) = (counts - offset_lsb) * lsb."""

    TYPE: ClassVar[MessageType] = MessageType.CALIBRATE
    DIRECTION: ClassVar[Direction] = Direction.BRIDGE_TO_DEVICE

    command_id: int
    circuit: int
    channel: str
    lsb: float
    offset_lsb: float

    def __post_init__(self) -> None:
        _check_circuit(self.circuit, "CALIBRATE")
        _check(self.channel in ("v", "i"), f"CALIBRATE channel {self.channel!r} is not 'v' or 'i'", "calibrate")
        _check(self.lsb > 0, "CALIBRATE lsb must be > 0", "calibrate")


@dataclass(frozen=True, slots=True, kw_only=True)
class RelayWiring:
    """How a relay is wired: "NO" (the load is energised while the coil is) or "NC" (while it is not).
    RELAY's ``on`` always means the load energised; the device drives the coil accordingly, and a
    de-energised board leaves an NC circuit's load on."""

    TYPE: ClassVar[MessageType] = MessageType.RELAY_WIRING
    DIRECTION: ClassVar[Direction] = Direction.BRIDGE_TO_DEVICE

    command_id: int
    circuit: int
    wiring: str

    def __post_init__(self) -> None:
        _check_u32(self.command_id, "RELAY_WIRING command_id")
        _check_circuit(self.circuit, "RELAY_WIRING")
        _check(self.wiring in ("NO", "NC"), f"RELAY_WIRING wiring {self.wiring!r} is not NO or NC", "wiring")


@dataclass(frozen=True, slots=True, kw_only=True)
class TimeSync:
    TYPE: ClassVar[MessageType] = MessageType.TIME_SYNC
    DIRECTION: ClassVar[Direction] = Direction.BRIDGE_TO_DEVICE

    command_id: int
    unix_time_ns: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Heartbeat:
    TYPE: ClassVar[MessageType] = MessageType.HEARTBEAT
    DIRECTION: ClassVar[Direction] = Direction.BOTH

    unix_time_ns: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorMessage:
    """Sent before closing: why the peer is being refused (e.g. ``unknown-device``)."""

    TYPE: ClassVar[MessageType] = MessageType.ERROR
    DIRECTION: ClassVar[Direction] = Direction.BOTH

    code: str
    text: str


Message = (
    Hello
    | Samples
    | Status
    | SelfTestResult
    | CommandResult
    | Ack
    | RelayCommand
    | AuxCommand
    | SelfTestRequest
    | Calibrate
    | TimeSync
    | RelayWiring
    | Heartbeat
    | ErrorMessage
)

MESSAGE_CLASSES: dict[MessageType, type[Any]] = {
    cls.TYPE: cls
    for cls in (
        Hello,
        Samples,
        Status,
        SelfTestResult,
        CommandResult,
        Ack,
        RelayCommand,
        AuxCommand,
        SelfTestRequest,
        Calibrate,
        TimeSync,
        RelayWiring,
        Heartbeat,
        ErrorMessage,
    )
}
