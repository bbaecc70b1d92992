"""Copies of a subtree whose nodes are made when first looked up.

A copied circuit is ~450 nodes (its measurements with their properties, relay, methods, seven
conditions with their state variables, its OPC 34100 energy model): ~2.3 MB for a device's ten. Most
of them are never read: a condition's state variables until it fires, a measurement's EURange and
EngineeringUnits until a client browses to them. ``LazyNodes`` is the address space's node table
(asyncua reads and writes it as a dict, and supports a lazy one of its own for the standard
namespace): a ``Copy`` registered with it answers for every NodeId of the copy at once, and each
node is made, from the template, the first time anything looks it up (a write, a subscription, a
browse's target read, a client's Read). From then on it is an ordinary node in the table, so a
node changes exactly as an eagerly copied one did.

``keys()`` names the copy's nodes too; iterating the table, ``values``/``items`` and ``len`` see the
nodes made so far (asyncua iterates values only to search references, which no copy's node has to a
node outside it other than its parent and shared type nodes). Deleting a copy's node forgets it, and
deleting the copy's root forgets the nodes of the copy not made yet. ``forget_unchanged`` takes back
the made nodes nothing changed since (a client's browse of everything makes every node it reads).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from asyncua import ua
from asyncua.server.address_space import NodeData

from .shared_values import Node, SharedReferences, Table, value_of

HAS_TYPEDEF = ua.NodeId(ua.ObjectIds.HasTypeDefinition)
_A = ua.AttributeIds


def attr(node: NodeData, attribute: int) -> Any:
    """An attribute's plain value, or None."""
    av = node.attributes.get(attribute)
    return None if av is None or av.value is None or av.value.Value is None else av.value.Value.Value


def type_definition(references: Iterable[ua.ReferenceDescription]) -> Any:
    for r in references:
        if r.IsForward and r.ReferenceTypeId == HAS_TYPEDEF:
            return r.NodeId
    return ua.ExpandedNodeId()


def reference(ref_type: ua.NodeId, forward: bool, target: ua.NodeId, data: NodeData) -> ua.ReferenceDescription:
    """A reference to ``target`` (whose node is ``data``) as asyncua's AddReferences writes it."""
    rd = ua.ReferenceDescription(ReferenceTypeId=ref_type, IsForward=forward, NodeId=target)
    rd.NodeClass = attr(data, _A.NodeClass)
    name, display = attr(data, _A.BrowseName), attr(data, _A.DisplayName)
    if name:
        rd.BrowseName = name
    if display:
        rd.DisplayName = display
    if rd.NodeClass in (ua.NodeClass.Object, ua.NodeClass.Variable):
        rd.TypeDefinition = type_definition(data.references)
    return rd


@dataclass(slots=True)
class TemplateNode:
    suffix: str  # "" for the instance itself, else ".<BrowseName>..." after the instance's NodeId
    table: Table  # its shared attribute values (shared_values.table)
    own: dict[int, ua.DataValue]  # the values each copy gets its own AttributeValue of
    references: list[tuple[ua.ReferenceDescription, str | None]]  # suffix of a target in the instance
    call: Any
    inside: dict[int, tuple[str, ua.DataValue]]  # NodeId values naming a node of the instance: suffix
    texts: dict[int, ua.DataValue]  # string values a copy may replace (``Copy.texts``)
    siblings: tuple[int, ...] | None  # a copy's nodes with the same key share one reference list


class Template(list[TemplateNode]):
    """A subtree's nodes, its root first."""

    @cached_property
    def by_suffix(self) -> dict[str, TemplateNode]:
        return {t.suffix: t for t in self}

    @cached_property
    def root_type(self) -> Any:
        return type_definition(r for r, _ in self[0].references)


