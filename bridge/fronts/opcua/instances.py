"""Nodes added straight into asyncua's address space, for the bridge's own, already valid nodes.

- ``insert``: AddNodes items, as asyncua's AddNodes service adds them, without its per-node checks
  (a property name scan over the parent's references, a reference search before every reference,
  three attribute reads per reference): those made a device's conditions and energy model most of
  its build time. A NodeId in use or a missing parent still fails.
- ``Instances``: an instance of an ObjectType is made once by asyncua's instantiate (browsing the
  type, its supertypes and every child's modelling rule); the nodes it made, right after, are the
  template every further instance of that type copies, with the instance's NodeIds (asyncua's own
  scheme, ``<instance>.<BrowseName>`` down the tree). Shared attribute values stay shared.
  ``template``/``copy`` do the same for any subtree named by a NodeId prefix (the address space copies
  a whole circuit with its conditions this way): NodeId values that name the subtree's own nodes are
  renamed in the copy, and chosen string values replaced.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from asyncua import ua
from asyncua.server.address_space import AttributeValue, NodeData

from .shared_values import (
    Node,
    SharedAttributeValue,
    SharedReferences,
    Table,
    own_references,
    reference_key,
    table,
    value_of,
)

_HAS_TYPEDEF = ua.NodeId(ua.ObjectIds.HasTypeDefinition)
_A = ua.AttributeIds


def _attr(node: NodeData, attr: int) -> Any:
    av = node.attributes.get(attr)
    return None if av is None or av.value is None or av.value.Value is None else av.value.Value.Value


def _type_definition(node: NodeData) -> Any:
    for r in node.references:
        if r.IsForward and r.ReferenceTypeId == _HAS_TYPEDEF:
            return r.NodeId
    return ua.ExpandedNodeId()


def _reference(ref_type: ua.NodeId, forward: bool, target: ua.NodeId, data: NodeData) -> ua.ReferenceDescription:
    """A reference to ``target`` (whose node is ``data``) as asyncua's AddReferences writes it."""
    rd = ua.ReferenceDescription(ReferenceTypeId=ref_type, IsForward=forward, NodeId=target)
    rd.NodeClass = _attr(data, _A.NodeClass)
    name, display = _attr(data, _A.BrowseName), _attr(data, _A.DisplayName)
    if name:
        rd.BrowseName = name
    if display:
        rd.DisplayName = display
    if rd.NodeClass in (ua.NodeClass.Object, ua.NodeClass.Variable):
        rd.TypeDefinition = _type_definition(data)
    return rd


def insert(node_mgt: Any, items: list[ua.AddNodesItem]) -> None:
    """Add ``items`` (parents before children) as one batch; raises UaStatusCodeError on a NodeId in
    use or a parent that does not exist."""
    aspace = node_mgt._aspace
    typedefs: dict[ua.NodeId, ua.ReferenceDescription] = {}
    for item in items:
        nid = item.RequestedNewNodeId
        if nid in aspace:
            ua.StatusCode(ua.StatusCodes.BadNodeIdExists).check()
        parent = aspace.get(item.ParentNodeId)
        if parent is None:
            ua.StatusCode(ua.StatusCodes.BadParentNodeIdInvalid).check()
        data = Node(nid)
        node_mgt._add_node_attributes(data, item, add_timestamps=True)
        aspace[nid] = data
        own_references(parent).append(
            ua.ReferenceDescription(
                ReferenceTypeId=item.ReferenceTypeId,
                IsForward=True,
                NodeId=nid,
                NodeClass=item.NodeClass,
                BrowseName=item.BrowseName,
                DisplayName=item.NodeAttributes.DisplayName,
                TypeDefinition=item.TypeDefinition,
            )
        )
        data.references.append(_reference(item.ReferenceTypeId, False, item.ParentNodeId, parent))
        if not item.TypeDefinition.is_null():
            td = typedefs.get(item.TypeDefinition)
            if td is None:
                td = typedefs[item.TypeDefinition] = _reference(
                    _HAS_TYPEDEF, True, item.TypeDefinition, aspace[item.TypeDefinition]
                )
            data.references.append(td)  # a ReferenceDescription is never changed in place: share it


