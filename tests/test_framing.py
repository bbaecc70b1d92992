from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from device.protocol import (
    Ack,
    Connection,
    ConnectionClosed,
    Encoding,
    FrameError,
    FrameReader,
    Heartbeat,
    Hello,
    LocalProtocolError,
    RelayCommand,
    RemoteProtocolError,
    Role,
    Samples,
    State,
    Status,
    pack_frame,
)
from device.protocol.connection import NEED_DATA
from device.protocol.framing import MAX_PAYLOAD, crc16
from tests.strategies import hellos
from tests.strategies import messages as any_message

GOLDEN_ACK = bytes.fromhex(
    "4f53 01 20 01 00 00000007 0000000f"  # magic, v1, ACK, JSON, reserved, frame seq 7, 15-byte payload
    "ca08"  # header CRC-16/CCITT-FALSE
    "7b22626c6f636b5f736571223a357d"  # {"block_seq":5}
    "2503fb26"  # CRC-32 of the payload
)


def test_crc16_check_value() -> None:
    assert crc16(b"123456789") == 0x29B1


def test_golden_ack_frame() -> None:
    assert pack_frame(0x20, 0x01, 7, b'{"block_seq":5}') == GOLDEN_ACK
    r = FrameReader()
    r.feed(GOLDEN_ACK)
    frame = r.next_frame()
    assert frame is not None and not isinstance(frame, FrameError)
    assert (frame.msg_type, frame.seq, frame.payload) == (0x20, 7, b'{"block_seq":5}')


def _events(conn: Connection) -> list[object]:
    out = []
    while (ev := conn.next_event()) is not NEED_DATA:
        out.append(ev)
    return out


def _device_stream(msgs: list[object], **kw: object) -> bytes:
    dev = Connection(Role.DEVICE, **kw)  # type: ignore[arg-type]
    return b"".join(dev.send(m) for m in msgs)  # type: ignore[arg-type]


def _status() -> Status:
    return Status(
        circuit_on=(True,),
        relay_wiring=("NO",),
        relay_operations=(0,),
        aux_on=False,
        fault_codes=(),
        sram_fill_blocks=0,
        sram_capacity_blocks=1,
        dropped_blocks=0,
        uptime_s=0.0,
    )


def _block(seq: int) -> Samples:
    return Samples(
        block_seq=seq,
        t0_ns=seq,
        sample_rate_hz=7812.5,
        circuits=(1, 2),
        v=[[1, 2], [3, 4]],
        i=[[5, 6], [7, 8]],
    )


@given(hellos(), st.sampled_from(list(Encoding)), st.booleans(), st.data())
def test_stream_in_any_cuts_gives_the_same_events(hello, enc, gz, data) -> None:  # type: ignore[no-untyped-def]
    msgs = [hello, _block(1), _status(), _block(2)]
    stream = _device_stream(msgs, encoding=enc, compress=gz)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    br = Connection(Role.BRIDGE)
    got: list[object] = []
    for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        br.receive_data(stream[a:b]) if b > a else None
        got += _events(br)
    assert got == msgs


def test_byte_by_byte_and_trailing_garbage() -> None:
    stream = _device_stream([next_hello(), _block(1)])
    br = Connection(Role.BRIDGE)
    got: list[object] = []
    for k in range(len(stream)):
        br.receive_data(stream[k : k + 1])
        got += _events(br)
    assert [type(e).__name__ for e in got] == ["Hello", "Samples"]
    br.receive_data(b"\x00\x01garbage")
    (err,) = _events(br)
    assert isinstance(err, FrameError) and err.error.code == "garbage"
    assert f"stream offset {len(stream)}" in str(err.error)


def next_hello() -> Hello:
    return Hello(
        serial_number="OS-1",
        part_number="P",
        wifi_mac="w",
        lan_mac="l",
        firmware_version="1",
        protocol_version=1,
        circuit_count=1,
        sample_rate_hz=7812.5,
        v_adc_bits=24,
        i_adc_bits=24,
        v_lsb_volts=(1e-5,),
        i_lsb_amps=(1e-5,),
        sram_capacity_blocks=8,
        next_block_seq=0,
    )


def test_resynchronises_after_garbage_and_crc_errors() -> None:
    good = _device_stream([next_hello(), _block(1), _block(2), _block(3)])
    frames = []
    r = FrameReader()
    r.feed(good)
    while (f := r.next_frame()) is not None:
        frames.append(f)
    hello_len = 16 + len(frames[0].payload) + 4
    b1_len = 16 + len(frames[1].payload) + 4
    corrupt = bytearray(good)
    corrupt[hello_len + 20] ^= 0xFF  # flip a payload byte of block 1
    stream = b"junk" + bytes(corrupt[:hello_len]) + b"OSxx" + bytes(corrupt[hello_len:])
    br = Connection(Role.BRIDGE)
    br.receive_data(stream)
    events = _events(br)
    kinds = [(type(e).__name__, getattr(getattr(e, "error", None), "code", None)) for e in events]
    assert ("Hello", None) in kinds
    assert ("FrameError", "payload-crc") in kinds
    blocks = [e.block_seq for e in events if isinstance(e, Samples)]
    assert blocks == [2, 3]  # block 1 lost to the bit flip, nothing else
    assert b1_len > 0


def test_four_gigabyte_length_is_rejected_not_obeyed() -> None:
    head = struct.pack(">2sBBBBII", b"OS", 1, 0x20, 1, 0, 0, 0xFFFFFFFF)
    frame = head + struct.pack(">H", crc16(head))
    r = FrameReader()
    r.feed(frame + GOLDEN_ACK)
    err = r.next_frame()
    assert isinstance(err, FrameError) and err.error.code == "too-large"
    assert str(MAX_PAYLOAD) in str(err.error)
    ok = r.next_frame()
    assert ok is not None and not isinstance(ok, FrameError) and ok.seq == 7
    assert r.buffered == 0