@dataclass(slots=True, eq=False)
class Copy:
    """One copy of a template: the root's NodeId (``<base>``; a node's is ``<base><suffix>``), its
    parent, its names, and the string values it replaces; the NodeIds and references its nodes made
    so far share (one object each, as an eager copy had)."""

    template: Template
    parent: ua.NodeId
    ns: int
    base: str
    bname: ua.QualifiedName
    display: ua.LocalizedText
    texts: dict[str, str]
    ids: dict[str, ua.NodeId] = field(default_factory=dict)
    made: dict[int, ua.ReferenceDescription] = field(default_factory=dict)  # a template reference's copy
    lists: dict[tuple[int, ...], SharedReferences] = field(default_factory=dict)
    gone: set[str] = field(default_factory=set)  # suffixes of deleted nodes

    def node_id(self, suffix: str, offered: ua.NodeId | None = None) -> ua.NodeId:
        """The copy's one NodeId object of a node (``offered`` becomes it if there is none yet)."""
        nid = self.ids.get(suffix)
        if nid is None:
            if type(offered) is not ua.NodeId:  # an ExpandedNodeId, say: not the node's own id
                offered = ua.NodeId(self.base + suffix, self.ns)
            nid = self.ids[suffix] = offered
        return nid

    def peek_id(self, suffix: str) -> ua.NodeId:
        """The NodeId of a node of the copy, without naming a new one for the copy to share."""
        return self.ids.get(suffix) or ua.NodeId(self.base + suffix, self.ns)

    def own_values(self, t: TemplateNode, peek: bool = False) -> dict[int, ua.DataValue]:
        """The values the copy's node of ``t`` holds as its own (``peek``: without naming new NodeIds)."""
        own = dict(t.own)
        for a, (rel, dv) in t.inside.items():
            target = self.peek_id(rel) if peek else self.node_id(rel)
            own[a] = dataclasses.replace(dv, Value=ua.Variant(target, ua.VariantType.NodeId))
        for a, dv in t.texts.items():
            text = self.texts.get(dv.Value.Value, dv.Value.Value)  # type: ignore[union-attr]
            own[a] = dataclasses.replace(dv, Value=ua.Variant(text, ua.VariantType.String))
        if t.suffix == "":  # the instance's own names
            own[_A.BrowseName] = ua.DataValue(ua.Variant(self.bname, ua.VariantType.QualifiedName))
            own[_A.DisplayName] = ua.DataValue(ua.Variant(self.display, ua.VariantType.LocalizedText))
        return own

    def make(self, t: TemplateNode, nid: ua.NodeId, parent_data: NodeData | None) -> Node:
        """The copy's node of ``t``, named ``nid`` (``parent_data``: the parent's node, for the root).
        Its reference list is read-only (``SharedReferences``) even when no sibling shares it: a
        change gives the node its own list first, which is how ``unchanged`` tells."""
        data = Node(nid)
        data.set(t.table, {a: value_of(dv) for a, dv in self.own_values(t).items()} or None)
        data.call = t.call
        shared = self.lists.get(t.siblings) if t.siblings is not None else None
        if shared is not None:
            data.references = shared
            return data
        refs = data.references
        for r, suffix in t.references:
            if suffix is not None:
                rd = self.made.get(id(r))
                if rd is None:
                    rd = self.made[id(r)] = ua.ReferenceDescription(
                        ReferenceTypeId=r.ReferenceTypeId,
                        IsForward=r.IsForward,
                        NodeId=self.node_id(suffix),
                        NodeClass=r.NodeClass,
                        BrowseName=self.bname if suffix == "" else r.BrowseName,
                        DisplayName=self.display if suffix == "" else r.DisplayName,
                        TypeDefinition=r.TypeDefinition,
                    )
                refs.append(rd)
            elif parent_data is not None and not r.IsForward and r.ReferenceTypeId != HAS_TYPEDEF:
                refs.append(reference(r.ReferenceTypeId, False, self.parent, parent_data))  # the new parent
            else:
                refs.append(r)  # type definitions and other nodes outside the instance: the same
        data.references = SharedReferences(refs)
        if t.siblings is not None:
            self.lists[t.siblings] = data.references
        return data

    def unchanged(self, t: TemplateNode, data: Any) -> bool:
        """Whether the made node of ``t`` is still as ``make`` made it (its values, callback and
        references): then forgetting it and making it again when next looked up changes nothing. A
        value the template holds must be that very object (any write replaces it); the ones the
        copy made (renamed NodeIds, its texts, the root's names) equal."""
        return (
            type(data) is Node
            and type(data.references) is SharedReferences
            and data.as_made(t.table, self.own_values(t, peek=True), t.call, exact=t.own)
        )

    def parent_reference(self) -> ua.ReferenceDescription:
        """The parent's forward reference to the copy's root."""
        forward = next(r for r, s in self.template[0].references if s is None and not r.IsForward)
        return ua.ReferenceDescription(
            ReferenceTypeId=forward.ReferenceTypeId,
            IsForward=True,
            NodeId=self.node_id(""),
            NodeClass=ua.NodeClass.Object,
            BrowseName=self.bname,
            DisplayName=self.display,
            TypeDefinition=self.template.root_type,
        )

    def unmade(self, table: dict[ua.NodeId, Any]) -> Iterable[ua.NodeId]:
        """The NodeIds of the copy's nodes not made yet (and not deleted)."""
        for t in self.template:
            if t.suffix not in self.gone:
                nid = self.peek_id(t.suffix)
                if not dict.__contains__(table, nid):
                    yield nid


