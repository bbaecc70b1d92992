"""One attribute value held by every node that has it, copied only when one of them changes.

asyncua gives every attribute of every node its own AttributeValue, DataValue, Variant and
StatusCode (~440 bytes a node attribute, ~15 attributes a variable): ~90 % of a device's 34 MB and
most of the time to add its ~4 500 nodes. Most of those values are the same for thousands of nodes
(AccessLevel 1, ValueRank -1, DataType Double, the browse names of a circuit's children on every
circuit and device, a property's initial value ...). Nodes are given one shared, read-only
AttributeValue per distinct value here; the first write, value callback, setter or data-change
subscription on a node's attribute gives that node its own copy first (copy on write), so every node
still changes alone. The NodeId attribute, unique to each node, is never shared.

A node's attributes are then kept as compactly: its shared values in one ``Table`` that every node
with the same set holds, its own values in a flat tuple made only when it has one, its NodeId
attribute made when read; asyncua's NodeData gets slots and is its own attributes mapping
(``Node``). Reference lists are shared the same way where siblings have the same ones
(``SharedReferences``, copied on the first change). A device went from 34 to 4.5 MB, then ~2.5 MB.
The standard namespace asyncua loads at start-up goes through the same path, so it shares too.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import functools
import inspect
from collections.abc import Callable, Container, Iterable, Iterator, Mapping, MutableMapping
from types import MappingProxyType
from typing import Any, cast

from asyncua import ua
from asyncua.crypto.permission_rules import UserRole
from asyncua.server import address_space
from asyncua.server.address_space import AddressSpace, AttributeValue, NodeData, NodeManagementService

_EMPTY: MappingProxyType[int, Callable[..., Any]] = MappingProxyType({})
_SHARED: dict[tuple[Any, ...], SharedAttributeValue] = {}
_LIMIT = 200_000  # distinct shared values kept; past it a value is simply not shared


class OwnValue:
    """asyncua's AttributeValue with slots (its own has a __dict__: ~80 bytes more each; asyncua only
    reads and sets these four fields, it never checks the class)."""

    __slots__ = ("datachange_callbacks", "value", "value_callback", "value_setter")

    def __init__(self, value: ua.DataValue) -> None:
        self.value: ua.DataValue | None = value
        self.value_callback: Callable[..., Any] | None = None
        self.value_setter: Callable[..., Any] | None = None
        self.datachange_callbacks: Any = _EMPTY

    def __str__(self) -> str:
        return f"AttributeValue({self.value_callback or self.value})"

    __repr__ = __str__


def value_of(dv: ua.DataValue) -> AttributeValue:
    """A node's own AttributeValue of ``dv``. Its table of data-change subscribers is the one empty,
    read-only table until a client subscribes (``add_datachange_callback`` gives it its own first):
    most values never have one, and an empty dict each was ~1.3 MB for 10 devices."""
    return cast(AttributeValue, OwnValue(dv))  # the same fields: asyncua duck-types it


class SharedAttributeValue(AttributeValue):
    """An attribute value several nodes hold: never changed in place (that raises, not corrupts)."""

    def __init__(self, value: ua.DataValue) -> None:
        object.__setattr__(self, "value", value)
        object.__setattr__(self, "value_callback", None)
        object.__setattr__(self, "value_setter", None)
        object.__setattr__(self, "datachange_callbacks", _EMPTY)

    def __setattr__(self, name: str, value: Any) -> None:
        raise TypeError("a shared OPC UA attribute value is read-only: give the node its own copy first")


class Node(MutableMapping[int, AttributeValue]):
    """asyncua's NodeData with slots (its own has a __dict__: ~150 bytes more a node), which is its
    own attributes mapping (``node.attributes is node``: one object a node, not two).

    The attributes: the shared ones in a table many nodes hold at once (nodes with the same shared
    values have the same table), the node's own as a flat tuple (attribute, value, attribute, value
    ...: most nodes have none, the others one to three; a dict of one was ~220 bytes, the tuple
    ~70), and the NodeId attribute made when it is asked for. A dict of 15 attributes is 632 bytes
    and its NodeId value ~430 more; this is ~70 for most nodes, references aside. ``references`` may
    be a ``SharedReferences`` list several sibling nodes hold: ``own_references`` before changing it."""

    __slots__ = ("_own", "_shared", "nodeid", "references")

    def __init__(self, nodeid: ua.NodeId) -> None:
        self.nodeid = nodeid
        self.references: list[ua.ReferenceDescription] = []
        self._shared: Table = _NO_VALUES
        self._own: tuple[Any, ...] | None = None

    @property
    def call(self) -> Callable[..., Any] | None:
        """A method node's callback: kept with the own values (few nodes are methods; a slot each
        was 8 bytes on every node), under a key no attribute has."""
        i = self._own_at(_CALL)
        return None if i is None else self._own[i + 1]  # type: ignore[index, no-any-return]

    @call.setter
    def call(self, fn: Callable[..., Any] | None) -> None:
        if fn is not None:
            self[_CALL] = fn  # type: ignore[assignment]
        elif self._own_at(_CALL) is not None:
            del self[_CALL]

    def _own_at(self, key: int) -> int | None:
        """Where ``key`` is in the own values' flat tuple, or None."""
        own = self._own or ()
        for i in range(0, len(own), 2):
            if own[i] == key:
                return i
        return None

    @property
    def attributes(self) -> Node:
        return self

    @attributes.setter
    def attributes(self, attrs: Mapping[int, AttributeValue]) -> None:
        if attrs is not self:
            fill(self, {k: v for k, v in attrs.items() if k != _NODE_ID})

    def set(self, shared: Table, own: dict[int, AttributeValue] | None) -> None:
        """``shared``: the one table of these values (``table``); ``own``: None when there are none."""
        self._shared = shared
        self._own = None if not own else tuple(x for pair in own.items() for x in pair)

    def as_made(
        self,
        shared: Table,
        own: Mapping[int, ua.DataValue],
        call: Callable[..., Any] | None,
        exact: Container[int] = (),
    ) -> bool:
        """Whether the node holds exactly ``shared``, ``own`` as its own values (each with no
        subscriber, callback or setter; the very DataValue objects for the attributes in ``exact``,
        equal ones for the others) and ``call``, besides its NodeId attribute: nothing has changed
        it since it was made of these."""
        if self._shared is not shared:
            return False
        pairs, seen = self._own or (), 0
        for i in range(0, len(pairs), 2):
            key, av = pairs[i], pairs[i + 1]
            if key == _CALL:
                if av is not call:
                    return False
                continue
            if type(av) is not OwnValue or av.datachange_callbacks is not _EMPTY:
                return False
            if av.value_callback is not None or av.value_setter is not None:
                return False
            if key == _NODE_ID:
                continue
            dv = own.get(key)
            if dv is None or not (av.value is dv or (key not in exact and av.value == dv)):
                return False
            seen += 1
        return seen == len(own) and (call is None or self.call is call)

    def __eq__(self, other: object) -> bool:  # a node, not a mapping: equal to itself only
        return self is other

    def __hash__(self) -> int:
        return id(self)

    def __repr__(self) -> str:
        return f"NodeData(id:{self.nodeid}, attrs:{dict(self)}, refs:{self.references})"

    def get(self, key: int, default: Any = None) -> Any:
        if self._own is not None:
            i = self._own_at(key)
            if i is not None:
                return self._own[i + 1]
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
        return key == _NODE_ID or key in self._shared or key in self._own_keys()

    def _own_keys(self) -> tuple[int, ...]:
        if self._own is None:
            return ()
        keys = self._own[::2]
        return tuple(k for k in keys if k != _CALL) if _CALL in keys else keys

    def __setitem__(self, key: int, value: AttributeValue) -> None:
        own, i = self._own or (), self._own_at(key)
        self._own = (*own, key, value) if i is None else (*own[:i], key, value, *own[i + 2 :])

    def __delitem__(self, key: int) -> None:
        own, i = self._own or (), self._own_at(key)
        if i is not None:
            self._own = (*own[:i], *own[i + 2 :]) or None
        elif key in self._shared:
            self._shared = table({k: v for k, v in self._shared.items() if k != key})
        else:
            raise KeyError(key)

    def __iter__(self) -> Iterator[int]:
        keys = dict.fromkeys((_NODE_ID, *self._shared, *self._own_keys()))
        return iter(keys)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def _identity(self) -> AttributeValue:
        av = value_of(ua.DataValue(ua.Variant(self.nodeid, ua.VariantType.NodeId)))
        self[_NODE_ID] = av  # kept once asked for: a write or a subscription holds this one
        return av


