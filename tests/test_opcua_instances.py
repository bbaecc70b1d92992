"""Copied ObjectType instances are what asyncua's own instantiate makes: the same nodes, attributes
and references, with the instance's NodeIds; and the trusted batch insert refuses what AddNodes would."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from asyncua import Server, ua

from bridge.config import Device
from bridge.fronts.opcua import shared_values, speed
from bridge.fronts.opcua.address_space import AddressSpace
from bridge.fronts.opcua.batch import NodeBatch
from bridge.model.state import DeviceState


def _subtree(server: Server, root: ua.NodeId) -> dict[str, Any]:
    """Every node under ``root`` by its NodeId's suffix: attributes but NodeId, and references with
    targets inside the instance named by suffix."""
    aspace = server.iserver.aspace
    base = str(root.Identifier)

    def rel(nid: ua.NodeId) -> Any:
        ident = nid.Identifier
        mine = nid.NamespaceIndex == root.NamespaceIndex and isinstance(ident, str)
        if mine and (ident == base or ident.startswith(base + ".")):
            return ("inside", ident[len(base) :])
        return ("outside", nid.to_string())

    def name(r: ua.ReferenceDescription) -> str:
        return "<the instance>" if rel(r.NodeId) == ("inside", "") else r.BrowseName.to_string()

    out: dict[str, Any] = {}
    todo = [root]
    while todo:
        nid = todo.pop()
        kind, suffix = rel(nid)
        if kind != "inside" or suffix in out:
            continue
        data = aspace[nid]
        attrs = {
            int(a): (av.value.Value, av.value.StatusCode)
            for a, av in data.attributes.items()
            if a != ua.AttributeIds.NodeId
        }
        refs = sorted(
            (r.ReferenceTypeId.to_string(), r.IsForward, rel(r.NodeId), name(r), r.NodeClass, str(r.TypeDefinition))
            for r in data.references
            if not (suffix == "" and not r.IsForward)  # the instance's own parent differs by design
        )
        out[suffix] = (attrs, refs, data.call is not None)
        todo.extend(r.NodeId for r in data.references if r.IsForward)
    return out


async def test_a_copied_instance_equals_asyncuas_instantiate() -> None:
    logging.disable(logging.WARNING)  # asyncua's instantiate warns about optional AnalogItem children
    try:
        speed.install()
        shared_values.install()
        server = Server()
        await server.init()
        space = AddressSpace(server, lambda d, c, n: lambda *a: None, energy_model=True)
        devices = [DeviceState(config=Device(name=f"d{k}", serial_number=f"S{k}", unit_id=1 + k)) for k in range(2)]
        await space.build(devices)  # d0 and its circuit 1 by instantiate, the rest copied
        idx = space.idx
        folder = await server.nodes.objects.add_folder(ua.NodeId("Plain", idx), ua.QualifiedName("Plain", idx))
        plain_circuit = await folder.add_object(
            ua.NodeId("Plain.C", idx), ua.QualifiedName("C", idx), objecttype=space.circuit_type.nodeid
        )
        plain_device = await folder.add_object(
            ua.NodeId("Plain.D", idx), ua.QualifiedName("D", idx), objecttype=space.device_type.nodeid
        )
        reference_circuit = _subtree(server, plain_circuit.nodeid)
        reference_device = _subtree(server, plain_device.nodeid)
    finally:
        logging.disable(logging.NOTSET)
    assert len(reference_circuit) > 50
    for name in ("d0", "d1"):
        for k in (1, 2, 10):
            circuit = _subtree(server, ua.NodeId(f"{name}.Circuit{k:02d}", idx))
            # the instance's own additions (conditions, energy model, GeneratesEvent) come after it
            own = {s: v for s, v in circuit.items() if s in reference_circuit}
            assert own.keys() == reference_circuit.keys()
            for suffix, (attrs, refs, _call) in reference_circuit.items():
                c_attrs, c_refs, _ = own[suffix]
                if suffix == "":
                    continue  # names and event notifier are the instance's own
                assert c_attrs == attrs, (name, k, suffix)
                assert c_refs == refs, (name, k, suffix)
        device = _subtree(server, ua.NodeId(name, idx))
        for suffix, (attrs, refs, _call) in reference_device.items():
            if suffix == "" or suffix.startswith(".Circuits") or suffix == ".SerialNumber":
                continue
            if suffix in (".AlarmLimits",) or "Alarms" in suffix:
                continue
            assert device[suffix][0] == attrs, (name, suffix)
            assert device[suffix][1] == refs, (name, suffix)
    # the copied device has its own serial number: copies share values only until one is written
    aspace = server.iserver.aspace
    serials = [aspace[ua.NodeId(f"d{k}.SerialNumber", idx)].attributes[ua.AttributeIds.Value].value for k in (0, 1)]
    assert [s.Value.Value for s in serials] == ["S0", "S1"]
    calls = [aspace[ua.NodeId(f"d{k}.Circuit02.Select", idx)].call for k in (0, 1)]
    assert calls[0] is not None and calls[1] is not None and calls[0] is not calls[1]


async def test_the_batch_insert_refuses_a_node_in_use_and_a_missing_parent() -> None:
    shared_values.install()
    server = Server()
    await server.init()
    idx = await server.register_namespace("urn:test:batch")
    objects = ua.NodeId(ua.ObjectIds.ObjectsFolder)
    batch = NodeBatch(idx)
    batch.var(ua.NodeId("v", idx), objects, "v", 1.0, ua.VariantType.Double)
    batch.apply(server.iserver.node_mgt_service)
    assert await server.get_node(ua.NodeId("v", idx)).read_value() == 1.0
    again = NodeBatch(idx)
    again.var(ua.NodeId("v", idx), objects, "v", 2.0, ua.VariantType.Double)
    with pytest.raises(ua.UaStatusCodeError, match="BadNodeIdExists"):
        again.apply(server.iserver.node_mgt_service)
    orphan = NodeBatch(idx)
    orphan.var(ua.NodeId("w", idx), ua.NodeId("nowhere", idx), "w", 2.0, ua.VariantType.Double)
    with pytest.raises(ua.UaStatusCodeError, match="BadParentNodeIdInvalid"):
        orphan.apply(server.iserver.node_mgt_service)
    browse = await server.nodes.objects.get_children()
    assert ua.NodeId("v", idx) in [n.nodeid for n in browse]


class _Built(AddressSpace):
    """An address space that builds every circuit (no copies): the reference for the copies."""

    @property  # type: ignore[override]
    def _circuit_template(self) -> None:
        return None

    @_circuit_template.setter
    def _circuit_template(self, value: object) -> None:
        pass


async def _space(cls: type[AddressSpace], names: list[tuple[str, str]]) -> tuple[Server, AddressSpace]:
    server = Server()
    await server.init()
    space = cls(server, lambda d, c, n: lambda *a: None, energy_model=True)
    devices = []
    for k, (name, circuit_name) in enumerate(names):
        config = Device(
            name=name, serial_number=f"S{k}", unit_id=1 + k, circuit_names={7: circuit_name} if circuit_name else {}
        )
        devices.append(DeviceState(config=config))
    await space.build(devices)
    return server, space


async def test_a_copied_circuit_with_its_conditions_and_energy_model_equals_a_built_one() -> None:
    logging.disable(logging.WARNING)
    try:
        speed.install()
        shared_values.install()
        names = [("d0", ""), ("line-2", "Pump 7")]
        copied_server, copied = await _space(AddressSpace, names)
        built_server, built = await _space(_Built, names)
    finally:
        logging.disable(logging.NOTSET)
    idx = copied.idx
    for name in ("d0", "line-2"):
        for k in (1, 2, 7, 10):
            root = ua.NodeId(f"{name}.Circuit{k:02d}", idx)
            got, want = _subtree(copied_server, root), _subtree(built_server, root)
            assert len(want) > 300  # the instance, 7 conditions with their states, the energy model
            assert got.keys() == want.keys(), (name, k)
            for suffix in want:
                if suffix == "":  # the circuit object's own references hold its parent's names
                    assert got[suffix][0] == want[suffix][0]
                    continue
                assert got[suffix][:2] == want[suffix][:2], (name, k, suffix)
            for alarm in ("dip", "overcurrent", "relay_wear"):
                key = (name, k, alarm)
                assert copied.nodes.condition_nodes[key] == built.nodes.condition_nodes[key]
            assert copied.nodes.ecm[(name, k)] == built.nodes.ecm[(name, k)]
    aspace = copied_server.iserver.aspace
    source = aspace[ua.NodeId("line-2.Circuit07.Alarms.overcurrent.SourceName", idx)]
    assert source.attributes[ua.AttributeIds.Value].value.Value.Value == "line-2 circuit 7"
    tag = aspace[ua.NodeId("line-2.Circuit07.Energy.ApplicationTag", idx)]
    assert tag.attributes[ua.AttributeIds.Value].value.Value.Value == "Pump 7"
