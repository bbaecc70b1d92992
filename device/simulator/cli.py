"""``openstrom-device-sim``: a simulated OpenStrom device as its own process."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import secrets
import sys
from pathlib import Path

from device.protocol import SERIAL_BAUDRATE, Encoding

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
    p.add_argument(
        "--baudrate",
        type=int,
        default=SERIAL_BAUDRATE,
        help=f"serial line speed (default {SERIAL_BAUDRATE}, as the bridge's)",
    )
    p.add_argument("--serial-number", default="OS-SIM-0001")
    p.add_argument(
        "--boards",
        type=int,
        default=1,
        metavar="N",
        help="simulate N boards in this process, each with its own link (--connect or --http); serial numbers "
        "count up from --serial-number's trailing digits, seeds from --seed",
    )
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
    if not 1 <= args.boards <= 1000:
        print("openstrom-device-sim: --boards must be 1..1000", file=sys.stderr)
        return 2
    if args.boards > 1 and not (args.connect or args.http):
        print("openstrom-device-sim: --boards above 1 needs --connect or --http (one link per board)", file=sys.stderr)
        return 2
    if args.boards > 1 and args.tls_cert:
        print("openstrom-device-sim: --boards above 1 cannot share one TLS certificate", file=sys.stderr)
        return 2
    try:
        serials = board_serials(args.serial_number, args.boards)
    except ValueError as exc:
        print(f"openstrom-device-sim: {exc}", file=sys.stderr)
        return 2
    runners = [
        Runner(
            SimulatedDevice(
                scenario,
                identity=Identity.for_serial(serial),
                seed=args.seed + k,
                sram_blocks=args.sram_blocks,
                boot_id=secrets.token_hex(8) if args.boot_id is None else args.boot_id,
                first_block=args.first_block,
                clock_jump=tuple(float(x) for x in args.clock_jump.split(":")) if args.clock_jump else None,  # type: ignore[arg-type]
            ),
            speed=args.speed,
            duration_s=args.duration,
            encoding=Encoding[args.encoding.upper()],
            compress=args.gzip,
        )
        for k, serial in enumerate(serials)
    ]
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
    boards = serials[0] if len(serials) == 1 else f"{serials[0]} .. {serials[-1]}"
    log(
        f"device {boards}, scenario '{scenario.name}', {scenario.sample_rate_hz} Hz, "
        f"encoding {args.encoding}{'+gzip' if args.gzip else ''}, speed x{args.speed}"
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_run_all(runners, link))
    return 0


def board_serials(first: str, count: int) -> list[str]:
    """``count`` serial numbers counting up from ``first``'s trailing digits, width kept.

    >>> board_serials("OS-SIM-0009", 3)
    ['OS-SIM-0009', 'OS-SIM-0010', 'OS-SIM-0011']
    """
    if count == 1:
        return [first]
    m = re.search(r"(\d+)$", first)
    if m is None:
        raise ValueError(f"--serial-number {first!r} must end in digits to count boards up from it")
    stem, start = first[: m.start()], int(m.group(1))
    return [f"{stem}{start + k:0{len(m.group(1))}d}" for k in range(count)]


async def _run_all(runners: list[Runner], link: LinkSpec) -> None:
    async with asyncio.TaskGroup() as tg:
        for r in runners:
            tg.create_task(r.run(link))


if __name__ == "__main__":
    sys.exit(main())
