"""One attribute value held by every node that has it, copied only when one of them changes.

asyncua gives every attribute of every node its own AttributeValue, DataValue, Variant and
StatusCode (~440 bytes a node attribute, ~15 attributes a variable): ~90 % of a device's 34 MB and
most of the time to add its ~4 500 nodes. Most of those values are the same for thousands of nodes
(AccessLevel 1, ValueRank -1, DataType Double, the browse names of a circuit's children on every
circuit and device, a property's initial value ...). Nodes are given one shared, read-only
AttributeValue per distinct value here; the first write, value callback, setter or data-change
subscription on a node's attribute gives that node its own copy first (copy on write), so every node
still changes alone. The NodeId attribute, unique to each node, is never shared.

A node's attributes are then kept as compactly (``Attributes``): its shared values in one table that
every node with the same set holds, its own in a dict made only when it has one, its NodeId
attribute made when read; and asyncua's NodeData gets slots (``Node``). A device went from 34 to
4.5 MB. The standard namespace asyncua loads at start-up goes through the same path, so it shares too.
"""

from __future__ import annotations

import datetime as dt
import enum
import functools
import inspect
from collections.abc import Callable, Iterator, MutableMapping
from types import MappingProxyType
from typing import Any

from asyncua import ua
from asyncua.server import address_space
from asyncua.server.address_space import AddressSpace, AttributeValue, NodeData, NodeManagementService

_EMPTY: MappingProxyType[int, Callable[..., Any]] = MappingProxyType({})
_SHARED: dict[tuple[Any, ...], SharedAttributeValue] = {}
_LIMIT = 200_000  # distinct shared values kept; past it a value is simply not shared


class SharedAttributeValue(AttributeValue):
    """An attribute value several nodes hold: never changed in place (that raises, not corrupts)."""

    def __init__(self, value: ua.DataValue) -> None:
        object.__setattr__(self, "value", value)
        object.__setattr__(self, "value_callback", None)
        object.__setattr__(self, "value_setter", None)
        object.__setattr__(self, "datachange_callbacks", _EMPTY)

    def __setattr__(self, name: str, value: Any) -> None:
        raise TypeError("a shared OPC UA attribute value is read-only: give the node its own copy first")


class Attributes(MutableMapping[int, AttributeValue]):
    """A node's attributes for asyncua (``NodeData.attributes``): the shared ones in a table many
    nodes hold at once (nodes with the same shared values have the same table), the node's own in a
    small dict made only when it has one, and the NodeId attribute made when it is asked for. A dict
    of 15 attributes is 632 bytes and its NodeId value ~430 more; this is ~60 for most nodes."""

    __slots__ = ("_nodeid", "_own", "_shared")

    def __init__(
        self, nodeid: ua.NodeId, shared: dict[int, AttributeValue], own: dict[int, AttributeValue] | None
    ) -> None:
        """``shared``: the one table of these values (``table``); ``own``: None when there are none."""
        self._nodeid, self._shared, self._own = nodeid, shared, own

    def get(self, key: int, default: Any = None) -> Any:
        own = self._own
        if own is not None:
            av = own.get(key)
            if av is not None:
                return av
        av = self._shared.get(key)
        if av is not None:
            return av
        return self._identity() if key == _NODE_ID else default

    def __getitem__(self, key: int) -> AttributeValue:
        av = self.get(key)
        if av is None:
            raise KeyError(key)
        return av  # type: ignore[no-any-return]

    def __contains__(self, key: object) -> bool:
        return key == _NODE_ID or key in self._shared or (self._own is not None and key in self._own)

    def __setitem__(self, key: int, value: AttributeValue) -> None:
        if self._own is None:
            self._own = {}
        self._own[key] = value

    def __delitem__(self, key: int) -> None:
        if self._own is not None and key in self._own:
            del self._own[key]
        elif key in self._shared:
            self._shared = table({k: v for k, v in self._shared.items() if k != key})
        else:
            raise KeyError(key)

    def __iter__(self) -> Iterator[int]:
        keys = dict.fromkeys((_NODE_ID, *self._shared, *(self._own or ())))
        return iter(keys)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def _identity(self) -> AttributeValue:
        av = AttributeValue(ua.DataValue(ua.Variant(self._nodeid, ua.VariantType.NodeId)))
        self[_NODE_ID] = av  # kept once asked for: a write or a subscription holds this one
        return av