@dataclass(slots=True)
class _TemplateNode:
    suffix: str  # "" for the instance itself, else ".<BrowseName>..." after the instance's NodeId
    table: Table  # its shared attribute values (shared_values.table)
    own: dict[int, ua.DataValue]  # the values each copy gets its own AttributeValue of
    references: list[tuple[ua.ReferenceDescription, str | None]]  # suffix of a target in the instance
    call: Any
    inside: dict[int, tuple[str, ua.DataValue]]  # NodeId values naming a node of the instance: suffix
    texts: dict[int, ua.DataValue]  # string values a copy may replace (``copy``'s texts)
    siblings: tuple[int, ...] | None  # a copy's nodes with the same key share one reference list


Template = list[_TemplateNode]


class Instances:
    """ObjectType instances: the first by asyncua's instantiate, the others copied from it."""

    def __init__(self, server: Any) -> None:
        self.server = server
        self.templates: dict[ua.NodeId, Template] = {}

    async def add(self, parent: Any, nodeid: ua.NodeId, bname: ua.QualifiedName, type_id: ua.NodeId) -> Any:
        """The node of a new ``type_id`` instance ``nodeid`` under ``parent`` (HasComponent)."""
        template = self.templates.get(type_id)
        if template is None:
            node = await parent.add_object(nodeid, bname, objecttype=type_id)
            self.templates[type_id] = self.template(nodeid)
            return node
        self.copy(template, parent.nodeid, nodeid, bname)
        return self.server.get_node(nodeid)

    def template(self, root: ua.NodeId, texts: tuple[str, ...] = ()) -> Template:
        """``root`` and every node below it whose NodeId it prefixes, as a template to copy; string
        values equal to one of ``texts`` are the ones a copy may replace."""
        aspace = self.server.iserver.aspace
        base = str(root.Identifier)
        nodes: list[_TemplateNode] = []
        seen: set[ua.NodeId] = set()
        todo = [root]
        equal: dict[tuple[Any, ...], ua.ReferenceDescription] = {}

        def canonical(r: ua.ReferenceDescription, suffix: str | None) -> ua.ReferenceDescription:
            """One template reference for equal references into the instance (every child's own
            reference back to its parent, say), so a copy makes one of each."""
            return r if suffix is None else equal.setdefault(reference_key(r), r)

        def inside(t: ua.NodeId) -> str | None:
            ident = t.Identifier
            if t.NamespaceIndex != root.NamespaceIndex or not isinstance(ident, str):
                return None
            return ident[len(base) :] if ident == base or ident.startswith(f"{base}.") else None

        while todo:
            nid = todo.pop(0)
            if nid in seen:
                continue
            seen.add(nid)
            data = aspace[nid]
            shared: dict[int, AttributeValue] = {}
            own: dict[int, ua.DataValue] = {}
            relative: dict[int, tuple[str, ua.DataValue]] = {}
            replaceable: dict[int, ua.DataValue] = {}
            for a, av in data.attributes.items():
                value = av.value.Value.Value if av.value is not None and av.value.Value is not None else None
                where = inside(value) if isinstance(value, ua.NodeId) else None
                if a == _A.NodeId:
                    continue
                if where is not None:
                    relative[a] = (where, av.value)
                elif isinstance(value, str) and value in texts:
                    replaceable[a] = av.value
                elif type(av) is SharedAttributeValue:
                    shared[a] = av
                else:
                    own[a] = av.value
            refs = [(canonical(r, s), s) for r in data.references for s in (inside(r.NodeId),)]
            suffix = inside(nid) or ""
            # a node with no forward reference into the instance (a property, a leaf variable) has
            # the references its siblings have; the instance's root has its new parent's own
            alone = suffix == "" or any(r.IsForward and s is not None for r, s in refs)
            siblings = None if alone else tuple(id(r) for r, _ in refs)
            nodes.append(_TemplateNode(suffix, table(shared), own, refs, data.call, relative, replaceable, siblings))
            todo.extend(r.NodeId for r, s in refs if r.IsForward and s is not None)
        return nodes

    def copy(
        self,
        template: Template,
        parent: ua.NodeId,
        root: ua.NodeId,
        bname: ua.QualifiedName,
        texts: dict[str, str] | None = None,
    ) -> None:
        """A copy of ``template`` as ``root`` under ``parent``: NodeIds (and NodeId values) of the
        template's nodes renamed to ``root``'s, its string values in ``texts`` replaced."""
        aspace = self.server.iserver.aspace
        texts = texts or {}
        if root in aspace:
            ua.StatusCode(ua.StatusCodes.BadNodeIdExists).check()
        parent_data = aspace[parent]
        ns, base = root.NamespaceIndex, str(root.Identifier)
        display = ua.LocalizedText(bname.Name)
        ids = {
            t.suffix: ua.NodeId(base + t.suffix, ns) for t in template
        }  # one NodeId a node, shared by its references

        def renamed(suffix: str) -> ua.NodeId:
            return ids.get(suffix) or ids.setdefault(suffix, ua.NodeId(base + suffix, ns))

        made: dict[int, ua.ReferenceDescription] = {}  # a template reference's copy, by its id
        lists: dict[tuple[int, ...], SharedReferences] = {}

        for t in template:
            nid = ids[t.suffix]
            data = Node(nid)
            own = {a: value_of(v) for a, v in t.own.items()}
            for a, (rel, dv) in t.inside.items():
                value = ua.Variant(renamed(rel), ua.VariantType.NodeId)
                own[a] = value_of(dataclasses.replace(dv, Value=value))
            for a, dv in t.texts.items():
                text = texts.get(dv.Value.Value, dv.Value.Value)  # type: ignore[union-attr]
                own[a] = value_of(dataclasses.replace(dv, Value=ua.Variant(text, ua.VariantType.String)))
            if t.suffix == "":  # the instance's own names
                own[_A.BrowseName] = value_of(ua.DataValue(ua.Variant(bname, ua.VariantType.QualifiedName)))
                own[_A.DisplayName] = value_of(ua.DataValue(ua.Variant(display, ua.VariantType.LocalizedText)))
            data.set(t.table, own or None)
            shared = lists.get(t.siblings) if t.siblings is not None else None
            if shared is not None:
                data.references = shared
                data.call = t.call
                aspace[nid] = data
                continue
            refs = data.references
            for r, suffix in t.references:
                if suffix is not None:
                    rd = made.get(id(r))
                    if rd is None:
                        rd = made[id(r)] = ua.ReferenceDescription(
                            ReferenceTypeId=r.ReferenceTypeId,
                            IsForward=r.IsForward,
                            NodeId=renamed(suffix),
                            NodeClass=r.NodeClass,
                            BrowseName=bname if suffix == "" else r.BrowseName,
                            DisplayName=display if suffix == "" else r.DisplayName,
                            TypeDefinition=r.TypeDefinition,
                        )
                    refs.append(rd)
                elif t.suffix == "" and not r.IsForward and r.ReferenceTypeId != _HAS_TYPEDEF:
                    refs.append(_reference(r.ReferenceTypeId, False, parent, parent_data))  # the new parent
                else:
                    refs.append(r)  # type definitions and other nodes outside the instance: the same
            if t.siblings is not None:
                data.references = lists[t.siblings] = SharedReferences(refs)
            data.call = t.call
            if t.suffix == "":
                root_data = data
            aspace[nid] = data
        forward = next(r for r, s in template[0].references if s is None and not r.IsForward)
        own_references(parent_data).append(
            ua.ReferenceDescription(
                ReferenceTypeId=forward.ReferenceTypeId,
                IsForward=True,
                NodeId=root,
                NodeClass=ua.NodeClass.Object,
                BrowseName=bname,
                DisplayName=display,
                TypeDefinition=_type_definition(root_data),
            )
        )
