"""Relay switching policy: interlocks, maintenance locks, minimum interval, daily limit and
select-before-operate, checked before anything is sent to the device."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from bridge.config import CommandsSection, Device
from bridge.errors import CommandRejected
from bridge.store import RelayRecord


class SelectBeforeOperate:
    """Relays armed for one operation: (device, circuit) -> (state, deadline, who armed it)."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._armed: dict[tuple[str, int], tuple[bool, float, str]] = {}

    def arm(self, device: str, circuit: int, on: bool, user: str) -> None:
        self._armed[(device, circuit)] = (on, time.monotonic() + self.timeout_s, user)

    def take(self, device: str, circuit: int, on: bool) -> bool:
        """Disarm the relay; True when it was armed for this state and in time."""
        armed = self._armed.pop((device, circuit), None)
        return armed is not None and armed[0] == on and time.monotonic() <= armed[1]


def check_relay_policy(device: Device, circuit: int, rec: RelayRecord, cfg: CommandsSection) -> None:
    """Raise :class:`CommandRejected` (with the rule's code) when a switching is not allowed now.
    Select-before-operate is checked after these (``needs_select``), so an armed relay stays armed
    while another rule refuses."""
    name = device.name
    pol = device.policy(circuit)
    if pol.locked:
        raise CommandRejected(
            f"relay {circuit} of {name} is interlocked in the configuration (relays.locked)", code="interlocked"
        )
    if rec.maintenance_lock:
        raise CommandRejected(
            f"relay {circuit} of {name} is under a maintenance lock; an admin must release it",
            code="maintenance-lock",
        )
    min_interval = pol.min_interval_s if pol.min_interval_s is not None else cfg.min_interval_s
    if rec.switched_at is not None:
        since = time.time() - rec.switched_at
        if since < min_interval:
            raise CommandRejected(
                f"relay {circuit} of {name} switched {since:.1f} s ago; the minimum interval is "
                f"{min_interval:g} s (retry after {min_interval - since:.1f} s)",
                code="min-interval",
            )
    limit = pol.daily_limit if pol.daily_limit is not None else cfg.daily_limit
    today = datetime.now(UTC).date().isoformat()
    if rec.day == today and rec.day_count >= limit:
        raise CommandRejected(
            f"relay {circuit} of {name} reached its daily limit of {limit} switchings", code="daily-limit"
        )


def needs_select(device: Device, circuit: int, cfg: CommandsSection) -> bool:
    pol = device.policy(circuit)
    return pol.select_before_operate if pol.select_before_operate is not None else cfg.select_before_operate


def not_selected(device: Device, circuit: int, cfg: CommandsSection) -> CommandRejected:
    return CommandRejected(
        f"relay {circuit} of {device.name} needs select-before-operate: select the same state "
        f"within {cfg.select_timeout_s:g} s before operating",
        code="not-selected",
    )


def wear_threshold(device: Device, circuit: int, cfg: CommandsSection) -> int:
    pol = device.policy(circuit)
    return pol.wear_alarm_operations or int(cfg.relay_rated_operations * cfg.wear_alarm_share)