class LazyNodes(dict[ua.NodeId, Any]):
    """The address space's nodes: a dict of the nodes made, answering for registered copies too."""

    __slots__ = ("_copies", "_longest")

    def __init__(self, nodes: dict[ua.NodeId, Any]) -> None:
        super().__init__(nodes)
        self._copies: dict[tuple[int, str], Copy] = {}
        self._longest = 0  # the longest root NodeId of a copy: no prefix past it is looked up

    def add_copy(self, copy: Copy) -> None:
        self._copies[(copy.ns, copy.base)] = copy
        self._longest = max(self._longest, len(copy.base))

    def _find(self, key: Any) -> tuple[Copy, TemplateNode] | None:
        """The copy and template node ``key`` names (made or not), when it names a copy's node."""
        ident = getattr(key, "Identifier", None)
        if type(ident) is not str or not self._copies:
            return None
        ns, longest = key.NamespaceIndex, self._longest
        end = ident.find(".", 0, longest + 1)
        # every dotted prefix up to the longest root may be a copy's root (a device's, then its
        # circuit's ...): a client's NodeId of a megabyte of dots costs no more than a short one
        while True:
            base = ident if end < 0 else ident[:end]
            copy = self._copies.get((ns, base)) if len(base) <= longest else None
            if copy is not None:
                t = copy.template.by_suffix.get(ident[len(base) :])
                if t is not None and t.suffix not in copy.gone:
                    return copy, t
            if end < 0:
                return None
            end = ident.find(".", end + 1, longest + 1)

    def _make(self, copy: Copy, t: TemplateNode, key: ua.NodeId) -> Node:
        parent = self[copy.parent] if t.suffix == "" else None
        nid = copy.node_id(t.suffix, key)
        data = copy.make(t, nid, parent)
        dict.__setitem__(self, nid, data)
        return data

    def canonical(self, nid: ua.NodeId) -> ua.NodeId:
        """The one NodeId object of a node, made or not (maps that hold NodeIds hold this one)."""
        data = dict.get(self, nid)
        if data is not None:
            return data.nodeid  # type: ignore[no-any-return]
        found = self._find(nid)
        return nid if found is None else found[0].node_id(found[1].suffix, nid)

    def __missing__(self, key: ua.NodeId) -> Node:
        found = self._find(key)
        if found is None:
            raise KeyError(key)
        return self._make(*found, key)

    def get(self, key: ua.NodeId, default: Any = None) -> Any:  # type: ignore[override]
        data = dict.get(self, key)
        if data is not None:
            return data
        found = self._find(key)
        return default if found is None else self._make(*found, key)

    def __contains__(self, key: object) -> bool:
        return dict.__contains__(self, key) or self._find(key) is not None

    def __delitem__(self, key: ua.NodeId) -> None:
        made = dict.__contains__(self, key)
        found = self._find(key)
        if found is not None:
            copy, t = found
            copy.gone.add(t.suffix)
            if t.suffix == "":  # the root: the copy's nodes not made yet go with it
                del self._copies[(copy.ns, copy.base)]
        if made:
            dict.__delitem__(self, key)
        elif found is None:
            raise KeyError(key)

    def keys(self) -> list[ua.NodeId]:  # type: ignore[override]
        """Every node's NodeId, made or not (asyncua's XML export and NodeId generation read these)."""
        return [*dict.keys(self), *(n for c in self.all_copies() for n in c.unmade(self))]

    def made_count(self) -> int:
        return dict.__len__(self)

    def all_copies(self) -> list[Copy]:
        return list(self._copies.values())

    def forget_unchanged(self, copy: Copy) -> int:
        """Forget the nodes of ``copy`` that nothing changed since they were made (a client's browse
        of everything makes every node it reads): each is made again, the same, when next looked
        up. The copy's shared NodeIds and references go with them. How many were forgotten."""
        kept: dict[str, ua.NodeId] = {"": copy.ids[""]}
        forgotten = 0
        for suffix, nid in list(copy.ids.items()):
            data = dict.get(self, nid)
            t = copy.template.by_suffix.get(suffix)
            if data is None or t is None:
                continue
            if suffix != "" and copy.unchanged(t, data):
                dict.__delitem__(self, nid)
                forgotten += 1
            else:
                kept[suffix] = nid
        if forgotten:
            copy.ids, copy.made, copy.lists = kept, {}, {}
        return forgotten


def lazy_nodes(aspace: Any) -> LazyNodes:
    """The address space's node table as a ``LazyNodes`` (installed at the first call)."""
    nodes = aspace._nodes
    if type(nodes) is not LazyNodes:
        nodes = aspace._nodes = LazyNodes(nodes)
    return nodes
