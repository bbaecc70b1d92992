"""Modbus write protection and Modbus/TCP Security, with a real device behind the bridge: writes
from a network outside write_allow and to a read-only server get exception 01 and move nothing;
over mutual TLS an operator certificate switches, a viewer's cannot, another CA's and a plain client
cannot talk at all; connection caps and idle timeouts hold."""

from __future__ import annotations

import asyncio
import struct
from pathlib import Path

import pytest

from bridge.pki import init_pki, issue_client
from device.link import client_context
from device.simulator.process import SimulatorProcess
from tests.harness import PLANT, RawModbus, bridge_config, free_port, running_bridge, wait_for

pytestmark = pytest.mark.e2e
COIL_ON = struct.pack(">BHH", 5, 1, 0xFF00)  # coil 1 = circuit 2's relay, on
COIL_OFF = struct.pack(">BHH", 5, 1, 0x0000)


async def test_write_protection_and_modbus_tcp_security(tmp_path: Path) -> None:
    state = tmp_path / "state"
    init_pki(state)
    operator = issue_client(state, "scada", "operator", tmp_path / "clients")
    viewer = issue_client(state, "historian", "viewer", tmp_path / "clients")
    init_pki(tmp_path / "other")
    foreign = issue_client(tmp_path / "other", "rogue", "admin", tmp_path / "rogue")
    plain, ro, tls = free_port(), free_port(), free_port()
    config, ports = bridge_config(
        tmp_path,
        modbus={
            "servers": [
                {"map": "openstrom", "host": "127.0.0.1", "port": plain, "write_allow": ["127.0.0.1/32"]},
                {"map": "openstrom", "host": "127.0.0.1", "port": ro, "read_only": True},
                {"map": "openstrom", "host": "127.0.0.1", "port": tls, "tls": True},
            ]
        },
    )
    sim = SimulatorProcess(["--connect", f"127.0.0.1:{ports['device']}", "--scenario", str(PLANT), "--speed", "2"])
    async with running_bridge(config, tmp_path) as app, sim:
        dev = app.model.devices["board1"]
        await wait_for(lambda: dev.circuits[1].relay_on is True and dev.snapshot is not None, 30, "STATUS")
        # another host (127.0.0.2) is outside write_allow: reads served, writes refused with 01
        async with RawModbus(plain, source="127.0.0.2") as mb:
            assert isinstance(await mb.read(4, 1, 1000, 2), list)
            assert await mb.request(1, COIL_OFF) == bytes([0x85, 0x01])
        async with RawModbus(ro) as mb:  # a read-only server, even from loopback
            assert isinstance(await mb.read(1, 1, 0, 10), list)
            assert await mb.request(1, COIL_OFF) == bytes([0x85, 0x01])
            assert await mb.request(1, struct.pack(">BHHB", 15, 0, 2, 1) + b"\x00") == bytes([0x8F, 0x01])
        await asyncio.sleep(0.5)
        assert dev.circuits[1].relay_on is True and dev.circuits[1].relay_operations == 0
        # Modbus/TCP Security: an operator certificate switches; the load follows the relay
        async with RawModbus(tls, tls=client_context(*operator)) as mb:
            assert await mb.request(1, COIL_OFF) == COIL_OFF
            assert dev.circuits[1].relay_on is False
            assert await mb.request(1, COIL_ON) == COIL_ON
        # a viewer certificate reads but may not write
        async with RawModbus(tls, tls=client_context(*viewer)) as mb:
            assert isinstance(await mb.read(4, 1, 1000, 2), list)
            assert await mb.request(1, COIL_OFF) == bytes([0x85, 0x01])
        assert dev.circuits[1].relay_on is True and dev.circuits[1].relay_operations == 2
        # another CA's certificate: no session (TLS 1.3 may let the client finish first; then the
        # server aborts before any request is answered)
        with pytest.raises((OSError, asyncio.IncompleteReadError, TimeoutError)):
            async with RawModbus(tls, tls=client_context(foreign[0], foreign[1], operator[2])) as mb:
                await mb.request(1, COIL_OFF, timeout=3)
        # a plain client on the TLS port gets no answer
        with pytest.raises((OSError, asyncio.IncompleteReadError, TimeoutError)):
            async with RawModbus(tls) as mb:
                await mb.request(1, struct.pack(">BHH", 4, 1000, 2), timeout=3)
        assert dev.circuits[1].relay_on is True


async def test_connection_cap_and_idle_timeout(tmp_path: Path) -> None:
    port = free_port()
    config, _ = bridge_config(
        tmp_path,
        modbus={
            "servers": [
                {"map": "openstrom", "host": "127.0.0.1", "port": port, "max_connections": 2, "idle_timeout_s": 1}
            ]
        },
    )
    async with running_bridge(config, tmp_path), RawModbus(port) as a, RawModbus(port) as b:
        assert isinstance(await a.read(4, 1, 0, 2), list)
        assert isinstance(await b.read(4, 1, 0, 2), list)
        async with RawModbus(port) as c:  # a third: the connection unused the longest (a) makes room
            assert isinstance(await c.read(4, 1, 0, 2), list)
            assert a.reader is not None
            async with asyncio.timeout(5):
                assert await a.reader.read() == b""
            # a client silent for longer than idle_timeout_s is closed; one that polls stays
            for _ in range(6):
                await asyncio.sleep(0.3)
                assert isinstance(await c.read(4, 1, 0, 2), list)
            assert b.reader is not None
            async with asyncio.timeout(3):
                assert await b.reader.read() == b""
