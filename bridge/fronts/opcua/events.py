"""Alarm conditions as OPC UA events: the model's alarms followed through the pure condition state
machine, one AlarmConditionType event per state change, and the Acknowledge, Confirm and
ConditionRefresh methods clients call."""

from __future__ import annotations

import datetime as dt
from typing import Any

from asyncua import Server, ua

from bridge.commands import Action, allowed
from bridge.logs import get_logger
from bridge.model import DeviceState

from .address_space import Nodes
from .catalogue import ALARM_SEVERITY, CIRCUIT_CONDITIONS, DEVICE_CONDITIONS
from .conditions import Answer, Condition
from .security import ConfigUsers

log = get_logger("bridge.opcua")
_ANSWER_STATUS = {
    Answer.UNKNOWN_EVENT: ua.StatusCodes.BadEventIdUnknown,
    Answer.ALREADY_ACKED: ua.StatusCodes.BadConditionBranchAlreadyAcked,
    Answer.NOT_ACKED: ua.StatusCodes.BadConditionBranchAlreadyConfirmed,
    Answer.ALREADY_CONFIRMED: ua.StatusCodes.BadConditionBranchAlreadyConfirmed,
}


class AlarmEvents:
    def __init__(self, server: Server, nodes: Nodes, users: ConfigUsers) -> None:
        self.server = server
        self.nodes = nodes
        self.users = users
        self._logged: dict[str, int] = {}  # device -> events_total already reported

    def link_methods(self) -> None:
        s = self.server
        s.link_method(s.get_node(ua.ObjectIds.AcknowledgeableConditionType_Acknowledge), self._acknowledge)
        s.link_method(s.get_node(ua.ObjectIds.AcknowledgeableConditionType_Confirm), self._confirm)
        s.link_method(s.get_node(ua.ObjectIds.ConditionType_ConditionRefresh), self._condition_refresh)

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
        """Alarm state changes of one device become condition events."""
        checks = [(0, a, dev.alarms[a]) for a in DEVICE_CONDITIONS]
        for cs in dev.circuits:
            checks += [(cs.index, a, cs.alarms[a]) for a in CIRCUIT_CONDITIONS]
        for circuit, name, alarm in checks:
            cond = self.nodes.conditions.get((dev.name, circuit, name))
            if cond is None:
                continue
            for active in cond.edges(alarm):
                cond.set_active(active, alarm.message)
                await self._fire(cond)

    async def _fire(self, cond: Condition) -> None:
        """One event carrying the condition's whole state; Retain while active or unacknowledged."""
        gen = await self.server.get_event_generator(
            ua.ObjectIds.AlarmConditionType, self.nodes.emitters[(cond.device, cond.circuit)]
        )
        text = cond.text()
        ev = gen.event
        ev.Message = ua.LocalizedText(text)
        ev.Severity = ALARM_SEVERITY.get(cond.alarm, 500)
        ev.SourceName = cond.where
        ev.ConditionName = cond.alarm
        ev.NodeId = cond.node  # the ConditionId clients pass to Acknowledge / Confirm
        ev.Retain = cond.retained
        ev.ActiveState = ua.LocalizedText("Active" if cond.active else "Inactive")
        ev.AckedState = ua.LocalizedText("Acknowledged" if cond.acked else "Unacknowledged")
        ev.ConfirmedState = ua.LocalizedText("Confirmed" if cond.confirmed else "Unconfirmed")
        ev.EnabledState = ua.LocalizedText("Enabled")
        for field, value in (
            ("ActiveState/Id", cond.active),
            ("AckedState/Id", cond.acked),
            ("ConfirmedState/Id", cond.confirmed),
            ("EnabledState/Id", True),
        ):
            setattr(ev, field, value)
        await gen.trigger(message=text)
        event_id = ev.EventId
        cond.fired(event_id.Value if isinstance(event_id, ua.Variant) else event_id)

    async def _acknowledge(self, parent: ua.NodeId, *args: Any) -> Any:
        return await self._answer(parent, args, confirm=False)

    async def _confirm(self, parent: ua.NodeId, *args: Any) -> Any:
        return await self._answer(parent, args, confirm=True)

    async def _answer(self, parent: ua.NodeId, args: tuple[Any, ...], *, confirm: bool) -> Any:
        cond = self.nodes.by_condition_node.get(parent)
        if cond is None:
            return ua.StatusCode(ua.StatusCodes.BadNodeIdInvalid)
        origin = self.users.origin()
        if not allowed(origin, Action.ACKNOWLEDGE_ALARM):
            return ua.StatusCode(ua.StatusCodes.BadUserAccessDenied)
        event_id = args[0].Value if args and isinstance(args[0], ua.Variant) else (args[0] if args else None)
        answer = cond.confirm(event_id) if confirm else cond.acknowledge(event_id)
        if answer is not Answer.OK:
            return ua.StatusCode(_ANSWER_STATUS[answer])
        log.info(
            "alarm " + ("confirmed" if confirm else "acknowledged"),
            device=cond.device,
            circuit=cond.circuit,
            alarm=cond.alarm,
            user=origin.user,
            client=origin.client,
        )
        await self._fire(cond)
        return []

    async def _condition_refresh(self, parent: ua.NodeId, *args: Any) -> Any:
        """Re-send every retained condition (Part 9 ConditionRefresh), e.g. after a client reconnects."""
        for cond in self.nodes.conditions.values():
            if cond.retained:
                await self._fire(cond)
        return []
