"""Shared OPC UA attribute values: equal values are one object, and every node still changes alone
(copy on write), over asyncua's own server and client."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from asyncua import Client, ua
from asyncua.server.address_space import AttributeValue
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.config import Device
from bridge.fronts.opcua import shared_values
from bridge.fronts.opcua.address_space import AddressSpace
from bridge.fronts.opcua.shared_values import Node, SharedAttributeValue, SharedReferences
from bridge.model.state import DeviceState
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


async def test_sibling_reference_lists_are_shared_and_each_node_changes_alone() -> None:
    """A copied circuit's properties hold one reference list; adding or deleting a reference on one
    (asyncua's own services), deleting a node they point to or a whole device changes that node's
    references alone. Browsed over a client too."""
    logging.disable(logging.WARNING)  # asyncua's instantiate warns about optional AnalogItem children
    try:
        server, url, _ = await plain_opcua_server("references")
        space = AddressSpace(server, lambda d, c, n: lambda *a: None, energy_model=False)
        devices = [DeviceState(config=Device(name=n, serial_number=f"S{k}", unit_id=1 + k)) for k, n in enumerate("ab")]
        await space.build(devices)
    finally:
        logging.disable(logging.NOTSET)
    aspace, idx = server.iserver.aspace, space.idx
    prefix = "b.Circuit03.Alarms.overcurrent"
    one, two = (aspace[ua.NodeId(f"{prefix}.{p}", idx)] for p in ("SourceName", "SourceNode"))
    assert one.references is two.references  # the same reference back to the condition, the same type
    assert type(one.references) is SharedReferences
    with pytest.raises(TypeError):
        one.references.append(one.references[0])
    before = list(two.references)

    target = server.get_node(ua.NodeId("a.Circuit01", idx))
    await server.get_node(one.nodeid).add_reference(target, ua.ObjectIds.HasNotifier, forward=True)
    assert [r.NodeId for r in one.references if r.ReferenceTypeId == ua.NodeId(ua.ObjectIds.HasNotifier)] == [
        target.nodeid
    ]
    assert two.references == before
    assert any(r.NodeId == one.nodeid and not r.IsForward for r in aspace[target.nodeid].references)

    three = aspace[ua.NodeId(f"{prefix}.Message", idx)]
    assert three.references is two.references
    await server.get_node(three.nodeid).delete_reference(
        ua.NodeId(ua.ObjectIds.PropertyType), ua.ObjectIds.HasTypeDefinition, forward=True
    )
    assert not any(r.ReferenceTypeId == ua.NodeId(ua.ObjectIds.HasTypeDefinition) for r in three.references)
    assert two.references == before

    await server.delete_nodes([server.get_node(ua.NodeId("a.Circuit02", idx))])  # target references go
    await space.remove_device("a")
    assert not any(r.NodeId == target.nodeid for r in one.references)
    assert two.references == before and ua.NodeId("a", idx) not in aspace

    assert await server.start() is None
    try:
        async with Client(url) as client:
            refs = await client.get_node(two.nodeid).get_references(ua.ObjectIds.References, ua.BrowseDirection.Both)
            assert sorted((r.ReferenceTypeId, r.IsForward, r.NodeId) for r in refs) == sorted(
                (r.ReferenceTypeId, r.IsForward, r.NodeId) for r in before
            )
            back = [r for r in refs if not r.IsForward and r.NodeId == ua.NodeId(prefix, idx)]
            assert back and back[0].BrowseName.Name == "overcurrent"
    finally:
        await server.stop()


_ATTRS = st.sampled_from([ua.AttributeIds.Value, ua.AttributeIds.DataType, ua.AttributeIds.BrowseName, 99])


@settings(max_examples=200, deadline=None)
@given(
    shared=st.lists(_ATTRS, unique=True, max_size=3),
    steps=st.lists(st.tuples(st.sampled_from(["set", "del", "call", "uncall"]), _ATTRS), max_size=12),
)
def test_a_nodes_attributes_behave_as_a_dict_of_its_own_values_over_the_shared_ones(
    shared: list[int], steps: list[tuple[str, int]]
) -> None:
    """The compact node (shared table, own values and a method's callback as a flat tuple) against a
    plain dict model."""
    values = {a: AttributeValue(ua.DataValue(ua.Variant(float(a)))) for a in (*shared, 99)}
    node = Node(ua.NodeId("n", 2))
    node.set(shared_values.table({a: values[a] for a in shared}), None)
    model: dict[int, AttributeValue] = {a: values[a] for a in shared}
    own: dict[int, AttributeValue] = {}
    call = None
    for k, (op, attr) in enumerate(steps):
        if op == "call":
            node.call = call = lambda *a, k=k: k
        elif op == "uncall":
            node.call = call = None
        elif op == "set":
            own[attr] = model[attr] = AttributeValue(ua.DataValue(ua.Variant(float(k))))
            node[attr] = model[attr]
        elif attr in own:  # deleting an own value shows the shared one again
            del node[attr], own[attr]
            model.pop(attr)
            if attr in shared:
                model[attr] = values[attr]
        elif attr in model:
            del node[attr]
            del model[attr]
            shared.remove(attr)
        else:
            with pytest.raises(KeyError):
                del node[attr]
        for a in (ua.AttributeIds.Value, ua.AttributeIds.DataType, ua.AttributeIds.BrowseName, 99):
            assert node.get(a) is model.get(a), (steps[: k + 1], a)
            assert (a in node) == (a in model)
        assert set(node) == {ua.AttributeIds.NodeId, *model}
        assert node.call is call
    assert node[ua.AttributeIds.NodeId].value.Value.Value == ua.NodeId("n", 2)
    assert node.attributes is node
