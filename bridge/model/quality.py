"""The one quality rule: how much a front may trust what the model holds for a device.

Computed once here from the model; each front renders it in its own terms (Modbus exception 0x0B or
NaN plus the quality register, OPC UA status codes, the health endpoint).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .state import CircuitState, DeviceState


class Level(enum.IntEnum):
    GOOD = 0
    UNCERTAIN = 1  # the last usable value: the device was measured, but is offline now
    BAD = 2  # nothing usable: no data has arrived


@dataclass(frozen=True, slots=True)
class Quality:
    level: Level
    reason: str
    offline: bool  # the device is not online (the cause of UNCERTAIN, and of BAD when it never spoke)

    @property
    def good(self) -> bool:
        return self.level is Level.GOOD


def _offline_reason(dev: DeviceState) -> str:
    alarm = dev.alarms["offline"]
    return alarm.message or "link down"


def device_quality(dev: DeviceState) -> Quality:
    """Quality of the device's measurements (its newest snapshot).

    >>> from bridge.config import Device
    >>> device_quality(DeviceState(config=Device(name="d", serial_number="s", unit_id=1))).level.name
    'BAD'
    """
    offline = not dev.online
    if dev.snapshot is None:
        return Quality(Level.BAD, "offline, no data yet" if offline else "waiting for the first window", offline)
    if offline:
        return Quality(Level.UNCERTAIN, f"offline ({_offline_reason(dev)}): last usable value", True)
    return Quality(Level.GOOD, "", False)


def relay_quality(dev: DeviceState, circuit: CircuitState) -> Quality:
    """Quality of a relay's reported state (from the device's STATUS)."""
    offline = not dev.online
    if circuit.relay_on is None:
        return Quality(Level.BAD, "no STATUS from the device yet", offline)
    if offline:
        return Quality(Level.UNCERTAIN, f"offline ({_offline_reason(dev)}): last reported state", True)
    return Quality(Level.GOOD, "", False)
