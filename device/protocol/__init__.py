"""OpenStrom wire protocol v1 (sans-IO): framing, messages, encodings and the delta codec.

See docs/protocol.md. Nothing here performs I/O, reads a clock or logs.
"""

from .connection import NEED_DATA, Connection, ConnectionClosed, Event, Role, State
from .delta import EncodedChannel, decode_channels, encode_channels
from .encoding import decode_payload, encode_payload
from .errors import InvalidMessage, LocalProtocolError, ProtocolError, RemoteProtocolError
from .framing import MAX_PAYLOAD, Encoding, Frame, FrameError, FrameReader, pack_frame
from .messages import (
    BOARD_CIRCUITS,
    HELLO_MAX_PAYLOAD,
    MAX_BLOCK_SAMPLES,
    MAX_CIRCUITS,
    PROTOCOL_VERSION,
    Ack,
    AuxCommand,
    Calibrate,
    CommandResult,
    ErrorMessage,
    Fault,
    Heartbeat,
    Hello,
    Message,
    MessageType,
    RelayCommand,
    Samples,
    SelfTestRequest,
    SelfTestResult,
    Status,
    TimeSync,
)

__all__ = [
    "BOARD_CIRCUITS",
    "HELLO_MAX_PAYLOAD",
    "MAX_BLOCK_SAMPLES",
    "MAX_CIRCUITS",
    "MAX_PAYLOAD",
    "NEED_DATA",
    "PROTOCOL_VERSION",
    "Ack",
    "AuxCommand",
    "Calibrate",
    "CommandResult",
    "Connection",
    "ConnectionClosed",
    "EncodedChannel",
    "Encoding",
    "ErrorMessage",
    "Event",
    "Fault",
    "Frame",
    "FrameError",
    "FrameReader",
    "Heartbeat",
    "Hello",
    "InvalidMessage",
    "LocalProtocolError",
    "Message",
    "MessageType",
    "ProtocolError",
    "RelayCommand",
    "RemoteProtocolError",
    "Role",
    "Samples",
    "SelfTestRequest",
    "SelfTestResult",
    "State",
    "Status",
    "TimeSync",
    "decode_channels",
    "decode_payload",
    "encode_channels",
    "encode_payload",
    "pack_frame",
]
