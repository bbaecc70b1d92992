from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from device.protocol import LocalProtocolError, RemoteProtocolError
from device.protocol.delta import EncodedChannel, decode_channel, decode_channels, encode_channels

INT24 = st.integers(-(2**23), 2**23 - 1)


@given(hnp.arrays(np.int64, hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=64), elements=INT24))
def test_round_trip_any_24_bit_block(x: np.ndarray) -> None:
    chans = encode_channels(x)
    assert np.array_equal(decode_channels(chans, x.shape[1]), x)


def test_full_scale_sine_never_overflows_and_uses_second_difference() -> None:
    fs, n = 7812.5, 625
    t = np.arange(n) / fs
    x = np.rint((2**23 - 1) * np.sin(2 * np.pi * 50 * t)).astype(np.int64)[None, :]
    (ch,) = encode_channels(x)
    # first differences reach ~3.4e5 LSB (needs 24 bits); second differences fit 16 bits
    assert np.abs(np.diff(x)).max() > 3.3e5
    assert (ch.order, ch.width) == (2, 2)
    assert np.array_equal(decode_channel(ch, n), x[0])


def test_rail_to_rail_steps_use_four_bytes_exactly() -> None:
    x = np.array([[-(2**23), 2**23 - 1, -(2**23), 2**23 - 1, -(2**23)]])
    (ch,) = encode_channels(x)
    assert np.array_equal(decode_channel(ch, 5), x[0])


def test_switched_off_channel_costs_only_heads() -> None:
    (ch,) = encode_channels(np.full((1, 625), -3))
    assert ch.width == 0 and ch.residuals == b""
    assert np.array_equal(decode_channel(ch, 625), np.full(625, -3))


def test_every_width_decodes_negative_values() -> None:
    for peak in (100, 30000, 8_000_000, 2**31 - 1):
        x = np.array([[0, peak, -peak, peak, 0, -peak]], dtype=np.int64)
        (ch,) = encode_channels(x)
        assert np.array_equal(decode_channel(ch, 6), x[0]), peak


def test_input_must_be_integer_and_two_dimensional() -> None:
    with pytest.raises(LocalProtocolError, match="integer"):
        encode_channels(np.zeros((1, 4)))
    with pytest.raises(LocalProtocolError, match="shaped"):
        encode_channels(np.zeros(4, dtype=np.int64))


def test_residual_byte_count_is_checked() -> None:
    ch = EncodedChannel(order=1, heads=(5,), width=2, residuals=b"\x00\x01\x00")
    with pytest.raises(RemoteProtocolError, match="residual bytes"):
        decode_channel(ch, 3)


def test_bad_order_and_width_are_refused() -> None:
    with pytest.raises(RemoteProtocolError):
        EncodedChannel(order=3, heads=(1, 2, 3), width=1, residuals=b"")
    with pytest.raises(RemoteProtocolError):
        EncodedChannel(order=1, heads=(1,), width=5, residuals=b"")
