"""The small interface through which commands reach a device. The session implements it; the command
path never sees links, runtimes or the model's change methods.

A command reports what happened as an :data:`Outcome`; the session, the model's only writer, records
it in the live model.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Protocol

from bridge.model import DeviceState, Limits
from device.protocol import Message, Status


@dataclass(frozen=True, slots=True)
class RelayFeedback:
    """The device refused a relay command or its STATUS disagrees (mismatch alarm), or it agrees."""

    circuit: int
    mismatch: bool
    text: str = ""


@dataclass(frozen=True, slots=True)
class RelayCounted:
    """A confirmed switching was counted and persisted; the wear alarm follows the new count."""

    circuit: int
    operations: int
    worn: bool
    text: str


@dataclass(frozen=True, slots=True)
class MaintenanceLocked:
    circuit: int
    locked: bool


@dataclass(frozen=True, slots=True)
class Selected:
    circuit: int
    on: bool | None  # None: disarmed


@dataclass(frozen=True, slots=True)
class AuxSwitched:
    on: bool


@dataclass(frozen=True, slots=True)
class SelfTested:
    faults: list[dict[str, str]]


@dataclass(frozen=True, slots=True)
class Calibrated:
    circuit: int
    channel: str
    gain: float  # applied by the bridge
    offset: float
    device_lsb: float | None = None  # the LSB size the device itself now applies (written to it)


@dataclass(frozen=True, slots=True)
class LimitsChanged:
    """An admin changed the alarm limits; the event detector and the alarm rules follow at once."""

    limits: Limits


Outcome = (
    RelayFeedback | RelayCounted | MaintenanceLocked | Selected | AuxSwitched | SelfTested | Calibrated | LimitsChanged
)


class DevicePort(Protocol):
    """One device as the command path sees it."""

    @property
    def name(self) -> str: ...

    @property
    def state(self) -> DeviceState:
        """The device's live state, to read."""
        ...

    def send(self, msg: Message) -> None:
        """Send a message now; DeviceOffline when there is no link."""
        ...

    async def request(self, msg: Message, command_id: int, timeout_s: float) -> Message:
        """Send a command and wait for the answer carrying its ``command_id`` (TimeoutError)."""
        ...

    async def wait_status(self, predicate: Callable[[Status], bool], timeout_s: float) -> Status:
        """Wait for a STATUS for which ``predicate`` holds (TimeoutError)."""
        ...

    def record(self, outcome: Outcome) -> None:
        """Have the session put a command's outcome into the live model."""
        ...


class DevicePorts(Protocol):
    """All devices by name."""

    def port(self, name: str) -> DevicePort | None: ...

    def names(self) -> Collection[str]: ...
