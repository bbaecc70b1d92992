"""The address space, built from the catalogue tables in one place: the OpenStrom object types, one
device object per configured device with its circuits, and the node registry the value projection,
the conditions and the method handlers address.

Types: OpenStromDeviceType and OpenStromCircuitType (measurements as AnalogItemType with EURange and
EngineeringUnits, Relay as a writable TwoStateDiscreteType, methods from the catalogue).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from asyncua import Server, ua
from asyncua.common.instantiate_util import instantiate

from bridge.model import DeviceState

from . import shared_values
from .alarm_nodes import EXCLUSIVE_LIMIT, OFF_NORMAL, ConditionNodes, CopiedFieldMap, build_conditions
from .catalogue import (
    CIRCUIT_AGGREGATES,
    CIRCUIT_CONDITIONS,
    CIRCUIT_COUNTERS,
    CIRCUIT_MEASUREMENTS,
    CIRCUIT_METHODS,
    CIRCUIT_RELAY_STATE,
    CIRCUIT_SPECTRA,
    CONDITION_KINDS,
    DEVICE_CONDITIONS,
    DEVICE_FAULT_ARRAYS,
    DEVICE_METHODS,
    DEVICE_PROPERTIES,
    DEVICE_RECORD_ARRAYS,
    DEVICE_VARIABLES,
    FREQUENCY,
    HARMONIC_ORDERS,
    LIMIT_PROPERTIES,
    NAMESPACE,
    OVERCURRENT_LIMIT,
    UNITS,
    VOLTAGE_EVENT_FIELDS,
    Measurement,
    Method,
)
from .conditions import Condition
from .copies import lazy_nodes
from .ecm import EnergyModel
from .instances import Instances, Template

MethodHandler = Callable[..., Awaitable[Any]]
HandlerFactory = Callable[[str, int, str], MethodHandler]  # (device, circuit or 0, method name) -> handler
_INITIAL = {"Boolean": False, "UInt32": 0, "Double": 0.0, "DateTime": dt.datetime(1970, 1, 1, tzinfo=dt.UTC)}


@dataclass(slots=True)
class Nodes:
    """Every node the bridge writes or answers for, by what it means."""

    values: dict[tuple[str, int, str], ua.NodeId] = field(default_factory=dict)  # (device, circuit, field)
    device_vars: dict[tuple[str, str], ua.NodeId] = field(default_factory=dict)  # (device, browse name)
    relays: dict[ua.NodeId, tuple[str, int]] = field(default_factory=dict)
    limits: dict[ua.NodeId, tuple[str, int, str]] = field(default_factory=dict)  # -> (device, circuit, key)
    device_limits: dict[str, list[tuple[ua.NodeId, int, str]]] = field(default_factory=dict)  # device -> nodes

    def add_limit(self, node: ua.NodeId, device: str, circuit: int, key: str) -> None:
        self.limits[node] = (device, circuit, key)
        self.device_limits.setdefault(device, []).append((node, circuit, key))

    emitters: dict[tuple[str, int], Any] = field(default_factory=dict)  # (device, circuit or 0) -> object
    conditions: dict[tuple[str, int, str], Condition] = field(default_factory=dict)
    by_condition_node: dict[ua.NodeId, Condition] = field(default_factory=dict)
    condition_nodes: dict[tuple[str, int, str], ConditionNodes] = field(default_factory=dict)
    ecm: dict[tuple[str, int], dict[str, ua.NodeId]] = field(default_factory=dict)  # OPC 34100 values

    def drop(self, device: str) -> None:
        """Forget every node of ``device`` (its nodes were deleted)."""
        for table in (self.values, self.conditions, self.condition_nodes):
            for key in [k for k in table if k[0] == device]:
                del table[key]  # type: ignore[attr-defined]
        for key2 in [k for k in self.device_vars if k[0] == device]:
            del self.device_vars[key2]
        for key3 in [k for k in self.emitters if k[0] == device]:
            del self.emitters[key3]
        for key4 in [k for k in self.ecm if k[0] == device]:
            del self.ecm[key4]
        for nid in [n for n, (d, _c) in self.relays.items() if d == device]:
            del self.relays[nid]
        for nid in [n for n, (d, _c, _k) in self.limits.items() if d == device]:
            del self.limits[nid]
        self.device_limits.pop(device, None)
        for nid in [n for n, c in self.by_condition_node.items() if c.device == device]:
            del self.by_condition_node[nid]


@dataclass(slots=True)
class _CircuitTemplate:
    """The first circuit built, for the others to copy."""

    nodes: Template
    prefix: str
    where: str  # its conditions' SourceName
    tag: str  # its Energy object's ApplicationTag
    conditions: dict[str, ConditionNodes]
    ecm: dict[str, ua.NodeId] | None
    field_index: dict[str, dict[str, int]] = field(init=False)  # per condition: path -> position
    fields: dict[str, tuple[ua.NodeId, ...]] = field(init=False)  # per condition: its fields' NodeIds

    def __post_init__(self) -> None:
        self.field_index = {a: {p: k for k, p in enumerate(cn.fields)} for a, cn in self.conditions.items()}
        self.fields = {a: tuple(cn.fields.values()) for a, cn in self.conditions.items()}


def _source_name(device: str, circuit: int) -> str:
    """The SourceName of a device's (circuit 0) or a circuit's conditions."""
    return f"{device} circuit {circuit}" if circuit else device


async def _not_on_type(parent: ua.NodeId, *args: Any) -> ua.StatusCode:
    return ua.StatusCode(ua.StatusCodes.BadNotImplemented)  # the type's own method; instances have theirs


class AddressSpace:
    def __init__(self, server: Server, handlers: HandlerFactory, energy_model: bool = True) -> None:
        shared_values.install()  # the copies' nodes hold shared values and reference lists: copy on write
        self.server = server
        self.energy = EnergyModel(server) if energy_model else None
        self.handlers = handlers
        self.nodes = Nodes()
        self.instances = Instances(server)
        self._circuit_template: _CircuitTemplate | None = None
        self.idx = 0
        self.root: Any = None
        self.circuit_type: Any = None
        self.device_type: Any = None
        self.voltage_event_type: Any = None

    # --------------------------------------------------------------- types

    async def build(self, devices: list[DeviceState]) -> None:
        self.idx = await self.server.register_namespace(NAMESPACE)
        self.circuit_type = await self._circuit_type()
        self.device_type = await self._device_type()
        self.voltage_event_type = await self._voltage_event_type()
        if self.energy is not None:
            await self.energy.build_types()
        self.root = await self.server.nodes.objects.add_folder(
            ua.NodeId("OpenStrom", self.idx), ua.QualifiedName("OpenStrom", self.idx)
        )
        for dev in devices:
            await self.add_device(dev)
            await asyncio.sleep(0)  # asyncua adds nodes without yielding: let Modbus and the links run

    async def _voltage_event_type(self) -> Any:
        idx = self.idx
        et = await self.server.get_node(ua.ObjectIds.BaseEventType).add_object_type(
            ua.NodeId("VoltageEventType", idx), ua.QualifiedName("VoltageEventType", idx)
        )
        for name, kind in VOLTAGE_EVENT_FIELDS:
            vtype = getattr(ua.VariantType, kind)
            p = await et.add_property(
                ua.NodeId(f"VoltageEventType.{name}", idx),
                ua.QualifiedName(name, idx),
                ua.get_default_value(vtype),
                vtype,
            )
            await p.set_modelling_rule(True)
        return et

    async def _analog(self, parent: Any, prefix: str, m: Measurement) -> list[Any]:
        idx = self.idx
        node = (
            await instantiate(
                parent,
                self.server.get_node(ua.ObjectIds.AnalogItemType),
                nodeid=ua.NodeId(f"{prefix}.{m.browse_name}", idx),
                bname=ua.QualifiedName(m.browse_name, idx),
                idx=idx,
                instantiate_optional=False,
            )
        )[0]
        await node.write_attribute(
            ua.AttributeIds.DataType, ua.DataValue(ua.Variant(ua.NodeId(ua.ObjectIds.Double), ua.VariantType.NodeId))
        )
        if m in CIRCUIT_SPECTRA:  # a one-dimensional array, element k = harmonic order k + 1
            await node.write_attribute(ua.AttributeIds.ValueRank, ua.DataValue(ua.Variant(1, ua.VariantType.Int32)))
            await node.write_attribute(
                ua.AttributeIds.ArrayDimensions,
                ua.DataValue(ua.Variant([HARMONIC_ORDERS], ua.VariantType.UInt32)),
            )
            await node.write_value(ua.DataValue(ua.Variant([0.0] * HARMONIC_ORDERS, ua.VariantType.Double)))
        else:
            await node.write_value(ua.DataValue(ua.Variant(0.0, ua.VariantType.Double)))
        await node.write_attribute(
            ua.AttributeIds.Description,
            ua.DataValue(ua.Variant(ua.LocalizedText(m.description), ua.VariantType.LocalizedText)),
        )
        eurange = await node.get_child(["0:EURange"])
        await eurange.write_value(ua.Range(Low=m.low, High=m.high))
        unit = UNITS[m.unit]
        eu = await node.add_property(
            ua.NodeId(f"{prefix}.{m.browse_name}.EngineeringUnits", idx),
            "0:EngineeringUnits",
            ua.EUInformation(
                NamespaceUri="http://www.opcfoundation.org/UA/units/un/cefact",
                UnitId=unit.unit_id,
                DisplayName=ua.LocalizedText(unit.symbol),
                Description=ua.LocalizedText(unit.name),
            ),
        )
        return [node, eurange, eu]

    async def _relay(self, ct: Any) -> None:
        relay = (
            await instantiate(
                ct,
                self.server.get_node(ua.ObjectIds.TwoStateDiscreteType),
                nodeid=ua.NodeId("OpenStromCircuitType.Relay", self.idx),
                bname=ua.QualifiedName("Relay", self.idx),
                idx=self.idx,
                instantiate_optional=False,
            )
        )[0]
        await relay.write_attribute(
            ua.AttributeIds.DataType, ua.DataValue(ua.Variant(ua.NodeId(ua.ObjectIds.Boolean), ua.VariantType.NodeId))
        )
        await relay.write_value(ua.DataValue(ua.Variant(False, ua.VariantType.Boolean)))
        await (await relay.get_child(["0:TrueState"])).write_value(ua.LocalizedText("On"))
        await (await relay.get_child(["0:FalseState"])).write_value(ua.LocalizedText("Off"))
        await relay.set_writable(True)
        await relay.set_modelling_rule(True)
        for ch in await relay.get_children():
            await ch.set_modelling_rule(True)

    async def _circuit_type(self) -> Any:
        idx = self.idx
        ct = await self.server.nodes.base_object_type.add_object_type(
            ua.NodeId("OpenStromCircuitType", idx), ua.QualifiedName("OpenStromCircuitType", idx)
        )
        for m in (*CIRCUIT_MEASUREMENTS, FREQUENCY, *CIRCUIT_SPECTRA, *CIRCUIT_AGGREGATES):
            for n in await self._analog(ct, "OpenStromCircuitType", m):
                await n.set_modelling_rule(True)
        await self._relay(ct)
        await self._type_methods(ct, "OpenStromCircuitType", CIRCUIT_METHODS)
        for name, _attr in CIRCUIT_COUNTERS:
            v = await ct.add_variable(
                ua.NodeId(f"OpenStromCircuitType.{name}", idx), ua.QualifiedName(name, idx), 0, ua.VariantType.UInt32
            )
            await v.set_modelling_rule(True)
        await self._limit_property(ct, "OpenStromCircuitType", OVERCURRENT_LIMIT, "overcurrent alarm limit (A)")
        for name, kind in CIRCUIT_RELAY_STATE:
            v = await ct.add_variable(
                ua.NodeId(f"OpenStromCircuitType.{name}", idx),
                ua.QualifiedName(name, idx),
                _INITIAL.get(kind, ""),
                getattr(ua.VariantType, kind),
            )
            await v.set_modelling_rule(True)
        return ct

    async def _limit_property(self, parent: Any, prefix: str, name: str, description: str) -> None:
        p = await parent.add_property(
            ua.NodeId(f"{prefix}.{name}", self.idx), ua.QualifiedName(name, self.idx), 0.0, ua.VariantType.Double
        )
        await p.write_attribute(
            ua.AttributeIds.Description,
            ua.DataValue(ua.Variant(ua.LocalizedText(description), ua.VariantType.LocalizedText)),
        )
        await p.set_writable(True)  # an admin's write goes through the command path; others are refused
        await p.set_modelling_rule(True)

    async def _device_type(self) -> Any:
        idx = self.idx
        dtp = await self.server.nodes.base_object_type.add_object_type(
            ua.NodeId("OpenStromDeviceType", idx), ua.QualifiedName("OpenStromDeviceType", idx)
        )
        for name, _attr in DEVICE_PROPERTIES:
            p = await dtp.add_property(ua.NodeId(f"OpenStromDeviceType.{name}", idx), ua.QualifiedName(name, idx), "")
            await p.set_modelling_rule(True)
        for name, kind in DEVICE_VARIABLES:
            v = await dtp.add_variable(
                ua.NodeId(f"OpenStromDeviceType.{name}", idx),
                ua.QualifiedName(name, idx),
                _INITIAL[kind],
                getattr(ua.VariantType, kind),
            )
            await v.set_modelling_rule(True)
        for name in DEVICE_FAULT_ARRAYS:
            v = await dtp.add_variable(
                ua.NodeId(f"OpenStromDeviceType.{name}", idx),
                ua.QualifiedName(name, idx),
                ua.Variant([], ua.VariantType.String),
            )
            await v.write_attribute(ua.AttributeIds.ValueRank, ua.DataValue(ua.Variant(1, ua.VariantType.Int32)))
            await v.set_modelling_rule(True)
        for name, kind in DEVICE_RECORD_ARRAYS:
            v = await dtp.add_variable(
                ua.NodeId(f"OpenStromDeviceType.{name}", idx),
                ua.QualifiedName(name, idx),
                ua.Variant([], getattr(ua.VariantType, kind)),
            )
            await v.write_attribute(ua.AttributeIds.ValueRank, ua.DataValue(ua.Variant(1, ua.VariantType.Int32)))
            await v.set_modelling_rule(True)
        circuits = await dtp.add_folder(
            ua.NodeId("OpenStromDeviceType.Circuits", idx), ua.QualifiedName("Circuits", idx)
        )
        await circuits.set_modelling_rule(True)
        await self._type_methods(dtp, "OpenStromDeviceType", DEVICE_METHODS)
        limits = await dtp.add_object(
            ua.NodeId("OpenStromDeviceType.AlarmLimits", idx), ua.QualifiedName("AlarmLimits", idx)
        )
        await limits.set_modelling_rule(True)
        for browse, _key, description in LIMIT_PROPERTIES:
            await self._limit_property(limits, "OpenStromDeviceType.AlarmLimits", browse, description)
        return dtp

    async def _type_methods(self, type_node: Any, type_name: str, methods: tuple[Method, ...]) -> None:
        """Methods of an ObjectType, each a mandatory placeholder that instances link to their handler."""
        idx = self.idx
        for m in methods:
            meth = await type_node.add_method(
                ua.NodeId(f"{type_name}.{m.name}", idx),
                ua.QualifiedName(m.name, idx),
                _not_on_type,
                [getattr(ua.VariantType, t) for t in m.inputs],
                [getattr(ua.VariantType, t) for t in m.outputs],
            )
            await meth.set_modelling_rule(True)

    # --------------------------------------------------------------- instances

    def _known(self, ident: str) -> ua.NodeId:
        """The address space's own NodeId object of a node (the front's maps hold it, not an equal
        copy with its own string: ~60 KB a device)."""
        return lazy_nodes(self.server.iserver.aspace).canonical(ua.NodeId(ident, self.idx))

    def _link_methods(self, prefix: str, device: str, circuit: int, methods: tuple[Method, ...]) -> None:
        for m in methods:
            node = self.server.get_node(ua.NodeId(f"{prefix}.{m.name}", self.idx))
            self.server.link_method(node, self.handlers(device, circuit, m.name))

    async def remove_device(self, name: str) -> None:
        """Delete a device's object and everything under it (a reload removed the device).

        asyncua's own recursive delete browses node by node and, per node, scans the whole address
        space for references to it: a minute for one device's ~4 500 nodes. Here the device's nodes
        are collected from the address space at once (forward references to nodes of ours whose ids
        carry the device's prefix) and only the references that point into them are removed."""
        aspace = self.server.iserver.aspace
        root = ua.NodeId(name, self.idx)
        doomed: set[ua.NodeId] = set()
        todo = [root]
        while todo:
            nid = todo.pop()
            if nid in doomed or nid not in aspace:
                continue
            doomed.add(nid)
            for ref in aspace[nid].references:
                t = ref.NodeId
                if ref.IsForward and t.NamespaceIndex == self.idx and str(t.Identifier).startswith(f"{name}."):
                    todo.append(t)
        for nid in doomed:
            for ref in aspace[nid].references:
                other = ref.NodeId
                if other in doomed or other not in aspace:
                    continue
                data = aspace[other]
                data.references = [r for r in data.references if r.NodeId not in doomed]  # shared or not
        for nid in doomed:
            data = aspace[nid]
            if ua.AttributeIds.Value in data.attributes:
                for handle, callback in list(data.attributes[ua.AttributeIds.Value].datachange_callbacks.items()):
                    callback(handle, None, ua.StatusCode(ua.StatusCodes.BadNodeIdUnknown))  # subscribers learn
                    aspace.delete_datachange_callback(handle)
            del aspace[nid]
        self.nodes.drop(name)

    async def rename_circuits(self, dev: DeviceState) -> None:
        """Circuit display names after a reload changed ``circuit_names`` (browse names stay CircuitNN)."""
        for cs in dev.circuits:
            node = self.server.get_node(ua.NodeId(f"{dev.name}.Circuit{cs.index:02d}", self.idx))
            await node.write_attribute(
                ua.AttributeIds.DisplayName,
                ua.DataValue(ua.Variant(ua.LocalizedText(cs.name), ua.VariantType.LocalizedText)),
            )

    async def add_device(self, dev: DeviceState) -> None:
        s, idx, name, nodes = self.server, self.idx, dev.name, self.nodes
        obj = await self.instances.add(
            self.root, ua.NodeId(name, idx), ua.QualifiedName(name, idx), self.device_type.nodeid
        )
        arrays = (*DEVICE_FAULT_ARRAYS, *(r for r, _ in DEVICE_RECORD_ARRAYS))
        for field_name in (*(p for p, _ in DEVICE_PROPERTIES), *(v for v, _ in DEVICE_VARIABLES), *arrays):
            nodes.device_vars[(name, field_name)] = self._known(f"{name}.{field_name}")
        await s.get_node(nodes.device_vars[(name, "SerialNumber")]).write_value(dev.config.serial_number)
        self._link_methods(name, name, 0, DEVICE_METHODS)
        for browse, key, _description in LIMIT_PROPERTIES:
            nodes.add_limit(self._known(f"{name}.AlarmLimits.{browse}"), name, 0, key)
        await obj.set_event_notifier([ua.EventNotifier.SubscribeToEvents, ua.EventNotifier.HistoryRead])
        await self._generates(obj, OFF_NORMAL, EXCLUSIVE_LIMIT)
        nodes.emitters[(name, 0)] = obj
        await self._add_conditions(obj, name, name, 0, DEVICE_CONDITIONS)
        folder = s.get_node(ua.NodeId(f"{name}.Circuits", idx))
        for cs in dev.circuits:
            cname = f"Circuit{cs.index:02d}"
            prefix = f"{name}.{cname}"
            cobj = await self._circuit(folder, name, cs.index, cs.name)
            if cs.name != cname:
                await cobj.write_attribute(
                    ua.AttributeIds.DisplayName,
                    ua.DataValue(ua.Variant(ua.LocalizedText(cs.name), ua.VariantType.LocalizedText)),
                )
            for m in (*CIRCUIT_MEASUREMENTS, FREQUENCY, *CIRCUIT_SPECTRA, *CIRCUIT_AGGREGATES):
                nodes.values[(name, cs.index, m.field)] = self._known(f"{prefix}.{m.browse_name}")
            for counter in (*(n for n, _ in CIRCUIT_COUNTERS), *(n for n, _ in CIRCUIT_RELAY_STATE)):
                nodes.values[(name, cs.index, counter)] = self._known(f"{prefix}.{counter}")
            nodes.add_limit(self._known(f"{prefix}.{OVERCURRENT_LIMIT}"), name, cs.index, "overcurrent_a")
            relay_id = self._known(f"{prefix}.Relay")
            nodes.values[(name, cs.index, "relay")] = relay_id
            nodes.relays[relay_id] = (name, cs.index)
            self._link_methods(prefix, name, cs.index, CIRCUIT_METHODS)
            nodes.emitters[(name, cs.index)] = cobj
            await asyncio.sleep(0)  # one circuit at a time: the loop serves Modbus and the links between

    async def _circuit(self, folder: Any, device: str, circuit: int, tag: str) -> Any:
        """A circuit's object with everything below it: its measurements, relay and methods (the
        type's instance), its Alarms with their conditions, its OPC 34100 Energy object. The first
        is built; every other is a copy of it (renamed, with its own SourceName and ApplicationTag):
        ~4 times faster than building the ~400 nodes again."""
        s, idx = self.server, self.idx
        prefix = f"{device}.Circuit{circuit:02d}"
        nid, bname = ua.NodeId(prefix, idx), ua.QualifiedName(f"Circuit{circuit:02d}", idx)
        where = _source_name(device, circuit)
        t = self._circuit_template
        if t is None or where == tag:  # a tag equal to the SourceName could not be told apart in a copy
            cobj = await self.instances.add(folder, nid, bname, self.circuit_type.nodeid)
            await cobj.set_event_notifier([ua.EventNotifier.SubscribeToEvents, ua.EventNotifier.HistoryRead])
            await self._generates(cobj, OFF_NORMAL, EXCLUSIVE_LIMIT, self.voltage_event_type.nodeid)
            built = await self._add_conditions(cobj, prefix, device, circuit, CIRCUIT_CONDITIONS)
            ecm = None
            if self.energy is not None:
                ecm = self.energy.build_circuit(s.iserver.node_mgt_service, cobj.nodeid, prefix, idx, tag)
            if t is None and where != tag:
                nodes = self.instances.template(nid, texts=(where, tag))
                self._circuit_template = _CircuitTemplate(nodes, prefix, where, tag, built, ecm)
        else:
            self.instances.copy(t.nodes, folder.nodeid, nid, bname, {t.where: where, t.tag: tag})
            cobj = s.get_node(nid)
            known = lazy_nodes(s.iserver.aspace)

            def rename(v: Any) -> Any:
                ident = v.Identifier if isinstance(v, ua.NodeId) and v.NamespaceIndex == idx else None
                if isinstance(ident, str) and (ident == t.prefix or ident.startswith(t.prefix + ".")):
                    # the copy's own NodeId: one object, not two (0.3 MB a device)
                    return known.canonical(ua.NodeId(prefix + ident[len(t.prefix) :], idx))
                return where if isinstance(v, str) and v == t.where else v

            index = t.field_index
            built = {
                alarm: ConditionNodes(
                    node=rename(cn.node),
                    type_id=cn.type_id,
                    kind=cn.kind,
                    fields=CopiedFieldMap(index[alarm], t.fields[alarm], len(t.prefix), prefix),
                    static={k: rename(v) for k, v in cn.static.items()},
                )
                for alarm, cn in t.conditions.items()
            }
            self._register_conditions(device, circuit, built)
            ecm = None if t.ecm is None else {k: rename(v) for k, v in t.ecm.items()}
        if ecm is not None:
            self.nodes.ecm[(device, circuit)] = ecm
        return cobj

    async def _generates(self, emitter: Any, *event_types: ua.NodeId) -> None:
        """GeneratesEvent references: clients see what an emitter sends, and the event history
        stores exactly these types' fields."""
        for et in event_types:
            await emitter.add_reference(et, ua.ObjectIds.GeneratesEvent, forward=True, bidirectional=False)

    async def _add_conditions(
        self, parent: Any, prefix: str, device: str, circuit: int, alarms: tuple[str, ...]
    ) -> dict[str, ConditionNodes]:
        """One condition instance per alarm (OffNormalAlarmType or ExclusiveLimitAlarmType), in the
        source's Alarms folder, with HasCondition from the source."""
        folder = await parent.add_folder(ua.NodeId(f"{prefix}.Alarms", self.idx), ua.QualifiedName("Alarms", self.idx))
        inputs = [(a, CONDITION_KINDS[a], ua.NodeId(f"{prefix}.{CONDITION_KINDS[a].input}", self.idx)) for a in alarms]
        where = _source_name(device, circuit)
        built = build_conditions(
            self.server.iserver.node_mgt_service, self.idx, folder.nodeid, parent.nodeid, where, prefix, inputs
        )
        self._register_conditions(device, circuit, built)
        return built

    def _register_conditions(self, device: str, circuit: int, built: dict[str, ConditionNodes]) -> None:
        for alarm, cn in built.items():
            cond = Condition(device=device, circuit=circuit, alarm=alarm, node=cn.node)
            self.nodes.conditions[(device, circuit, alarm)] = cond
            self.nodes.by_condition_node[cn.node] = cond
            self.nodes.condition_nodes[(device, circuit, alarm)] = cn
