"""Alarm conditions as OPC UA Part 9 defines them: the model's alarms followed through the pure
condition state machine into the condition instances' variables, one event of the instance's type
(OffNormalAlarmType, ExclusiveLimitAlarmType) per state change, and the Acknowledge, Confirm,
AddComment, Enable and Disable methods clients call; voltage events as VoltageEventType events."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from typing import Any

from asyncua import Server, ua

from bridge.commands import Action, allowed
from bridge.logs import audit, get_logger
from bridge.model import DeviceState

from .address_space import Nodes
from .alarm_nodes import LIMIT_PROPERTIES, LIMIT_STATES, ConditionNodes
from .catalogue import ALARM_SEVERITY, CIRCUIT_CONDITIONS, DEVICE_CONDITIONS
from .conditions import Answer, Condition
from .security import ConfigUsers

log = get_logger("bridge.opcua")
OID = ua.ObjectIds
_ANSWER_STATUS = {
    Answer.UNKNOWN_EVENT: ua.StatusCodes.BadEventIdUnknown,
    Answer.ALREADY_ACKED: ua.StatusCodes.BadConditionBranchAlreadyAcked,
    Answer.NOT_ACKED: ua.StatusCodes.BadConditionBranchAlreadyConfirmed,
    Answer.ALREADY_CONFIRMED: ua.StatusCodes.BadConditionBranchAlreadyConfirmed,
    Answer.ALREADY_ENABLED: ua.StatusCodes.BadConditionAlreadyEnabled,
    Answer.ALREADY_DISABLED: ua.StatusCodes.BadConditionAlreadyDisabled,
    Answer.DISABLED: ua.StatusCodes.BadConditionDisabled,
}


class AlarmEvents:
    def __init__(self, server: Server, nodes: Nodes, users: ConfigUsers) -> None:
        self.server = server
        self.nodes = nodes
        self.users = users
        self._logged: dict[str, int] = {}  # device -> events_total already reported
        self._shown: dict[ua.NodeId, float] = {}  # limit property -> value written
        self._refresh: dict[int, Any] = {}  # RefreshStart/EndEventType -> its generator

    def link_methods(self) -> None:
        s = self.server
        s.link_method(s.get_node(ua.ObjectIds.AcknowledgeableConditionType_Acknowledge), self._acknowledge)
        s.link_method(s.get_node(ua.ObjectIds.AcknowledgeableConditionType_Confirm), self._confirm)
        s.link_method(s.get_node(ua.ObjectIds.ConditionType_AddComment), self._add_comment)
        s.link_method(s.get_node(ua.ObjectIds.ConditionType_Enable), self._enable)
        s.link_method(s.get_node(ua.ObjectIds.ConditionType_Disable), self._disable)
        s.link_method(s.get_node(ua.ObjectIds.ConditionType_ConditionRefresh), self._condition_refresh)
        s.link_method(s.get_node(ua.ObjectIds.ConditionType_ConditionRefresh2), self._condition_refresh)

    def mark_logged(self, dev: DeviceState) -> None:
        """The device's events so far were reported by the run that recorded them."""
        self._logged[dev.name] = dev.events_total

    async def follow_log(self, dev: DeviceState, event_type: Any) -> None:
        """Voltage events recorded since the last look become VoltageEventType events of their
        circuit (historized with the circuit's events)."""
        seen = self._logged.setdefault(dev.name, dev.events_total)
        fresh = min(dev.events_total - seen, len(dev.events))
        self._logged[dev.name] = dev.events_total
        for rec in list(dev.events)[len(dev.events) - fresh :]:
            emitter = self.nodes.emitters.get((dev.name, rec.circuit))
            if emitter is None:
                continue
            gen = await self.server.get_event_generator(event_type, emitter)
            ev = gen.event
            ev.Severity = ALARM_SEVERITY.get(rec.kind, 500)
            ev.SourceName = f"{dev.name} circuit {rec.circuit}"
            ev.Kind = rec.kind
            ev.StartTime = dt.datetime.fromtimestamp(rec.start_s, dt.UTC)
            ev.Duration = rec.duration_s
            ev.ExtremeVoltage = rec.extreme_v
            await gen.trigger(
                time_attr=dt.datetime.fromtimestamp(rec.start_s + rec.duration_s, dt.UTC),  # when it ended
                message=f"{rec.kind} on {dev.name} circuit {rec.circuit}: {rec.extreme_v:.1f} V "
                f"for {rec.duration_s * 1000:.0f} ms",
            )

    async def follow(self, dev: DeviceState) -> None:
        """Alarm state changes of one device become condition events; the limit alarms show the
        device's current limits."""
        checks = [(0, a, dev.alarms[a]) for a in DEVICE_CONDITIONS]
        for cs in dev.circuits:
            checks += [(cs.index, a, cs.alarms[a]) for a in CIRCUIT_CONDITIONS]
        limits = _limit_values(dev)
        for circuit, name, alarm in checks:
            cond = self.nodes.conditions.get((dev.name, circuit, name))
            cn = self.nodes.condition_nodes.get((dev.name, circuit, name))
            if cond is None or cn is None:
                continue
            if cn.kind.limit is not None:
                await self._show_limits(cn, limits(circuit, name))
            for active in cond.edges(alarm):
                cond.set_active(active, alarm.message)
                if active and cn.kind.limit is not None:
                    cond.limit_state = _limit_state(dev, cn.kind.limit)
                await self._fire(cond)

    async def _show_limits(self, cn: ConditionNodes, values: dict[str, float]) -> None:
        for prop, value in values.items():
            node = cn.fields[prop]
            if self._shown.get(node) != value:
                self._shown[node] = value
                await self.server.write_attribute_value(node, ua.DataValue(ua.Variant(value, ua.VariantType.Double)))

    async def _fire(self, cond: Condition) -> None:
        """One event carrying the condition's whole state (Retain while active or unacknowledged), and
        the same state in the condition instance's variables. A disabled condition reports that it
        was disabled, once, and nothing after."""
        cn = self.nodes.condition_nodes[(cond.device, cond.circuit, cond.alarm)]
        gen = await self.server.get_event_generator(cn.type_id, self.nodes.emitters[(cond.device, cond.circuit)])
        text = cond.text() if cond.enabled else f"{cond.alarm.replace('_', ' ')} disabled on {cond.where}"
        ev = gen.event
        active = cond.active and cond.enabled
        state: dict[str, tuple[Any, ua.VariantType]] = {
            "Message": (ua.LocalizedText(text), ua.VariantType.LocalizedText),
            "Severity": (ALARM_SEVERITY.get(cond.alarm, 500), ua.VariantType.UInt16),
            "Retain": (cond.retained, ua.VariantType.Boolean),
            "ActiveState": (ua.LocalizedText("Active" if active else "Inactive"), ua.VariantType.LocalizedText),
            "ActiveState/Id": (active, ua.VariantType.Boolean),
            "AckedState": (
                ua.LocalizedText("Acknowledged" if cond.acked else "Unacknowledged"),
                ua.VariantType.LocalizedText,
            ),
            "AckedState/Id": (cond.acked, ua.VariantType.Boolean),
            "ConfirmedState": (
                ua.LocalizedText("Confirmed" if cond.confirmed else "Unconfirmed"),
                ua.VariantType.LocalizedText,
            ),
            "ConfirmedState/Id": (cond.confirmed, ua.VariantType.Boolean),
            "EnabledState": (ua.LocalizedText("Enabled" if cond.enabled else "Disabled"), ua.VariantType.LocalizedText),
            "EnabledState/Id": (cond.enabled, ua.VariantType.Boolean),
            "Comment": (ua.LocalizedText(cond.comment), ua.VariantType.LocalizedText),
            "ClientUserId": (cond.user, ua.VariantType.String),
        }
        if cn.kind.limit is not None:
            limit = cond.limit_state if active else ""
            state["LimitState/CurrentState"] = (ua.LocalizedText(limit), ua.VariantType.LocalizedText)
            state["LimitState/CurrentState/Id"] = (LIMIT_STATES.get(limit, ua.NodeId()), ua.VariantType.NodeId)
            for prop in LIMIT_PROPERTIES[cn.kind.limit]:
                shown = self._shown.get(cn.fields[prop])
                if shown is not None:
                    state[prop] = (shown, ua.VariantType.Double)
        for name, (value, vtype) in state.items():
            _set(ev, name, value, vtype)
        for name, value, vtype in (
            ("SourceName", cond.where, ua.VariantType.String),
            ("ConditionName", cond.alarm, ua.VariantType.String),
            ("ConditionClassId", _current(cn, "ConditionClassId"), ua.VariantType.NodeId),
            ("ConditionClassName", _current(cn, "ConditionClassName"), ua.VariantType.LocalizedText),
            ("InputNode", _current(cn, "InputNode"), ua.VariantType.NodeId),
            ("BranchId", ua.NodeId(), ua.VariantType.NodeId),
        ):
            _set(ev, name, value, vtype)
        ev.NodeId = cond.node  # the ConditionId clients pass to Acknowledge / Confirm
        await gen.trigger(message=text)
        event_id = ev.EventId.Value if isinstance(ev.EventId, ua.Variant) else ev.EventId
        cond.fired(event_id)
        state["EventId"] = (event_id, ua.VariantType.ByteString)
        state["Time"] = (ev.Time, ua.VariantType.DateTime)
        state["ReceiveTime"] = (ev.ReceiveTime, ua.VariantType.DateTime)
        state["Comment/SourceTimestamp"] = (ev.Time, ua.VariantType.DateTime)
        for name, (value, vtype) in state.items():
            node = cn.fields.get(name)
            if node is not None:
                await self.server.write_attribute_value(node, ua.DataValue(ua.Variant(value, vtype)))

    # ------------------------------------------------------------------ methods clients call

    async def _acknowledge(self, parent: ua.NodeId, *args: Any) -> Any:
        return await self._answer(parent, args, "acknowledged", lambda c, e, t, u: c.acknowledge(e, t, u))

    async def _confirm(self, parent: ua.NodeId, *args: Any) -> Any:
        return await self._answer(parent, args, "confirmed", lambda c, e, t, u: c.confirm(e, t, u))

    async def _add_comment(self, parent: ua.NodeId, *args: Any) -> Any:
        return await self._answer(parent, args, "commented", lambda c, e, t, u: c.add_comment(e, t, u))

    async def _enable(self, parent: ua.NodeId, *args: Any) -> Any:
        return await self._answer(parent, args, "enabled", lambda c, e, t, u: c.set_enabled(True), event=False)

    async def _disable(self, parent: ua.NodeId, *args: Any) -> Any:
        return await self._answer(parent, args, "disabled", lambda c, e, t, u: c.set_enabled(False), event=False)

    async def _condition_refresh(self, parent: ua.NodeId, *args: Any) -> Any:
        """ConditionRefresh(SubscriptionId) and ConditionRefresh2(SubscriptionId, MonitoredItemId):
        the newest event of every retained condition, to that subscription only, between a
        RefreshStartEvent and a RefreshEndEvent (Part 9, 5.5.7). asyncua keeps those events (by
        ConditionId, while Retain is set) but its own method answers BadNothingToDo."""
        service = self.server.iserver.subscription_service
        if not args:
            return ua.StatusCode(ua.StatusCodes.BadArgumentsMissing)
        sub_id = _value(args[0])
        sub = service.subscriptions.get(sub_id)
        if sub is None:
            return ua.StatusCode(ua.StatusCodes.BadSubscriptionIdInvalid)
        item = _value(args[1]) if len(args) > 1 else None
        if item is not None and item not in sub.monitored_item_srv._monitored_items:
            return ua.StatusCode(ua.StatusCodes.BadMonitoredItemIdInvalid)
        start = await self._refresh_event(OID.RefreshStartEventType)
        end = await self._refresh_event(OID.RefreshEndEventType)
        await start.trigger(subscription_id=sub_id)
        for event in list(service._conditions.values()):
            await sub.monitored_item_srv.trigger_event(event, item)
        await end.trigger(subscription_id=sub_id)
        return []

    async def _refresh_event(self, type_id: int) -> Any:
        gen = self._refresh.get(type_id)
        if gen is None:
            gen = self._refresh[type_id] = await self.server.get_event_generator(type_id, OID.Server)
            gen.event.Severity = 100
        return gen

    async def _answer(
        self,
        parent: ua.NodeId,
        args: tuple[Any, ...],
        what: str,
        act: Callable[[Condition, object, str, str], Answer],
        *,
        event: bool = True,
    ) -> Any:
        """Acknowledge, Confirm, AddComment (EventId, Comment) or Enable, Disable () on a condition:
        operator role, the condition's own state machine decides, one event reports the outcome."""
        cond = self.nodes.by_condition_node.get(parent)
        if cond is None:
            return ua.StatusCode(ua.StatusCodes.BadNodeIdInvalid)
        origin = self.users.origin()
        if not allowed(origin, Action.ACKNOWLEDGE_ALARM):
            log.warning("OPC UA alarm method refused", method=what, user=origin.user, alarm=cond.alarm)
            return ua.StatusCode(ua.StatusCodes.BadUserAccessDenied)
        values = [a.Value if isinstance(a, ua.Variant) else a for a in args]
        if event and len(values) < 2:
            return ua.StatusCode(ua.StatusCodes.BadArgumentsMissing)
        event_id = values[0] if event else None
        comment = values[1] if event else None
        text = comment.Text or "" if isinstance(comment, ua.LocalizedText) else str(comment or "")
        answer = act(cond, event_id, text, origin.user or "anonymous")
        if answer is not Answer.OK:
            return ua.StatusCode(_ANSWER_STATUS[answer])
        where = {"device": cond.device, "circuit": cond.circuit, "alarm": cond.alarm}
        log.info(f"alarm {what}", **where, user=origin.user, client=origin.client)
        audit(f"alarm {what}", front="opcua", user=origin.user, client=origin.client, comment=text, **where)
        await self._fire(cond)
        return []


