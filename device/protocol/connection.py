"""The sans-IO connection: bytes in, typed events out; typed messages in, bytes out.

Used unchanged by the bridge (role BRIDGE) and the simulator (role DEVICE). It owns no socket, clock or
logger: ``receive_data(data)`` buffers, ``next_event()`` returns a message, a :class:`FrameError`
(a skipped frame; the link stays up), :data:`NEED_DATA` or :class:`ConnectionClosed`; ``send(msg)``
returns the bytes to write.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from .encoding import EncodedSamples, decode_payload, encode_payload
from .errors import LocalProtocolError, RemoteProtocolError
from .framing import MAX_PAYLOAD, Encoding, FrameError, FrameReader, pack_frame
from .messages import Direction, ErrorMessage, Heartbeat, Hello, Message
from .sequence import next_seq


class Role(enum.Enum):
    DEVICE = "device"
    BRIDGE = "bridge"


class State(enum.IntEnum):
    AWAIT_HELLO = 0
    READY = 1
    CLOSED = 2
    ERROR = 3


class _NeedData:
    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA: Final = _NeedData()


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """The peer closed the byte stream (``receive_data(b"")``)."""


Event = Message | EncodedSamples | FrameError | ConnectionClosed | _NeedData

# (state, kind) -> next state; kind is what happened: "hello", "message", "heartbeat", "error", "eof".
# One table for both directions: HELLO opens the connection, anything but heartbeats and errors needs it.
_TRANSITIONS: dict[tuple[State, str], State] = {
    (State.AWAIT_HELLO, "hello"): State.READY,
    (State.AWAIT_HELLO, "heartbeat"): State.AWAIT_HELLO,
    (State.AWAIT_HELLO, "error"): State.CLOSED,
    (State.AWAIT_HELLO, "eof"): State.CLOSED,
    (State.READY, "hello"): State.READY,  # a device may re-announce itself (after a reset, on serial)
    (State.READY, "message"): State.READY,
    (State.READY, "heartbeat"): State.READY,
    (State.READY, "error"): State.CLOSED,
    (State.READY, "eof"): State.CLOSED,
    (State.CLOSED, "eof"): State.CLOSED,
}


def _kind(msg: Message | EncodedSamples | None) -> str:
    if msg is None:
        return "eof"
    if isinstance(msg, Hello):
        return "hello"
    if isinstance(msg, Heartbeat):
        return "heartbeat"
    if isinstance(msg, ErrorMessage):
        return "error"
    return "message"


class Connection:
    def __init__(
        self,
        role: Role,
        *,
        encoding: Encoding = Encoding.BINARY,
        compress: bool = False,
        skip_before_hello: bool = False,
        max_payload_before_hello: int = MAX_PAYLOAD,
        defer_samples: bool = False,
    ) -> None:
        """``skip_before_hello``: on a serial line the bridge may open the port mid-stream; messages
        before the device's next HELLO are then skipped (as FrameError) instead of failing the link.
        ``max_payload_before_hello``: what a peer not yet identified may make the receiver buffer (a
        HELLO needs a few kB); larger frames are refused at their header.
        ``defer_samples``: binary SAMPLES blocks come as ``EncodedSamples``, checked but not decoded,
        for a receiver that holds blocks before it uses their samples."""
        self.role = role
        self.skip_before_hello = skip_before_hello
        self.defer_samples = defer_samples
        self.encoding = encoding
        self.compress = compress
        self.state = State.AWAIT_HELLO
        self.hello: Hello | None = None
        self._reader = FrameReader(max_payload_before_hello)
        self._tx_seq = 0
        self._rx_seq: int | None = None
        self.rx_frames = 0
        self.rx_frame_gaps = 0
        self.rx_bytes = 0
        self._eof = False
        outgoing = Direction.DEVICE_TO_BRIDGE if role is Role.DEVICE else Direction.BRIDGE_TO_DEVICE
        self._tx_dirs = {outgoing, Direction.BOTH}
        incoming = Direction.BRIDGE_TO_DEVICE if role is Role.DEVICE else Direction.DEVICE_TO_BRIDGE
        self._rx_dirs = {incoming, Direction.BOTH}

    def _advance(self, kind: str, *, local: bool, what: str) -> None:
        nxt = _TRANSITIONS.get((self.state, kind))
        if nxt is None:
            old = self.state
            self.state = State.ERROR
            err = LocalProtocolError if local else RemoteProtocolError
            raise err(f"{what} is not allowed in state {old.name}", code="state")
        self.state = nxt

    # ------------------------------------------------------------ sending

    def send(self, msg: Message) -> bytes:
        """Encode one message as a frame; raises LocalProtocolError if it may not be sent now."""
        if msg.DIRECTION not in self._tx_dirs:
            raise LocalProtocolError(f"a {self.role.value} cannot send {msg.TYPE.name}", code="direction")
        if self.role is Role.BRIDGE and isinstance(msg, Hello):
            raise LocalProtocolError("the bridge never sends HELLO", code="direction")
        self._advance(_kind(msg), local=True, what=f"sending {msg.TYPE.name}")
        flags, payload = encode_payload(msg, self.encoding, compress=self.compress)
        data = pack_frame(int(msg.TYPE), flags, self._tx_seq, payload)
        self._tx_seq = next_seq(self._tx_seq)
        return data

    # ------------------------------------------------------------ receiving

    def receive_data(self, data: bytes) -> None:
        """Buffer bytes from the peer; ``b""`` means the peer closed the stream."""
        if not data:
            self._eof = True
            return
        if self._eof:
            raise LocalProtocolError("receive_data after end of stream", code="eof")
        self.rx_bytes += len(data)
        self._reader.feed(data)

    def events(self, data: bytes) -> Iterator[Message | EncodedSamples | FrameError | ConnectionClosed]:
        """The one pump: feed ``data`` and yield every event it completes, ending at NEED_DATA or after
        ConnectionClosed. ``b""`` (end of stream) yields what is left and then ConnectionClosed."""
        self.receive_data(data)
        while True:
            ev = self.next_event()
            if ev is NEED_DATA:
                return
            yield ev  # type: ignore[misc]
            if isinstance(ev, ConnectionClosed):
                return

    def next_event(self) -> Event:
        if self.state is State.ERROR:
            raise LocalProtocolError("connection is in ERROR state; close it", code="state")
        item = self._reader.next_frame()
        if item is None:
            if self._eof and self.state is not State.CLOSED:
                self._advance("eof", local=False, what="end of stream")
                return ConnectionClosed()
            return NEED_DATA
        if isinstance(item, FrameError):
            return item
        self.rx_frames += 1
        if self._rx_seq is not None and item.seq != next_seq(self._rx_seq):
            self.rx_frame_gaps += 1
        self._rx_seq = item.seq
        try:
            msg = decode_payload(item.msg_type, item.flags, item.payload, defer_samples=self.defer_samples)
        except RemoteProtocolError as exc:
            # the frame arrived intact (CRC good) but its content is wrong: skip it, keep the link
            err = RemoteProtocolError(str(exc), code=exc.code, offset=item.offset)
            return FrameError(error=err, skipped_bytes=0)
        if msg.DIRECTION not in self._rx_dirs or (self.role is Role.DEVICE and isinstance(msg, Hello)):
            self.state = State.ERROR
            raise RemoteProtocolError(
                f"peer sent {msg.TYPE.name}, which only a {self.role.value} may send",
                code="direction",
                offset=item.offset,
            )
        if self.skip_before_hello and self.state is State.AWAIT_HELLO and _kind(msg) == "message":
            err = RemoteProtocolError(f"{msg.TYPE.name} before HELLO skipped", code="before-hello", offset=item.offset)
            return FrameError(error=err, skipped_bytes=0)
        self._advance(_kind(msg), local=False, what=f"receiving {msg.TYPE.name} at stream offset {item.offset}")
        if isinstance(msg, Hello):
            self.hello = msg
            self._reader.max_payload = MAX_PAYLOAD
        return msg
