"""One exception root for the bridge; every message says what, where, and what to do about it."""

from __future__ import annotations


class BridgeError(Exception):
    """Root of all bridge errors. ``code`` is short and machine-readable."""

    code = "bridge-error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class ConfigError(BridgeError):
    """A configuration or register-map file cannot be used (the message names file, key and line)."""

    code = "config"


class DeviceUnknown(BridgeError):
    code = "device-unknown"


class DeviceOffline(BridgeError):
    code = "device-offline"


class CommandRejected(BridgeError):
    """Refused by validation or policy before anything was sent to the device."""

    code = "rejected"


class NotAuthorised(CommandRejected):
    """The caller's role does not allow the action (the message names both)."""

    code = "role"


class CommandFailed(BridgeError):
    """Sent, but the device refused it, did not answer in time, or its feedback disagrees."""

    code = "failed"


class CommandTimeout(CommandFailed):
    code = "timeout"


class DeviceRefused(CommandFailed):
    """The device answered no (its code and text are in the message): nothing changed."""

    code = "device-refused"


class StoreError(BridgeError):
    code = "store"