class Node:
    """asyncua's NodeData with slots (its own has a __dict__: ~150 bytes more a node)."""

    __slots__ = ("attributes", "call", "nodeid", "references")

    def __init__(self, nodeid: ua.NodeId) -> None:
        self.nodeid = nodeid
        self.attributes: Any = {}
        self.references: list[ua.ReferenceDescription] = []
        self.call: Callable[..., Any] | None = None

    def __repr__(self) -> str:
        return f"NodeData(id:{self.nodeid}, attrs:{dict(self.attributes)}, refs:{self.references})"


_TABLES: dict[tuple[tuple[int, ...], tuple[int, ...]], dict[int, AttributeValue]] = {}
_NODE_ID = ua.AttributeIds.NodeId


def table(shared: dict[int, AttributeValue]) -> dict[int, AttributeValue]:
    """The one table of these shared values (they live as long as the process: ids are stable)."""
    key = (tuple(shared), tuple(map(id, shared.values())))  # attributes come in one order: no sorting
    known = _TABLES.get(key)
    if known is None:
        known = _TABLES[key] = dict(shared)
    return known


def _plain(value: Any) -> Any:
    return (type(value), value)


def _variant(value: ua.Variant) -> Any:
    inner = _key(value.Value)
    dims = tuple(value.Dimensions) if value.Dimensions else None
    return None if inner is None else (ua.Variant, value.VariantType, value.is_array, dims, inner)


def _sequence(value: list[Any] | tuple[Any, ...]) -> Any:
    items = tuple(_key(v) for v in value)
    return None if None in items else (type(value), items)


_KEYS: dict[type, Callable[[Any], Any]] = {
    **dict.fromkeys((type(None), str, bytes, bool, int, float, dt.datetime), _plain),
    ua.NodeId: lambda v: (ua.NodeId, v),  # hashes and compares by namespace, identifier and type
    ua.QualifiedName: lambda v: (ua.QualifiedName, v.NamespaceIndex, v.Name),
    ua.LocalizedText: lambda v: (ua.LocalizedText, v.Locale, v.Text),
    ua.Variant: _variant,  # what an AddNodes item's Value is
    ua.StatusCode: lambda v: (ua.StatusCode, v.value),
    list: _sequence,
    tuple: _sequence,
}


def _key(value: Any) -> Any:
    """A hashable stand-in equal for equal values of the same type, or None for one not shared:
    structures (EUInformation, Range, definitions ...) stay each node's own."""
    make = _KEYS.get(type(value))
    if make is not None:
        return make(value)
    if isinstance(value, enum.Enum):  # NodeClass, AccessLevel masks ... (exact types, so by their type)
        return (type(value), value)
    return None


def _attribute(
    aspace: Any, attr: int, vtype: ua.VariantType | None, is_array: bool, value: Any, timestamps: bool
) -> AttributeValue:
    """The AttributeValue of ``attr`` = ``value``: the shared one, made the first time it is asked for."""
    k = _key(value)
    key = (attr, vtype, is_array, k)
    if k is not None:
        av = _SHARED.get(key)
        if av is not None:
            return av  # a shared Value keeps the timestamps of the node first given it
    if attr == _DEFINITION and not isinstance(value, ua.DataTypeDefinition):
        variant = ua.Variant(None, ua.VariantType.Null)
    else:
        variant = ua.Variant(value, vtype, is_array=is_array)
    now = dt.datetime.now(dt.UTC) if timestamps else None
    dv = ua.DataValue(variant, SourceTimestamp=now, ServerTimestamp=now if aspace.force_server_timestamp else None)
    if k is None or len(_SHARED) >= _LIMIT:
        return AttributeValue(dv)
    av = _SHARED[key] = SharedAttributeValue(dv)
    return av


