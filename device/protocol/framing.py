"""Frame layout, CRCs and a resynchronising frame reader (sans-IO).

    offset size  field
    0      2     magic "OS" (0x4F 0x53)
    2      1     protocol version (1)
    3      1     message type (MessageType)
    4      1     flags: bits 0-1 encoding (0 binary, 1 JSON, 2 XML), bit 2 gzip, others 0
    5      1     reserved, 0
    6      4     frame sequence number, uint32 BE (per sender and connection, +1 per frame)
    10     4     payload length, uint32 BE (<= MAX_PAYLOAD)
    14     2     header CRC: CRC-16/CCITT-FALSE over bytes 0..13
    16     N     payload
    16+N   4     payload CRC: CRC-32 (IEEE, as zlib) over the payload

The header CRC lets a reader reject a corrupt length at once instead of waiting for megabytes that
will never come; after any bad frame the reader slides one byte and hunts for the next magic.
"""

from __future__ import annotations

import binascii
import enum
import struct
import zlib
from dataclasses import dataclass

from .errors import RemoteProtocolError

MAGIC = b"OS"
VERSION = 1
HEADER = struct.Struct(">2sBBBBII")
HEADER_CRC = struct.Struct(">H")
TRAILER = struct.Struct(">I")
HEADER_SIZE = HEADER.size + HEADER_CRC.size  # 16
OVERHEAD = HEADER_SIZE + TRAILER.size  # 20
# The serial link's default line speed, the bridge's and the simulator's alike: the device UART's top
# rate. A full-rate board sends 20 channels x 7812.5 samples/s x 16 bits = 2.5 Mbit/s before delta
# compression, so slower lines suit only boards set to a lower sample rate.
SERIAL_BAUDRATE = 3_000_000
MAX_PAYLOAD = 4 * 1024 * 1024

FLAG_GZIP = 0x04
ENCODING_MASK = 0x03


class Encoding(enum.IntEnum):
    BINARY = 0
    JSON = 1
    XML = 2


def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF); ``crc16(b"123456789") == 0x29B1``."""
    return binascii.crc_hqx(data, 0xFFFF)


@dataclass(frozen=True, slots=True, kw_only=True)
class Frame:
    msg_type: int
    flags: int
    seq: int
    payload: bytes
    offset: int  # stream offset of the frame's first byte

    @property
    def encoding(self) -> int:
        return self.flags & ENCODING_MASK

    @property
    def gzip(self) -> bool:
        return bool(self.flags & FLAG_GZIP)


@dataclass(frozen=True, slots=True, kw_only=True)
class FrameError:
    """A frame (or run of garbage) was skipped; the reader has already resynchronised past it."""

    error: RemoteProtocolError
    skipped_bytes: int


def pack_frame(msg_type: int, flags: int, seq: int, payload: bytes) -> bytes:
    if len(payload) > MAX_PAYLOAD:
        raise RemoteProtocolError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}", code="too-large")
    head = HEADER.pack(MAGIC, VERSION, msg_type, flags, 0, seq & 0xFFFFFFFF, len(payload))
    return b"".join((head, HEADER_CRC.pack(crc16(head)), payload, TRAILER.pack(zlib.crc32(payload) & 0xFFFFFFFF)))


class FrameReader:
    """Feed bytes in any cuts; take whole frames or FrameError events out. Memory stays bounded by
    one maximal frame plus what was fed since the last call."""

    def __init__(self, max_payload: int = MAX_PAYLOAD) -> None:
        self.max_payload = max_payload  # larger frames are refused at their header (bytes never held)
        self._buf = bytearray()
        self._base = 0  # stream offset of _buf[0]
        # bytes the frame at _buf[0] needs, once its header has been checked: a 24 kB block arrives in
        # several reads, and each call before the last would otherwise search and check the header again
        self._need = 0

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> None:
        self._buf += data

    def _drop(self, count: int) -> None:
        del self._buf[:count]
        self._base += count
        self._need = 0

    def _fail(self, skip: int, message: str, code: str) -> FrameError:
        offset = self._base
        self._drop(skip)
        return FrameError(error=RemoteProtocolError(message, code=code, offset=offset), skipped_bytes=skip)

    def next_frame(self) -> Frame | FrameError | None:
        """The next frame, a FrameError for skipped bytes, or None when more data is needed."""
        buf = self._buf
        if len(buf) < self._need:
            return None
        start = buf.find(MAGIC)
        if start != 0:
            # keep a trailing "O" that may be the first half of the next magic
            keep = 1 if start < 0 and buf[-1:] == MAGIC[:1] else 0
            skip = len(buf) - keep if start < 0 else start
            if skip:
                return self._fail(skip, f"skipped {skip} bytes that are not an OpenStrom frame", "garbage")
            return None
        if len(buf) < HEADER_SIZE:
            return None
        head = bytes(buf[: HEADER.size])
        (stored_crc,) = HEADER_CRC.unpack_from(buf, HEADER.size)
        if crc16(head) != stored_crc:
            return self._fail(1, "frame header CRC mismatch", "header-crc")
        _, version, msg_type, flags, _reserved, seq, length = HEADER.unpack(head)
        if version != VERSION:
            return self._fail(
                HEADER_SIZE, f"frame has protocol version {version}, this bridge speaks {VERSION}", "version"
            )
        if length > self.max_payload:
            return self._fail(
                HEADER_SIZE,
                f"frame declares a {length}-byte payload, the limit is {self.max_payload}",
                "too-large",
            )
        total = HEADER_SIZE + length + TRAILER.size
        if len(buf) < total:
            self._need = total
            return None
        payload = bytes(buf[HEADER_SIZE : HEADER_SIZE + length])
        (stored,) = TRAILER.unpack_from(buf, HEADER_SIZE + length)
        if zlib.crc32(payload) & 0xFFFFFFFF != stored:
            return self._fail(1, f"payload CRC mismatch in a type 0x{msg_type:02X} frame", "payload-crc")
        frame = Frame(msg_type=msg_type, flags=flags, seq=seq, payload=payload, offset=self._base)
        self._drop(total)
        return frame
