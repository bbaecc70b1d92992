"""The direct value writer tells subscribers what asyncua's own write service would: every change,
a deadband filter's verdict, the queue size, a bad status with a null value; a callback that waits
is finished by the event loop. Over a real asyncua server and client."""

from __future__ import annotations

import asyncio
import datetime as dt

from asyncua import Client, ua

from bridge.fronts.opcua.direct import DirectWriter
from bridge.fronts.opcua.values import shared_value
from tests.harness import plain_opcua_server

GOOD = ua.StatusCode(ua.StatusCodes.Good)


class Changes:
    def __init__(self) -> None:
        self.got: asyncio.Queue[tuple[str, object, ua.StatusCode]] = asyncio.Queue()

    def datachange_notification(self, node: object, val: object, data: object) -> None:
        dv = data.monitored_item.Value  # type: ignore[attr-defined]
        self.got.put_nowait((str(node), val, dv.StatusCode))


async def drain(q: asyncio.Queue[tuple[str, object, ua.StatusCode]], wait: float = 0.5) -> list[tuple[str, object]]:
    out = []
    while True:
        try:
            node, val, status = await asyncio.wait_for(q.get(), wait)
        except TimeoutError:
            return out
        out.append((node.split("=")[-1], val if status.is_good() else status.name))


async def test_direct_writes_notify_as_the_write_service_does() -> None:
    server, url, idx = await plain_opcua_server("direct")
    plain = await server.nodes.objects.add_variable(ua.NodeId("plain", idx), "plain", 0.0)
    band = await server.nodes.objects.add_variable(ua.NodeId("band", idx), "band", 0.0)
    service = await server.nodes.objects.add_variable(ua.NodeId("service", idx), "service", 0.0)
    seen: list[float] = []

    async def slow(handle: int, value: ua.DataValue) -> None:  # a callback that has to wait
        await asyncio.sleep(0.01)
        seen.append(value.Value.Value)

    server.iserver.aspace.add_datachange_callback(plain.nodeid, ua.AttributeIds.Value, slow)
    writer = DirectWriter(server)
    await server.start()
    try:
        async with Client(url) as client:
            changes = Changes()
            sub = await client.create_subscription(20, changes)
            await sub.subscribe_data_change([client.get_node(plain.nodeid)], queuesize=10)
            deadband = ua.DataChangeFilter(
                Trigger=ua.DataChangeTrigger.StatusValue, DeadbandType=ua.DeadbandType.Absolute, DeadbandValue=1.0
            )
            for node in (band, service):
                await sub._subscribe(client.get_node(node.nodeid), ua.AttributeIds.Value, deadband, queuesize=10)
            assert sorted(await drain(changes.got)) == [("band", 0.0), ("plain", 0.0), ("service", 0.0)]
            now = dt.datetime.now(dt.UTC)
            for x in (1.0, 1.0, 2.0):  # the repeated value is no change
                writer.write(plain.nodeid, shared_value(x, ua.VariantType.Double, GOOD, now, now))
            for x in (0.5, 1.7, 1.9, 3.0, 3.5, -1.0):  # the same through asyncua's write service
                writer.write(band.nodeid, shared_value(x, ua.VariantType.Double, GOOD, now, now))
                await server.write_attribute_value(
                    service.nodeid, shared_value(x, ua.VariantType.Double, GOOD, now, now)
                )
            bad = ua.StatusCode(ua.StatusCodes.BadNoCommunication)
            writer.write(plain.nodeid, shared_value(9.0, ua.VariantType.Double, bad, now, now))
            got = await drain(changes.got)
            assert [v for n, v in got if n == "plain"] == [1.0, 2.0, "BadNoCommunication"]
            by_service = [v for n, v in got if n == "service"]
            assert [v for n, v in got if n == "band"] == by_service
            assert 0 < len(by_service) < 6  # the deadband held some back
            assert (await client.get_node(plain.nodeid).read_data_value(raise_on_bad_status=False)).Value.Value is None
            assert await client.get_node(band.nodeid).read_value() == -1.0
            await asyncio.sleep(0.1)
            assert seen == [1.0, 1.0, 2.0, None]  # every write reaches it, finished by the loop
    finally:
        await server.stop()
