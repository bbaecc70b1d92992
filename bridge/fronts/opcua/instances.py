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
  renamed in the copy, and chosen string values replaced. A copy's nodes are made when first looked
  up (``copies``).
"""

from __future__ import annotations

from typing import Any

from asyncua import ua
from asyncua.server.address_space import AttributeValue

from .copies import HAS_TYPEDEF, Copy, Template, TemplateNode, lazy_nodes, reference
from .shared_values import Node, SharedAttributeValue, own_references, reference_key, table


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
        data.references.append(reference(item.ReferenceTypeId, False, item.ParentNodeId, parent))
        if not item.TypeDefinition.is_null():
            td = typedefs.get(item.TypeDefinition)
            if td is None:
                td = typedefs[item.TypeDefinition] = reference(
                    HAS_TYPEDEF, True, item.TypeDefinition, aspace[item.TypeDefinition]
                )
            data.references.append(td)  # a ReferenceDescription is never changed in place: share it


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
        nodes = Template()
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
                if a == ua.AttributeIds.NodeId:
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
            nodes.append(TemplateNode(suffix, table(shared), own, refs, data.call, relative, replaceable, siblings))
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
        template's nodes renamed to ``root``'s, its string values in ``texts`` replaced. Its nodes
        are made when first looked up (``copies.LazyNodes``)."""
        aspace = self.server.iserver.aspace
        nodes = lazy_nodes(aspace)
        if root in nodes:
            ua.StatusCode(ua.StatusCodes.BadNodeIdExists).check()
        parent_data = nodes[parent]
        copy = Copy(template, parent, root.NamespaceIndex, str(root.Identifier), bname, ua.LocalizedText(bname.Name),
                    texts or {})  # fmt: skip
        copy.node_id("", root)
        nodes.add_copy(copy)
        own_references(parent_data).append(copy.parent_reference())
