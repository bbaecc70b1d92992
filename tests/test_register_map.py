"""Register encoding: every data type and word order round-trips; limits and markers are right."""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.errors import ConfigError
from bridge.fronts.modbus.register_map import TYPES, Point, decode, encode, parse_map


def point(type_: str, *, sf: int = 0, registers: int | None = None, table: str = "input") -> Point:
    regs = registers or TYPES[type_].registers or 1
    return Point(
        name="p",
        table=table,
        address=0,
        registers=regs,
        type=type_,
        quantity=None,
        value=None,  # type: ignore[arg-type]
        circuit=0,
        sf=sf,
        multiplier=1.0,
        unit="",
        description="",
    )


RANGES = {
    "uint16": (0, 2**16 - 2),
    "int16": (-(2**15) + 1, 2**15 - 1),
    "uint32": (0, 2**32 - 2),
    "int32": (-(2**31) + 1, 2**31 - 1),
    "uint64": (0, 2**64 - 2),
    "acc32": (1, 2**32 - 1),
}


@given(st.sampled_from(sorted(RANGES)), st.data(), st.sampled_from(["big", "little"]))
def test_integers_round_trip_in_both_word_orders(type_: str, data: st.DataObject, order: str) -> None:
    lo, hi = RANGES[type_]
    value = data.draw(st.integers(lo, hi))
    p = point(type_)
    assert decode(p, encode(p, value, order), order) == value


@given(st.floats(width=32, allow_nan=False, allow_infinity=False), st.sampled_from(["big", "little"]))
def test_float32_round_trips(value: float, order: str) -> None:
    p = point("float32")
    assert decode(p, encode(p, value, order), order) == pytest.approx(value, rel=1e-7, abs=1e-38)


def test_word_order_of_the_documented_check_values() -> None:
    f, u = point("float32"), point("uint32")
    assert encode(f, 1234.5678, "big") == [0x449A, 0x522B]
    assert encode(f, 1234.5678, "little") == [0x522B, 0x449A]
    assert encode(u, 0x12345678, "big") == [0x1234, 0x5678]
    assert encode(u, 0x12345678, "little") == [0x5678, 0x1234]


def test_scale_factors_and_not_available_markers() -> None:
    p = point("int16", sf=-2)
    assert encode(p, 8.6957, "big") == [870]
    assert decode(p, [870], "big") == pytest.approx(8.70)
    assert encode(p, None, "big") == [0x8000]  # SunSpec not-implemented
    assert encode(p, 1e9, "big") == [0x8000]  # out of range is "not available", never a wrapped number
    assert encode(point("uint16"), -1, "big") == [0xFFFF]
    assert encode(point("acc32"), None, "big") == [0, 0]
    regs = encode(point("float32"), math.nan, "big")
    assert math.isnan(struct.unpack(">f", struct.pack(">2H", *regs))[0])


def test_strings_pad_and_truncate() -> None:
    p = point("string", registers=4)
    assert encode(p, "OS-1", "big") == [0x4F53, 0x2D31, 0, 0]
    assert decode(p, encode(p, "OS-1234567890", "big"), "big") == "OS-12345"


def test_schema_rejects_bad_maps_with_the_point_named() -> None:
    with pytest.raises(ConfigError, match="cannot live in the coil table"):
        parse_map(
            {
                "name": "m",
                "points": [
                    {"name": "a", "address": 0, "table": "coil", "type": "float32", "quantity": "device.freq_hz"}
                ],
            },
            source="m.yaml",
        )
    with pytest.raises(ConfigError, match=r"circuit quantity 'circuit\.p_w' outside a circuit repeat block"):
        parse_map(
            {"name": "m", "points": [{"name": "a", "address": 0, "type": "float32", "quantity": "circuit.p_w"}]},
            source="m.yaml",
        )
    with pytest.raises(ConfigError, match="used twice"):
        parse_map(
            {
                "name": "m",
                "points": [
                    {"name": "a", "address": 0, "type": "uint16", "value": 1},
                    {"name": "a", "address": 5, "type": "uint16", "value": 1},
                ],
            },
            source="m.yaml",
        )
