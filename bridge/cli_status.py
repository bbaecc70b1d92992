"""``openstrom-bridge status``: a live terminal view of every device and circuit (rich), refreshed
from the running bridge's control API; ``--once`` prints one view, ``--once --json`` the data."""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
from typing import Any

from .cli_api import EXIT_FAILED, EXIT_OK, exit_code, open_api, unreachable


def fetch(args: argparse.Namespace) -> dict[str, Any]:
    with open_api(args, "/api/status", {}, timeout=10) as resp:
        doc: dict[str, Any] = json.loads(resp.read())
        return doc


def _fmt(x: float | None, unit: str, digits: int) -> str:
    return "—" if x is None else f"{x:,.{digits}f} {unit}"


def render(doc: dict[str, Any]) -> Any:
    from rich.console import Group
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    parts: list[Any] = []
    if doc.get("store_error"):
        parts.append(Text(f"state database refuses commits: {doc['store_error']}", style="bold red"))
    for d in doc["devices"]:
        table = Table(expand=True, show_edge=False, pad_edge=False)
        for col, justify in (("#", "right"), ("circuit", "left"), ("V", "right"), ("I", "right"), ("P", "right"),
                             ("energy in", "right"), ("relay", "center"), ("alarms", "left")):  # fmt: skip
            table.add_column(col, justify=justify)  # type: ignore[arg-type]
        for c in d["circuits"]:
            relay = {True: Text("on", style="green"), False: Text("off", style="yellow"), None: Text("?")}[
                c["relay_on"]
            ]
            kwh = None if c["import_wh"] is None else c["import_wh"] / 1000
            table.add_row(
                str(c["circuit"]), c["name"], _fmt(c["v_rms"], "V", 1), _fmt(c["i_rms"], "A", 2),
                _fmt(c["p_w"], "W", 0), _fmt(kwh, "kWh", 3), relay,
                Text(", ".join(c["alarms"]), style="red") if c["alarms"] else Text(""),
            )  # fmt: skip
        state = Text("online", style="bold green") if d["online"] else Text("OFFLINE", style="bold red")
        age = "no data" if d["data_age_s"] is None else f"data {d['data_age_s']:.1f} s old"
        head = Text.assemble(
            (f"{d['name']} ", "bold"), f"({d['serial_number']})  ", state,
            f"  {d['quality']}: {d['quality_reason'] or 'ok'}  {d['transport'] or ''} {d['peer']}  {age}",
            f"  {_fmt(d['frequency_hz'], 'Hz', 3)}  lost blocks {d['lost_blocks']}"
            f"  events {d['voltage_events']}  records {d['records']}",
        )  # fmt: skip
        if d["alarms"]:
            head.append("  alarms: " + ", ".join(d["alarms"]), style="red")
        parts.append(Panel(table, title=head, title_align="left"))
    if not doc["devices"]:
        parts.append(Text("no devices configured"))
    return Group(*parts)


def cmd_status(args: argparse.Namespace) -> int:
    from rich.console import Console

    console = Console()
    try:
        if args.once:
            doc = fetch(args)
            if args.json:
                print(json.dumps(doc, indent=1))
            else:
                console.print(render(doc))
            return EXIT_OK
        if console.is_terminal:
            from rich.live import Live

            with Live(render(fetch(args)), console=console, screen=False, auto_refresh=False) as live:
                while True:
                    time.sleep(args.interval)
                    live.update(render(fetch(args)), refresh=True)
        while True:  # not a terminal (a log, a pipe): one view per interval, appended
            console.print(render(fetch(args)))
            sys.stdout.flush()
            time.sleep(args.interval)
    except KeyboardInterrupt:
        return EXIT_OK
    except urllib.error.HTTPError as exc:
        return exit_code(exc)
    except (urllib.error.URLError, OSError) as exc:
        return unreachable(args, exc)
    return EXIT_FAILED


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: Any) -> None:
    s = sub.add_parser("status", help="a live view of every device and circuit of the running bridge")
    s.add_argument("--once", action="store_true", help="one view, then exit")
    s.add_argument("--json", action="store_true", help="with --once: the data as JSON, for scripts")
    s.add_argument("--interval", type=float, default=1.0, help="seconds between refreshes")
    common(s)
    s.set_defaults(func=cmd_status)
