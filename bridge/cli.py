"""``openstrom-bridge``: run, demo, check-config, map export, relay, self-test, hash-password."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import signal
import sys
import tempfile
from pathlib import Path

from threadpoolctl import threadpool_limits

from .cli_api import EXIT_FAILED, EXIT_OK, EXIT_USAGE, call
from .cli_pki import cmd_pki_init, cmd_pki_issue_client, cmd_pki_issue_device
from .cli_records import add_parsers as add_record_parsers
from .cli_status import add_parser as add_status_parser
from .config import (
    DEFAULT_DEVICE_PORT,
    DEFAULT_METRICS_PORT,
    DEFAULT_MODBUS_PORT,
    DEFAULT_OPCUA_PORT,
    DEFAULT_SUNSPEC_PORT,
    Config,
    load_config,
)
from .errors import BridgeError, ConfigError
from .logs import configure_logging

DEMO_SECURE_MODBUS_PORT = 5802  # Modbus/TCP Security's 802 in production; the demo runs unprivileged


def _run_app(
    config: Config,
    base_dir: Path,
    on_ready: object = None,
    shard_ordinal: int | None = None,
    config_path: Path | None = None,
) -> int:
    from .app import BridgeApp

    async def main() -> None:
        app = BridgeApp(config, base_dir=base_dir, shard_ordinal=shard_ordinal, config_path=config_path)
        task = asyncio.create_task(app.run())
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, task.cancel)
        reloads: set[asyncio.Task[object]] = set()

        def reloaded(done: asyncio.Task[object]) -> None:
            reloads.discard(done)
            if not done.cancelled():
                done.exception()  # a refused reload was logged and audited already: retrieve, do not re-raise

        def on_hangup() -> None:  # SIGHUP: reload the configuration
            t: asyncio.Task[object] = asyncio.ensure_future(app.reload())
            reloads.add(t)
            t.add_done_callback(reloaded)

        if config_path is not None:
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(signal.SIGHUP, on_hangup)
        if on_ready is not None:
            ready = asyncio.create_task(app.ready.wait())
            done, _ = await asyncio.wait({task, ready}, return_when=asyncio.FIRST_COMPLETED)
            if ready in done:
                await on_ready(app)  # type: ignore[operator]
        try:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        finally:
            sim = getattr(app, "_demo_sim", None)
            if sim is not None:
                await sim.stop()

    try:
        # The core's matrix products are small (a window's rows x ~1600 samples x a few bins): spread
        # over cores by OpenBLAS they cost twice the CPU in thread hand-offs and take the other core
        # from the event loop and the other devices. One thread each, all of the service's numpy work.
        # (threadpoolctl sees only libraries already loaded: the BridgeApp import above loaded numpy.)
        with threadpool_limits(limits=1, user_api="blas"):
            asyncio.run(main())
    except (BridgeError, OSError, BaseExceptionGroup) as exc:
        for err in _flatten(exc):
            hint = " (is another bridge running on these ports?)" if isinstance(err, OSError) else ""
            print(f"openstrom-bridge: cannot run: {err}{hint}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _flatten(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [e for sub in exc.exceptions for e in _flatten(sub)]
    return [exc]


def cmd_run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    configure_logging(level=config.bridge.log_level, json=args.json_logs)
    path = Path(args.config).resolve()
    return _run_app(config, path.parent, shard_ordinal=args.shard_ordinal, config_path=path)


def cmd_shards(args: argparse.Namespace) -> int:
    from .shard import ShardPlan

    config = load_config(args.file)
    plan = ShardPlan(config, 0)
    table = plan.assignment(config.devices)
    if args.json:
        doc = {str(k): [{"name": d.name, "serial_number": d.serial_number} for d in ds] for k, ds in table.items()}
        print(json.dumps({"count": plan.count, "shards": doc}, indent=2))
        return 0
    for k, ds in table.items():
        print(f"shard {k}: {len(ds)} boards")
        for d in ds:
            how = "shard key" if d.shard is not None else "rendezvous hash"
            print(f"  {d.name:<24} {d.serial_number:<24} ({how})")
    return 0


def _writable(folder: Path) -> str | None:
    """Why the bridge could not keep its state in ``folder``, or None."""
    probe = folder
    while not probe.exists():  # the bridge creates it: its nearest existing parent must let it
        probe = probe.parent
    if not probe.is_dir():
        return f"{probe} is not a folder"
    if not os.access(probe, os.W_OK | os.X_OK):
        return f"{probe} is not writable by this user (uid {os.getuid()})"
    return None


def cmd_check_config(args: argparse.Namespace) -> int:
    from .config import line_of
    from .fronts.modbus.register_map import load_map

    path = Path(args.file)
    config = load_config(path)
    folders = config.modbus.map_folders(path.resolve().parent)
    problems = []
    for k, s in enumerate(config.modbus.servers):
        try:
            m = load_map(s.map, folders)
        except ConfigError as exc:
            problems.append(
                f"{line_of(path, ('modbus', 'servers', str(k), 'map'))}: key 'modbus.servers.{k}.map': {exc}"
            )
            continue
        print(f"modbus  {s.host}:{s.port}  map '{m.name}' ({len(m.points)} points, {m.word_order}-endian)")
    for k, r in enumerate(config.modbus.rtu):
        try:
            m = load_map(r.map, folders)
        except ConfigError as exc:
            problems.append(f"{line_of(path, ('modbus', 'rtu', str(k), 'map'))}: key 'modbus.rtu.{k}.map': {exc}")
            continue
        print(f"rtu     {r.port} {r.baudrate} 8{r.parity}{r.stopbits}  map '{m.name}' ({r.role})")
    state = Path(config.bridge.state_dir)
    state = state if state.is_absolute() else path.resolve().parent / state
    if (why := _writable(state)) is not None:
        problems.append(f"{line_of(path, ('bridge', 'state_dir'))}: key 'bridge.state_dir': {why}")
    if problems:
        raise ConfigError(f"{path}: invalid configuration\n" + "\n".join(problems))
    for d in config.devices:
        print(f"device  {d.name}: serial {d.serial_number}, unit {d.unit_id}, {d.f_nominal} Hz / {d.u_nominal:g} V")
    print(f"{args.file}: OK")
    return EXIT_OK


def cmd_map_export(args: argparse.Namespace) -> int:
    from .fronts.modbus.register_map import export_map, load_map

    sys.stdout.write(export_map(load_map(args.name), args.format))
    return EXIT_OK


def cmd_reload(args: argparse.Namespace) -> int:
    return call(args, "/api/reload", {})


def cmd_relay(args: argparse.Namespace) -> int:
    return call(args, "/api/relay", {"device": args.device, "circuit": args.circuit, "on": args.state == "on"})


def cmd_maintenance_lock(args: argparse.Namespace) -> int:
    return call(
        args, "/api/maintenance-lock", {"device": args.device, "circuit": args.circuit, "locked": args.state == "on"}
    )


def cmd_select(args: argparse.Namespace) -> int:
    return call(args, "/api/select", {"device": args.device, "circuit": args.circuit, "on": args.state == "on"})


def cmd_calibrate(args: argparse.Namespace) -> int:
    body: dict[str, object] = {"device": args.device, "circuit": args.circuit, "windows": args.windows}
    if args.reset:
        body["reset"] = True
    elif args.reference_volts is None or args.reference_amps is None:
        print("openstrom-bridge: give --reference-volts and --reference-amps (or --reset)", file=sys.stderr)
        return EXIT_USAGE
    else:
        body.update(volts=args.reference_volts, amps=args.reference_amps)
    return call(args, "/api/calibrate", body)


_LIMIT_FLAGS = (  # CLI flag -> [pq] key
    ("dip", "dip"),
    ("swell", "swell"),
    ("interruption", "interruption"),
    ("hysteresis", "hysteresis"),
    ("freq_low", "freq_low_hz"),
    ("freq_high", "freq_high_hz"),
)


def cmd_limits(args: argparse.Namespace) -> int:
    body: dict[str, object] = {"device": args.device}
    if args.reset:
        body["reset"] = True
    pq = {key: getattr(args, flag) for flag, key in _LIMIT_FLAGS if getattr(args, flag) is not None}
    overcurrent: dict[str, float] = {}
    for item in args.overcurrent or ():
        circuit, sep, amps = item.partition("=")
        try:
            overcurrent[str(int(circuit))] = float(amps)
        except ValueError:
            sep = ""
        if not sep:
            print(f"openstrom-bridge: --overcurrent {item!r}: give CIRCUIT=AMPS, e.g. 3=16", file=sys.stderr)
            return EXIT_USAGE
    if pq:
        body["pq"] = pq
    if overcurrent:
        body["overcurrent_a"] = overcurrent
    return call(args, "/api/limits", body)


def cmd_self_test(args: argparse.Namespace) -> int:
    return call(args, "/api/self-test", {"device": args.device})


def cmd_device_token(args: argparse.Namespace) -> int:
    """A new HTTP ingest token for a device: the token for the device, its hash for the configuration."""
    from .link.http_ingest import token_hash

    token = secrets.token_urlsafe(32)
    print(f"token for device {args.serial} (give it to the device; it is shown once): {token}")
    print(f'configuration: [[devices]] serial_number = "{args.serial}"  http_token_sha256 = "{token_hash(token)}"')
    return EXIT_OK


def cmd_hash_password(args: argparse.Namespace) -> int:
    from .fronts.opcua.passwords import hash_password

    password = args.password or os.environ.get("OPENSTROM_PASSWORD") or ""
    if not password:
        print("openstrom-bridge: give --password or set OPENSTROM_PASSWORD", file=sys.stderr)
        return EXIT_USAGE
    print(hash_password(password))
    return EXIT_OK


def demo_config(
    state_dir: Path,
    host: str,
    *,
    opcua: bool,
    user_hash: str | None,
    rtu: str | None = None,
    mqtt_url: str | None = None,
) -> Config:
    users = [{"name": "operator", "password_hash": user_hash, "role": "operator"}] if user_hash else []
    # --rtu: the same map as a Modbus RTU slave on that serial device, the serial-line defaults (19200 8E1)
    lines = [{"port": rtu, "map": "openstrom"}] if rtu else []
    # --mqtt: the demo board on a broker as Sparkplug B edge node "demo"; relay DCMDs accepted, as its coils
    mqtt = {"enabled": True, "url": mqtt_url, "edge_node_id": "demo", "command_role": "operator"} if mqtt_url else {}
    return Config.model_validate(
        {
            "bridge": {"name": "OpenStrom Bridge demo", "state_dir": str(state_dir), "log_level": "warning"},
            # the demo's device link is mutual TLS too, as every link beyond loopback must be
            "links": {"listen": f"127.0.0.1:{DEFAULT_DEVICE_PORT}", "tls": "always"},
            "modbus": {
                "servers": [
                    {"map": "openstrom", "host": host, "port": DEFAULT_MODBUS_PORT},
                    {"map": "sunspec", "host": host, "port": DEFAULT_SUNSPEC_PORT},
                    {"map": "openstrom", "host": host, "port": DEMO_SECURE_MODBUS_PORT, "tls": True},
                ],
                "rtu": lines,
            },
            "opcua": {
                "enabled": opcua,
                "endpoint": f"opc.tcp://{host}:{DEFAULT_OPCUA_PORT}/openstrom",
                "users": users,
            },
            "metrics": {"listen": f"{host}:{DEFAULT_METRICS_PORT}"},
            "mqtt": mqtt,
            "commands": {"min_interval_s": 1.0},
            "devices": [{"name": "demo", "serial_number": "OS-SIM-0001", "unit_id": 1}],
        }
    )


def cmd_demo(args: argparse.Namespace) -> int:
    from device.simulator.process import SimulatorProcess

    from .fronts.opcua.passwords import hash_password
    from .pki import init_pki, issue_client, issue_device

    configure_logging(level="warning", json=False)
    state_dir = Path(args.state_dir) if args.state_dir else Path(tempfile.mkdtemp(prefix="openstrom-demo-"))
    password = secrets.token_urlsafe(12)
    config = demo_config(
        state_dir,
        args.host,
        opcua=not args.no_opcua,
        user_hash=hash_password(password),
        rtu=args.rtu,
        mqtt_url=args.mqtt,
    )
    # what a plant makes once with `openstrom-bridge pki ...`: the CA, the device's and an operator's files
    init_pki(state_dir, [args.host] if args.host not in ("0.0.0.0", "") else [])
    dev_crt, dev_key, ca = issue_device(state_dir, "OS-SIM-0001", state_dir / "demo-device")
    op_crt, op_key, op_ca = issue_client(state_dir, "operator", "operator", state_dir / "clients")
    sim_args = [
        "--connect",
        f"127.0.0.1:{DEFAULT_DEVICE_PORT}",
        "--serial-number",
        "OS-SIM-0001",
        "--speed",
        str(args.speed),
        *("--tls-cert", str(dev_crt), "--tls-key", str(dev_key), "--tls-ca", str(ca)),
    ]
    if args.scenario:
        sim_args += ["--scenario", args.scenario]

    async def started(app: object) -> None:
        sim = SimulatorProcess(sim_args)
        await sim.start()
        host = "127.0.0.1" if args.host in ("0.0.0.0", "") else args.host
        lines = [
            "",
            "OpenStrom Bridge demo is running with one simulated device (serial OS-SIM-0001).",
            f"  Modbus TCP  {host}:{DEFAULT_MODBUS_PORT}  map 'openstrom', unit 1  "
            f"(circuit 1 voltage: input registers 1000-1001, float32 big-endian)",
            f"  Modbus TCP  {host}:{DEFAULT_SUNSPEC_PORT}  map 'sunspec', unit 1  (SunSpec 'SunS' at holding 40000)",
            "               plain Modbus: reads from anywhere it listens, writes (relays) from this machine only",
            *(
                [f"  Modbus RTU  {args.rtu}  19200 8E1, map 'openstrom', unit 1 (read only: a line has no login)"]
                if args.rtu
                else []
            ),
            *([f"  Sparkplug B {args.mqtt}  spBv1.0/OpenStrom/+/demo (relay DCMDs accepted)"] if args.mqtt else []),
            f"  Modbus/TCP Security  {host}:{DEMO_SECURE_MODBUS_PORT}  map 'openstrom', mutual TLS; operator files:",
            f"               certificate {op_crt}  key {op_key}  CA {op_ca}",
        ]
        if not args.no_opcua:
            lines.append(
                f"  OPC UA      opc.tcp://{host}:{DEFAULT_OPCUA_PORT}/openstrom  (Basic256Sha256, Sign & Encrypt)"
            )
            lines.append(f"  user: operator password: {password}")
        lines += [
            f"  health      http://{host}:{DEFAULT_METRICS_PORT}/health   metrics: /metrics",
            f"  device link 127.0.0.1:{DEFAULT_DEVICE_PORT}, mutual TLS (CA in {state_dir / 'link-pki'})",
            "  relays from the CLI: openstrom-bridge relay demo 1 off  (it reads the control API token itself)",
            "Press Ctrl+C to stop.",
            "",
        ]
        print("\n".join(lines), flush=True)
        app._demo_sim = sim  # type: ignore[attr-defined]

    return _run_app(config, state_dir, started)


def _api_options(s: argparse.ArgumentParser) -> None:
    s.add_argument("--api", default=f"127.0.0.1:{DEFAULT_METRICS_PORT}", help="the bridge's HTTP port")
    s.add_argument("--config", help="the bridge's configuration: its state_dir holds the API token")
    s.add_argument("--token-file", help="the API token file (default: found by --config or the API port)")
    s.set_defaults(state_dir=None)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="openstrom-bridge", description="OpenStrom devices to Modbus TCP and OPC UA")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="run the bridge with a configuration file")
    r.add_argument("--config", required=True, help="TOML or YAML configuration")
    r.add_argument("--json-logs", action="store_true", default=None, help="JSON log lines even on a terminal")
    r.add_argument("--shard-ordinal", type=int, metavar="N", help="this replica's shard (overrides shard.ordinal)")
    r.set_defaults(func=cmd_run)

    sh = sub.add_parser("shards", help="which replica serves which board (shard.count replicas)")
    sh.add_argument("file", help="the configuration the replicas share")
    sh.add_argument("--json", action="store_true", help="one JSON object: shard -> boards")
    sh.set_defaults(func=cmd_shards)

    c = sub.add_parser("check-config", help="validate a configuration and its register maps")
    c.add_argument("file")
    c.set_defaults(func=cmd_check_config)

    d = sub.add_parser("demo", help="bridge plus one simulated device; prints every endpoint")
    d.add_argument("--host", default="127.0.0.1", help="address the Modbus/OPC UA/HTTP servers bind to")
    d.add_argument("--speed", type=float, default=1.0)
    d.add_argument("--scenario", help="simulator scenario file")
    d.add_argument("--state-dir", help="keep the demo's database here (default: a temporary folder)")
    d.add_argument("--no-opcua", action="store_true")
    d.add_argument("--rtu", metavar="DEVICE", help="also serve Modbus RTU on this serial device (19200 8E1)")
    d.add_argument("--mqtt", metavar="URL", help="also publish Sparkplug B to this broker (e.g. mqtt://127.0.0.1:1883)")
    d.set_defaults(func=cmd_demo)

    m = sub.add_parser("map", help="register maps")
    msub = m.add_subparsers(dest="map_command", required=True)
    me = msub.add_parser("export", help="print a register map as CSV or Markdown")
    me.add_argument("name", help="built-in map name (openstrom, sunspec) or a YAML file")
    me.add_argument("--format", choices=["csv", "md"], default="csv")
    me.set_defaults(func=cmd_map_export)

    for name, fn, helptext in (
        ("relay", cmd_relay, "switch a relay through the running bridge"),
        ("select", cmd_select, "arm a relay for select-before-operate (then `relay` within the select timeout)"),
        ("maintenance-lock", cmd_maintenance_lock, "set (on) or release (off) a relay's maintenance lock"),
        ("self-test", cmd_self_test, "run a device self-test through the running bridge"),
        ("calibrate", cmd_calibrate, "calibrate a circuit against a known reference (admin)"),
        ("limits", cmd_limits, "show or change a device's alarm limits at run time (admin; persisted)"),
    ):
        s = sub.add_parser(name, help=helptext)
        s.add_argument("device")
        if name in ("relay", "select", "maintenance-lock"):
            s.add_argument("circuit", type=int)
            s.add_argument("state", choices=["on", "off"])
        if name == "calibrate":
            s.add_argument("circuit", type=int)
            s.add_argument("--reference-volts", type=float, help="the reference's RMS voltage on this circuit")
            s.add_argument("--reference-amps", type=float, help="the reference's RMS current on this circuit")
            s.add_argument("--windows", type=int, default=25, help="measurement windows to average (25: ~5 s)")
            s.add_argument("--reset", action="store_true", help="back to the device's own scales (gain 1, offset 0)")
        if name == "limits":
            s.add_argument("--dip", type=float, help="a dip starts below this share of the declared voltage")
            s.add_argument("--swell", type=float, help="a swell starts above this share")
            s.add_argument("--interruption", type=float, help="an interruption starts below this share")
            s.add_argument("--hysteresis", type=float, help="an event ends this share inside its threshold")
            s.add_argument("--freq-low", type=float, help="under-frequency alarm limit, Hz")
            s.add_argument("--freq-high", type=float, help="over-frequency alarm limit, Hz")
            s.add_argument("--overcurrent", action="append", metavar="CIRCUIT=AMPS", help="a circuit's limit (repeat)")
            s.add_argument("--reset", action="store_true", help="drop every run-time change: the file's limits")
        _api_options(s)
        s.set_defaults(func=fn)
    add_record_parsers(sub, _api_options)
    add_status_parser(sub, _api_options)
    rl = sub.add_parser("reload", help="apply the edited configuration file to the running bridge (as SIGHUP does)")
    _api_options(rl)
    rl.set_defaults(func=cmd_reload)

    k = sub.add_parser("pki", help="the link CA: bridge, device and Modbus/TCP Security client certificates")
    ksub = k.add_subparsers(dest="pki_command", required=True)
    ki = ksub.add_parser("init", help="create the CA and the bridge's link certificate under state_dir")
    ki.add_argument("--host", action="append", default=[], help="a host name or address devices dial (repeat)")
    ki.add_argument("--force", action="store_true", help="replace an existing CA (every device needs new files)")
    ki.set_defaults(func=cmd_pki_init)
    kd = ksub.add_parser("issue-device", help="issue a device certificate bound to its serial number")
    kd.add_argument("serial")
    kd.set_defaults(func=cmd_pki_issue_device)
    kc = ksub.add_parser("issue-client", help="issue a Modbus/TCP Security client certificate with a role")
    kc.add_argument("name")
    kc.add_argument("--role", required=True, choices=["viewer", "operator", "admin"])
    kc.set_defaults(func=cmd_pki_issue_client)
    for sp in (kd, kc):
        sp.add_argument("--out", required=True, help="folder for the certificate, its key and ca.crt")
    for sp in (ki, kd, kc):
        sp.add_argument("--config", help="the bridge's configuration (its state_dir holds the CA)")
        sp.add_argument("--state-dir", help="the bridge's state_dir, instead of --config")

    t = sub.add_parser("device-token", help="make an HTTP ingest token for a device without a TLS certificate")
    t.add_argument("serial")
    t.set_defaults(func=cmd_device_token)

    h = sub.add_parser("hash-password", help="hash a password for an OPC UA user in the configuration")
    h.add_argument("--password")
    h.set_defaults(func=cmd_hash_password)

    o = sub.add_parser("opcua", help="OPC UA tools")
    osub = o.add_subparsers(dest="opcua_command", required=True)
    ex = osub.add_parser("export-nodeset", help="write the types and instances as NodeSet2 XML")
    ex.add_argument("file")
    ex.add_argument("--config", help="configuration whose devices to include (default: one demo device)")
    ex.set_defaults(func=cmd_export_nodeset)
    return p


def cmd_export_nodeset(args: argparse.Namespace) -> int:
    from .fronts.opcua.nodeset import export_nodeset

    configure_logging(level="warning", json=False)
    config = (
        load_config(args.config)
        if args.config
        else demo_config(Path(tempfile.mkdtemp()), "127.0.0.1", opcua=True, user_hash=None)
    )
    asyncio.run(export_nodeset(config, Path(args.file)))
    print(f"wrote {args.file}")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"openstrom-bridge: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
