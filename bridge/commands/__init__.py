"""The one command path: authorise (action -> least role), validate, policy, send through the
session's device port, await acknowledgement and confirming STATUS, audit."""

from .authorise import MINIMUM_ROLE, Action, Origin, Role, allowed, authorise
from .path import CommandPath, RelayOutcome
from .port import DevicePort, DevicePorts, Outcome

__all__ = [
    "MINIMUM_ROLE",
    "Action",
    "CommandPath",
    "DevicePort",
    "DevicePorts",
    "Origin",
    "Outcome",
    "RelayOutcome",
    "Role",
    "allowed",
    "authorise",
]
