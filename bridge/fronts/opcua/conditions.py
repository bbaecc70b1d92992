"""OPC UA Part 9 condition state, as a pure state machine (no asyncua): Active, Acked and Confirmed
per alarm, following the live model's alarm and the operator's Acknowledge / Confirm.

The front fires one event per state change (see ``events.py``); this module decides which changes
happen and whether a client's Acknowledge or Confirm is legal.
"""

from __future__ import annotations

import enum
from collections.abc import Hashable
from dataclasses import dataclass, field

from bridge.model import Alarm


class Answer(enum.Enum):
    """The outcome of an Acknowledge or Confirm (the front maps it to a status code)."""

    OK = "ok"
    UNKNOWN_EVENT = "the event id is not of this condition's current occurrence"
    ALREADY_ACKED = "already acknowledged"
    NOT_ACKED = "not acknowledged yet: acknowledge before confirming"
    ALREADY_CONFIRMED = "already confirmed"
    ALREADY_ENABLED = "already enabled"
    ALREADY_DISABLED = "already disabled"
    DISABLED = "the condition is disabled"


@dataclass(slots=True)
class Condition:
    device: str
    circuit: int  # 0 for a device alarm
    alarm: str
    node: Hashable  # the ConditionId its events carry and Acknowledge / Confirm address
    active: bool = False
    acked: bool = True
    confirmed: bool = True
    message: str = ""
    enabled: bool = True
    comment: str = ""  # the last comment given with Acknowledge, Confirm or AddComment
    user: str = ""  # who gave it (ClientUserId)
    limit_state: str = ""  # an active limit alarm's ExclusiveLimitStateMachine state ("Low", "High" ...)
    seen_count: int = 0  # activations of the model's alarm already reported
    event_ids: set[bytes] = field(default_factory=set)

    @property
    def retained(self) -> bool:
        """Retain: clients must keep showing it (active, or not yet acknowledged); never while disabled."""
        return self.enabled and (self.active or not self.acked)

    @property
    def where(self) -> str:
        return f"{self.device} circuit {self.circuit}" if self.circuit else self.device

    def text(self) -> str:
        state = "active" if self.active else "cleared"
        detail = f": {self.message}" if self.message and self.active else ""
        return f"{self.alarm.replace('_', ' ')} {state} on {self.where}{detail}"

    def edges(self, alarm: Alarm) -> list[bool]:
        """The activity edges to report for the model alarm's state, in order; the front applies each
        with :meth:`set_active` and fires its event before the next. An alarm that became active and
        cleared between two looks is reported as both edges."""
        edges: list[bool] = []
        missed = alarm.count > self.seen_count and not alarm.active and not self.active
        self.seen_count = alarm.count
        if missed:
            edges.append(True)
        if (edges[-1] if edges else self.active) != alarm.active:
            edges.append(alarm.active)
        return edges

    def set_active(self, active: bool, message: str) -> None:
        self.active = active
        self.message = message
        if active:  # a new occurrence needs a new acknowledgement and confirmation
            self.acked = self.confirmed = False
            self.event_ids.clear()

    def fired(self, event_id: bytes) -> None:
        """An event of the current occurrence went out: clients may acknowledge with its id."""
        self.event_ids.add(event_id)

    def _noted(self, comment: str, user: str) -> Answer:
        if comment:
            self.comment = comment
        self.user = user
        return Answer.OK

    def acknowledge(self, event_id: object, comment: str = "", user: str = "") -> Answer:
        if not self.enabled:
            return Answer.DISABLED
        if event_id not in self.event_ids:
            return Answer.UNKNOWN_EVENT
        if self.acked:
            return Answer.ALREADY_ACKED
        self.acked = True
        return self._noted(comment, user)

    def confirm(self, event_id: object, comment: str = "", user: str = "") -> Answer:
        if not self.enabled:
            return Answer.DISABLED
        if event_id not in self.event_ids:
            return Answer.UNKNOWN_EVENT
        if not self.acked:
            return Answer.NOT_ACKED
        if self.confirmed:
            return Answer.ALREADY_CONFIRMED
        self.confirmed = True
        return self._noted(comment, user)

    def add_comment(self, event_id: object, comment: str, user: str = "") -> Answer:
        if not self.enabled:
            return Answer.DISABLED
        if event_id not in self.event_ids:
            return Answer.UNKNOWN_EVENT
        self.comment = comment
        return self._noted(comment, user)

    def set_enabled(self, enabled: bool) -> Answer:
        """Enable or Disable (Part 9): a disabled condition reports once that it is, then nothing
        until it is enabled again, when it reports its current state."""
        if enabled == self.enabled:
            return Answer.ALREADY_ENABLED if enabled else Answer.ALREADY_DISABLED
        self.enabled = enabled
        return Answer.OK
