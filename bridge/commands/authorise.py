"""The one authoriser: every action a front, the CLI or the local API can ask for, and the least role
it needs. Fronts map their own identities (OPC UA user, Modbus client, API caller) to a :class:`Role`
and put it in the :class:`Origin`; nothing else decides who may do what."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from bridge.errors import NotAuthorised


class Role(enum.IntEnum):
    VIEWER = 0
    OPERATOR = 1
    ADMIN = 2

    @classmethod
    def named(cls, name: str) -> Role:
        """The role a configuration spells as "viewer", "operator" or "admin"."""
        return cls[name.upper()]

    def __str__(self) -> str:
        return self.name.lower()


class Action(enum.Enum):
    READ = "read"
    SWITCH_RELAY = "switch relay"
    SELECT = "select relay (select-before-operate)"
    SWITCH_AUX = "switch the auxiliary output"
    SELF_TEST = "run a self-test"
    ACKNOWLEDGE_ALARM = "acknowledge or confirm an alarm"
    CALIBRATE = "calibrate a channel"
    MAINTENANCE_LOCK = "set or release a maintenance lock"
    CHANGE_LIMITS = "change alarm limits"
    SET_WIRING = "set a relay's NO/NC wiring"


MINIMUM_ROLE: dict[Action, Role] = {
    Action.READ: Role.VIEWER,
    Action.SWITCH_RELAY: Role.OPERATOR,
    Action.SELECT: Role.OPERATOR,
    Action.SWITCH_AUX: Role.OPERATOR,
    Action.SELF_TEST: Role.OPERATOR,
    Action.ACKNOWLEDGE_ALARM: Role.OPERATOR,
    Action.CALIBRATE: Role.ADMIN,
    Action.MAINTENANCE_LOCK: Role.ADMIN,
    Action.CHANGE_LIMITS: Role.ADMIN,
    Action.SET_WIRING: Role.ADMIN,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Origin:
    """Who asked: the front ("modbus", "opcua", "cli", ...), the user or certificate, the client's
    address, and the role the front's identity maps to."""

    front: str
    user: str = ""
    client: str = ""
    role: Role = Role.VIEWER

    def __str__(self) -> str:
        who = self.user or "anonymous"
        return f"{who} ({self.role}) via {self.front}" + (f" from {self.client}" if self.client else "")


def allowed(origin: Origin, action: Action) -> bool:
    return origin.role >= MINIMUM_ROLE[action]


def authorise(origin: Origin, action: Action) -> None:
    """Raise :class:`NotAuthorised` unless the origin's role is enough for the action.

    >>> authorise(Origin(front="cli", role=Role.OPERATOR), Action.SWITCH_RELAY)
    >>> authorise(Origin(front="opcua", user="eve", role=Role.VIEWER), Action.SWITCH_RELAY)
    Traceback (most recent call last):
    ...
    bridge.errors.NotAuthorised: eve (viewer) via opcua may not switch relay: that needs the operator role
    """
    need = MINIMUM_ROLE[action]
    if origin.role < need:
        raise NotAuthorised(f"{origin} may not {action.value}: that needs the {need} role")
