"""Condition instances as OPC UA Part 9 defines them: one OffNormalAlarmType or ExclusiveLimitAlarmType
object per alarm and source, with its mandatory state variables, HasCondition from the source and the
type's Acknowledge / Confirm / Enable / Disable / AddComment methods as components.

asyncua's ``instantiate`` copies every optional child too (~110 nodes and ~100 ms a condition: 6 s a
device); these are built from a table of the mandatory children in one AddNodes batch, ~35 nodes each.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from asyncua import ua

from .batch import NodeBatch
from .catalogue import ALARM_SEVERITY, ConditionKind

OID = ua.ObjectIds
EXCLUSIVE_LIMIT, OFF_NORMAL = ua.NodeId(OID.ExclusiveLimitAlarmType), ua.NodeId(OID.OffNormalAlarmType)
CONDITION_CLASSES = {
    "process": (OID.ProcessConditionClassType, "Process"),
    "system": (OID.SystemConditionClassType, "System"),
    "maintenance": (OID.MaintenanceConditionClassType, "Maintenance"),
}
LIMIT_STATES = {  # ExclusiveLimitStateMachineType's states
    "High": ua.NodeId(OID.ExclusiveLimitStateMachineType_High),
    "Low": ua.NodeId(OID.ExclusiveLimitStateMachineType_Low),
    "LowLow": ua.NodeId(OID.ExclusiveLimitStateMachineType_LowLow),
}
# the limit properties each kind shows (the value is set from the device's limits)
LIMIT_PROPERTIES = {
    "Low": ("LowLimit",),
    "LowLow": ("LowLowLimit",),
    "High": ("HighLimit",),
    "band": ("LowLimit", "HighLimit"),
}
_METHODS = (  # type methods every instance references (clients call them with the condition as object)
    OID.ConditionType_Disable,
    OID.ConditionType_Enable,
    OID.ConditionType_AddComment,
    OID.AcknowledgeableConditionType_Acknowledge,
    OID.AcknowledgeableConditionType_Confirm,
)
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_V = ua.VariantType


class FieldMap(Mapping[str, ua.NodeId]):
    """A copied condition's fields: the browse paths held once for every copy of a condition (an
    index), the copy's NodeIds in a tuple. A dict of ~30 fields each was ~1.2 KB a condition."""

    __slots__ = ("_index", "_nodes")

    def __init__(self, index: dict[str, int], nodes: tuple[ua.NodeId, ...]) -> None:
        self._index, self._nodes = index, nodes

    def __getitem__(self, path: str) -> ua.NodeId:
        return self._nodes[self._index[path]]

    def __iter__(self) -> Iterator[str]:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._index)


class CopiedFieldMap(FieldMap):
    """A copied condition's fields, named when asked for: the template condition's NodeIds with the
    copy's prefix in place of the template's (a copy's nodes are made when first looked up, and a
    NodeId held for each of its ~30 fields was ~5 KB a condition)."""

    __slots__ = ("_cut", "_prefix")

    def __init__(self, index: dict[str, int], template: tuple[ua.NodeId, ...], cut: int, prefix: str) -> None:
        super().__init__(index, template)
        self._cut, self._prefix = cut, prefix

    def __getitem__(self, path: str) -> ua.NodeId:
        t = self._nodes[self._index[path]]
        return ua.NodeId(self._prefix + str(t.Identifier)[self._cut :], t.NamespaceIndex)


@dataclass(slots=True)
class ConditionNodes:
    """One condition instance: its node, its type, and the NodeIds of the variables the front writes
    (by browse path, e.g. "ActiveState/Id")."""

    node: ua.NodeId
    type_id: ua.NodeId
    kind: ConditionKind
    fields: Mapping[str, ua.NodeId] = field(default_factory=dict)
    static: dict[str, Any] = field(default_factory=dict)  # the values that never change (class, input)


def build_conditions(
    node_mgt: Any,
    idx: int,
    folder: ua.NodeId,
    source: ua.NodeId,
    where: str,
    prefix: str,
    alarms: list[tuple[str, ConditionKind, ua.NodeId]],
) -> dict[str, ConditionNodes]:
    """Condition instances for ``alarms`` ((alarm, kind, input node)) of one source, under ``folder``;
    NodeIds ``<prefix>.Alarms.<alarm>`` and ``...<alarm>.<BrowsePath>``."""
    batch = NodeBatch(idx)
    out = {
        alarm: _condition(batch, folder, source, where, f"{prefix}.Alarms.{alarm}", alarm, kind, inp)
        for alarm, kind, inp in alarms
    }
    batch.apply(node_mgt)
    return out


