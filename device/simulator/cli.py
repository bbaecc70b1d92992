"""``openstrom-device-sim``: a simulated OpenStrom device as its own process."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import sys
from pathlib import Path

from device.protocol import Encoding

from .device import Identity, SimulatedDevice
from .runner import LinkSpec, Runner, log
from .scenario import ScenarioError, default_scenario, load_scenario


def _hostport(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    try:
        return host or "127.0.0.1", int(port)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="openstrom-device-sim", description=__doc__)
    link = p.add_mutually_exclusive_group(required=True)
    link.add_argument("--connect", type=_hostport, metavar="HOST:PORT", help="dial a bridge (device dials in)")
    link.add_argument("--listen", type=_hostport, metavar="[HOST:]PORT", help="wait for the bridge to dial")
    link.add_argument("--serial", metavar="PATH", help="serial port (e.g. /dev/ttyUSB0 or a pty)")
    link.add_argument("--http", metavar="URL", help="POST packages to a bridge's web-service ingest (.../v1/packages)")
    p.add_argument("--token", help="the device's HTTP ingest token (for --http without a TLS certificate)")
    p.add_argument("--post-interval", type=float, default=0.5, metavar="S", help="seconds between POSTs (--http)")
    p.add_argument("--baudrate", type=int, default=3_000_000)
    p.add_argument("--serial-number", default="OS-SIM-0001")
    p.add_argument("--scenario", metavar="FILE", help="YAML or TOML scenario (default: household board)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--speed", type=float, default=1.0, help="1 = real time; 10 = ten times faster")
    p.add_argument("--duration", type=float, default=None, metavar="S", help="simulated seconds, then exit")
    p.add_argument("--encoding", choices=[e.name.lower() for e in Encoding], default="binary")
    p.add_argument("--gzip", action="store_true", help="gzip every payload")
    p.add_argument("--sram-blocks", type=int, default=4096, help="SRAM buffer size in blocks")
    p.add_argument(
        "--boot-id", default=None, help="announced in HELLO (default: new at every start; '' announces none, as v1)"
    )
    p.add_argument("--first-block", type=int, default=0, help="number of the first block (numbers wrap at 2**32)")
    p.add_argument("--clock-jump", metavar="AT:BY", help="at simulated second AT the clock jumps by BY seconds")
    tls = p.add_argument_group("mutual TLS (files from `openstrom-bridge pki issue-device SERIAL --out DIR`)")
    tls.add_argument("--tls-cert", metavar="FILE", help="the device's certificate (device.crt)")
    tls.add_argument("--tls-key", metavar="FILE", help="the device's private key (device.key)")
    tls.add_argument("--tls-ca", metavar="FILE", help="the bridge's CA certificate (ca.crt)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        scenario = load_scenario(args.scenario) if args.scenario else default_scenario()
    except ScenarioError as exc:
        print(f"openstrom-device-sim: {exc}", file=sys.stderr)
        return 2
    if args.speed <= 0:
        print("openstrom-device-sim: --speed must be > 0", file=sys.stderr)
        return 2
    device = SimulatedDevice(
        scenario,
        identity=Identity.for_serial(args.serial_number),
        seed=args.seed,
        sram_blocks=args.sram_blocks,
        boot_id=secrets.token_hex(8) if args.boot_id is None else args.boot_id,
        first_block=args.first_block,
        clock_jump=tuple(float(x) for x in args.clock_jump.split(":")) if args.clock_jump else None,  # type: ignore[arg-type]
    )
    runner = Runner(
        device,
        speed=args.speed,
        duration_s=args.duration,
        encoding=Encoding[args.encoding.upper()],
        compress=args.gzip,
    )
    tls_files = (args.tls_cert, args.tls_key, args.tls_ca)
    if any(tls_files) and not all(tls_files):
        print("openstrom-device-sim: mutual TLS needs all three of --tls-cert, --tls-key and --tls-ca", file=sys.stderr)
        return 2
    link = LinkSpec(
        connect=args.connect,
        listen=args.listen,
        serial=args.serial,
        http=args.http,
        token=args.token,
        post_interval_s=args.post_interval,
        baudrate=args.baudrate,
        tls=tuple(Path(f) for f in tls_files) if all(tls_files) else None,  # type: ignore[arg-type]
    )
    log(
        f"device {args.serial_number}, scenario '{scenario.name}', {scenario.sample_rate_hz} Hz, "
        f"encoding {args.encoding}{'+gzip' if args.gzip else ''}, speed x{args.speed}"
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(runner.run(link))
    return 0


if __name__ == "__main__":
    sys.exit(main())
