"""The cost of a mutual-TLS device link's handshake, side by side with a plain TCP connect, in one run.

    .venv/bin/python bench/tls.py [--count 200]

A server and a client in this process on loopback, with the link PKI's contexts (EC P-256 keys,
TLS 1.3): each round opens a connection, exchanges one byte and closes. Prints wall time per
connection (median and p99) and the process's CPU per connection, both sides together.
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
import statistics
import tempfile
import time
from pathlib import Path

from bridge.pki import PkiPaths, init_pki, issue_device
from device.link import client_context, server_context


async def rounds(count: int, server_ctx: ssl.SSLContext | None, client_ctx: ssl.SSLContext | None) -> list[float]:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(await reader.read(1))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    times = []
    async with server:
        for _ in range(count):
            t = time.perf_counter()
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=client_ctx, server_hostname="127.0.0.1" if client_ctx else None
            )
            writer.write(b"x")
            await reader.read(1)
            times.append(time.perf_counter() - t)
            writer.close()
    return times


def report(name: str, times: list[float], cpu: float) -> None:
    times = sorted(times)
    p99 = times[int(0.99 * (len(times) - 1))]
    print(
        f"{name:<11} median {statistics.median(times) * 1e3:6.2f} ms  p99 {p99 * 1e3:6.2f} ms  "
        f"CPU {cpu / len(times) * 1e3:6.2f} ms per connection (both ends)"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=200)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp)
        init_pki(state)
        paths = PkiPaths.under(state)
        dev = issue_device(state, "OS-BENCH-0001", state / "dev")
        server_ctx = server_context(paths.bridge_cert, paths.bridge_key, paths.ca_cert)
        client_ctx = client_context(*dev)
        results = {}
        for name, sctx, cctx in (("plain TCP", None, None), ("mutual TLS", server_ctx, client_ctx)) * 2:
            c0 = time.process_time()
            times = asyncio.run(rounds(args.count, sctx, cctx))
            results[name] = (times, time.process_time() - c0)  # the second, warm run is kept
        for name, (times, cpu) in results.items():
            report(name, times, cpu)
        ratio = (results["mutual TLS"][1] / results["plain TCP"][1]) if results["plain TCP"][1] else float("nan")
        print(f"mutual TLS / plain TCP CPU per connection: {ratio:.1f}")


if __name__ == "__main__":
    main()
