"""The seed's web-service path: devices that POST packages of protocol messages over HTTP(S). The
simulator streams over it with the same values, energy and relay behaviour as over TCP; a retried
POST counts nothing twice; a malformed or unauthenticated POST gets a precise 4xx and changes nothing."""

from __future__ import annotations

import asyncio
import gzip
import json
import ssl
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bridge.commands import Origin, Role
from bridge.link.http_ingest import token_hash
from bridge.pki import init_pki, issue_device
from device.protocol.package import decode_package, encode_package
from device.simulator.device import Identity, SimulatedDevice
from device.simulator.process import SimulatorProcess
from device.simulator.scenario import load_scenario
from tests.harness import PLANT, ROOT, bridge_config, free_port, running_bridge, wait_for

pytestmark = pytest.mark.e2e
TOKEN = "sim-token-0001-not-a-secret-in-production"
STEADY = ROOT / "tests/scenarios/steady.yaml"


def _config(tmp: Path) -> tuple[Any, dict[str, int], str]:
    port = free_port()
    config, ports = bridge_config(
        tmp,
        links={"listen": None, "http_listen": f"127.0.0.1:{port}", "http_min_interval_s": 0.0},
        devices=[
            {"name": "board1", "serial_number": "OS-SIM-0001", "unit_id": 1, "http_token_sha256": token_hash(TOKEN)}
        ],
    )
    return config, ports, f"http://127.0.0.1:{port}/v1/packages"


@pytest.mark.parametrize("encoding", ["json", "xml"])
async def test_the_simulator_streams_over_http_and_takes_relay_commands_back(tmp_path: Path, encoding: str) -> None:
    config, _ports, url = _config(tmp_path)
    args = ["--http", url, "--token", TOKEN, "--scenario", str(PLANT), "--encoding", encoding, "--post-interval", "0.3"]
    if encoding == "xml":
        args.append("--gzip")
    async with running_bridge(config, tmp_path) as app, SimulatorProcess(args):
        dev = app.model.devices["board1"]
        await wait_for(lambda: dev.online and dev.snapshot is not None and dev.snapshot.number > 5, 30, "windows")
        assert dev.link.transport == "http"
        c1 = dev.snapshot.circuits[0]  # type: ignore[union-attr]
        assert c1.p_w == pytest.approx(2000.0, rel=5e-4) and c1.v_rms == pytest.approx(230.0, rel=5e-4)
        before = c1.import_wh
        await wait_for(lambda: dev.snapshot is not None and dev.snapshot.circuits[0].import_wh > before, 10, "energy")
        # a relay command rides in a response; the device answers in its next POST
        out = await app.commands.switch_relay("board1", 2, False, Origin(front="test", role=Role.OPERATOR))
        assert out.changed and dev.circuits[1].relay_on is False
        await wait_for(
            lambda: dev.snapshot is not None and abs(dev.snapshot.circuits[1].p_w) < 1.0, 10, "circuit 2 off"
        )
        assert dev.link.gaps == 0 and dev.link.lost_blocks == 0


async def _post(url: str, body: bytes, *, token: str | None = TOKEN, ctype: str = "application/json", **h: str) -> Any:
    headers = {"Content-Type": ctype, **h}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    async with aiohttp.ClientSession() as s, s.post(url, data=body, headers=headers) as r:
        return r.status, await r.read()


