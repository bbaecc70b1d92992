"""What the benchmark scripts share: free loopback ports, a process's CPU time and memory, the bridge's readiness,
and bench/results/latest.json (each script merges its figures into it)."""

from __future__ import annotations

import json
import os
import socket
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "latest.json"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    """Resident memory of a process in MB (Linux /proc; ``VmHWM`` for its peak)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def ready(port: int) -> bool:
    """The bridge's /health/ready on this HTTP port answers 200 (every front serving)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/ready", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def save_results(results: dict[str, float]) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    doc = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    doc.update(results)
    doc["updated"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    RESULTS.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
