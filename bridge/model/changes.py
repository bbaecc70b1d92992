"""The kinds of change the live model announces. Fronts subscribe to the kinds they show and pull the
new state themselves; the notice carries no data, so a slow front never holds a copy of old values."""

from __future__ import annotations

import enum


class Change(enum.Enum):
    """What changed on one device. The table in docs/architecture.md is generated from these docstrings."""

    ADDED = "added"
    """a device was added at run time (auto-accept): fronts build its nodes, then show its values"""
    REMOVED = "removed"
    """a device was removed by a configuration reload: fronts drop its nodes (its link is closed)"""
    CONFIGURED = "configured"
    """a device's configuration changed at a reload (circuit names, unit ID, policies, limits)"""
    IDENTITY = "identity"
    """the device identified itself (HELLO): serial, part number, firmware, sample rate, scales"""
    LINK = "link"
    """its link came up or went down, or it fell silent or spoke again (online / offline)"""
    STATUS = "status"
    """a STATUS arrived (relays, aux output, SRAM fill, fault codes) or the aux output was switched"""
    SNAPSHOT = "snapshot"
    """new measurement windows: values, energies and completed aggregate intervals"""
    ALARM = "alarm"
    """one or more alarms became active or cleared"""
    EVENT = "event"
    """a voltage event (dip, swell, interruption) ended and was counted and stored"""
    RELAY = "relay"
    """relay bookkeeping: operation count, maintenance lock, select-before-operate arming"""
    SELF_TEST = "self_test"
    """a self-test finished; its faults are in `DeviceState.last_self_test`"""
    CALIBRATION = "calibration"
    """a channel's gain or offset changed"""
    RECORD = "record"
    """a waveform record (COMTRADE) was saved or removed by the retention policy"""
    LIMITS = "limits"
    """an admin changed the power-quality limits or a circuit's overcurrent limit at run time"""


ALL_CHANGES = frozenset(Change)
