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
    seen_count: int = 0  # activations of the model's alarm already reported
    event_ids: set[bytes] = field(default_factory=set)

    @property
    def retained(self) -> bool:
        """Retain: clients must keep showing it (active, or not yet acknowledged)."""
        return self.active or not self.acked

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

    def acknowledge(self, event_id: object) -> Answer:
        if event_id not in self.event_ids:
            return Answer.UNKNOWN_EVENT
        if self.acked:
            return Answer.ALREADY_ACKED
        self.acked = True
        return Answer.OK

    def confirm(self, event_id: object) -> Answer:
        if event_id not in self.event_ids:
            return Answer.UNKNOWN_EVENT
        if not self.acked:
            return Answer.NOT_ACKED
        if self.confirmed:
            return Answer.ALREADY_CONFIRMED
        self.confirmed = True
        return Answer.OK
