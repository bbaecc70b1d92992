"""Wire size and codec throughput per encoding, for one full-rate device (10 circuits, 7812.5 Hz).

    .venv/bin/python bench/codec.py [--seconds S]

Prints bytes per second per device for binary / JSON / XML, with and without gzip, next to the raw
24-bit size (3 bytes x 156,250 samples/s), and encode/decode throughput in samples per second.
"""

from __future__ import annotations

import argparse
import time

from device.protocol import Encoding, MessageType, Samples, decode_payload, encode_payload
from device.simulator.device import Identity, SimulatedDevice
from device.simulator.scenario import default_scenario


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args()
    dev = SimulatedDevice(default_scenario(), identity=Identity.for_serial("BENCH"), seed=3)
    blocks: list[Samples] = []
    while dev.sim_time_s < args.seconds:
        blocks.append(dev.generate()[0])
    samples = sum(2 * b.v.size for b in blocks)
    seconds = len(blocks) * blocks[0].n / blocks[0].sample_rate_hz
    raw = samples * 3 / seconds
    print(f"{len(blocks)} blocks, {seconds:.1f} s of one device, {samples / seconds:,.0f} samples/s")
    print(f"{'encoding':<14}{'bytes/s':>12}{'vs raw 24-bit':>15}{'encode S/s':>14}{'decode S/s':>14}")
    print(f"{'raw 24-bit':<14}{raw:>12,.0f}{1.0:>15.2f}")
    for enc in Encoding:
        for gz in (False, True):
            t = time.perf_counter()
            payloads = [encode_payload(b, enc, compress=gz) for b in blocks]
            t_enc = time.perf_counter() - t
            t = time.perf_counter()
            for flags, p in payloads:
                decode_payload(MessageType.SAMPLES, flags, p)
            t_dec = time.perf_counter() - t
            size = sum(len(p) + 20 for _, p in payloads) / seconds  # + frame header and CRC
            name = enc.name.lower() + ("+gzip" if gz else "")
            print(f"{name:<14}{size:>12,.0f}{size / raw:>15.2f}{samples / t_enc:>14,.0f}{samples / t_dec:>14,.0f}")


if __name__ == "__main__":
    main()
