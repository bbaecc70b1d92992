"""Trust boundary, link side: a second connection that claims a connected, streaming device's serial
is refused, and the real device's values, stream position, acknowledgements and online state are
untouched. Real simulator process, real sockets on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ssl
from pathlib import Path

import pytest

from bridge.pki import init_pki, issue_device
from device.link import client_context
from device.protocol import Connection, ConnectionClosed, ErrorMessage, Role
from device.simulator.device import Identity, SimulatedDevice
from device.simulator.process import SimulatorProcess
from device.simulator.scenario import load_scenario
from tests.harness import PLANT, bridge_config, fresh_windows, running_bridge, wait_for

pytestmark = pytest.mark.e2e


async def _impostor(port: int, hello: bytes, then: bytes) -> list[object]:
    """Connect, send a HELLO, collect what the bridge answers until it closes the link, then try to
    push ``then`` anyway."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    conn = Connection(Role.BRIDGE)  # reads what the bridge sends
    writer.write(hello)
    got: list[object] = []
    async with asyncio.timeout(10):
        while True:
            try:
                data = await reader.read(65536)
            except ConnectionResetError:
                data = b""
            got += list(conn.events(data))
            if not data:
                break
    with contextlib.suppress(ConnectionError, OSError):
        writer.write(then)
        await writer.drain()
    writer.close()
    return got


async def test_a_second_link_claiming_a_streaming_device_is_refused(tmp_path: Path) -> None:
    config, ports = bridge_config(tmp_path)
    # a board without scripted events: its voltage before and after the impostor must be the same
    steady = Path(__file__).parent / "scenarios" / "steady.yaml"
    sim = SimulatorProcess(["--connect", f"127.0.0.1:{ports['device']}", "--scenario", str(steady), "--speed", "2"])
    async with running_bridge(config, tmp_path) as app, sim:
        dev = app.model.devices["board1"]
        rt = app.hub.runtimes["board1"]
        await wait_for(lambda: dev.snapshot is not None and dev.link.acked_seq is not None, 30, "first ACK")
        assert dev.hello is not None and dev.snapshot is not None
        real_peer, real_hello = dev.link.peer, dev.hello
        v_before = dev.snapshot.circuits[0].v_rms
        # the impostor: the real serial, doubled voltage scale, and 40 blocks numbered 10 000 ahead
        fake = SimulatedDevice(load_scenario(PLANT), identity=Identity.for_serial("OS-SIM-0001"), seed=3)
        hello = dataclasses.replace(real_hello, v_lsb_volts=tuple(2 * x for x in real_hello.v_lsb_volts))
        ahead = (rt.last_seq or 0) + 10_000
        dev_conn = Connection(Role.DEVICE)
        first = dev_conn.send(hello)
        blocks = b""
        for k in range(40):
            block, _ = fake.generate()
            blocks += dev_conn.send(dataclasses.replace(block, block_seq=ahead + k))
        answers = await _impostor(ports["device"], first, blocks)
        errors = [a for a in answers if isinstance(a, ErrorMessage)]
        assert [e.code for e in errors] == ["device-connected"], answers
        # the real device is untouched: same link, online, its own scales, position moving on normally
        await fresh_windows(dev)
        assert dev.online and dev.link.peer == real_peer
        assert dev.hello == real_hello and dev.link.scale_changes == 0
        assert dev.snapshot.circuits[0].v_rms == pytest.approx(v_before, rel=2e-3)
        assert rt.last_seq is not None and rt.last_seq < ahead
        assert app.store.progress("board1") is not None
        assert app.store.progress("board1").block_seq < ahead  # type: ignore[union-attr]
        acked = dev.link.acked_seq
        await wait_for(lambda: dev.link.acked_seq != acked, 10, "ACKs to the real device go on")


async def _tls_impostor(port: int, ctx: ssl.SSLContext, hello: bytes) -> list[object] | str:
    """A TLS client sending a HELLO: what the bridge answers, or the handshake's failure."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname="127.0.0.1")
    except (ssl.SSLError, ConnectionError, OSError) as exc:
        return f"handshake failed: {exc}"
    writer.write(hello)
    conn = Connection(Role.BRIDGE)
    got: list[object] = []
    async with asyncio.timeout(10):
        while True:
            try:
                data = await reader.read(65536)
            except (ssl.SSLError, ConnectionError):
                data = b""
            got += list(conn.events(data))
            if not data:
                break
    writer.close()
    return got


async def test_mutual_tls_binds_the_certificate_to_the_hello(tmp_path: Path) -> None:
    state = tmp_path / "state"
    init_pki(state)
    files = issue_device(state, "OS-SIM-0001", tmp_path / "dev1")
    other = issue_device(state, "OS-SIM-0002", tmp_path / "dev2")
    foreign_state = tmp_path / "foreign"
    init_pki(foreign_state)
    foreign = issue_device(foreign_state, "OS-SIM-0001", tmp_path / "foreign-dev")
    config, ports = bridge_config(tmp_path, links__tls="always")
    tls_args = ["--tls-cert", str(files[0]), "--tls-key", str(files[1]), "--tls-ca", str(files[2])]
    sim = SimulatorProcess(
        ["--connect", f"127.0.0.1:{ports['device']}", "--scenario", str(PLANT), "--speed", "2", *tls_args]
    )
    async with running_bridge(config, tmp_path) as app, sim:
        dev = app.model.devices["board1"]
        await wait_for(lambda: dev.snapshot is not None and dev.link.acked_seq is not None, 30, "first ACK over TLS")
        assert dev.link.transport == "tcp-in+tls"
        assert dev.hello is not None
        real_peer = dev.link.peer
        hello = Connection(Role.DEVICE).send(dev.hello)
        # another device's certificate claiming this serial: refused by the session, named in the log
        got = await _tls_impostor(ports["device"], client_context(*other), hello)
        assert isinstance(got, list) and [e.code for e in got if isinstance(e, ErrorMessage)] == ["not-authenticated"]
        # a certificate from another CA: the handshake itself fails
        got = await _tls_impostor(ports["device"], client_context(*foreign[:2], files[2]), hello)
        # (with TLS 1.3 the client's side may complete first; the server then aborts: no frame arrives)
        assert isinstance(got, str) or all(isinstance(e, ConnectionClosed) for e in got), got
        # plain TCP on the TLS port: no HELLO is ever read
        got = await _impostor(ports["device"], hello, b"")
        assert not any(isinstance(e, ErrorMessage) for e in got)
        await fresh_windows(dev)
        assert dev.online and dev.link.peer == real_peer and dev.link.transport == "tcp-in+tls"
        assert dev.snapshot is not None and dev.snapshot.circuits[0].p_w == pytest.approx(2000.0, rel=5e-4)


async def test_a_revoked_device_certificate_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "state"
    init_pki(state)
    files = issue_device(state, "OS-SIM-0001", tmp_path / "dev1")
    config, ports = bridge_config(tmp_path, links__tls="always", links__revoked=["OS-SIM-0001"])
    async with running_bridge(config, tmp_path) as app:
        dev = app.model.devices["board1"]
        hello = SimulatedDevice(load_scenario(PLANT), identity=Identity.for_serial("OS-SIM-0001")).hello()
        got = await _tls_impostor(ports["device"], client_context(*files), Connection(Role.DEVICE).send(hello))
        assert isinstance(got, list) and [e.code for e in got if isinstance(e, ErrorMessage)] == ["not-authenticated"]
        assert not dev.link.connected and dev.hello is None
