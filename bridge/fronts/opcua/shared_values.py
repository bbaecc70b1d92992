"""One attribute value held by every node that has it, copied only when one of them changes.

asyncua gives every attribute of every node its own AttributeValue, DataValue, Variant and
StatusCode (~440 bytes a node attribute, ~15 attributes a variable): ~90 % of a device's 34 MB and
most of the time to add its ~4 500 nodes. Most of those values are the same for thousands of nodes
(AccessLevel 1, ValueRank -1, DataType Double, the browse names of a circuit's children on every
circuit and device, a property's initial value ...). Nodes are given one shared, read-only
AttributeValue per distinct value here; the first write, value callback, setter or data-change
subscription on a node's attribute gives that node its own copy first (copy on write), so every node
still changes alone. The NodeId attribute, unique to each node, is never shared.

The standard namespace asyncua loads at start-up goes through the same path, so it shares too.
"""

from __future__ import annotations

import datetime as dt
import enum
import functools
import inspect
from collections.abc import Callable
from types import MappingProxyType
from typing import Any

from asyncua import ua
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


def _key(value: Any) -> Any:
    """A hashable stand-in equal for equal values of the same type, or None for one not shared."""
    if value is None or isinstance(value, str | bytes | bool | int | float | enum.Enum | dt.datetime):
        return (type(value), value)
    if isinstance(value, ua.NodeId):
        return (ua.NodeId, value)  # hashes and compares by namespace, identifier and type
    if isinstance(value, ua.QualifiedName):
        return (ua.QualifiedName, value.NamespaceIndex, value.Name)
    if isinstance(value, ua.LocalizedText):
        return (ua.LocalizedText, value.Locale, value.Text)
    if isinstance(value, list | tuple):
        items = tuple(_key(v) for v in value)
        return None if any(k is None for k in items) else (type(value), items)
    return None  # structures (EUInformation, Range, definitions ...) stay each node's own


def shared(
    name: str, vtype: ua.VariantType | None, is_array: bool, value: Any, make: Callable[[], ua.DataValue]
) -> AttributeValue:
    """The shared AttributeValue of attribute ``name`` = ``value``, made by ``make`` the first time."""
    k = _key(value)
    if k is None:
        return AttributeValue(make())
    key = (name, vtype, is_array, k)
    av = _SHARED.get(key)
    if av is None:
        if len(_SHARED) >= _LIMIT:
            return AttributeValue(make())
        av = _SHARED[key] = SharedAttributeValue(make())
    return av


def _own(aspace: AddressSpace, nodeid: ua.NodeId, attr: int) -> None:
    """Give the node its own copy of ``attr`` before it is changed."""
    node = aspace._nodes.get(nodeid)
    if node is None:
        return
    av = node.attributes.get(attr)
    if type(av) is SharedAttributeValue:
        node.attributes[attr] = AttributeValue(av.value)  # DataValues are replaced, never changed: share it


def install() -> None:
    if getattr(NodeManagementService, "_openstrom_shared", False):
        return
    NodeManagementService._openstrom_shared = True  # type: ignore[attr-defined]

    def add_node_attr(
        self: NodeManagementService,
        attributes: Any,
        nodedata: NodeData,
        name: str,
        vtype: ua.VariantType | None = None,
        add_timestamps: bool = False,
        is_array: bool = False,
    ) -> None:
        if not attributes.SpecifiedAttributes & getattr(ua.NodeAttributesMask, name):
            return
        value = getattr(attributes, name)

        def make() -> ua.DataValue:
            if name == "DataTypeDefinition" and not isinstance(value, ua.DataTypeDefinition):
                variant = ua.Variant(None, ua.VariantType.Null)
            else:
                variant = ua.Variant(value, vtype, is_array=is_array)
            now = dt.datetime.now(dt.UTC) if add_timestamps else None
            server_ts = now if add_timestamps and self._aspace.force_server_timestamp else None
            return ua.DataValue(variant, SourceTimestamp=now, ServerTimestamp=server_ts)

        attr = getattr(ua.AttributeIds, name)
        if attr == ua.AttributeIds.NodeId:
            nodedata.attributes[attr] = AttributeValue(make())
        else:
            # a shared Value keeps the timestamps of the first node given it: moments apart at start-up
            nodedata.attributes[attr] = shared(name, vtype, is_array, value, make)

    def add_node_attributes(
        self: NodeManagementService, nodedata: NodeData, item: ua.AddNodesItem, add_timestamps: bool
    ) -> None:
        a = ua.AttributeIds
        nodedata.attributes[a.NodeId] = AttributeValue(ua.DataValue(ua.Variant(nodedata.nodeid, ua.VariantType.NodeId)))
        nodedata.attributes[a.BrowseName] = shared(
            "BrowseName", ua.VariantType.QualifiedName, False, item.BrowseName,
            lambda: ua.DataValue(ua.Variant(item.BrowseName, ua.VariantType.QualifiedName)),
        )  # fmt: skip
        nodedata.attributes[a.NodeClass] = shared(
            "NodeClass", ua.VariantType.Int32, False, item.NodeClass,
            lambda: ua.DataValue(ua.Variant(item.NodeClass, ua.VariantType.Int32)),
        )  # fmt: skip
        self._add_nodeattributes(item.NodeAttributes, nodedata, add_timestamps)

    NodeManagementService._add_node_attr = add_node_attr  # type: ignore[method-assign]
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