def _condition(
    batch: NodeBatch,
    folder: ua.NodeId,
    source: ua.NodeId,
    where: str,
    base: str,
    alarm: str,
    kind: ConditionKind,
    input_node: ua.NodeId,
) -> ConditionNodes:
    idx = batch.idx
    type_id = OFF_NORMAL if kind.limit is None else EXCLUSIVE_LIMIT
    nid = ua.NodeId(base, idx)
    cond = ConditionNodes(node=nid, type_id=type_id, kind=kind)
    batch.obj(nid, folder, alarm, type_id)
    batch.nodes[-1].BrowseName = ua.QualifiedName(alarm, idx)  # the instance's own name: ours
    class_id, class_name = CONDITION_CLASSES[kind.condition_class]

    def child(path: str, parent: ua.NodeId = nid, **kw: Any) -> ua.NodeId:
        node = ua.NodeId(f"{base}.{path}", idx)
        batch.var(node, parent, path.rpartition("/")[2], **kw)
        cond.fields[path] = node  # type: ignore[index]  # a dict while it is built
        return node

    severity = ALARM_SEVERITY.get(alarm, 500)
    properties: list[tuple[str, Any, ua.VariantType]] = [
        ("EventId", b"", _V.ByteString),
        ("EventType", type_id, _V.NodeId),
        ("SourceNode", source, _V.NodeId),
        ("SourceName", where, _V.String),
        ("Time", _EPOCH, _V.DateTime),
        ("ReceiveTime", _EPOCH, _V.DateTime),
        ("Message", ua.LocalizedText(""), _V.LocalizedText),
        ("Severity", severity, _V.UInt16),
        ("ConditionClassId", ua.NodeId(class_id), _V.NodeId),
        ("ConditionClassName", ua.LocalizedText(class_name), _V.LocalizedText),
        ("ConditionName", alarm, _V.String),
        ("BranchId", ua.NodeId(), _V.NodeId),
        ("Retain", False, _V.Boolean),
        ("ClientUserId", "", _V.String),
        ("InputNode", input_node, _V.NodeId),
        ("SuppressedOrShelved", False, _V.Boolean),
    ]
    if kind.limit is None:
        properties.append(("NormalState", ua.NodeId(), _V.NodeId))  # no separate normal-value node
    for name, value, vtype in properties:
        child(name, value=value, vtype=vtype)
        cond.static[name] = value
    for name, text, on in (
        ("EnabledState", "Enabled", True),
        ("AckedState", "Acknowledged", True),
        ("ConfirmedState", "Confirmed", True),
        ("ActiveState", "Inactive", False),
    ):
        state = child(
            name, value=ua.LocalizedText(text), vtype=_V.LocalizedText, prop=False, type_id=OID.TwoStateVariableType
        )
        child(f"{name}/Id", state, value=on, vtype=_V.Boolean)
    for name, value, vtype in (
        ("Quality", ua.StatusCode(ua.StatusCodes.Good), _V.StatusCode),
        ("LastSeverity", severity, _V.UInt16),
        ("Comment", ua.LocalizedText(""), _V.LocalizedText),
    ):
        var = child(name, value=value, vtype=vtype, prop=False, type_id=OID.ConditionVariableType)
        child(f"{name}/SourceTimestamp", var, value=_EPOCH, vtype=_V.DateTime)
    if kind.limit is not None:
        machine = ua.NodeId(f"{base}.LimitState", idx)
        batch.obj(machine, nid, "LimitState", ua.NodeId(OID.ExclusiveLimitStateMachineType))
        current = child(
            "LimitState/CurrentState",
            machine,
            value=ua.LocalizedText(""),
            vtype=_V.LocalizedText,
            prop=False,
            type_id=OID.FiniteStateVariableType,
        )
        child("LimitState/CurrentState/Id", current, value=ua.NodeId(), vtype=_V.NodeId)
        for name in LIMIT_PROPERTIES[kind.limit]:
            child(name, value=0.0, vtype=_V.Double)
    for method in _METHODS:
        batch.ref(nid, OID.HasComponent, ua.NodeId(method), ua.NodeClass.Method)
    batch.ref(source, OID.HasCondition, nid, ua.NodeClass.Object)
    return cond
