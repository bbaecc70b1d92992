"""The other two link kinds end to end: the bridge dialling a listening device, and a serial line
(two pty pairs joined by the test, so both the simulator and the bridge open real serial ports)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import tty
from pathlib import Path

import pytest

from bridge.link.streams import CLOSE_TIMEOUT_S, AsyncioStream
from bridge.pki import init_pki, issue_device
from device.simulator.process import SimulatorProcess
from tests.harness import PLANT, bridge_config, free_port, running_bridge, wait_for

pytestmark = pytest.mark.e2e


async def test_bridge_dials_a_listening_device(tmp_path: Path) -> None:
    dev_port = free_port()
    config, _ = bridge_config(tmp_path, links={"listen": None, "dial": [{"host": "127.0.0.1", "port": dev_port}]})
    sim = SimulatorProcess(["--listen", f"127.0.0.1:{dev_port}", "--scenario", str(PLANT), "--speed", "2"])
    async with sim, running_bridge(config, tmp_path) as app:
        dev = app.model.devices["board1"]
        await wait_for(lambda: dev.snapshot is not None and dev.snapshot.number > 3, 30, "windows")
        assert dev.link.transport == "tcp-out"
        assert dev.snapshot is not None and dev.snapshot.circuits[0].p_w == pytest.approx(2000.0, rel=5e-4)


@contextlib.asynccontextmanager
async def joined_ptys():  # type: ignore[no-untyped-def]
    """Two pty pairs whose master ends the test joins: a null-modem cable between two serial ports."""
    (ma, sa), (mb, sb) = os.openpty(), os.openpty()
    for fd in (ma, mb):
        tty.setraw(fd)
        os.set_blocking(fd, False)  # a full pty buffer must not stall the event loop
    loop = asyncio.get_running_loop()
    pending: dict[int, bytearray] = {ma: bytearray(), mb: bytearray()}

    def flush(dst: int) -> None:
        buf = pending[dst]
        try:
            sent = os.write(dst, buf) if buf else 0
        except BlockingIOError:
            sent = 0
        except OSError:
            buf.clear()
            sent = 0
        del buf[:sent]
        if buf:
            loop.add_writer(dst, flush, dst)
        else:
            loop.remove_writer(dst)

    def relay(src: int, dst: int) -> None:
        try:
            data = os.read(src, 65536)
        except (BlockingIOError, OSError):
            return
        pending[dst] += data
        flush(dst)

    loop.add_reader(ma, relay, ma, mb)
    loop.add_reader(mb, relay, mb, ma)
    try:
        yield os.ttyname(sa), os.ttyname(sb)
    finally:
        for fd in (ma, mb):
            loop.remove_reader(fd)
            loop.remove_writer(fd)
        for fd in (ma, sa, mb, sb):
            os.close(fd)


async def test_serial_link_through_pyserial_on_both_ends(tmp_path: Path) -> None:
    async with joined_ptys() as (device_port, bridge_port):
        config, _ = bridge_config(
            tmp_path, links={"listen": None, "serial": [{"port": bridge_port, "baudrate": 921600}]}
        )
        sim = SimulatorProcess(["--serial", device_port, "--scenario", str(PLANT), "--speed", "2"])
        async with running_bridge(config, tmp_path) as app, sim:
            dev = app.model.devices["board1"]
            await wait_for(lambda: dev.snapshot is not None and dev.snapshot.number > 3, 30, "windows")
            assert dev.link.transport == "serial"
            assert dev.snapshot is not None and dev.snapshot.circuits[1].p_w == pytest.approx(1100.0, rel=5e-4)
            await wait_for(lambda: dev.link.acked_seq is not None, 10, "an ACK over serial")


async def test_two_devices_and_a_misbehaving_peer_do_not_disturb_each_other(tmp_path: Path) -> None:
    devices = [
        {"name": "board1", "serial_number": "OS-SIM-0001", "unit_id": 1},
        {"name": "board2", "serial_number": "OS-SIM-0002", "unit_id": 2},
    ]
    config, ports = bridge_config(tmp_path, devices=devices)
    port = ports["device"]
    sims = [
        SimulatorProcess(
            [
                "--connect",
                f"127.0.0.1:{port}",
                "--serial-number",
                f"OS-SIM-000{k}",
                "--scenario",
                str(PLANT),
                "--speed",
                "2",
                "--seed",
                str(k),
            ]
        )
        for k in (1, 2)
    ]
    async with running_bridge(config, tmp_path) as app, sims[0], sims[1]:
        # a peer that sends garbage, then a frame claiming 4 GB, then hangs on
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"\x00garbage" * 100 + bytes.fromhex("4f530101010000000000ffffffff") + b"\x00\x00")
        await writer.drain()
        # a stranger with a valid HELLO is refused
        stranger = SimulatorProcess(
            ["--connect", f"127.0.0.1:{port}", "--serial-number", "OS-STRANGER", "--speed", "2", "--duration", "2"]
        )
        async with stranger:
            b1, b2 = app.model.devices["board1"], app.model.devices["board2"]
            await wait_for(lambda: all(d.snapshot is not None and d.snapshot.number > 3 for d in (b1, b2)), 30, "both")
            assert b1.snapshot is not None and b2.snapshot is not None
            assert b1.snapshot.circuits[0].p_w == pytest.approx(2000.0, rel=5e-4)
            assert b2.snapshot.circuits[0].p_w == pytest.approx(2000.0, rel=5e-4)
            assert b1.link.frame_errors == 0 and b2.link.frame_errors == 0
            assert "OS-STRANGER" not in {d.config.serial_number for d in app.model.devices.values()}
        writer.close()


async def test_bridge_dials_a_listening_device_over_mutual_tls(tmp_path: Path) -> None:
    state = tmp_path / "state"
    init_pki(state)
    crt, key, ca = issue_device(state, "OS-SIM-0001", tmp_path / "dev")
    dev_port = free_port()
    config, _ = bridge_config(
        tmp_path, links={"listen": None, "tls": "always", "dial": [{"host": "127.0.0.1", "port": dev_port}]}
    )
    tls = ["--tls-cert", str(crt), "--tls-key", str(key), "--tls-ca", str(ca)]
    sim = SimulatorProcess(["--listen", f"127.0.0.1:{dev_port}", "--scenario", str(PLANT), "--speed", "2", *tls])
    async with sim, running_bridge(config, tmp_path) as app:
        dev = app.model.devices["board1"]
        await wait_for(lambda: dev.snapshot is not None and dev.snapshot.number > 3, 30, "windows over TLS")
        assert dev.link.transport == "tcp-out+tls"
        assert dev.snapshot is not None and dev.snapshot.circuits[0].p_w == pytest.approx(2000.0, rel=5e-4)


async def test_closing_a_link_to_a_peer_that_stopped_reading_is_bounded() -> None:
    """Bytes the peer never reads keep a transport open: a close waits for them a bounded time, then
    drops the connection (a shutdown with a hundred links must not hang on one of them)."""
    accepted: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()

    async def on_client(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await accepted.put((r, w))

    server = await asyncio.start_server(on_client, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        _, peer_w = await asyncio.open_connection("127.0.0.1", port)  # the peer: never reads
        reader, writer = await accepted.get()
        stream = AsyncioStream(reader, writer, peer=f"127.0.0.1:{port}", kind="tcp")
        for _ in range(64):  # 64 MB: more than both sockets' buffers take
            stream.write_nowait(bytes(1 << 20))
        assert writer.transport.get_write_buffer_size() > 0
        t0 = time.monotonic()
        async with asyncio.timeout(CLOSE_TIMEOUT_S + 5):  # unbounded, the close would wait for ever
            await stream.close()
        assert time.monotonic() - t0 < CLOSE_TIMEOUT_S + 1.0
        assert writer.transport.is_closing() and writer.transport.get_write_buffer_size() == 0
        peer_w.close()
    finally:
        server.close()
        await server.wait_closed()
