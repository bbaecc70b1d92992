"""Shared test helpers: free loopback ports, a bridge running in the test's loop, raw Modbus frames."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import ssl
import struct
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bridge.app import BridgeApp
from bridge.config import Config

ROOT = Path(__file__).resolve().parents[1]
PLANT = ROOT / "device" / "simulator" / "scenarios" / "plant.yaml"


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A port free now and not handed out before in this run (the kernel may offer one twice)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


async def plain_opcua_server(name: str) -> tuple[Any, str, int]:
    """A bare asyncua server with the bridge's shared attribute values, no security, on a free
    loopback port, not started yet: (server, endpoint URL, index of the namespace ``urn:test:<name>``)."""
    from asyncua import Server, ua

    from bridge.fronts.opcua import shared_values

    shared_values.install()
    server = Server()
    await server.init()
    url = f"opc.tcp://127.0.0.1:{free_port()}/{name}"
    server.set_endpoint(url)
    server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    return server, url, await server.register_namespace(f"urn:test:{name}")


def bridge_config(tmp: Path, **overrides: Any) -> tuple[Config, dict[str, int]]:
    ports = {k: free_port() for k in ("device", "modbus", "sunspec", "opcua", "http")}
    doc: dict[str, Any] = {
        "bridge": {"state_dir": str(tmp / "state"), "commit_interval_s": 0.5, "offline_after_s": 1.5},
        "links": {"listen": f"127.0.0.1:{ports['device']}"},
        "modbus": {
            "servers": [
                {"map": "openstrom", "host": "127.0.0.1", "port": ports["modbus"]},
                {"map": "sunspec", "host": "127.0.0.1", "port": ports["sunspec"]},
            ]
        },
        "opcua": {"enabled": False, "endpoint": f"opc.tcp://127.0.0.1:{ports['opcua']}/openstrom"},
        "metrics": {"listen": f"127.0.0.1:{ports['http']}"},
        "commands": {"min_interval_s": 0.0, "timeout_s": 3.0, "confirm_timeout_s": 3.0},
        "devices": [{"name": "board1", "serial_number": "OS-SIM-0001", "unit_id": 1}],
    }
    for key, value in overrides.items():
        section, _, leaf = key.partition("__")
        if leaf:
            doc.setdefault(section, {})[leaf] = value
        else:
            doc[section] = value
    return Config.model_validate(doc), ports


def with_opcua(config: Config, **fields: Any) -> Config:
    """The configuration with OPC UA enabled and ``fields`` set in its section."""
    doc = config.model_dump()
    doc["opcua"].update(enabled=True, **fields)
    return Config.model_validate(doc)


@contextlib.asynccontextmanager
async def running_bridge(config: Config, base: Path, config_path: Path | None = None) -> AsyncIterator[BridgeApp]:
    app = BridgeApp(config, base_dir=base, config_path=config_path)
    task = asyncio.create_task(app.run())
    try:
        async with asyncio.timeout(20):
            ready = asyncio.create_task(app.ready.wait())
            done, _ = await asyncio.wait({task, ready}, return_when=asyncio.FIRST_COMPLETED)
            if task in done:
                task.result()
        yield app
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def wait_for(predicate: Any, timeout: float, what: str) -> None:
    """Poll ``predicate`` until true; a timeout names what was awaited."""
    try:
        async with asyncio.timeout(timeout):
            while not predicate():
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise TimeoutError(f"waited {timeout:g} s for {what}") from None


async def wait_for_value(read: Any, expected: Any, *, approx: bool = False, timeout: float = 10) -> None:
    """Poll the coroutine function ``read`` until it returns ``expected`` (a LocalizedText by its text)."""
    async with asyncio.timeout(timeout):
        while True:
            value = await read()
            value = getattr(value, "Text", value)
            if (value == pytest.approx(expected, rel=0.01)) if approx else (value == expected):
                return
            await asyncio.sleep(0.1)


def live_is_current(rt: Any, dev: Any) -> bool:
    """Whether the live values are the analyzer's newest batch: they take its newest window once per
    ``analysis.publish_s``, and between two refreshes the analyzer has counted more than they show."""
    m, snap = rt.measured, dev.snapshot
    if m is None or snap is None:
        return False
    return bool(abs(m.time_of(m.integrated_until) - (snap.time_s + snap.duration_s)) < 1 / m.fs)


async def fresh_windows(dev: Any, timeout: float = 20) -> None:
    """Wait until the live values come from signal taken after this call: the analyzer measures in
    batches and the live values take the newest window once per ``analysis.publish_s`` (1 s = 5
    windows), so the next refresh may still end before it."""
    n = dev.snapshot.number if dev.snapshot else 0
    await wait_for(lambda: dev.snapshot is not None and dev.snapshot.number >= n + 11, timeout, "two batches")


class RawModbus:
    """A Modbus TCP client that is not pymodbus: MBAP frames over a plain socket."""

    def __init__(self, port: int, *, source: str | None = None, tls: ssl.SSLContext | None = None) -> None:
        self.port = port
        self.source = source  # a local address to connect from (127.0.0.2 is another loopback host)
        self.tls = tls  # Modbus/TCP Security: the same frames inside TLS
        self._tid = 0
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def __aenter__(self) -> RawModbus:
        self.reader, self.writer = await asyncio.open_connection(
            "127.0.0.1",
            self.port,
            local_addr=(self.source, 0) if self.source else None,
            ssl=self.tls,
            server_hostname="127.0.0.1" if self.tls else None,
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.writer is not None
        self.writer.close()

    async def request(self, unit: int, pdu: bytes, timeout: float = 10) -> bytes:
        assert self.reader is not None and self.writer is not None
        self._tid = (self._tid + 1) & 0xFFFF
        self.writer.write(struct.pack(">HHHB", self._tid, 0, len(pdu) + 1, unit) + pdu)
        async with asyncio.timeout(timeout):
            head = await self.reader.readexactly(7)
            tid, proto, length, u = struct.unpack(">HHHB", head)
            body = await self.reader.readexactly(length - 1)
        assert (tid, proto, u) == (self._tid, 0, unit), (tid, proto, u)
        return body

    async def read(self, fc: int, unit: int, address: int, count: int) -> list[int] | int:
        """Registers (or bits), or the exception code as an int."""
        body = await self.request(unit, struct.pack(">BHH", fc, address, count))
        if body[0] == fc | 0x80:
            return body[1]
        assert body[0] == fc
        data = body[2 : 2 + body[1]]
        if fc in (1, 2):
            bits = [(data[k // 8] >> (k % 8)) & 1 for k in range(count)]
            return bits
        return list(struct.unpack(f">{len(data) // 2}H", data))


def get_health(port: int) -> tuple[int, dict[str, Any]]:
    """GET /health (blocking: call it in an executor from a test that runs the bridge in its loop)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as resp:
            return int(resp.status), json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def f32(regs: list[int], k: int = 0) -> float:
    return float(struct.unpack(">f", struct.pack(">2H", regs[k], regs[k + 1]))[0])
