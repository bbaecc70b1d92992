"""Simulator process -> bridge -> Modbus clients (pymodbus and raw MBAP frames) on loopback."""

from __future__ import annotations

import asyncio
import itertools
import math
import struct
from pathlib import Path
from typing import Any

import pytest
from pymodbus.client import AsyncModbusTcpClient

from bridge.fronts.modbus.register_map import load_map
from bridge.model import Change
from device.simulator.process import SimulatorProcess
from tests.harness import PLANT, RawModbus, bridge_config, f32, fresh_windows, running_bridge, wait_for

pytestmark = pytest.mark.e2e


def _sim(port: int, *extra: str) -> SimulatorProcess:
    return SimulatorProcess(["--connect", f"127.0.0.1:{port}", "--scenario", str(PLANT), "--speed", "2", *extra])


async def test_values_through_both_maps_match_the_scenario_truth(tmp_path: Path) -> None:
    config, ports = bridge_config(tmp_path)
    async with running_bridge(config, tmp_path) as app, _sim(ports["device"]):
        dev = app.model.devices["board1"]
        await wait_for(lambda: dev.snapshot is not None and dev.snapshot.number > 5, 20, "windows")
        client = AsyncModbusTcpClient("127.0.0.1", port=ports["modbus"])
        await client.connect()
        try:
            r = await client.read_input_registers(1000, count=30, device_id=1)
            c1 = struct.unpack(">15f", struct.pack(">30H", *r.registers))
            r = await client.read_input_registers(1100, count=30, device_id=1)
            c2 = struct.unpack(">15f", struct.pack(">30H", *r.registers))
        finally:
            client.close()
        # circuit 1: 2 kW heater at 230 V; circuit 2: 1.1 kW pump at PF 0.8 lagging (plant.yaml)
        assert c1[0] == pytest.approx(230.0, rel=5e-4)
        assert c1[1] == pytest.approx(2000 / 230, rel=5e-4)
        assert c1[2] == pytest.approx(2000.0, rel=5e-4)
        assert abs(c1[3]) < 2.0 and c1[5] == pytest.approx(1.0, abs=1e-3)
        assert c2[2] == pytest.approx(1100.0, rel=5e-4)
        assert c2[3] == pytest.approx(825.0, abs=1e-3 * 1375)
        assert c2[5] == pytest.approx(0.8, abs=1e-3)
        assert c2[6] == pytest.approx(36.87, abs=0.1)
        assert c1[14] == pytest.approx(50.0, abs=1e-3)

        # 150-cycle aggregates arrive after ~3 s of samples
        await wait_for(lambda: "3s" in dev.aggregates, 20, "3 s aggregate")
        async with RawModbus(ports["modbus"]) as mb:
            regs = await mb.read(4, 1, 1070, 6)
            assert isinstance(regs, list)
            assert f32(regs, 0) == pytest.approx(230.0, rel=5e-4)
            assert f32(regs, 4) == pytest.approx(2000.0, rel=5e-4)
            assert math.isnan(f32(await mb.read(4, 1, 1088, 2)))  # type: ignore[arg-type]  # no 15 min block yet

        # SunSpec: discover by walking the model chain, then read model 201 of circuit 2 with its SFs
        async with RawModbus(ports["sunspec"]) as mb:
            head = await mb.read(3, 1, 40000, 4)
            assert isinstance(head, list) and head[:2] == [0x5375, 0x6E53] and head[2] == 1
            addr, models = 40002, []
            while True:
                hdr = await mb.read(3, 1, addr, 2)
                assert isinstance(hdr, list)
                if hdr[0] == 0xFFFF:
                    break
                models.append((hdr[0], addr))
                addr += 2 + hdr[1]
            assert [m for m, _ in models] == [1] + [201] * 10 + [64420]
            m201 = models[2][1]  # circuit 2
            regs = await mb.read(3, 1, m201, 107)
            assert isinstance(regs, list) and regs[:2] == [201, 105]

            def s16(x: int) -> int:
                return x - 0x10000 if x & 0x8000 else x

            body = regs[2:]
            amps = s16(body[0]) * 10.0 ** s16(body[4])
            volts = s16(body[5]) * 10.0 ** s16(body[13])
            watts = s16(body[16]) * 10.0 ** s16(body[20])
            var = s16(body[26]) * 10.0 ** s16(body[30])
            pf_pct = s16(body[31]) * 10.0 ** s16(body[35])
            assert amps == pytest.approx(1100 / 0.8 / 230, abs=0.01)
            assert volts == pytest.approx(230.0, abs=0.1)
            assert watts == pytest.approx(1100, abs=1)
            assert var == pytest.approx(825, abs=2)
            assert pf_pct == pytest.approx(80.0, abs=0.1)
            assert body[2] == 0x8000  # AphB: not implemented
            test_points = await mb.read(3, 1, 41246, 4)  # the endianness check in the vendor model
            assert isinstance(test_points, list)
            assert f32(test_points) == pytest.approx(1234.5678, rel=1e-7)
            assert test_points[2:] == [0x1234, 0x5678]
            common = await mb.read(3, 1, 40004, 16)
            assert isinstance(common, list)
            assert struct.pack(">16H", *common).rstrip(b"\0") == b"OpenStrom"


