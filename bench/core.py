"""Decode + measure throughput of the core, side by side with a bare numpy kernel, one core.

    make bench            (or: .venv/bin/python bench/core.py [--seconds S])

The bare kernel is the floor of what any Python service could do with the same bytes: frombuffer on
the residuals, cumsum back to samples, and the five window sums (sum v, i, v^2, i^2, v*i). The core
does all of that plus crossings, phasors, harmonics, events, energy and aggregation.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from bridge.core import AnalyzerSettings, StreamAnalyzer
from device.protocol import Encoding, MessageType, Samples, decode_payload, encode_payload
from device.simulator.device import Identity, SimulatedDevice
from device.simulator.scenario import default_scenario

HE, MB = 15, 1.0
FULL_RATE = 10 * 2 * 7812.5  # samples/s of one device


def make_payloads(seconds: float) -> tuple[list[bytes], list[bytes], float, float]:
    """Protocol payloads, and for the bare kernel the same samples as raw int16 second differences."""
    dev = SimulatedDevice(default_scenario(), identity=Identity.for_serial("BENCH"), seed=1)
    blocks = int(seconds * dev.board.fs / dev.board.n)
    payloads, raw = [], []
    for _ in range(blocks):
        block = dev.generate()[0]
        payloads.append(encode_payload(block, Encoding.BINARY)[1])
        x = np.empty((20, block.n), dtype=np.int64)
        x[0::2], x[1::2] = block.v, block.i
        raw.append(np.clip(np.diff(x, n=2, axis=1), -32768, 32767).astype(">i2").tobytes())
    return payloads, raw, dev.v_lsb[0], dev.i_lsb[0]


def run_core(payloads: list[bytes], v_lsb: float, i_lsb: float) -> tuple[float, int]:
    sa = StreamAnalyzer(10, AnalyzerSettings(fs=7812.5, harmonics_every=HE, min_batch_s=MB))
    scale = np.repeat([v_lsb, i_lsb], 10)
    t = time.perf_counter()
    windows = 0
    for p in payloads:
        msg = decode_payload(MessageType.SAMPLES, 0, p)
        assert isinstance(msg, Samples)
        up = sa.feed(msg.v, msg.i, seq=msg.block_seq, scale=scale)
        windows += len(up.windows)
    return time.perf_counter() - t, windows


def run_bare(raw: list[bytes], n: int) -> float:
    """frombuffer + cumsum + the same five sums, on the whole block, 20 channels."""
    t = time.perf_counter()
    acc = np.zeros(5)
    for p in raw:
        d = np.frombuffer(p, dtype=">i2").reshape(20, n - 2).astype(np.int64)
        x = np.cumsum(np.cumsum(d, axis=1), axis=1).astype(np.float64)
        v, i = x[0::2], x[1::2]
        acc += (v.sum(), i.sum(), (v * v).sum(), (i * i).sum(), (v * i).sum())
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=20.0, help="simulated seconds of one device")
    args = ap.parse_args()
    payloads, raw, v_lsb, i_lsb = make_payloads(args.seconds)
    n = 625
    samples = len(payloads) * n * 20
    best_core = best_bare = float("inf")
    for _ in range(7):
        t_core, windows = run_core(payloads, v_lsb, i_lsb)
        t_bare = run_bare(raw, n)
        best_core, best_bare = min(best_core, t_core), min(best_bare, t_bare)
    core_rate, bare_rate = samples / best_core, samples / best_bare
    dev_core, dev_bare = core_rate / FULL_RATE, bare_rate / FULL_RATE
    print(f"input: {args.seconds:.0f} s of one device, {len(payloads)} blocks, {samples:,} samples")
    print(f"core (decode + measure):       {core_rate:14,.0f} samples/s = {dev_core:6.1f} devices/core")
    print(f"bare (frombuffer+cumsum+sums): {bare_rate:14,.0f} samples/s = {dev_bare:6.1f} devices/core")
    print(f"windows measured: {windows}")
    print(f"ratio core/bare: {core_rate / bare_rate:.2f}")


if __name__ == "__main__":
    main()
