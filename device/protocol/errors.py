"""One exception root for the wire protocol.

Local errors mean the caller misused the API (sending before HELLO, a message that cannot be encoded);
remote errors mean the peer sent something that does not follow docs/protocol.md. Both carry a short
machine-readable ``code`` and the stream ``offset`` where it applies, so a log line can say exactly
which byte of which link went wrong.
"""

from __future__ import annotations


class ProtocolError(Exception):
    """Root of every error raised by :mod:`device.protocol`."""

    def __init__(self, message: str, *, code: str = "protocol", offset: int | None = None) -> None:
        self.code = code
        self.offset = offset
        where = f" (stream offset {offset})" if offset is not None else ""
        super().__init__(f"{message}{where}")


class LocalProtocolError(ProtocolError):
    """The local side tried something the protocol forbids (a bug in the caller)."""


class RemoteProtocolError(ProtocolError):
    """The peer sent bytes that are not a valid OpenStrom frame or message."""


class InvalidMessage(ProtocolError):
    """A message's fields break its rules (raised on construction, on either side)."""
