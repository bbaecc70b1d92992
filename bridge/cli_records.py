"""``openstrom-bridge capture``, ``records`` and ``record``: waveforms from a running bridge."""

from __future__ import annotations

import argparse
import json
import struct
import sys
import urllib.error
from pathlib import Path

from .cli_api import EXIT_FAILED, EXIT_OK, EXIT_USAGE, call, exit_code, open_api, unreachable


def _circuits(text: str | None) -> list[int] | None:
    if not text:
        return None
    return [int(c) for c in text.split(",") if c.strip()]


def cmd_capture(args: argparse.Namespace) -> int:
    from .records.capture import CaptureWriter, parse_frame

    try:
        circuits = _circuits(args.circuits)
    except ValueError:
        print(f"openstrom-bridge: --circuits {args.circuits!r}: give numbers, e.g. 1,3", file=sys.stderr)
        return EXIT_USAGE
    body: dict[str, object] = {"device": args.device, "seconds": args.seconds}
    if circuits:
        body["circuits"] = circuits
    out = Path(args.out)
    try:
        with open_api(args, "/api/capture", body, timeout=60) as resp:
            start, end, writer = None, {}, None

            def frames() -> object:
                while True:
                    head = resp.read(4)
                    if len(head) < 4:
                        return
                    (size,) = struct.unpack(">I", head)
                    yield parse_frame(resp.read(size))

            for header, payload in frames():  # type: ignore[attr-defined]
                if header["type"] == "start":
                    start = header
                    writer = CaptureWriter(out, start)
                elif header["type"] == "block" and writer is not None:
                    writer.block(header, payload)
                elif header["type"] == "end":
                    end = header
            if writer is None or start is None:
                print("openstrom-bridge: the capture stream ended before it began", file=sys.stderr)
                return EXIT_FAILED
            writer.finish(end)
            writer.f.close()
    except urllib.error.HTTPError as exc:
        return exit_code(exc)
    except (urllib.error.URLError, OSError) as exc:
        return unreachable(args, exc)
    samples = int(end.get("samples", 0))
    seconds = samples / float(start["sample_rate_hz"])
    print(
        f"captured {seconds:.2f} s of circuits {','.join(map(str, start['circuits']))} of {start['device']} "
        f"({start['serial_number']}) into {out}; {end.get('dropped', 0)} blocks dropped"
    )
    if args.plot:
        from .records.plot import plot_capture

        plot_capture(out, Path(args.plot), float(start.get("f_nominal", 50)))
        print(f"plot: {args.plot}")
    if samples < round(args.seconds * float(start["sample_rate_hz"])):
        print("openstrom-bridge: the device stopped sending before the capture was complete", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def cmd_records(args: argparse.Namespace) -> int:
    if args.json:
        return call(args, "/api/records", {"device": args.device} if args.device else {})
    try:
        with open_api(args, "/api/records", {"device": args.device} if args.device else {}) as resp:
            doc = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exit_code(exc)
    except (urllib.error.URLError, OSError) as exc:
        return unreachable(args, exc)
    for r in doc["records"]:
        where = f"circuit {r['circuit']}" if r["circuit"] else "device"
        print(f"{r['trigger_utc']}  {r['device']:<16} {r['kind']:<12} {where:<11} {r['cfg']}")
    if not doc["records"]:
        print("no waveform records")
    return EXIT_OK


def cmd_record(args: argparse.Namespace) -> int:
    return call(args, "/api/record", {"device": args.device})


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: object) -> None:
    c = sub.add_parser("capture", help="record a device's V and I samples into an HDF5 file (and plot them)")
    c.add_argument("device")
    c.add_argument("--circuits", help="e.g. 1,3 (default: every circuit)")
    c.add_argument("--seconds", type=float, required=True, help="seconds of signal")
    c.add_argument("--out", required=True, metavar="FILE.h5")
    c.add_argument("--plot", metavar="FILE.png", help="also draw waveform, RMS, power and spectrum")
    c.set_defaults(func=cmd_capture)
    r = sub.add_parser("records", help="list the COMTRADE event records")
    r.add_argument("device", nargs="?")
    r.add_argument("--json", action="store_true")
    r.set_defaults(func=cmd_records)
    m = sub.add_parser("record", help="save a COMTRADE record of now (a manual trigger)")
    m.add_argument("device")
    m.set_defaults(func=cmd_record)
    for p in (c, r, m):
        common(p)  # type: ignore[operator]