async def test_raw_mbap_client_gets_standard_exceptions(tmp_path: Path) -> None:
    config, ports = bridge_config(tmp_path)
    async with running_bridge(config, tmp_path) as app, _sim(ports["device"]):
        dev = app.model.devices["board1"]
        await wait_for(lambda: dev.snapshot is not None, 20, "first window")
        async with RawModbus(ports["modbus"]) as mb:
            regs = await mb.read(4, 1, 0, 4)
            assert isinstance(regs, list)
            assert f32(regs) == pytest.approx(1234.5678, rel=1e-7)
            assert (regs[2] << 16 | regs[3]) == 0x12345678
            assert await mb.read(4, 1, 0, 126) == 0x03  # count over 125: illegal data value
            assert await mb.read(1, 1, 0, 2001) == 0x03
            assert await mb.read(4, 1, 5, 2) == 0x02  # unmapped: illegal data address
            assert await mb.read(4, 1, 1028, 4) == 0x02  # runs past the mapped circuit block
            assert await mb.read(4, 9, 0, 2) == 0x0A  # no device with unit 9: gateway path unavailable
            body = await mb.request(1, bytes([0x41, 0x00, 0x00]))  # a function code nobody implements
            assert body == bytes([0xC1, 0x01])
            bad_coil = await mb.request(1, struct.pack(">BHH", 5, 0, 0x1234))
            assert bad_coil == bytes([0x85, 0x03])
            # function 43/14: read device identification (basic)
            body = await mb.request(1, bytes([0x2B, 0x0E, 0x01, 0x00]))
            assert body[:2] == bytes([0x2B, 0x0E])
            assert b"OpenStrom" in body and b"OSB" in body


async def test_coil_write_switches_the_load_off_and_offline_gives_gateway_exceptions(tmp_path: Path) -> None:
    config, ports = bridge_config(tmp_path)
    async with running_bridge(config, tmp_path) as app:
        dev = app.model.devices["board1"]
        async with _sim(ports["device"]):
            await wait_for(lambda: dev.snapshot is not None and dev.status is not None, 20, "first window")
            async with RawModbus(ports["modbus"]) as mb:
                assert await mb.read(1, 1, 0, 1) == [1]
                # write coil 0 (circuit 1) OFF: answered only after the device confirmed
                body = await mb.request(1, struct.pack(">BHH", 5, 0, 0x0000))
                assert body == struct.pack(">BHH", 5, 0, 0x0000)
                assert dev.circuits[0].relay_on is False
                assert await mb.read(1, 1, 0, 1) == [0]
                await fresh_windows(dev)
                regs = await mb.read(4, 1, 1000, 6)
                assert isinstance(regs, list)
                assert abs(f32(regs, 4)) < 1.0  # ~0 W after the relay opened
                assert f32(regs, 0) == pytest.approx(230.0, rel=1e-3)  # the voltage is still there
                assert dev.circuits[0].relay_operations == 1
        # simulator gone: the device goes offline, reads and writes get gateway exceptions
        await wait_for(lambda: not dev.online, 10, "offline")
        async with RawModbus(ports["modbus"]) as mb:
            assert await mb.read(4, 1, 1000, 2) == 0x0B
            regs = await mb.read(4, 1, 100, 2)  # device-level health stays readable: connected = 0
            assert isinstance(regs, list) and regs[0] == 0
            loop = asyncio.get_running_loop()
            t = loop.time()
            body = await mb.request(1, struct.pack(">BHH", 5, 0, 0xFF00))
            assert body == bytes([0x85, 0x0B])
            assert loop.time() - t < 1.0  # fails fast


