"""Decode + measure throughput of the core, side by side with two bare numpy kernels, one core.

    make bench            (or: .venv/bin/python bench/core.py [--seconds S])

The bare kernel is the floor of what any Python service could do with the same samples: frombuffer on
int16 second differences (every channel in one layout, clipped to 16 bits: cheaper than the real
stream), cumsum back to samples, and the five sums (sum v, i, v^2, i^2, v*i) over each block. The
second bare kernel takes the core's own sums instead (see run_same_sums). The core
decodes the real binary payloads and does crossings, windows, phasors, harmonics, Urms(1/2) events,
energy and aggregation, with the service's default analysis settings (bridge.config.AnalysisSection).
Both run interleaved, several times; the best time of each is kept, and the ratio is what to quote.
Times are CPU time of this process (less disturbed by a busy VM host than wall time), with BLAS held
to one thread as the service holds it (bridge.cli): "per core" means that.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from common import save_results
from threadpoolctl import threadpool_limits

from bridge.config import AnalysisSection
from bridge.core import AnalyzerSettings, StreamAnalyzer
from device.protocol import Encoding, MessageType, Samples, decode_payload, encode_payload
from device.simulator.device import Identity, SimulatedDevice
from device.simulator.scenario import default_scenario

SERVICE = AnalysisSection()
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


def run_decode(payloads: list[bytes]) -> float:
    t = time.process_time()
    for p in payloads:
        decode_payload(MessageType.SAMPLES, 0, p)
    return time.process_time() - t


def run_core(payloads: list[bytes], v_lsb: float, i_lsb: float) -> tuple[float, int]:
    settings = AnalyzerSettings(fs=7812.5, harmonics_every=SERVICE.harmonics_every, min_batch_s=SERVICE.batch_s)
    sa = StreamAnalyzer(10, settings)
    scale = np.repeat([v_lsb, i_lsb], 10)
    t = time.process_time()
    windows = 0
    for p in payloads:
        msg = decode_payload(MessageType.SAMPLES, 0, p)
        assert isinstance(msg, Samples)
        up = sa.feed(msg.v, msg.i, seq=msg.block_seq, scale=scale)
        windows += len(up.windows)
    return time.process_time() - t, windows


def run_measure(msgs: list[Samples], circuits: int, v_lsb: float, i_lsb: float) -> float:
    """Measurement alone (blocks decoded beforehand) on the first ``circuits`` circuits: run with 1
    and with 10, it splits the cost per block into a fixed part (numpy's cost per call, the same for
    any number of circuits) and a part per circuit (the work on the samples)."""
    settings = AnalyzerSettings(fs=7812.5, harmonics_every=SERVICE.harmonics_every, min_batch_s=SERVICE.batch_s)
    sa = StreamAnalyzer(circuits, settings)
    scale = np.repeat([v_lsb, i_lsb], circuits)
    t = time.process_time()
    for m in msgs:
        sa.feed(m.v[:circuits], m.i[:circuits], seq=m.block_seq, scale=scale)
    return time.process_time() - t


def run_bare(raw: list[bytes], n: int) -> float:
    """frombuffer + cumsum + the same five sums, on the whole block, 20 channels."""
    t = time.process_time()
    acc = np.zeros(5)
    for p in raw:
        d = np.frombuffer(p, dtype=">i2").reshape(20, n - 2).astype(np.int64)
        x = np.cumsum(np.cumsum(d, axis=1), axis=1).astype(np.float64)
        v, i = x[0::2], x[1::2]
        acc += (v.sum(), i.sum(), (v * v).sum(), (i * i).sum(), (v * i).sum())
    return time.process_time() - t


def run_same_sums(raw: list[bytes], n: int, v_lsb: float, i_lsb: float) -> float:
    """frombuffer + cumsum + the sums the core takes, block by block while it is in cache: per-cycle
    sums of v, i, v^2, i^2 and v*i between fixed whole-sample cycle edges, per-half-cycle sums of v^2
    (Urms(1/2)), and the fundamental's DFT sums (one product with a precomputed cos/sin basis). What
    it leaves out is what makes the core a meter: finding the zero crossings and cutting at fractional
    edges, the harmonic spectrum, events, energy registers, aggregation, results as objects."""
    m = n - 2  # samples per block in the raw second-difference form
    period = 7812.5 / 50.0
    lsb = np.tile([v_lsb, i_lsb], 10)[:, None]
    starts, halves, bases = [], [], []
    for b in range(5):  # 5 blocks are 20 whole cycles: the edges and the basis repeat
        g = np.arange(b * m, (b + 1) * m)
        starts.append(np.flatnonzero(np.diff(np.floor(g / period), prepend=-1.0)))
        halves.append(np.flatnonzero(np.diff(np.floor(g / (period / 2)), prepend=-1.0)))
        ang = 2 * np.pi * g / period
        bases.append(np.stack((np.cos(ang), np.sin(ang)), axis=1))
    prod = np.empty((50, m))
    t = time.process_time()
    ph = np.zeros((20, 2))
    acc = np.zeros(50)
    for k, p in enumerate(raw):
        d = np.frombuffer(p, dtype=">i2").reshape(20, m).astype(np.int64)
        x = np.cumsum(np.cumsum(d, axis=1), axis=1) * lsb
        prod[:20] = x
        np.multiply(x, x, out=prod[20:40])
        np.multiply(x[0::2], x[1::2], out=prod[40:])
        acc += np.add.reduceat(prod, starts[k % 5], axis=1).sum(axis=1)
        acc[:10] += np.add.reduceat(prod[20:40:2], halves[k % 5], axis=1).sum(axis=1)
        ph += x @ bases[k % 5]
    return time.process_time() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=20.0, help="simulated seconds of one device")
    args = ap.parse_args()
    payloads, raw, v_lsb, i_lsb = make_payloads(args.seconds)
    n = 625
    samples = len(payloads) * n * 20
    msgs = [decode_payload(MessageType.SAMPLES, 0, p) for p in payloads]
    blocks = [m for m in msgs if isinstance(m, Samples)]
    best_core = best_bare = best_dec = best_one = best_ten = best_same = float("inf")
    windows = 0
    for _ in range(7):
        t_core, windows = run_core(payloads, v_lsb, i_lsb)
        t_bare = run_bare(raw, n)
        best_same = min(best_same, run_same_sums(raw, n, v_lsb, i_lsb))
        t_dec = run_decode(payloads)
        best_core, best_bare, best_dec = min(best_core, t_core), min(best_bare, t_bare), min(best_dec, t_dec)
        best_one = min(best_one, run_measure(blocks, 1, v_lsb, i_lsb))
        best_ten = min(best_ten, run_measure(blocks, 10, v_lsb, i_lsb))
    core_rate, bare_rate, dec_rate = samples / best_core, samples / best_bare, samples / best_dec
    same_rate = samples / best_same
    print(f"input: {args.seconds:.0f} s of one device, {len(payloads)} blocks, {samples:,} samples")
    print(
        f"service settings: batch {SERVICE.batch_s} s, spectrum in 1 window of {SERVICE.harmonics_every}, "
        f"{windows} windows measured"
    )
    for name, rate in (
        ("core (decode + measure)", core_rate),
        ("  of which decode alone", dec_rate),
        ("bare, the same sums", same_rate),
        ("bare, five block sums", bare_rate),
    ):
        print(f"{name:30s} {rate:14,.0f} samples/s = {rate / FULL_RATE:7.1f} devices/core")
    per = 1e6 / len(payloads)
    print(
        f"per block: core {best_core * per:.0f} us, decode {best_dec * per:.0f} us, "
        f"bare same sums {best_same * per:.0f} us, bare five sums {best_bare * per:.0f} us"
    )
    one, ten = best_one * per, best_ten * per
    print(
        f"measurement alone per block: {one:.0f} us with 1 circuit, {ten:.0f} us with 10 "
        f"(fixed ~{one - (ten - one) / 9:.0f} us, ~{(ten - one) / 9:.0f} us per circuit)"
    )
    print(
        f"ratio core/bare: {core_rate / same_rate:.2f} against the same sums, "
        f"{core_rate / bare_rate:.2f} against five block sums  (decode alone/five sums: {dec_rate / bare_rate:.2f})"
    )
    save_results({"core_devices_per_core": round(core_rate / FULL_RATE, 1)})  # for the record, not a target


if __name__ == "__main__":
    with threadpool_limits(limits=1, user_api="blas"):
        main()