def test_wrong_version_is_reported() -> None:
    bad = bytearray(GOLDEN_ACK)
    bad[2] = 9
    bad[14:16] = struct.pack(">H", crc16(bytes(bad[:14])))
    r = FrameReader()
    r.feed(bytes(bad))
    err = r.next_frame()
    assert isinstance(err, FrameError) and "version 9" in str(err.error)


def test_truncated_frame_waits_then_eof_closes() -> None:
    br = Connection(Role.BRIDGE)
    stream = _device_stream([next_hello()])
    br.receive_data(stream[:-3])
    assert br.next_event() is NEED_DATA
    br.receive_data(b"")
    assert isinstance(br.next_event(), ConnectionClosed)
    assert br.state is State.CLOSED


def test_samples_before_hello_is_a_state_error() -> None:
    dev_stream = Connection(Role.DEVICE)
    dev_stream.state = State.READY  # a device that skipped HELLO
    br = Connection(Role.BRIDGE)
    br.receive_data(dev_stream.send(_block(1)))
    with pytest.raises(RemoteProtocolError, match="not allowed in state AWAIT_HELLO"):
        br.next_event()
    assert br.state is State.ERROR
    with pytest.raises(LocalProtocolError):
        br.next_event()


def test_serial_bridge_skips_until_hello() -> None:
    dev = Connection(Role.DEVICE)
    dev.state = State.READY
    br = Connection(Role.BRIDGE, skip_before_hello=True)
    br.receive_data(dev.send(_block(1)) + dev.send(next_hello()) + dev.send(_block(2)))
    events = _events(br)
    assert isinstance(events[0], FrameError) and events[0].error.code == "before-hello"
    assert [type(e).__name__ for e in events[1:]] == ["Hello", "Samples"]


def test_direction_is_enforced_both_ways() -> None:
    br = Connection(Role.BRIDGE)
    with pytest.raises(LocalProtocolError, match="cannot send SAMPLES"):
        br.send(_block(1))
    dev = Connection(Role.DEVICE)
    with pytest.raises(LocalProtocolError, match="cannot send RELAY"):
        dev.send(RelayCommand(command_id=1, circuit=1, on=True))
    # a "bridge" that sends ACK to a bridge
    br2 = Connection(Role.BRIDGE)
    other = Connection(Role.BRIDGE)
    other.state = State.READY
    br2.receive_data(other.send(Ack(block_seq=1)))
    with pytest.raises(RemoteProtocolError, match="only a bridge may send"):
        br2.next_event()


def test_heartbeat_before_hello_is_fine_and_frame_gaps_are_counted() -> None:
    dev = Connection(Role.DEVICE)
    frames = [
        dev.send(Heartbeat(unix_time_ns=1)),
        dev.send(next_hello()),
        dev.send(_block(1)),
        dev.send(_block(2)),
    ]
    br = Connection(Role.BRIDGE)
    br.receive_data(frames[0] + frames[1] + frames[3])  # frame 2 lost on the line
    assert [type(e).__name__ for e in _events(br)] == ["Heartbeat", "Hello", "Samples"]
    assert br.rx_frame_gaps == 1


# --- state x event: every pair behaves as docs/protocol.md says, or raises and moves to ERROR ---------

# What the protocol page says, written out here on its own (not the implementation's table): HELLO
# opens a connection and may come again; heartbeats are fine before HELLO; anything else needs HELLO
# first; an ERROR from the peer closes the connection; nothing is read after it closed.
SPEC: dict[tuple[State, str], State | None] = {
    (State.AWAIT_HELLO, "hello"): State.READY,
    (State.AWAIT_HELLO, "heartbeat"): State.AWAIT_HELLO,
    (State.AWAIT_HELLO, "error"): State.CLOSED,
    (State.AWAIT_HELLO, "message"): None,
    (State.READY, "hello"): State.READY,
    (State.READY, "heartbeat"): State.READY,
    (State.READY, "error"): State.CLOSED,
    (State.READY, "message"): State.READY,
    (State.CLOSED, "hello"): None,
    (State.CLOSED, "heartbeat"): None,
    (State.CLOSED, "error"): None,
    (State.CLOSED, "message"): None,
}


@given(st.sampled_from(list(State)), any_message)
def test_every_state_and_incoming_message_is_handled_by_the_table(state: State, msg) -> None:  # type: ignore[no-untyped-def]
    sender = Connection(Role.DEVICE if msg.DIRECTION.value != "bridge->device" else Role.BRIDGE)
    sender.state = State.READY
    receiver = Connection(Role.BRIDGE if sender.role is Role.DEVICE else Role.DEVICE)
    receiver.state = state
    receiver.receive_data(sender.send(msg))
    if state is State.ERROR:
        with pytest.raises(LocalProtocolError):
            receiver.next_event()
        return
    kind = {"Hello": "hello", "Heartbeat": "heartbeat", "ErrorMessage": "error"}.get(type(msg).__name__, "message")
    wrong_way = receiver.role is Role.DEVICE and isinstance(msg, Hello)
    expected = SPEC[(state, kind)]
    if expected is not None and not wrong_way:
        assert receiver.next_event() == msg
        assert receiver.state is expected
    else:
        with pytest.raises(RemoteProtocolError):
            receiver.next_event()
        assert receiver.state is State.ERROR
