"""Where asyncua's server departs from the standard in ways other clients notice, put right.

OfType in an event filter's where clause means "this type or a subtype" (Part 4, 7.7.3); asyncua
compares the event type for equality, so a client asking for AlarmConditionType would never see the
bridge's OffNormalAlarmType and ExclusiveLimitAlarmType events. (asyncua's own client sends an InList
of every subtype and is not affected.)
"""

from __future__ import annotations

from typing import Any

from asyncua import ua
from asyncua.server import monitored_item_service

_HAS_SUBTYPE = ua.NodeId(ua.ObjectIds.HasSubtype)


def is_subtype(aspace: Any, type_id: Any, wanted: Any, depth: int = 32) -> bool:
    """``type_id`` is ``wanted`` or derives from it (HasSubtype, inverse)."""
    for _ in range(depth):
        if type_id == wanted:
            return True
        data = aspace.get(type_id) if isinstance(type_id, ua.NodeId) else None
        if data is None:
            return False
        type_id = next(
            (r.NodeId for r in data.references if r.ReferenceTypeId == _HAS_SUBTYPE and not r.IsForward), None
        )
    return False


class _StandardWhereClause(monitored_item_service.WhereClauseEvaluator):  # type: ignore[misc]
    def _eval_el(self, index: int, event: Any) -> Any:
        el = self.elements[index]
        if el.FilterOperator == ua.FilterOperator.OfType:
            return is_subtype(self._aspace, event.EventType, self._eval_op(el.FilterOperands[0], event))
        return super()._eval_el(index, event)


def install_standard_event_filters() -> None:
    """Make every asyncua server in this process evaluate OfType as the standard says (idempotent)."""
    monitored_item_service.WhereClauseEvaluator = _StandardWhereClause  # type: ignore[misc]
