"""AddNodes and AddReferences items built in Python and applied in one synchronous batch: asyncua's
node-at-a-time API costs an await and several attribute writes per node, which made building a
device's conditions and energy model take seconds."""

from __future__ import annotations

from typing import Any

from asyncua import ua

from .instances import insert

OID = ua.ObjectIds
_V = ua.VariantType
_READ = ua.AccessLevel.CurrentRead.mask
_NIDS: dict[int, ua.NodeId] = {}


def _nid(oid: int) -> ua.NodeId:
    """The NodeId of a standard node, made once (a NodeId is never changed in place)."""
    nid = _NIDS.get(oid)
    if nid is None:
        nid = _NIDS[oid] = ua.NodeId(oid)
    return nid


class NodeBatch:
    """AddNodes and AddReferences items, applied in one go (unknown parents or NodeIds in use fail it)."""

    def __init__(self, idx: int) -> None:
        self.idx = idx
        self.nodes: list[ua.AddNodesItem] = []
        self.refs: list[ua.AddReferencesItem] = []

    def obj(
        self, nid: ua.NodeId, parent: ua.NodeId, name: str, type_id: ua.NodeId, *, ns: int = 0, ref: int = 0
    ) -> None:
        attrs = ua.ObjectAttributes(DisplayName=ua.LocalizedText(name), EventNotifier=0)
        self._add(nid, parent, name, ua.NodeClass.Object, ref or OID.HasComponent, type_id, attrs, ns=ns)

    def var(
        self,
        nid: ua.NodeId,
        parent: ua.NodeId,
        name: str,
        value: Any,
        vtype: ua.VariantType,
        *,
        prop: bool = True,
        type_id: int | ua.NodeId = OID.PropertyType,
        ns: int = 0,
        data_type: int | None = None,
    ) -> None:
        attrs = ua.VariableAttributes(
            DisplayName=ua.LocalizedText(name),
            Value=ua.Variant(value, vtype),
            DataType=_nid(data_type or DATA_TYPES[vtype]),
            ValueRank=ua.ValueRank.OneDimension if isinstance(value, list) else ua.ValueRank.Scalar,
            AccessLevel=_READ,
            UserAccessLevel=_READ,
        )
        self._add(
            nid,
            parent,
            name,
            ua.NodeClass.Variable,
            OID.HasProperty if prop else OID.HasComponent,
            type_id if isinstance(type_id, ua.NodeId) else _nid(type_id),
            attrs,
            ns=ns,
        )

    def ref(self, source: ua.NodeId, ref_type: int, target: ua.NodeId, target_class: ua.NodeClass) -> None:
        item = ua.AddReferencesItem()
        item.SourceNodeId = source
        item.ReferenceTypeId = ua.NodeId(ref_type)
        item.IsForward = True
        item.TargetNodeId = target
        item.TargetNodeClass = target_class
        self.refs.append(item)

    def _add(
        self,
        nid: ua.NodeId,
        parent: ua.NodeId,
        name: str,
        cls: ua.NodeClass,
        ref_type: int,
        type_id: ua.NodeId,
        attrs: Any,
        ns: int = 0,
    ) -> None:
        self.nodes.append(
            ua.AddNodesItem(
                RequestedNewNodeId=nid,
                BrowseName=ua.QualifiedName(name, ns),  # the standard's browse names live in namespace 0
                NodeClass=cls,
                ParentNodeId=parent,
                ReferenceTypeId=_nid(ref_type),
                TypeDefinition=type_id,
                NodeAttributes=attrs,
            )
        )

    def apply(self, node_mgt: Any) -> None:
        insert(node_mgt, self.nodes)
        for status in node_mgt.add_references(self.refs):
            status.check()


DATA_TYPES = {
    _V.Boolean: OID.Boolean,
    _V.UInt16: OID.UInt16,
    _V.Double: OID.Double,
    _V.String: OID.String,
    _V.ByteString: OID.ByteString,
    _V.DateTime: OID.UtcTime,
    _V.NodeId: OID.NodeId,
    _V.LocalizedText: OID.LocalizedText,
    _V.StatusCode: OID.StatusCode,
    _V.Float: OID.Float,
    _V.UInt32: OID.UInt32,
}
