"""A copied circuit's or device's nodes are made when first looked up: until then they exist for
every lookup, for a client's browse and read, for the XML export's list of NodeIds, and they go
with their device; nothing asks for all of them to be made."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from asyncua import Client, ua

from bridge.config import Device
from bridge.fronts.opcua import speed
from bridge.fronts.opcua.address_space import AddressSpace
from bridge.fronts.opcua.copies import LazyNodes
from bridge.model.state import DeviceState
from tests.harness import plain_opcua_server
from tests.test_opcua_instances import _subtree


async def _space(devices: int) -> tuple[Any, str, AddressSpace]:
    logging.disable(logging.WARNING)  # asyncua's instantiate warns about optional AnalogItem children
    try:
        speed.install()
        server, url, _ = await plain_opcua_server("lazy")
        space = AddressSpace(server, lambda d, c, n: lambda *a: None, energy_model=True)
        states = [
            DeviceState(config=Device(name=f"d{k}", serial_number=f"S{k}", unit_id=1 + k)) for k in range(devices)
        ]
        await space.build(states)
    finally:
        logging.disable(logging.NOTSET)
    return server, url, space


def _mine(nodes: LazyNodes, idx: int, prefix: str) -> list[ua.NodeId]:
    """Every node named ``prefix...``, made or not (iterating the table itself sees the made ones)."""
    return [n for n in nodes.keys() if n.NamespaceIndex == idx and str(n.Identifier).startswith(prefix)]  # noqa: SIM118


async def test_copies_are_made_node_by_node_and_every_node_of_them_is_there() -> None:
    server, _url, space = await _space(3)
    nodes = server.iserver.aspace._nodes
    assert type(nodes) is LazyNodes
    every = nodes.keys()
    assert len(every) == len(set(every))  # a made node is named once
    devices = [_mine(nodes, space.idx, f"d{k}.") for k in range(3)]
    assert len(devices[0]) > 4000 and len(devices[1]) == len(devices[2]) == len(devices[0])
    made = nodes.made_count()
    assert made < len(every) - 2 * 3500  # most of d1's and d2's nodes are not made yet

    # every node resolves, and each reference from one names a node that resolves too
    for nid in (n for d in devices for n in d):
        data = server.iserver.aspace[nid]
        assert data.nodeid == nid
        for r in data.references:
            assert r.NodeId in server.iserver.aspace, (nid, r.NodeId)
    assert nodes.made_count() == len(every) == len(nodes.keys())

    # the copy's own values: its SourceName, its ConditionClass, its InputNode renamed
    cond = "d2.Circuit05.Alarms.overcurrent"
    source = server.iserver.aspace[ua.NodeId(f"{cond}.SourceName", space.idx)]
    assert source.attributes[ua.AttributeIds.Value].value.Value.Value == "d2 circuit 5"
    source_node = server.iserver.aspace[ua.NodeId(f"{cond}.SourceNode", space.idx)]
    assert source_node.attributes[ua.AttributeIds.Value].value.Value.Value == ua.NodeId("d2.Circuit05", space.idx)


async def test_a_client_browses_and_reads_a_copy_it_has_never_seen_made() -> None:
    server, url, space = await _space(3)
    nodes = server.iserver.aspace._nodes
    idx = space.idx
    assert ua.NodeId("d2.Circuit07.Alarms.overcurrent.ActiveState/Id", idx) not in dict.keys(nodes)
    await server.start()
    try:
        async with Client(url) as client:

            async def walk(node: Any, path: str, out: dict[str, ua.NodeClass]) -> None:
                for child in await node.get_children():
                    name = (await child.read_browse_name()).Name
                    out[f"{path}/{name}"] = await child.read_node_class()
                    if out[f"{path}/{name}"] in (ua.NodeClass.Object, ua.NodeClass.Variable):
                        await walk(child, f"{path}/{name}", out)

            built: dict[str, ua.NodeClass] = {}
            copied: dict[str, ua.NodeClass] = {}
            await walk(client.get_node(ua.NodeId("d0.Circuit01", idx)), "", built)
            await walk(client.get_node(ua.NodeId("d2.Circuit07", idx)), "", copied)
            assert len(built) > 300 and copied == built
            active = client.get_node(ua.NodeId("d2.Circuit07.Alarms.overcurrent.ActiveState/Id", idx))
            assert await active.read_value() is False
            name = client.get_node(ua.NodeId("d2.Circuit07.Alarms.overcurrent.SourceName", idx))
            assert await name.read_value() == "d2 circuit 7"
            unknown = client.get_node(ua.NodeId("d2.Circuit07.Alarms.overcurrent.NoSuchField", idx))
            with pytest.raises(ua.UaStatusCodeError, match="BadNodeIdUnknown"):
                await unknown.read_value()
    finally:
        await server.stop()


async def test_a_removed_device_takes_its_unmade_nodes_and_a_delete_makes_none() -> None:
    server, _url, space = await _space(3)
    nodes = server.iserver.aspace._nodes
    idx = space.idx
    before = nodes.made_count()
    # a delete with its target references searches the nodes made so far, not every node there is
    await server.delete_nodes([server.get_node(ua.NodeId("d1.Circuit04.Alarms.dip.Comment", idx))])
    assert nodes.made_count() < before + 10
    assert ua.NodeId("d1.Circuit04.Alarms.dip.Comment", idx) not in nodes
    assert ua.NodeId("d1.Circuit04.Alarms.dip.Message", idx) in nodes

    await space.remove_device("d1")
    assert _mine(nodes, idx, "d1.") == [] and ua.NodeId("d1", idx) not in nodes
    assert ua.NodeId("d1.Circuit09.Energy.ApplicationTag", idx) not in nodes
    assert nodes.get(ua.NodeId("d1.Circuit09.Alarms.dip.Message", idx)) is None
    assert len(_mine(nodes, idx, "d2.")) == len(_mine(nodes, idx, "d0."))  # the others keep every node


async def test_what_nobody_changed_is_forgotten_again_and_made_the_same() -> None:
    """A browse of everything makes every node; the sweep forgets again those nothing changed, and
    keeps a written value, a linked method, a subscribed node and a changed reference list."""
    server, _url, space = await _space(3)
    aspace, idx = server.iserver.aspace, space.idx
    nodes = aspace._nodes
    circuit = ua.NodeId("d2.Circuit06", idx)
    before = _subtree(server, circuit)
    made_at_start = nodes.made_count()

    written = ua.NodeId("d2.Circuit06.Alarms.dip.Message", idx)
    await server.write_attribute_value(written, ua.DataValue(ua.Variant(ua.LocalizedText("dip"))))
    watched = ua.NodeId("d1.Circuit02.Alarms.overcurrent.Severity", idx)
    aspace.add_datachange_callback(watched, ua.AttributeIds.Value, lambda *a: None)
    moved = ua.NodeId("d1.Circuit02.Alarms.overcurrent.Retain", idx)
    await server.get_node(moved).add_reference(ua.NodeId("d0", idx), ua.ObjectIds.HasNotifier, bidirectional=False)
    method = ua.NodeId("d2.Circuit06.SwitchOn", idx)
    linked = aspace[method].call
    for nid in aspace.keys():  # noqa: SIM118 (made or not)
        aspace[nid]  # a browse of everything
    assert nodes.made_count() == len(aspace.keys())

    forgotten = sum(nodes.forget_unchanged(c) for c in nodes.all_copies())
    assert forgotten > 2 * 3500 and nodes.made_count() <= made_at_start + 3
    for kept in (written, watched, moved, method):
        assert dict.__contains__(nodes, kept), kept
    assert aspace[written].attributes[ua.AttributeIds.Value].value.Value.Value.Text == "dip"
    assert aspace[method].call is linked
    assert any(r.ReferenceTypeId == ua.NodeId(ua.ObjectIds.HasNotifier) for r in aspace[moved].references)
    again = _subtree(server, circuit)  # made anew from the template: as it was
    del again[".Alarms.dip.Message"], before[".Alarms.dip.Message"]
    assert again == before
    assert sum(nodes.forget_unchanged(c) for c in nodes.all_copies()) > 400  # the walk made them again


async def test_a_nodeid_of_a_megabyte_of_dots_is_looked_up_as_fast_as_a_short_one() -> None:
    """The lookup tries each dotted prefix as a copy's root only up to the longest root there is."""
    server, _url, space = await _space(2)
    nodes = server.iserver.aspace._nodes
    hostile = ua.NodeId("d1." + "x." * 500_000, space.idx)  # tried prefix by prefix: ~250 GB of copying
    assert hostile not in nodes and nodes.get(hostile) is None
    assert ua.NodeId("d1.Circuit04.Alarms.dip.Message", space.idx) in nodes
