from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from device.protocol import (
    MAX_PAYLOAD,
    Ack,
    EncodedSamples,
    Encoding,
    Message,
    MessageType,
    RemoteProtocolError,
    Samples,
    decode_payload,
    encode_payload,
)
from tests.strategies import messages


@given(messages, st.sampled_from(list(Encoding)), st.booleans())
def test_every_message_round_trips_in_every_encoding(msg: Message, enc: Encoding, gz: bool) -> None:
    flags, payload = encode_payload(msg, enc, compress=gz)
    assert decode_payload(int(msg.TYPE), flags, payload) == msg


def test_control_messages_travel_as_json_in_a_binary_stream() -> None:
    flags, payload = encode_payload(Ack(block_seq=7), Encoding.BINARY)
    assert flags == Encoding.JSON
    assert json.loads(payload) == {"block_seq": 7}


def _block() -> Samples:
    return Samples(block_seq=1, t0_ns=5, sample_rate_hz=7812.5, circuits=(1,), v=[[1, 2, 3]], i=[[0, 0, 0]])


def test_xml_payload_is_readable() -> None:
    _, payload = encode_payload(_block(), Encoding.XML)
    assert payload.startswith(b"<?xml")
    assert b'<openstrom type="samples" version="1">' in payload


@pytest.mark.parametrize(
    ("payload", "match"),
    [
        (b'{"block_seq": "7"}', "ACK.block_seq must be int"),
        (b'{"block_seq": true}', "must be an integer"),
        (b'{"seq": 7}', "missing"),
        (b"{not json", "JSON payload does not parse"),
        (b'{"block_seq": 4294967296}', "unsigned 32-bit"),
    ],
)
def test_bad_json_fields_name_the_field(payload: bytes, match: str) -> None:
    with pytest.raises(RemoteProtocolError, match=match):
        decode_payload(MessageType.ACK, Encoding.JSON, payload)


def test_truncated_binary_block_is_refused() -> None:
    flags, payload = encode_payload(_block(), Encoding.BINARY)
    for cut in (3, 20, len(payload) - 1):
        with pytest.raises(RemoteProtocolError):
            decode_payload(MessageType.SAMPLES, flags, payload[:cut])
    with pytest.raises(RemoteProtocolError, match="trailing"):
        decode_payload(MessageType.SAMPLES, flags, payload + b"\x00")


def test_gzip_bomb_is_refused_without_inflating_it() -> None:
    bomb = gzip.compress(b" " * (MAX_PAYLOAD + 10))
    with pytest.raises(RemoteProtocolError, match="inflates beyond"):
        decode_payload(MessageType.ACK, Encoding.JSON | 0x04, bomb)


def test_corrupt_gzip_and_unknown_type_are_refused() -> None:
    with pytest.raises(RemoteProtocolError, match="gzip"):
        decode_payload(MessageType.ACK, Encoding.JSON | 0x04, b"\x1f\x8b garbage")
    with pytest.raises(RemoteProtocolError, match="unknown message type 0x7E"):
        decode_payload(0x7E, Encoding.JSON, b"{}")
    with pytest.raises(RemoteProtocolError, match="reserved flag"):
        decode_payload(MessageType.ACK, 0x80, b"{}")


def test_xml_garbage_is_refused() -> None:
    with pytest.raises(RemoteProtocolError, match="XML"):
        decode_payload(MessageType.ACK, Encoding.XML, b"<openstrom type='ack'><block_seq>x</block_seq>")
    with pytest.raises(RemoteProtocolError, match="must be a int"):
        decode_payload(MessageType.ACK, Encoding.XML, b"<openstrom type='ack'><block_seq>x</block_seq></openstrom>")


def test_binary_layout_is_stable() -> None:
    """Golden vector: the binary SAMPLES layout documented in docs/protocol.md."""
    block = Samples(
        block_seq=0x01020304,
        t0_ns=1,
        sample_rate_hz=7812.5,
        circuits=(2,),
        v=[[10, 11, 12, 13]],
        i=[[0, 0, 0, 0]],
    )
    flags, payload = encode_payload(block, Encoding.BINARY)
    assert flags == 0
    assert payload.hex(" ") == (
        "01 02 03 04 "  # block_seq
        "00 00 00 00 00 00 00 01 "  # t0_ns
        "00 77 35 94 "  # 7 812 500 mHz
        "00 04 00 02 "  # n = 4, circuit mask = circuit 2
        "01 0a 0b 0c 0d "  # V: order 0, width 1, raw values (cheaper than heads for 4 samples)
        "00"  # I: order 0, width 0: all zero, no bytes
    )
    sine = Samples(
        block_seq=0,
        t0_ns=0,
        sample_rate_hz=7812.5,
        circuits=(1,),
        v=[[0, 1000, 4000, 9000, 16000, 25000, 36000, 49000]],
        i=[[0] * 8],
    )
    _, payload = encode_payload(sine, Encoding.BINARY)
    # V: order 1, width 2 (18 bytes beat order 2's 20): head 0, then deltas 1000, 3000 ... 13000
    assert payload[20:].hex(" ") == "12 00 00 00 00 03 e8 0b b8 13 88 1b 58 23 28 2a f8 32 c8 00"


