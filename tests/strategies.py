"""Hypothesis strategies for every protocol message (shared by several test modules)."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from device.protocol import (
    Ack,
    AuxCommand,
    Calibrate,
    CommandResult,
    ErrorMessage,
    Fault,
    Heartbeat,
    Hello,
    RelayCommand,
    Samples,
    SelfTestRequest,
    SelfTestResult,
    Status,
    TimeSync,
)

u32 = st.integers(0, 2**32 - 1)
text = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=40)
finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
positive = st.floats(min_value=1e-12, max_value=1e6, allow_nan=False)


@st.composite
def samples(draw: st.DrawFn) -> Samples:
    circuits = tuple(sorted(draw(st.sets(st.integers(1, 16), min_size=1, max_size=10))))
    n = draw(st.integers(1, 40))
    shape = (len(circuits), n)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    scale = draw(st.sampled_from([0, 50, 30_000, 2**23 - 1]))
    v = rng.integers(-scale, scale + 1, size=shape) if scale else np.zeros(shape, dtype=np.int64)
    i = np.cumsum(rng.integers(-3, 4, size=shape), axis=1)
    rate = draw(st.integers(500_000, 20_000_000)) / 1000
    return Samples(
        block_seq=draw(u32),
        t0_ns=draw(st.integers(0, 2**64 - 1)),
        sample_rate_hz=rate,
        circuits=circuits,
        v=v,
        i=i,
    )


@st.composite
def hellos(draw: st.DrawFn) -> Hello:
    n = draw(st.integers(1, 16))
    return Hello(
        serial_number=draw(st.text(min_size=1, max_size=20, alphabet="ABCDEFGHJK0123456789-")),
        part_number=draw(text),
        wifi_mac=draw(text),
        lan_mac=draw(text),
        firmware_version=draw(text),
        protocol_version=1,
        circuit_count=n,
        sample_rate_hz=draw(st.floats(500, 20000)),
        v_adc_bits=draw(st.integers(8, 24)),
        i_adc_bits=draw(st.integers(8, 24)),
        v_lsb_volts=tuple(draw(st.lists(positive, min_size=n, max_size=n))),
        i_lsb_amps=tuple(draw(st.lists(positive, min_size=n, max_size=n))),
        sram_capacity_blocks=draw(st.integers(0, 10**6)),
        next_block_seq=draw(u32),
    )


@st.composite
def statuses(draw: st.DrawFn) -> Status:
    n = draw(st.integers(1, 16))
    cap = draw(st.integers(0, 10**6))
    return Status(
        circuit_on=tuple(draw(st.lists(st.booleans(), min_size=n, max_size=n))),
        relay_wiring=tuple(draw(st.lists(st.sampled_from(["NO", "NC"]), min_size=n, max_size=n))),
        relay_operations=tuple(draw(st.lists(st.integers(0, 10**7), min_size=n, max_size=n))),
        aux_on=draw(st.booleans()),
        fault_codes=tuple(draw(st.lists(text, max_size=3))),
        sram_fill_blocks=draw(st.integers(0, cap)),
        sram_capacity_blocks=cap,
        dropped_blocks=draw(st.integers(0, 10**9)),
        uptime_s=draw(st.floats(0, 1e9)),
    )


faults = st.builds(Fault, code=text, block=text, text=text)

messages = st.one_of(
    samples(),
    hellos(),
    statuses(),
    st.builds(SelfTestResult, command_id=u32, faults=st.lists(faults, max_size=4).map(tuple)),
    st.builds(CommandResult, command_id=u32, ok=st.booleans(), code=text, text=text),
    st.builds(Ack, block_seq=u32),
    st.builds(RelayCommand, command_id=u32, circuit=st.integers(1, 16), on=st.booleans()),
    st.builds(AuxCommand, command_id=u32, on=st.booleans()),
    st.builds(SelfTestRequest, command_id=u32),
    st.builds(
        Calibrate,
        command_id=u32,
        circuit=st.integers(1, 16),
        channel=st.sampled_from("vi"),
        lsb=positive,
        offset_lsb=finite,
    ),
    st.builds(TimeSync, command_id=u32, unix_time_ns=st.integers(0, 2**63)),
    st.builds(Heartbeat, unix_time_ns=st.integers(0, 2**63)),
    st.builds(ErrorMessage, code=text, text=text),
)