class SharedReferences(list[ua.ReferenceDescription]):
    """One reference list several nodes hold at once (the properties of one parent, say: each has
    the same reference back to it and the same type definition; a ReferenceDescription is never
    changed in place). Read-only: changing it raises, ``own_references`` gives a node its copy."""

    __slots__ = ()

    def _refuse(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("a shared OPC UA reference list is read-only: give the node its own copy first")

    append = extend = insert = remove = pop = clear = sort = reverse = _refuse  # type: ignore[assignment]
    __setitem__ = __delitem__ = __iadd__ = __imul__ = _refuse  # type: ignore[assignment]


def reference_key(r: ua.ReferenceDescription) -> tuple[Any, ...]:
    """What makes two ReferenceDescriptions equal (the class compares by identity)."""
    b, d = r.BrowseName, r.DisplayName
    return (r.ReferenceTypeId, r.IsForward, r.NodeId, r.NodeClass, b.NamespaceIndex, b.Name, d.Locale, d.Text,
            r.TypeDefinition)  # fmt: skip


def share_references(nodes: Iterable[Any]) -> None:
    """Equal references of ``nodes`` made one object, and equal reference lists one shared list
    (asyncua's standard namespace: 20 500 references, 8 600 distinct; 6 200 lists, 3 650 distinct)."""
    equal: dict[tuple[Any, ...], ua.ReferenceDescription] = {}
    lists: dict[tuple[int, ...], SharedReferences] = {}
    for node in nodes:
        refs = [equal.setdefault(reference_key(r), r) for r in node.references]
        ids = tuple(map(id, refs))
        known = lists.get(ids)
        if known is None:
            known = lists[ids] = SharedReferences(refs)
        node.references = known


def own_references(node: Any) -> list[ua.ReferenceDescription]:
    """The node's own reference list, copied from a shared one first (copy on write)."""
    refs = node.references
    if type(refs) is SharedReferences:
        refs = node.references = list(refs)
    return refs  # type: ignore[no-any-return]


class Table(Mapping[int, AttributeValue]):
    """The shared attribute values many nodes hold at once: the values in a tuple, their attribute
    ids in an index that every table of the same attributes holds (a dict of ~12 values each was
    ~650 bytes and its key ~230 more; ~3 000 distinct tables)."""

    __slots__ = ("_index", "_values")

    def __init__(self, index: dict[int, int], values: tuple[AttributeValue, ...]) -> None:
        self._index, self._values = index, values

    def get(self, key: int, default: Any = None) -> Any:
        i = self._index.get(key)
        return default if i is None else self._values[i]

    def __getitem__(self, key: int) -> AttributeValue:
        return self._values[self._index[key]]

    def __contains__(self, key: object) -> bool:
        return key in self._index

    def __iter__(self) -> Iterator[int]:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._values)