_V = ua.VariantType
_DEFINITION = ua.AttributeIds.DataTypeDefinition
# What an AddNodes item's NodeAttributes may specify, as asyncua's AddNodes service stores it:
# (attribute, its NodeAttributesMask bit, variant type, is an array); only Value has timestamps.
_PLAN: tuple[tuple[str, int, int, ua.VariantType | None, bool], ...] = tuple(
    (name, getattr(ua.AttributeIds, name), getattr(ua.NodeAttributesMask, name), vtype, is_array)
    for name, vtype, is_array in (
        ("AccessLevel", _V.Byte, False),
        ("ArrayDimensions", _V.UInt32, True),
        ("BrowseName", _V.QualifiedName, False),
        ("ContainsNoLoops", _V.Boolean, False),
        ("DataType", _V.NodeId, False),
        ("Description", _V.LocalizedText, False),
        ("DisplayName", _V.LocalizedText, False),
        ("EventNotifier", _V.Byte, False),
        ("Executable", _V.Boolean, False),
        ("Historizing", _V.Boolean, False),
        ("InverseName", _V.LocalizedText, False),
        ("IsAbstract", _V.Boolean, False),
        ("MinimumSamplingInterval", _V.Double, False),
        ("NodeClass", _V.Int32, False),
        ("Symmetric", _V.Boolean, False),
        ("UserAccessLevel", _V.Byte, False),
        ("UserExecutable", _V.Boolean, False),
        ("ValueRank", _V.Int32, False),
        ("WriteMask", _V.UInt32, False),
        ("UserWriteMask", _V.UInt32, False),
        ("DataTypeDefinition", _V.ExtensionObject, False),
        ("Value", None, False),
    )
)


def compact(nodeid: ua.NodeId, attrs: dict[int, AttributeValue]) -> Attributes:
    """``attrs`` (without the NodeId attribute) as a node's Attributes."""
    shared: dict[int, AttributeValue] = {}
    own: dict[int, AttributeValue] | None = None
    for k, v in attrs.items():
        if type(v) is SharedAttributeValue:
            shared[k] = v
        elif own is None:
            own = {k: v}
        else:
            own[k] = v
    return Attributes(nodeid, table(shared), own)


def own_value(node: Any, attr: int) -> AttributeValue | None:
    """The node's own AttributeValue of ``attr``, made from the shared one first if it holds that
    (copy on write); None when the node has no such attribute."""
    av = node.attributes.get(attr)
    if type(av) is SharedAttributeValue:
        av = node.attributes[attr] = AttributeValue(av.value)  # DataValues are replaced, never changed: share it
    return av  # type: ignore[no-any-return]


def _own(aspace: AddressSpace, nodeid: ua.NodeId, attr: int) -> None:
    """Give the node its own copy of ``attr`` before it is changed."""
    node = aspace._nodes.get(nodeid)
    if node is not None:
        own_value(node, attr)


def install() -> None:
    if getattr(NodeManagementService, "_openstrom_shared", False):
        return
    NodeManagementService._openstrom_shared = True  # type: ignore[attr-defined]
    address_space.NodeData = Node  # type: ignore[misc, assignment]  # what AddNodes makes each node as

    def add_node_attributes(
        self: NodeManagementService, nodedata: NodeData, item: ua.AddNodesItem, add_timestamps: bool
    ) -> None:
        a, aspace = ua.AttributeIds, self._aspace
        attrs: dict[int, AttributeValue] = {}
        attrs[a.BrowseName] = _attribute(aspace, a.BrowseName, _V.QualifiedName, False, item.BrowseName, False)
        attrs[a.NodeClass] = _attribute(aspace, a.NodeClass, _V.Int32, False, item.NodeClass, False)
        given = item.NodeAttributes
        specified = given.SpecifiedAttributes
        for name, attr, bit, vtype, is_array in _PLAN:
            if specified & bit:
                stamp = add_timestamps and attr == a.Value
                attrs[attr] = _attribute(aspace, attr, vtype, is_array, getattr(given, name), stamp)
        nodedata.attributes = compact(nodedata.nodeid, attrs)  # type: ignore[assignment]

    NodeManagementService._add_node_attributes = add_node_attributes  # type: ignore[method-assign]

    for method in (
        "write_attribute_value",
        "set_attribute_value_callback",
        "set_attribute_value_setter",
        "add_datachange_callback",
    ):
        setattr(AddressSpace, method, _owning(getattr(AddressSpace, method)))


def _owning(method: Callable[..., Any]) -> Callable[..., Any]:
    if inspect.iscoroutinefunction(method):

        async def write(self: AddressSpace, nodeid: ua.NodeId, attr: int, *args: Any) -> Any:
            _own(self, nodeid, attr)
            return await method(self, nodeid, attr, *args)

        return functools.wraps(method)(write)

    def change(self: AddressSpace, nodeid: ua.NodeId, attr: int, *args: Any) -> Any:
        _own(self, nodeid, attr)
        return method(self, nodeid, attr, *args)

    return functools.wraps(method)(change)
