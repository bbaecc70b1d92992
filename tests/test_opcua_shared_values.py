"""Shared OPC UA attribute values: equal values are one object, and every node still changes alone
(copy on write), over asyncua's own server and client."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from asyncua import Client, ua

from bridge.fronts.opcua.shared_values import SharedAttributeValue
from tests.harness import plain_opcua_server


class Changes:
    def __init__(self) -> None:
        self.values: asyncio.Queue[object] = asyncio.Queue()

    def datachange_notification(self, node: object, val: object, data: object) -> None:
        self.values.put_nowait(val)


async def test_equal_attributes_are_shared_and_each_node_changes_alone(tmp_path: Path) -> None:
    server, url, idx = await plain_opcua_server("shared")
    objects = server.nodes.objects
    a = await objects.add_variable(ua.NodeId("a", idx), ua.QualifiedName("Reading", idx), 1.5)
    b = await objects.add_variable(ua.NodeId("b", idx), ua.QualifiedName("Reading", idx), 1.5)
    aspace = server.iserver.aspace
    attrs_a, attrs_b = aspace[a.nodeid].attributes, aspace[b.nodeid].attributes
    for attr in (ua.AttributeIds.AccessLevel, ua.AttributeIds.DataType, ua.AttributeIds.BrowseName):
        assert attrs_a[attr] is attrs_b[attr], attr
        assert type(attrs_a[attr]) is SharedAttributeValue
    assert attrs_a[ua.AttributeIds.NodeId] is not attrs_b[ua.AttributeIds.NodeId]
    with pytest.raises(TypeError):
        attrs_a[ua.AttributeIds.AccessLevel].value = ua.DataValue(ua.Variant(3, ua.VariantType.Byte))

    await a.set_writable(True)  # AccessLevel of a alone
    await b.write_attribute(
        ua.AttributeIds.DisplayName, ua.DataValue(ua.Variant(ua.LocalizedText("Other"), ua.VariantType.LocalizedText))
    )
    assert await server.start() is None
    try:
        async with Client(url) as client:
            ca, cb = client.get_node(a.nodeid), client.get_node(b.nodeid)
            changes = Changes()
            sub = await client.create_subscription(20, changes)
            await sub.subscribe_data_change([cb])  # b's Value gets its own copy with the subscription
            assert await asyncio.wait_for(changes.values.get(), 5) == 1.5
            await ca.write_value(7.25)  # a client's write: a is writable, b is not
            with pytest.raises(ua.UaStatusCodeError):
                await cb.write_value(9.0)
            assert await ca.read_value() == 7.25
            assert await cb.read_value() == 1.5
            assert (await ca.read_display_name()).Text == "Reading"
            assert (await cb.read_display_name()).Text == "Other"
            assert (await ca.read_attribute(ua.AttributeIds.AccessLevel)).Value.Value & ua.AccessLevel.CurrentWrite.mask
            assert (
                not (await cb.read_attribute(ua.AttributeIds.AccessLevel)).Value.Value
                & ua.AccessLevel.CurrentWrite.mask
            )
            await b.write_value(2.5)  # the server's own write reaches b's subscriber, and only b
            assert await asyncio.wait_for(changes.values.get(), 5) == 2.5
            assert await ca.read_value() == 7.25
            assert changes.values.empty()
    finally:
        await server.stop()
