"""Modbus RTU over a real serial line: a pty pair (socat) between the bridge's RTU slave and real
serial masters (pymodbus's serial client, mbpoll -m rtu, and raw frames for what clients never send:
CRC errors, other units, garbage, broadcasts, a frame cut by silence)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import struct
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pymodbus.client import AsyncModbusSerialClient

from bridge.config import Config
from device.simulator.process import SimulatorProcess
from tests.harness import PLANT, bridge_config, running_bridge, wait_for

pytestmark = pytest.mark.e2e


def crc16(frame: bytes) -> bytes:
    crc = 0xFFFF
    for b in frame:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return struct.pack("<H", crc)


def rtu(unit: int, pdu: bytes) -> bytes:
    frame = bytes([unit]) + pdu
    return frame + crc16(frame)


@contextlib.asynccontextmanager
async def pty_pair(tmp: Path, name: str) -> AsyncIterator[tuple[str, str]]:
    """Two linked ptys, as a USB RS-485 adapter pair would be: (bridge end, master end)."""
    if shutil.which("socat") is None:
        pytest.fail("socat is needed for the RTU tests (.ci/run installs it)")
    a, b = tmp / f"{name}-bridge", tmp / f"{name}-master"
    proc = await asyncio.create_subprocess_exec(
        "socat", f"pty,raw,echo=0,link={a}", f"pty,raw,echo=0,link={b}", stderr=asyncio.subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 5
        while not (a.exists() and b.exists()):
            assert time.monotonic() < deadline, "socat made no pty pair"
            await asyncio.sleep(0.02)
        yield str(a), str(b)
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 5)


class RawLine:
    """The master end as raw bytes: for frames no client library sends."""

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)

    def close(self) -> None:
        os.close(self.fd)

    def send(self, data: bytes) -> None:
        os.write(self.fd, data)

    async def receive(self, quiet_s: float = 0.3) -> bytes:
        """Everything that arrives until the line stays quiet for ``quiet_s``."""
        out = b""
        deadline, limit = time.monotonic() + quiet_s, time.monotonic() + 5.0
        while time.monotonic() < min(deadline, limit):
            try:
                chunk = os.read(self.fd, 512)
            except (BlockingIOError, OSError):
                chunk = b""
            if not chunk:
                await asyncio.sleep(0.01)
                continue
            out += chunk
            deadline = time.monotonic() + quiet_s
        return out


async def test_rtu_slave_serves_reads_and_relay_writes_and_ignores_what_the_spec_says(tmp_path: Path) -> None:
    async with pty_pair(tmp_path, "op") as (bridge_end, master_end), pty_pair(tmp_path, "ro") as (ro_bridge, ro_master):
        config, ports = bridge_config(tmp_path)
        doc = config.model_dump()
        doc["modbus"]["rtu"] = [
            # a pty carries no parity (Linux refuses to set it): the lines run 8N1 here, the default 8E1
            {"port": bridge_end, "role": "operator", "parity": "N"},
            {"port": ro_bridge, "parity": "N"},  # a viewer line: reads only
        ]
        config = Config.model_validate(doc)
        sim = SimulatorProcess(["--connect", f"127.0.0.1:{ports['device']}", "--scenario", str(PLANT)])
        async with running_bridge(config, tmp_path) as app, sim:
            dev = app.model.devices["board1"]
            await wait_for(lambda: dev.online and dev.snapshot is not None and dev.status is not None, 20, "online")
            client = AsyncModbusSerialClient(master_end, baudrate=19200, parity="N", stopbits=1, timeout=2, retries=0)
            assert await client.connect()
            try:
                rr = await client.read_input_registers(1000, count=4, device_id=1)
                assert not rr.isError(), rr
                volts, amps = struct.unpack(">ff", struct.pack(">4H", *rr.registers))
                assert volts == pytest.approx(230.0, rel=5e-4) and amps == pytest.approx(2000 / 230, rel=5e-4)
                # a relay through the one command path, audited with the serial port as the origin
                wr = await client.write_coil(0, False, device_id=1)
                assert not wr.isError(), wr
                assert dev.circuits[0].relay_on is False
                rc = await client.read_coils(0, count=1, device_id=1)
                assert rc.bits[0] is False
                bad = await client.read_input_registers(60000, count=2, device_id=1)
                assert bad.isError() and bad.exception_code == 2  # the same exceptions as TCP
            finally:
                client.close()
            await asyncio.sleep(0.1)
            line = RawLine(master_end)
            try:
                read = bytes([4]) + struct.pack(">HH", 1000, 2)
                line.send(rtu(1, read)[:-1] + bytes([rtu(1, read)[-1] ^ 0xFF]))  # CRC error
                assert await line.receive() == b""
                line.send(rtu(7, read))  # another slave on the line
                assert await line.receive() == b""
                line.send(b"\x13\x37\xde\xad")  # noise, then 3.5 characters of silence
                await asyncio.sleep(0.01)
                line.send(rtu(1, read))
                answer = await line.receive()
                assert answer[:3] == bytes([1, 4, 4]) and answer[-2:] == crc16(answer[:-2])
                frame = rtu(1, read)  # cut by silence: the halves are dropped, not joined
                line.send(frame[:4])
                await asyncio.sleep(0.02)
                line.send(frame[4:])
                assert await line.receive() == b""
                line.send(rtu(0, bytes([5]) + struct.pack(">HH", 1, 0x0000)))  # broadcast: relay 2 off
                assert await line.receive() == b""
                assert dev.circuits[1].relay_on is True  # a broadcast never switches a relay
            finally:
                line.close()
            # mbpoll, an independent master: the voltage as a float from the 1-based reference 1001
            if shutil.which("mbpoll") is None:
                pytest.fail("mbpoll is needed (.ci/run installs it)")
            out = await asyncio.to_thread(
                subprocess.run,
                ["mbpoll", "-m", "rtu", "-a", "1", "-b", "19200", "-P", "none", "-t", "3:float", "-B",
                 "-r", "1001", "-c", "1", "-1", "-o", "2", master_end],
                capture_output=True, text=True, timeout=20,
            )  # fmt: skip
            assert out.returncode == 0, out.stdout + out.stderr
            value = float(out.stdout.strip().splitlines()[-1].split(":")[-1])  # "[1001]:  230.000"
            assert value == pytest.approx(230.0, rel=5e-4)
            # the viewer line reads, and refuses a relay write with exception 01
            viewer = AsyncModbusSerialClient(ro_master, baudrate=19200, parity="N", stopbits=1, timeout=2, retries=0)
            assert await viewer.connect()
            try:
                assert not (await viewer.read_input_registers(1000, count=2, device_id=1)).isError()
                refused = await viewer.write_coil(2, False, device_id=1)
                assert refused.isError() and refused.exception_code == 1
                assert dev.circuits[2].relay_on is not False
            finally:
                viewer.close()