def test_block_arrays_are_private_and_read_only() -> None:
    v = np.array([[1, 2, 3]])
    block = Samples(block_seq=1, t0_ns=0, sample_rate_hz=1000.0, circuits=(1,), v=v, i=v)
    v[0, 0] = 99
    assert block.v[0, 0] == 1
    with pytest.raises(ValueError):
        block.v[0, 0] = 5


def test_binary_samples_with_a_bad_layout_name_block_channel_and_byte() -> None:
    block = Samples(block_seq=9, t0_ns=0, sample_rate_hz=7812.5, circuits=(1,), v=[[1, 2, 3]], i=[[0, 0, 0]])
    _, payload = encode_payload(block, Encoding.BINARY)
    bad = bytearray(payload)
    bad[20] = 0x32  # order 3 does not exist
    with pytest.raises(RemoteProtocolError, match=r"block 9 channel 0 \(payload byte 20\): delta order 3") as err:
        decode_payload(MessageType.SAMPLES, Encoding.BINARY, bytes(bad))
    assert err.value.code == "delta-order"
    bad[20] = 0x05  # width 5 does not exist
    with pytest.raises(RemoteProtocolError, match="residual width 5") as err:
        decode_payload(MessageType.SAMPLES, Encoding.BINARY, bytes(bad))
    assert err.value.code == "delta-width"
    with pytest.raises(RemoteProtocolError, match="truncated at payload byte") as err:
        decode_payload(MessageType.SAMPLES, Encoding.BINARY, payload[:-2])
    assert err.value.code == "short"


def _full_block() -> tuple[int, bytes]:
    rng = np.random.default_rng(3)
    v = np.cumsum(rng.integers(-300, 300, (10, 200)), axis=1)
    i = rng.integers(-(2**23), 2**23, (10, 200))  # residuals that need the widest layouts
    return encode_payload(
        Samples(block_seq=7, t0_ns=9, sample_rate_hz=7812.5, circuits=tuple(range(1, 11)), v=v, i=i), Encoding.BINARY
    )


@given(st.lists(st.tuples(st.integers(0, 2**16), st.integers(0, 255)), max_size=4), st.integers(-40, 3))
def test_a_block_held_undecoded_was_checked_as_fully_as_decoding_checks(flips: list[tuple[int, int]], cut: int) -> None:
    """The bridge holds blocks as payloads until it measures them, and acknowledges what it measured:
    a block that passes the check must decode then, and to what decoding it at once gives."""
    flags, payload = _full_block()
    bad = bytearray(payload)
    for pos, byte in flips:
        bad[pos % len(bad)] = byte
    data = bytes(bad[: len(bad) + cut] if cut < 0 else bad + b"\x00" * cut)
    try:
        eager = decode_payload(MessageType.SAMPLES, flags, data)
    except RemoteProtocolError as exc:
        with pytest.raises(RemoteProtocolError) as deferred_error:
            decode_payload(MessageType.SAMPLES, flags, data, defer_samples=True)
        assert deferred_error.value.code == exc.code
        return
    held = decode_payload(MessageType.SAMPLES, flags, data, defer_samples=True)
    assert isinstance(held, EncodedSamples) and isinstance(eager, Samples)
    assert (held.block_seq, held.n, held.circuits) == (eager.block_seq, eager.n, eager.circuits)
    assert held.decode() == eager and held.decode().wire == data


def test_a_held_block_decodes_to_the_block_sent() -> None:
    flags, payload = _full_block()
    held = decode_payload(MessageType.SAMPLES, flags, payload, defer_samples=True)
    assert isinstance(held, EncodedSamples)
    assert held.decode() == decode_payload(MessageType.SAMPLES, flags, payload)
    assert held.decode().i.min() < -(2**22)