def _value(arg: Any) -> Any:
    return arg.Value if isinstance(arg, ua.Variant) else arg


def _set(ev: Any, name: str, value: Any, vtype: ua.VariantType) -> None:
    """An event field; one the event type's object does not list yet is added with its type."""
    if name in ev.data_types:
        setattr(ev, name, value)
    else:
        ev.add_property(name, value, vtype)


def _current(cn: ConditionNodes, name: str) -> Any:
    return cn.static[name]


def _limit_state(dev: DeviceState, limit: str) -> str:
    """The ExclusiveLimitStateMachine state of an active limit alarm: the frequency band's side by
    the newest window, the others by their kind."""
    if limit != "band":
        return limit
    f = dev.snapshot.freq_hz if dev.snapshot is not None else math.nan
    return "High" if f > float(dev.config.f_nominal) else "Low"


def _limit_values(dev: DeviceState) -> Callable[[int, str], dict[str, float]]:
    """The limit properties of each limit alarm, in the input's units (V, A, Hz)."""
    pq, u = dev.limits.pq, dev.config.u_nominal
    low, high = pq.frequency_band(float(dev.config.f_nominal))

    def values(circuit: int, alarm: str) -> dict[str, float]:
        match alarm:
            case "dip":
                return {"LowLimit": pq.dip * u}
            case "interruption":
                return {"LowLowLimit": pq.interruption * u}
            case "swell":
                return {"HighLimit": pq.swell * u}
            case "overcurrent":
                return {"HighLimit": dev.limits.overcurrent_a[circuit - 1]}
            case "frequency":
                return {"LowLimit": low, "HighLimit": high}
        return {}

    return values
