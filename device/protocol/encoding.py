"""Message <-> payload bytes in the binary, JSON (ECMA-404) and XML encodings, optionally gzip'd.

Sample blocks use the delta codec in all three encodings: the binary encoding carries the residual bytes
as they are, JSON and XML carry them base64-encoded (the seed's "+33 %"). Control messages are small and
rare, so a binary-encoded stream sends them as JSON; the frame flags always say which encoding a payload
uses, so a receiver never guesses.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import functools
import gzip
import json
import struct
import typing
import zlib
from typing import Any, ClassVar
from xml.etree import ElementTree as ET

import numpy as np

from . import delta
from .errors import InvalidMessage, LocalProtocolError, RemoteProtocolError
from .framing import FLAG_GZIP, MAX_PAYLOAD, Encoding
from .messages import (
    MAX_BLOCK_SAMPLES,
    MESSAGE_CLASSES,
    Direction,
    Fault,
    Message,
    MessageType,
    Samples,
    check_circuit_set,
)

_SAMPLES_HEAD = struct.Struct(">IQIHH")  # block_seq, t0_ns, sample rate (mHz), n, circuit mask
_HEAD_I32 = struct.Struct(">i")
_HEADS = {1: _HEAD_I32, 2: struct.Struct(">ii")}


# ---------------------------------------------------------------- samples


def _rate_mhz(rate_hz: float) -> int:
    mhz = round(rate_hz * 1000)
    if mhz / 1000 != rate_hz or not 0 < mhz <= 0xFFFFFFFF:
        raise LocalProtocolError(f"sample rate {rate_hz} Hz is not a whole number of mHz", code="rate")
    return mhz


def _channels_of(msg: Samples) -> list[delta.EncodedChannel]:
    # channel order on the wire: circuit by circuit, V then I
    interleaved = np.empty((2 * len(msg.circuits), msg.n), dtype=np.int64)
    interleaved[0::2] = msg.v
    interleaved[1::2] = msg.i
    return delta.encode_channels(interleaved)


def _samples_from_channels(
    *, block_seq: int, t0_ns: int, rate_hz: float, circuits: tuple[int, ...], n: int, chans: list[Any]
) -> Samples:
    if len(chans) != 2 * len(circuits):
        raise RemoteProtocolError(
            f"SAMPLES block {block_seq} has {len(chans)} channels for {len(circuits)} circuits",
            code="samples",
        )
    values = delta.decode_channels(chans, n)
    return Samples(
        block_seq=block_seq,
        t0_ns=t0_ns,
        sample_rate_hz=rate_hz,
        circuits=circuits,
        v=values[0::2],
        i=values[1::2],
    )


def encode_samples_binary(msg: Samples) -> bytes:
    mask = 0
    for c in msg.circuits:
        mask |= 1 << (c - 1)
    parts = [_SAMPLES_HEAD.pack(msg.block_seq, msg.t0_ns, _rate_mhz(msg.sample_rate_hz), msg.n, mask)]
    for ch in _channels_of(msg):
        parts.append(bytes(((ch.order << 4) | ch.width,)))
        parts.extend(_HEAD_I32.pack(h) for h in ch.heads)
        parts.append(ch.residuals)
    return b"".join(parts)


@functools.lru_cache(maxsize=64)
def _circuits_of(mask: int) -> tuple[int, ...]:
    return tuple(c + 1 for c in range(16) if mask >> c & 1)


@dataclasses.dataclass(frozen=True, slots=True, eq=False)
class EncodedSamples:
    """A binary SAMPLES block that passed every check decoding makes, not yet decoded.

    A receiver that holds blocks a while before it needs their samples (the bridge measures in
    batches of several blocks) keeps these instead: the payload is about half the size of its counts
    even as int32, and a receiver that keeps the payload anyway (an event recorder's ring) holds it
    once. ``decode`` gives the block, once, when its samples are wanted; it cannot fail."""

    TYPE: ClassVar[MessageType] = MessageType.SAMPLES
    DIRECTION: ClassVar[Direction] = Direction.DEVICE_TO_BRIDGE

    block_seq: int
    t0_ns: int
    sample_rate_hz: float
    circuits: tuple[int, ...]
    n: int
    wire: bytes
    groups: dict[tuple[int, int], delta.Group]  # views into ``wire``, checked

    def decode(self) -> Samples:
        values = delta.decode_groups(self.groups, 2 * len(self.circuits), self.n)
        values.setflags(write=False)  # handed over as the message's own (Samples makes no copy of it)
        return Samples(
            block_seq=self.block_seq,
            t0_ns=self.t0_ns,
            sample_rate_hz=self.sample_rate_hz,
            circuits=self.circuits,
            v=values[0::2],
            i=values[1::2],
            wire=self.wire,
        )


def decode_samples_binary(payload: bytes) -> Samples:
    return scan_samples_binary(payload).decode()


def scan_samples_binary(payload: bytes) -> EncodedSamples:
    """Check a binary SAMPLES payload the whole way (header, circuit set, every channel's layout and
    length) without decoding it."""
    # the hot path of the bridge (one call per device every 80 ms): channels are scanned with plain
    # int arithmetic and grouped by layout, so numpy is called per group, not per channel
    payload = bytes(payload)  # the block keeps it: not a view of a buffer that is reused (a no-op for bytes)
    if len(payload) < _SAMPLES_HEAD.size:
        raise RemoteProtocolError(f"SAMPLES payload of {len(payload)} bytes is shorter than its header", code="short")
    block_seq, t0_ns, mhz, n, mask = _SAMPLES_HEAD.unpack_from(payload)
    circuits = _circuits_of(mask)
    channels = 2 * len(circuits)
    if not circuits or n < 1:
        raise RemoteProtocolError(f"SAMPLES block {block_seq} carries no samples", code="samples")
    view = memoryview(payload)
    size = len(payload)
    pos = _SAMPLES_HEAD.size
    groups: dict[tuple[int, int], delta.Group] = {}
    for row in range(channels):
        if pos >= size:
            raise RemoteProtocolError(f"SAMPLES block {block_seq} is truncated at payload byte {pos}", code="short")
        code = payload[pos]
        order, width = code >> 4, code & 0x0F
        if order > delta.MAX_ORDER or width > 4 or order > n:
            raise RemoteProtocolError(
                f"SAMPLES block {block_seq} channel {row} (payload byte {pos}): delta order {order} with residual "
                f"width {width} is not a valid layout for {n} samples (order 0..2, width 0..4 bytes)",
                code="delta-order" if width <= 4 else "delta-width",
            )
        start = pos + 1 + 4 * order
        end = start + width * (n - order)
        if end > size:
            raise RemoteProtocolError(f"SAMPLES block {block_seq} is truncated at payload byte {pos}", code="short")
        g = groups.get((order, width))
        if g is None:
            g = groups[(order, width)] = delta.Group()
        g.rows.append(row)
        if order:
            g.heads.extend(_HEADS[order].unpack_from(payload, pos + 1))
        g.parts.append(view[start:end])
        pos = end
    if pos != size:
        raise RemoteProtocolError(f"SAMPLES block {block_seq} has {size - pos} trailing bytes", code="trailing")
    # what Samples itself checks, so that ``decode`` cannot fail
    if n > MAX_BLOCK_SAMPLES:
        raise RemoteProtocolError(
            f"SAMPLES block {block_seq} carries {n} samples a channel, more than {MAX_BLOCK_SAMPLES}", code="samples"
        )
    check_circuit_set(circuits)
    return EncodedSamples(block_seq, t0_ns, mhz / 1000, circuits, n, payload, groups)


def _samples_tree(msg: Samples) -> dict[str, Any]:
    channels = []
    for k, ch in enumerate(_channels_of(msg)):
        channels.append(
            {
                "c": msg.circuits[k // 2],
                "q": "vi"[k % 2],
                "order": ch.order,
                "heads": list(ch.heads),
                "width": ch.width,
                "d": base64.b64encode(ch.residuals).decode("ascii"),
            }
        )
    _rate_mhz(msg.sample_rate_hz)
    return {
        "block_seq": msg.block_seq,
        "t0_ns": msg.t0_ns,
        "sample_rate_hz": msg.sample_rate_hz,
        "n": msg.n,
        "channels": channels,
    }


def _samples_from_tree(tree: dict[str, Any]) -> Samples:
    try:
        chans = [
            delta.EncodedChannel(
                order=int(ch["order"]),
                heads=tuple(int(h) for h in ch["heads"]),
                width=int(ch["width"]),
                residuals=base64.b64decode(ch["d"], validate=True),
            )
            for ch in tree["channels"]
        ]
        circuits = tuple(int(ch["c"]) for ch in tree["channels"][0::2])
        return _samples_from_channels(
            block_seq=int(tree["block_seq"]),
            t0_ns=int(tree["t0_ns"]),
            rate_hz=float(tree["sample_rate_hz"]),
            circuits=circuits,
            n=int(tree["n"]),
            chans=chans,
        )
    except (KeyError, TypeError, ValueError, binascii.Error) as exc:
        raise RemoteProtocolError(f"SAMPLES block is malformed: {exc!r}", code="samples") from None


# ---------------------------------------------------------------- control messages


def _to_tree(msg: Message) -> dict[str, Any]:
    if isinstance(msg, Samples):
        return _samples_tree(msg)
    tree: dict[str, Any] = {}
    for f in dataclasses.fields(msg):
        value = getattr(msg, f.name)
        if f.metadata.get("optional") and value == f.default:
            continue  # an optional field at its default is left out: the message reads as v1 always did
        if isinstance(value, tuple):
            value = [dataclasses.asdict(v) if isinstance(v, Fault) else v for v in value]
        tree[f.name] = value
    return tree


_HINTS: dict[type[Any], dict[str, Any]] = {}


def _hints(cls: type[Any]) -> dict[str, Any]:
    """A message class's field types, cached (typing.get_type_hints re-evaluates the annotations on
    every call: a status message every second per device made it a visible share of the bridge's CPU)."""
    hints = _HINTS.get(cls)
    if hints is None:
        hints = _HINTS[cls] = typing.get_type_hints(cls)
    return hints


def _coerce(value: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if origin is tuple:
        if not isinstance(value, list):
            raise RemoteProtocolError(f"{where} must be a list, got {type(value).__name__}", code="field-type")
        item_hint = typing.get_args(hint)[0]
        return tuple(_coerce(v, item_hint, f"{where}[{k}]") for k, v in enumerate(value))
    if hint is Fault:
        if not isinstance(value, dict) or set(value) != {"code", "block", "text"}:
            raise RemoteProtocolError(f"{where} must be an object with code, block, text", code="field-type")
        return Fault(**{k: _coerce(value[k], str, f"{where}.{k}") for k in ("code", "block", "text")})
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, bool):
        raise RemoteProtocolError(f"{where} must be an integer, got a boolean", code="field-type")
    if not isinstance(value, hint):
        raise RemoteProtocolError(f"{where} must be {hint.__name__}, got {type(value).__name__}", code="field-type")
    return value


def _from_tree(cls: type[Any], tree: Any) -> Message:
    if cls is Samples:
        if not isinstance(tree, dict):
            raise RemoteProtocolError("SAMPLES payload must be an object", code="samples")
        return _samples_from_tree(tree)
    name = cls.TYPE.name
    if not isinstance(tree, dict):
        raise RemoteProtocolError(f"{name} payload must be an object", code="payload")
    hints = _hints(cls)
    fields = dataclasses.fields(cls)
    names = [f.name for f in fields]
    missing = [f.name for f in fields if f.name not in tree and not f.metadata.get("optional")]
    extra = [k for k in tree if k not in names]
    if missing or extra:
        raise RemoteProtocolError(f"{name} payload: missing {missing}, unexpected {extra}", code="fields")
    try:
        given = [n for n in names if n in tree]
        return typing.cast(Message, cls(**{n: _coerce(tree[n], hints[n], f"{name}.{n}") for n in given}))
    except TypeError as exc:
        raise RemoteProtocolError(f"{name} payload is malformed: {exc}", code="payload") from None


# ---------------------------------------------------------------- XML


def _xml_value(parent: ET.Element, tag: str, value: Any) -> None:
    el = ET.SubElement(parent, tag)
    if isinstance(value, list):
        for item in value:
            _xml_value(el, "item", item)
    elif isinstance(value, dict):
        for k, v in value.items():
            _xml_value(el, k, v)
    elif isinstance(value, bool):
        el.text = "true" if value else "false"
    elif isinstance(value, float):
        el.text = repr(value)
    else:
        el.text = str(value)


def _xml_read(el: ET.Element, hint: Any) -> Any:
    origin = typing.get_origin(hint)
    text = el.text or ""
    if origin in (tuple, list):
        (item_hint, *_) = typing.get_args(hint) or (Any,)
        return [_xml_read(child, item_hint) for child in el]
    if hint is Fault:
        return {child.tag: child.text or "" for child in el}
    if isinstance(hint, dict):  # an explicit structure: {field: hint}
        return {child.tag: _xml_read(child, hint.get(child.tag, str)) for child in el}
    if hint is bool:
        if text not in ("true", "false"):
            raise RemoteProtocolError(f"<{el.tag}> must be true or false, got {text!r}", code="field-type")
        return text == "true"
    try:
        if hint is int:
            return int(text)
        if hint is float:
            return float(text)
    except ValueError:
        raise RemoteProtocolError(f"<{el.tag}> must be a {hint.__name__}, got {text!r}", code="field-type") from None
    return text


_SAMPLES_XML_HINTS: dict[str, Any] = {
    "block_seq": int,
    "t0_ns": int,
    "sample_rate_hz": float,
    "n": int,
    "channels": list[dict[str, Any]],
}
_CHANNEL_XML_HINTS = {"c": int, "q": str, "order": int, "heads": list[int], "width": int, "d": str}


def _encode_xml(msg: Message) -> bytes:
    root = ET.Element("openstrom", {"type": msg.TYPE.name.lower(), "version": "1"})
    for key, value in _to_tree(msg).items():
        _xml_value(root, key, value)
    return bytes(ET.tostring(root, encoding="utf-8", xml_declaration=True))


def _decode_xml(cls: type[Any], payload: bytes) -> Any:
    try:
        root = ET.fromstring(payload)
    except ET.ParseError as exc:
        raise RemoteProtocolError(f"XML payload does not parse: {exc}", code="xml") from None
    expected = cls.TYPE.name.lower()
    if root.tag != "openstrom" or root.get("type") != expected:
        raise RemoteProtocolError(f'XML root must be <openstrom type="{expected}">', code="xml")
    if cls is Samples:
        tree = {}
        for el in root:
            if el.tag == "channels":
                tree["channels"] = [{c.tag: _xml_read(c, _CHANNEL_XML_HINTS.get(c.tag, str)) for c in ch} for ch in el]
            else:
                tree[el.tag] = _xml_read(el, _SAMPLES_XML_HINTS.get(el.tag, str))
        return tree
    hints = _hints(cls)
    return {el.tag: _xml_read(el, hints.get(el.tag, str)) for el in root}


# ---------------------------------------------------------------- entry points


def payload_encoding(msg: Message, encoding: Encoding) -> Encoding:
    """The encoding a message actually travels in: binary exists for SAMPLES only."""
    if encoding is Encoding.BINARY and not isinstance(msg, Samples):
        return Encoding.JSON
    return encoding


def encode_payload(msg: Message, encoding: Encoding, *, compress: bool = False) -> tuple[int, bytes]:
    """Return ``(flags, payload)`` for a message."""
    enc = payload_encoding(msg, encoding)
    if enc is Encoding.BINARY:
        assert isinstance(msg, Samples)
        payload = encode_samples_binary(msg)
    elif enc is Encoding.JSON:
        payload = json.dumps(_to_tree(msg), separators=(",", ":"), allow_nan=False).encode("utf-8")
    else:
        payload = _encode_xml(msg)
    flags = int(enc)
    if compress:
        payload = gzip.compress(payload, compresslevel=6, mtime=0)
        flags |= FLAG_GZIP
    return flags, payload


def gunzip(data: bytes, limit: int = MAX_PAYLOAD, what: str = "payload") -> bytes:
    """Inflate at most ``limit`` bytes: a gzip bomb must not allocate more than one maximal message."""
    d = zlib.decompressobj(wbits=31)
    try:
        out = d.decompress(data, limit)
    except zlib.error as exc:
        raise RemoteProtocolError(f"gzip {what} is corrupt: {exc}", code="gzip") from None
    if d.unconsumed_tail:
        raise RemoteProtocolError(f"gzip {what} inflates beyond {limit} bytes", code="too-large")
    if not d.eof:
        raise RemoteProtocolError(f"gzip {what} is truncated", code="gzip")
    return out


def decode_payload(
    msg_type: int, flags: int, payload: bytes, *, defer_samples: bool = False
) -> Message | EncodedSamples:
    """Decode one frame's payload; every failure is a RemoteProtocolError naming what was wrong.
    ``defer_samples``: a binary SAMPLES block comes checked but not decoded (``EncodedSamples``)."""
    try:
        return _decode_payload(msg_type, flags, payload, defer_samples)
    except InvalidMessage as exc:
        raise RemoteProtocolError(str(exc), code=exc.code) from None


def _decode_payload(msg_type: int, flags: int, payload: bytes, defer_samples: bool) -> Message | EncodedSamples:
    try:
        cls = MESSAGE_CLASSES[MessageType(msg_type)]
    except ValueError:
        raise RemoteProtocolError(f"unknown message type 0x{msg_type:02X}", code="type") from None
    if flags & ~0x07:
        raise RemoteProtocolError(f"reserved flag bits set: 0x{flags:02X}", code="flags")
    if flags & FLAG_GZIP:
        payload = gunzip(payload)
    try:
        enc = Encoding(flags & 0x03)
    except ValueError:
        raise RemoteProtocolError(f"unknown payload encoding {flags & 0x03}", code="encoding") from None
    if enc is Encoding.BINARY:
        if cls is not Samples:
            raise RemoteProtocolError(f"{cls.TYPE.name} has no binary encoding (use JSON)", code="encoding")
        return scan_samples_binary(payload) if defer_samples else decode_samples_binary(payload)
    if enc is Encoding.JSON:
        try:
            tree = json.loads(payload.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise RemoteProtocolError(f"JSON payload does not parse: {exc}", code="json") from None
    else:
        tree = _decode_xml(cls, payload)
    return _from_tree(cls, tree)
