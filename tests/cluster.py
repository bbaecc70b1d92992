"""A scale-out plant on one machine: bridge replicas as processes sharing one device list (shard keys,
``shard.count`` replicas, ``state_dir/shard-N`` each), one simulator process per shard running its
boards, one Mosquitto broker and a Sparkplug host application. Used by tests/test_scale_out.py and
bench/scale_out.py."""

from __future__ import annotations

import asyncio
import signal
import sys
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bridge.fronts.mqtt.sparkplug_b_pb2 import Payload
from device.simulator.process import SimulatorProcess
from tests.harness import free_port


@dataclass
class Replica:
    ordinal: int
    config: Path
    ports: dict[str, int]
    log: Path
    proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bridge.cli", "run", "--config", str(self.config), "--json-logs",
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=self.log.open("ab"),
        )  # fmt: skip

    async def serving(self, timeout: float = 30) -> None:
        loop = asyncio.get_running_loop()

        def probe() -> bool:
            try:
                url = f"http://127.0.0.1:{self.ports['http']}/health/ready"
                with urllib.request.urlopen(url, timeout=1) as resp:
                    return resp.status == 200
            except OSError:  # refused, or 503 (HTTPError) while the fronts start
                return False

        async with asyncio.timeout(timeout):
            while not await loop.run_in_executor(None, probe):
                assert self.proc is not None and self.proc.returncode is None, self.log.read_text()[-2000:]
                await asyncio.sleep(0.1)

    async def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(sig)
            try:
                await asyncio.wait_for(self.proc.wait(), 15)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


def steady_scenario(path: Path, sample_rate_hz: float, power_w: float) -> Path:
    """A load whose energy is known exactly: one resistive heater on clean mains, no noise."""
    path.write_text(
        yaml.safe_dump(
            {
                "name": "steady-cluster",
                "sample_rate_hz": sample_rate_hz,
                "mains": {"voltage": 230, "frequency": 50, "drift_hz": 0.0, "harmonics_pct": {}},
                "noise_lsb": 0,
                "circuits": {1: {"appliance": "heater", "power_w": power_w}},
            }
        )
    )
    return path


@dataclass
class Cluster:
    tmp: Path
    broker_port: int
    shards: int = 4
    boards_per_shard: int = 10
    batch_s: float = 1.0
    publish_s: float = 1.0
    opcua: bool = False
    replicas: list[Replica] = field(default_factory=list)
    sims: list[SimulatorProcess] = field(default_factory=list)

    def serial(self, board: int) -> str:
        return f"OS-SC-{board:04d}"

    def name(self, board: int) -> str:
        return f"board{board:03d}"

    def shard_of(self, board: int) -> int:
        return (board - 1) // self.boards_per_shard

    @property
    def boards(self) -> range:
        return range(1, self.shards * self.boards_per_shard + 1)

    def write_configs(self) -> None:
        """One file per replica, alike but for the ordinal and the addresses (on one machine the
        replicas cannot share ports; in Kubernetes every pod has its own address and one file serves)."""
        devices = [
            {"name": self.name(b), "serial_number": self.serial(b), "unit_id": b, "shard": self.shard_of(b)}
            for b in self.boards
        ]
        for k in range(self.shards):
            ports = {p: free_port() for p in ("device", "modbus", "opcua", "http")}
            doc: dict[str, Any] = {
                "bridge": {
                    "name": f"OpenStrom Bridge shard {k}",
                    "state_dir": str(self.tmp / "state"),
                    "log_level": "info",
                    "commit_interval_s": 0.5,
                    "offline_after_s": 3.0,
                },
                "links": {"listen": f"127.0.0.1:{ports['device']}"},
                "modbus": {"servers": [{"map": "openstrom", "host": "127.0.0.1", "port": ports["modbus"]}]},
                "opcua": {"enabled": self.opcua, "endpoint": f"opc.tcp://127.0.0.1:{ports['opcua']}/openstrom"},
                "metrics": {"listen": f"127.0.0.1:{ports['http']}"},
                "mqtt": {
                    "enabled": True,
                    "url": f"mqtt://127.0.0.1:{self.broker_port}",
                    "group_id": "Plant",
                    "edge_node_id": "bridge",
                },
                "analysis": {"batch_s": self.batch_s, "publish_s": self.publish_s},
                "shard": {"count": self.shards, "ordinal": k},
                "devices": devices,
            }
            path = self.tmp / f"replica-{k}.yaml"
            path.write_text(yaml.safe_dump(doc, sort_keys=False))
            self.replicas.append(Replica(k, path, ports, self.tmp / f"replica-{k}.log"))

    async def start_replicas(self) -> None:
        for r in self.replicas:
            await r.start()
        await asyncio.gather(*(r.serving() for r in self.replicas))

    async def start_boards(self, scenario: Path, duration_s: float | None, *extra: str) -> None:
        for k, r in enumerate(self.replicas):
            first = k * self.boards_per_shard + 1
            args = ["--connect", f"127.0.0.1:{r.ports['device']}", "--boards", str(self.boards_per_shard)]
            args += ["--serial-number", self.serial(first), "--scenario", str(scenario), "--seed", str(first)]
            if duration_s is not None:
                args += ["--duration", str(duration_s)]
            sim = SimulatorProcess([*args, *extra])
            await sim.start()
            self.sims.append(sim)

    async def close(self) -> None:
        for sim in self.sims:
            await sim.stop()
        for r in self.replicas:
            await r.stop()


class SparkplugHost:
    """A host application on ``spBv1.0/#``: every message with its topic, size and decoded payload,
    and each board's metrics by name (DDATA aliases resolved through the board's newest DBIRTH)."""

    def __init__(self) -> None:
        self.got: list[tuple[str, int, Any]] = []  # (topic, payload bytes, payload)
        self.values: dict[str, dict[str, Any]] = {}  # board -> metric name -> newest value
        self._aliases: dict[str, dict[int, str]] = {}

    def of(self, kind: str, node: str | None = None, device: str | None = None) -> list[Any]:
        out = []
        for t, _, p in self.got:
            parts = t.split("/")
            if parts[2] != kind or (node is not None and parts[3] != node):
                continue
            if device is not None and (len(parts) < 5 or parts[4] != device):
                continue
            out.append(p)
        return out

    def devices_born(self, node: str | None = None) -> set[str]:
        return {t.split("/")[4] for t, _, _ in self.got if "/DBIRTH/" in t and (node is None or f"/{node}/" in t)}

    def _note(self, topic: str, p: Any) -> None:
        parts = topic.split("/")
        if len(parts) < 5 or parts[2] not in ("DBIRTH", "DDATA"):
            return
        board = parts[4]
        if parts[2] == "DBIRTH":
            self._aliases[board] = {m.alias: m.name for m in p.metrics}
        names = self._aliases.get(board, {})
        values = self.values.setdefault(board, {})
        for m in p.metrics:
            name = m.name or names.get(m.alias)
            if name is not None and not m.is_historical:
                values[name] = m

    async def listen(self, client: Any) -> None:
        async for m in client.messages:
            data = bytes(m.payload)
            p = Payload()
            p.ParseFromString(data)
            self.got.append((str(m.topic), len(data), p))
            self._note(str(m.topic), p)
