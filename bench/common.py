"""What the benchmark scripts share: free loopback ports, a process's CPU time and memory, the bridge's readiness,
and bench/results/latest.json (each script merges its figures into it)."""

from __future__ import annotations

import asyncio
import json
import math
import os
import socket
import struct
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "latest.json"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tree(pid: int) -> list[int]:
    """The process and its descendants (the bridge and its measuring process), Linux /proc."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue  # gone meanwhile
            parents.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += parents.get(p, [])
    return out


def cpu_seconds(pid: int, *, descendants: bool = True) -> float:
    """User + system CPU time of a process and (unless told not to) its descendants alive now (Linux /proc)."""
    total = 0.0
    for p in tree(pid) if descendants else [pid]:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    """Resident memory of a process in MB (Linux /proc; ``VmHWM`` for its peak)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def memory_mb(pid: int) -> float:
    """The memory a process and its descendants take, in MB: the sum of their proportional set sizes
    (Linux ``Pss``), so that a page the bridge and its measuring process share (the interpreter,
    numpy) counts once. For one process alone it is its resident memory less what it shares with
    other processes."""
    total = 0.0
    for p in tree(pid):
        try:
            text = Path(f"/proc/{p}/smaps_rollup").read_text()
        except OSError:
            continue
        total += next(int(line.split()[1]) for line in text.splitlines() if line.startswith("Pss:")) / 1024
    return total


def ready(port: int) -> bool:
    """The bridge's /health/ready on this HTTP port answers 200 (every front serving)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/ready", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def save_results(results: dict[str, float]) -> None:
    """Merge figures into the results file. A figure that could not be measured (NaN) is written as
    null: the file stays JSON that any reader takes (Python's NaN is not JSON)."""
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    doc = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    doc.update(results)
    doc = {k: v if not isinstance(v, float) or math.isfinite(v) else None for k, v in doc.items()}
    doc["updated"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    RESULTS.write_text(json.dumps(doc, indent=2, sort_keys=True, allow_nan=False) + "\n")


async def probe(port: int, stop: asyncio.Event) -> list[float]:
    """Answer times of a Modbus read every 20 ms, from the first accepted connection on."""
    while not stop.is_set():
        try:
            r, w = await asyncio.open_connection("127.0.0.1", port)
            break
        except OSError:
            await asyncio.sleep(0.01)
    else:
        return []
    times = []
    tid = 0
    while not stop.is_set():
        tid = (tid + 1) & 0xFFFF
        t = time.perf_counter()
        w.write(struct.pack(">HHHBBHH", tid, 0, 6, 1, 4, 0, 2))
        head = await r.readexactly(7)
        await r.readexactly(struct.unpack(">H", head[4:6])[0] - 1)
        times.append(time.perf_counter() - t)
        await asyncio.sleep(0.02)
    w.close()
    return times
