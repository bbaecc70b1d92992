"""``POST /api/capture``: a device's scaled samples streamed to the CLI as they are counted, for a
given number of seconds of signal. The bridge holds at most ``QUEUE_BLOCKS`` blocks for a slow reader
(then drops blocks and says how many in the end frame): a capture never grows the bridge's memory or
slows its measuring."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from bridge import __version__
from bridge.errors import CommandRejected, DeviceOffline, DeviceUnknown
from bridge.logs import audit, get_logger
from bridge.model import ModelView, SampleBlock
from bridge.records.capture import block_payload, frame

log = get_logger("bridge.http")
QUEUE_BLOCKS = 64
MAX_SECONDS = 86400.0


async def stream_capture(
    request: web.Request, model: ModelView, req: dict[str, Any], client: str
) -> web.StreamResponse:
    device = str(req["device"])
    dev = model.devices.get(device)
    if dev is None:
        raise DeviceUnknown(f"unknown device {device!r}")
    hello = dev.hello
    if not dev.online or hello is None:
        raise DeviceOffline(f"device {device} is offline: nothing to capture")
    count = hello.circuit_count
    circuits = [int(c) for c in (req.get("circuits") or range(1, count + 1))]
    if not circuits or any(not 1 <= c <= count for c in circuits) or len(set(circuits)) != len(circuits):
        raise CommandRejected(f"circuits must be distinct numbers in 1..{count}, got {circuits}", code="bad-circuit")
    seconds = float(req["seconds"])
    if not 0 < seconds <= MAX_SECONDS:
        raise CommandRejected(f"seconds must be in (0, {MAX_SECONDS:g}], got {seconds:g}", code="bad-seconds")
    rows = [c - 1 for c in circuits]
    queue: asyncio.Queue[SampleBlock] = asyncio.Queue(maxsize=QUEUE_BLOCKS)
    dropped = 0

    def listener(block: SampleBlock) -> None:
        nonlocal dropped
        try:
            queue.put_nowait(block)
        except asyncio.QueueFull:
            dropped += 1

    stop = model.samples.subscribe(listener, device)
    audit("capture started", device=device, circuits=circuits, seconds=seconds, client=client)
    resp = web.StreamResponse(headers={"Content-Type": "application/x-openstrom-capture"})
    try:
        await resp.prepare(request)
        start = {
            "type": "start",
            "device": device,
            "serial_number": hello.serial_number,
            "part_number": hello.part_number,
            "firmware_version": hello.firmware_version,
            "sample_rate_hz": hello.sample_rate_hz,
            "circuits": circuits,
            "circuit_names": {str(c): dev.circuits[c - 1].name for c in circuits},
            "v_lsb_volts": [hello.v_lsb_volts[r] for r in rows],
            "i_lsb_amps": [hello.i_lsb_amps[r] for r in rows],
            "f_nominal": dev.config.f_nominal,
            "bridge_version": __version__,
        }
        await resp.write(frame(start))
        sent, total = 0, 0
        wanted: int | None = None  # samples, known from the first block's rate
        while wanted is None or total < wanted:
            try:
                block = await asyncio.wait_for(queue.get(), timeout=30)
            except TimeoutError:
                break  # the device stopped sending: end the capture with what came
            goal = wanted if wanted is not None else round(seconds * block.fs)
            wanted = goal
            v, i = block.scaled()
            n = min(block.n, goal - total)
            head = {"type": "block", "seq": block.seq, "t0_s": block.t0_s, "n": n}
            await resp.write(frame(head, block_payload(v[rows, :n], i[rows, :n])))
            sent, total = sent + 1, total + n
        await resp.write(frame({"type": "end", "blocks": sent, "samples": total, "dropped": dropped}))
        await resp.write_eof()
    except (ConnectionResetError, asyncio.CancelledError):
        log.info("capture ended by the client", device=device)
        raise
    finally:
        stop()
        log.info("capture finished", device=device, dropped=dropped)
    return resp
