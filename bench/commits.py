"""The energy commit of many devices: a transaction each against one for all, side by side.

    .venv/bin/python bench/commits.py [--devices 100] [--rounds 10]

Every `bridge.commit_interval_s` the bridge writes each device's 50 energy registers and its stream
position (SQLite in WAL mode, synchronous=FULL: each transaction waits for the disk). That runs on
the event loop, so its wall time is a stall every client and link sees. Both ways run in turn on one
database file; the medians and their ratio are printed and recorded (commit_ms_*).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from common import save_results

from bridge.store import Progress, Store

REGISTERS = ("import_wh", "export_wh", "q_ind_varh", "q_cap_varh", "s_vah")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--devices", type=int, default=100)
    p.add_argument("--rounds", type=int, default=10)
    args = p.parse_args()
    regs = {(c, r): (1234, 0.5) for c in range(1, 11) for r in REGISTERS}
    names = [f"b{k:03d}" for k in range(args.devices)]
    each, once = [], []
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "bench.sqlite")
        for n in range(args.rounds):
            t = time.perf_counter()
            for k, name in enumerate(names):
                store.commit_energy(name, regs, Progress(2 * n * args.devices + k, 0))
            each.append(time.perf_counter() - t)
            t = time.perf_counter()
            store.commit_energy_many(
                [(name, regs, Progress((2 * n + 1) * args.devices + k, 0)) for k, name in enumerate(names)]
            )
            once.append(time.perf_counter() - t)
        store.close()
    a, b = statistics.median(each), statistics.median(once)
    print(
        f"{args.devices} devices x 50 registers, {args.rounds} rounds in turn: a transaction each "
        f"{1000 * a:.1f} ms (max {1000 * max(each):.1f}), one transaction for all {1000 * b:.1f} ms "
        f"(max {1000 * max(once):.1f}): {a / b:.1f}x less time the event loop is held"
    )
    save_results(
        {
            f"commit_ms_{args.devices}_devices": round(1000 * b, 1),
            f"commit_ms_{args.devices}_devices_one_by_one": round(1000 * a, 1),
        }
    )


if __name__ == "__main__":
    main()