_INDEXES: dict[tuple[int, ...], dict[int, int]] = {}
_TABLES: dict[tuple[int, tuple[AttributeValue, ...]], Table] = {}
_NO_VALUES = Table({}, ())  # a node given none
_NODE_ID = ua.AttributeIds.NodeId
_CALL = -1  # a method node's callback among its own values (no attribute has this id)


def table(shared: Mapping[int, AttributeValue]) -> Table:
    """The one table of these shared values (they live as long as the process: ids are stable)."""
    attrs = tuple(shared)  # attributes come in one order: no sorting
    index = _INDEXES.get(attrs)
    if index is None:
        index = _INDEXES[attrs] = {a: k for k, a in enumerate(attrs)}
    values = tuple(shared.values())
    key = (id(index), values)  # AttributeValues compare by identity
    known = _TABLES.get(key)
    if known is None:
        known = _TABLES[key] = Table(index, values)
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
        return value_of(dv)
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


def fill(node: Node, attrs: dict[int, AttributeValue]) -> None:
    """Give ``node`` the attributes ``attrs`` (without the NodeId attribute), shared ones shared."""
    shared: dict[int, AttributeValue] = {}
    own: dict[int, AttributeValue] | None = None
    for k, v in attrs.items():
        if type(v) is SharedAttributeValue:
            shared[k] = v
        elif own is None:
            own = {k: v}
        else:
            own[k] = v
    node.set(table(shared), own)


