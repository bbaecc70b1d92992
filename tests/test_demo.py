"""`make run` as a newcomer meets it: the demo starts the bridge and a simulated device over mutual
TLS, prints every endpoint, serves Modbus, Modbus/TCP Security with the printed operator files, and
the CLI switches a relay through the token it finds itself."""

from __future__ import annotations

import asyncio
import re
import struct
import sys
from pathlib import Path

import pytest

from device.link import client_context
from tests.harness import RawModbus, f32
from tests.test_commands_e2e import cli

pytestmark = pytest.mark.e2e


def _readme_banner() -> list[str]:
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = text.split("`make run` prints something like:", 1)[1].split("\n\n", 2)[1]
    lines = [line.strip() for line in block.splitlines() if line.startswith("    ")]
    assert len(lines) >= 8, block
    return lines


async def test_demo_prints_every_endpoint_and_serves_them(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bridge.cli", "demo", "--no-opcua", "--state-dir", str(tmp_path / "demo"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    assert proc.stdout is not None
    banner = ""
    try:
        async with asyncio.timeout(60):
            while "Press Ctrl+C" not in banner:
                line = await proc.stdout.readline()
                assert line, banner
                banner += line.decode()
        for expected in ("127.0.0.1:5020", "127.0.0.1:5021", "Modbus/TCP Security  127.0.0.1:5802", "/health"):
            assert expected in banner, banner
        # the README shows the banner as it is (paths and the password aside; OPC UA is off here)
        printed = [line.strip() for line in banner.splitlines() if line.strip()]
        for line in _readme_banner():
            if "OPC UA" in line or line.startswith("user:"):
                continue
            pattern = r"\s+".join(r"\S+" if "..." in t or t.startswith("<") else re.escape(t) for t in line.split())
            assert any(re.fullmatch(pattern, p) for p in printed), f"README line not printed by the demo: {line}"
        files = re.search(r"certificate (\S+)\s+key (\S+)\s+CA (\S+)", banner)
        assert files is not None, banner
        crt, key, ca = (Path(f) for f in files.groups())
        async with asyncio.timeout(30):
            while True:  # the simulated device connects over mutual TLS, then values arrive
                async with RawModbus(5020) as mb:
                    regs = await mb.read(4, 1, 1000, 2)
                if isinstance(regs, list) and f32(regs) > 100:
                    break
                await asyncio.sleep(0.5)
        async with RawModbus(5802, tls=client_context(crt, key, ca)) as mb:
            off = struct.pack(">BHH", 5, 0, 0x0000)
            assert await mb.request(1, off) == off
        await asyncio.sleep(1.1)  # the demo's minimum interval between two switchings
        code, out, err = await cli("relay", "demo", "1", "on")
        assert code == 0 and '"changed": true' in out, err
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 30)