def test_builtin_maps_load_and_sunspec_lengths_are_consistent() -> None:
    m = load_map("sunspec")
    starts = {p.address: p for p in m.points if p.name.endswith(".ID") or p.name == "end.ID"}
    assert 40002 in starts
    for p in m.points:
        if p.name.endswith(".L") and p.name != "end.L":
            length = int(p.value)  # type: ignore[arg-type]
            model_start = p.address - 1
            nxt = model_start + 2 + length
            assert nxt in starts, f"{p.name}: next model expected at {nxt}"
    end = m.point_at("holding", 41250)
    assert end is not None and end.value == 0xFFFF


@pytest.mark.parametrize("encoding", [["--encoding", "json"], ["--encoding", "xml", "--gzip"]])
async def test_json_and_xml_streams_measure_the_same(tmp_path: Path, encoding: list[str]) -> None:
    config, ports = bridge_config(tmp_path)
    async with running_bridge(config, tmp_path) as app, _sim(ports["device"], *encoding):
        dev = app.model.devices["board1"]
        await wait_for(lambda: dev.snapshot is not None and dev.snapshot.number > 3, 20, "windows")
        assert dev.snapshot is not None
        assert dev.snapshot.circuits[0].p_w == pytest.approx(2000.0, rel=5e-4)
        assert dev.link.frame_errors == 0


@pytest.mark.parametrize(("batch_s", "publish_s"), [(0.25, 1.0), (0.25, 0.0)])
async def test_live_values_refresh_once_per_publish_s_while_the_core_measures_every_batch(
    tmp_path: Path, batch_s: float, publish_s: float
) -> None:
    """The core measures every ``batch_s`` of signal; the live values (what Modbus, OPC UA and MQTT
    serve) take the newest window once per ``publish_s`` of signal, and no window is skipped on the
    way: the window count goes up by the windows in between."""
    config, ports = bridge_config(tmp_path, analysis={"batch_s": batch_s, "publish_s": publish_s})
    seen: list[tuple[float, int]] = []  # (end of the published window, device clock; windows so far)
    async with _sim(ports["device"]), running_bridge(config, tmp_path) as app:
        dev = app.model.devices["board1"]

        def on_snapshot(d: Any, _: Change) -> None:
            if d is dev and d.snapshot is not None:
                seen.append((d.snapshot.time_s + d.snapshot.duration_s, d.snapshot.number))

        app.model.subscribe(on_snapshot, {Change.SNAPSHOT})
        await wait_for(lambda: len(seen) >= 9, 30, "nine refreshes")
    steps = [(b[0] - a[0], b[1] - a[1]) for a, b in itertools.pairwise(seen[1:])]
    window = 0.2  # 10 cycles at 50 Hz
    for dt, windows in steps:
        assert windows == round(dt / window)  # every window measured, refreshed or not
    mean = sum(dt for dt, _ in steps) / len(steps)
    if publish_s:
        assert all(publish_s - 0.5 * batch_s <= dt <= publish_s + batch_s + window for dt, _ in steps), steps
        assert publish_s - 0.05 <= mean <= publish_s + 0.25
    else:
        assert mean <= batch_s + window, steps