def own_value(node: Any, attr: int) -> AttributeValue | None:
    """The node's own AttributeValue of ``attr``, made from the shared one first if it holds that
    (copy on write); None when the node has no such attribute."""
    av = node.attributes.get(attr)
    if type(av) is SharedAttributeValue:
        av = node.attributes[attr] = value_of(av.value)  # DataValues are replaced, never changed: share it
    return av  # type: ignore[no-any-return]


def _own(aspace: AddressSpace, nodeid: ua.NodeId, attr: int) -> None:
    """Give the node its own copy of ``attr`` before it is changed."""
    node = aspace._nodes.get(nodeid)
    if node is not None:
        own_value(node, attr)


def _subscribable(aspace: AddressSpace, nodeid: ua.NodeId, attr: int) -> None:
    """Give the node its own copy of ``attr`` with a table of its own for data-change subscribers."""
    node = aspace._nodes.get(nodeid)
    av = None if node is None else own_value(node, attr)
    if av is not None and av.datachange_callbacks is _EMPTY:
        av.datachange_callbacks = {}


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
        fill(nodedata, attrs)  # type: ignore[arg-type]

    NodeManagementService._add_node_attributes = add_node_attributes  # type: ignore[method-assign]

    for method in (
        "write_attribute_value",
        "set_attribute_value_callback",
        "set_attribute_value_setter",
    ):
        setattr(AddressSpace, method, _owning(getattr(AddressSpace, method)))
    AddressSpace.add_datachange_callback = _owning(AddressSpace.add_datachange_callback, _subscribable)  # type: ignore[method-assign]
    _own_references_first()


def _own_references_first() -> None:
    """asyncua changes a node's reference list in three places (a reference added, one deleted, a
    node deleted with the references to it): each gives the node its own list first."""
    add_unique = NodeManagementService._add_unique_reference
    delete_unique = NodeManagementService._delete_unique_reference
    delete_one = NodeManagementService._delete_node

    def add_unique_reference(self: NodeManagementService, nodedata: NodeData, desc: Any) -> ua.StatusCode:
        own_references(nodedata)
        return add_unique(self, nodedata, desc)

    def delete_unique_reference(self: NodeManagementService, item: Any, invert: bool = False) -> ua.StatusCode:
        source = self._aspace.get(item.TargetNodeId if invert else item.SourceNodeId)
        if source is not None:
            own_references(source)
        return delete_unique(self, item, invert)

    def delete_node(self: NodeManagementService, item: ua.DeleteNodesItem, user: Any) -> ua.StatusCode:
        """The references to the node go from the nodes made so far; asyncua's own loop looks up
        every NodeId there is, which would make every node of every lazy copy (``copies``). A copy's
        node not made yet keeps its template's references."""
        if item.DeleteTargetReferences and user.role == UserRole.Admin and item.NodeId in self._aspace:
            for data in list(self._aspace._nodes.values()):
                if any(r.NodeId == item.NodeId for r in data.references):
                    data.references = [r for r in data.references if r.NodeId != item.NodeId]
            item = dataclasses.replace(item, DeleteTargetReferences=False)
        return delete_one(self, item, user)

    NodeManagementService._add_unique_reference = add_unique_reference  # type: ignore[method-assign]
    NodeManagementService._delete_unique_reference = delete_unique_reference  # type: ignore[method-assign]
    NodeManagementService._delete_node = delete_node  # type: ignore[method-assign]


def _owning(
    method: Callable[..., Any], first: Callable[[AddressSpace, ua.NodeId, int], None] = _own
) -> Callable[..., Any]:
    if inspect.iscoroutinefunction(method):

        async def write(self: AddressSpace, nodeid: ua.NodeId, attr: int, *args: Any) -> Any:
            first(self, nodeid, attr)
            return await method(self, nodeid, attr, *args)

        return functools.wraps(method)(write)

    def change(self: AddressSpace, nodeid: ua.NodeId, attr: int, *args: Any) -> Any:
        first(self, nodeid, attr)
        return method(self, nodeid, attr, *args)

    return functools.wraps(method)(change)
