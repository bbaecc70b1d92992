"""Hostile peers on every port while a real device streams: idle connections, slow-loris senders
(a byte at a time, never a HELLO) and frames announcing 4 MiB before any HELLO. The device's stream
goes on without a gap, the hostile links are closed by the caps and deadlines, and nothing a hostile
peer announces is buffered. (Memory under the same load, measured on a bridge process: bench/hostile.py.)"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest

from device.protocol.framing import HEADER, HEADER_CRC, MAGIC, VERSION, crc16
from device.simulator.process import SimulatorProcess
from tests.harness import PLANT, RawModbus, bridge_config, running_bridge, wait_for

pytestmark = pytest.mark.e2e


def _huge_header() -> bytes:
    """A valid frame header announcing a 4 MiB HELLO payload that never comes."""
    head = HEADER.pack(MAGIC, VERSION, 0x01, 0x01, 0, 0, 4 * 1024 * 1024)
    return head + HEADER_CRC.pack(crc16(head))


async def _open(port: int, source: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
    try:
        return await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    except OSError:
        return None


async def _closed_within(reader: asyncio.StreamReader, seconds: float) -> bool:
    try:
        async with asyncio.timeout(seconds):
            while await reader.read(4096):
                pass
        return True
    except TimeoutError:
        return False
    except OSError:
        return True


async def test_hostile_connections_on_every_port_leave_the_device_stream_alone(tmp_path: Path) -> None:
    config, ports = bridge_config(
        tmp_path,
        links__hello_timeout_s=2.0,
        links__max_unidentified=40,
        links__max_unidentified_per_host=8,
        bridge__offline_after_s=3.0,
    )
    sim = SimulatorProcess(["--connect", f"127.0.0.1:{ports['device']}", "--scenario", str(PLANT), "--speed", "1"])
    async with running_bridge(config, tmp_path) as app, sim:
        dev = app.model.devices["board1"]
        await wait_for(lambda: dev.online and dev.link.blocks > 10, 30, "the device streaming")
        gaps, dups, blocks = dev.link.gaps, dev.link.duplicates, dev.link.blocks
        hostile: list[tuple[str, asyncio.StreamReader, asyncio.StreamWriter]] = []
        for k in range(200):  # 200 per port, from 25 loopback addresses
            source = f"127.0.0.{2 + k % 25}"
            for name in ("device", "modbus", "sunspec", "http"):
                pair = await _open(ports[name], source)
                if pair is not None:
                    hostile.append((name, *pair))
        device_links = [(r, w) for name, r, w in hostile if name == "device"]
        for k, (_, w) in enumerate(device_links):
            if k % 3 == 0:
                w.write(_huge_header())  # a 4 MiB frame announced before any HELLO
            elif k % 3 == 1:
                w.write(b"O")  # a slow-loris: the first byte of a magic, then nothing more
        # while they hang on, the device streams on and Modbus answers
        async with RawModbus(ports["modbus"]) as mb:  # from 127.0.0.1, under the idle caps of others
            for _ in range(10):
                assert isinstance(await mb.read(4, 1, 1000, 2), list)
                await asyncio.sleep(0.2)
        # every hostile device link is closed by the caps or the HELLO deadline
        closed = await asyncio.gather(*(_closed_within(r, 5.0) for r, _ in device_links))
        assert all(closed), f"{closed.count(False)} of {len(closed)} hostile device links still open"
        assert app.hub._unidentified_total == 0
        await wait_for(lambda: dev.link.blocks > blocks + 60, 15, "the stream going on")
        assert dev.online and dev.link.gaps == gaps and dev.link.duplicates == dups
        for _, _, w in hostile:
            with contextlib.suppress(Exception):
                w.close()