async def test_a_retried_post_counts_nothing_twice_and_bad_posts_change_nothing(tmp_path: Path) -> None:
    config, _ports, url = _config(tmp_path)
    device = SimulatedDevice(load_scenario(STEADY), identity=Identity.for_serial("OS-SIM-0001"))
    blocks = [device.generate()[0] for _ in range(40)]  # 40 blocks: ~2.6 s of a 2000 W heater
    async with running_bridge(config, tmp_path) as app:
        dev = app.model.devices["board1"]
        # no session yet: the first package must start with HELLO
        status, body = await _post(url, encode_package(blocks[:2], "json"))
        assert status == 409 and json.loads(body)["code"] == "hello"
        status, body = await _post(url, encode_package([device.hello(), *blocks[:20]], "json"))
        assert status == 200, body
        acks = [m for m in decode_package(body, "json") if type(m).__name__ == "Ack"]
        # what is durable, and no more: the blocks the analyzer has counted (it batches ~1 s)
        first_ack = acks[-1].block_seq  # type: ignore[attr-defined]
        assert 0 <= first_ack <= 19 and app.store.progress("board1").block_seq == first_ack  # type: ignore[union-attr]
        await wait_for(lambda: dev.snapshot is not None, 5, "a window")
        energy = dev.snapshot.circuits[0].import_wh  # type: ignore[union-attr]
        counted = dev.link.blocks
        # the same POST again (the response was lost on a cut connection): nothing counts twice
        status, body = await _post(url, encode_package([device.hello(), *blocks[:20]], "json"))
        assert status == 200
        assert dev.snapshot.circuits[0].import_wh == energy  # type: ignore[union-attr]
        assert dev.link.duplicates == 20 and dev.link.blocks == counted  # every replayed block dropped
        # bad posts: precise 4xx, and nothing changes
        bad = [
            (await _post(url, b'{"messages": [{"type": "samples", '), 400, "line 1, column"),
            (await _post(url, encode_package(blocks[20:22], "json"), token="wrong"), 401, "no valid device token"),
            (await _post(url, encode_package(blocks[20:22], "json"), token=None), 401, "no valid device token"),
            (await _post(url, b"<x/>", ctype="text/plain"), 415, "Content-Type"),
            (await _post(url, b'{"messages": [{"type": "samples", "block_seq": 20}]}'), 400, "messages[0] (samples)"),
            (await _post(url, b'{"messages": [{"type": "frobnicate"}]}'), 400, "unknown message type"),
            (await _post(url, gzip.compress(b"{}")[:-4], **{"Content-Encoding": "gzip"}), 400, "gzip"),
        ]
        for (status, body), want_status, want_text in bad:
            assert status == want_status and want_text in json.loads(body)["error"], (status, body)
        assert dev.snapshot.circuits[0].import_wh == energy  # type: ignore[union-attr]
        assert dev.link.blocks == counted and dev.link.frame_errors == 0
        # the rest of the stream goes on where it was
        status, body = await _post(url, encode_package(blocks[20:], "json"))
        assert status == 200
        last_ack = [m for m in decode_package(body, "json") if type(m).__name__ == "Ack"][-1].block_seq  # type: ignore[attr-defined]
        assert first_ack < last_ack <= 39 and app.store.progress("board1").block_seq == last_ack  # type: ignore[union-attr]
        await asyncio.sleep(0.1)
        assert dev.snapshot.circuits[0].import_wh > energy  # type: ignore[union-attr]


async def test_https_with_the_device_certificate_and_no_token(tmp_path: Path) -> None:
    """Beyond loopback the ingest is HTTPS only; a device with its link certificate needs no token,
    and a token of one device cannot speak for another."""
    state = tmp_path / "state"
    init_pki(state)
    cert, key, ca = issue_device(state, "OS-SIM-0002", tmp_path / "dev2")
    port = free_port()
    config, _ports = bridge_config(
        tmp_path,
        links={"listen": None, "http_listen": f"127.0.0.1:{port}", "tls": "always", "http_min_interval_s": 0.0},
        devices=[
            {"name": "board1", "serial_number": "OS-SIM-0001", "unit_id": 1, "http_token_sha256": token_hash(TOKEN)},
            {"name": "board2", "serial_number": "OS-SIM-0002", "unit_id": 2},
        ],
    )
    url = f"https://127.0.0.1:{port}/v1/packages"
    args = ["--http", url, "--serial-number", "OS-SIM-0002", "--scenario", str(STEADY), "--post-interval", "0.3"]
    args += ["--tls-cert", str(cert), "--tls-key", str(key), "--tls-ca", str(ca)]
    async with running_bridge(config, tmp_path) as app, SimulatorProcess(args):
        dev = app.model.devices["board2"]
        await wait_for(lambda: dev.online and dev.snapshot is not None and dev.snapshot.number > 3, 30, "windows")
        assert dev.snapshot.circuits[0].p_w == pytest.approx(2000.0, rel=5e-4)  # type: ignore[union-attr]
        assert dev.link.transport == "http"
        # board1's token, with board2's HELLO: the token speaks for OS-SIM-0001 only
        ctx = ssl.create_default_context(cafile=str(ca))
        other = SimulatedDevice(load_scenario(STEADY), identity=Identity.for_serial("OS-SIM-0002"))
        body = encode_package([other.hello(), other.generate()[0]], "json")
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}
        async with aiohttp.ClientSession() as s, s.post(url, data=body, headers=headers, ssl=ctx) as r:
            assert r.status == 403, await r.text()
            assert "OS-SIM-0001" in (await r.json())["error"]
        assert app.model.devices["board1"].snapshot is None
