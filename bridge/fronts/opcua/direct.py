"""Values written straight into asyncua's address space, one window's values in one synchronous pass.

``Server.write_attribute_value`` is an await per value through three layers, a variant type check and
a copy-on-write check, then an await per subscriber's data-change callback: ~35 us a value, and a
window of 100 boards is ~30 000 values. The bridge is the writer of its value nodes and writes the
types it declared, so a value here is stored as that service stores it (a bad status code stores a
null value, a value setter is honoured) and each subscriber is told at once:

- a monitored item of asyncua's subscriptions (nearly every callback) is updated here as its own
  callback does it (current and previous value, the data-change trigger and deadband, the queue
  with its size limit, publishing at once for a subscription that publishes on every change),
  without the coroutine, the default-built notification and the deep copy per item that cost
  ~20 us of each value's ~25 when a client subscribes;
- any other callback (history, a test's) runs as a coroutine: it finishes inside the call unless it
  waits, and then the event loop finishes it.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import types
from collections.abc import Coroutine, Generator
from typing import Any

from asyncua import ua
from asyncua.server.address_space import AttributeValue
from asyncua.server.monitored_item_service import MonitoredItemService

from bridge.logs import get_logger

from .shared_values import own_value

log = get_logger(__name__)
_VALUE = ua.AttributeIds.Value
_NULL = ua.Variant(None, ua.VariantType.Null)
_DISABLED = ua.MonitoringMode.Disabled
_BAD = 0x80000000  # the severity bit of a status code
_NOTIFY = MonitoredItemService.datachange_callback


class SharedDataValue(ua.DataValue):
    """A DataValue the bridge never mutates after writing it.

    asyncua deep-copies the value once per monitored item on every change (most of the cost of an
    update with clients subscribed). Python's copy protocol lets a class say that a deep copy of it is
    itself; ours are built fresh for every write and never touched again, so sharing is safe and the
    update cost no longer grows with the number of subscribers. Serialisation is unchanged (asyncua
    encodes by the declared field type, DataValue).
    """

    def __deepcopy__(self, memo: dict[int, object]) -> SharedDataValue:
        return self


@types.coroutine
def _rest(coro: Coroutine[Any, Any, Any], yielded: Any) -> Generator[Any, Any, Any]:
    """The remainder of a coroutine already started by hand, for a task to drive: what it waits on
    is passed up to the task, what the task sends or throws is passed down."""
    while True:
        try:
            sent = yield yielded
        except BaseException as exc:
            try:
                yielded = coro.throw(exc)
            except StopIteration as stop:
                return stop.value
        else:
            try:
                yielded = coro.send(sent)
            except StopIteration as stop:
                return stop.value


async def _finish(coro: Coroutine[Any, Any, Any], yielded: Any) -> None:
    try:
        await _rest(coro, yielded)
    except Exception as exc:
        log.error("an OPC UA data-change callback failed", error=repr(exc))


def _null_if_bad(dv: ua.DataValue) -> ua.DataValue:
    status = dv.StatusCode
    if status is not None and status.value & _BAD:
        return dataclasses.replace(dv, Value=_NULL)  # Part 4 7.7.1: a bad value is null
    return dv


class DirectWriter:
    def __init__(self, server: Any) -> None:
        self.aspace = server.iserver.aspace
        self._values: dict[ua.NodeId, AttributeValue] = {}  # each node's Value, once it is its own
        self._waiting: set[asyncio.Task[None]] = set()

    def forget(self) -> None:
        """Nodes were deleted or made anew: look every node up again."""
        self._values.clear()

    def write(self, node: ua.NodeId, dv: ua.DataValue) -> None:
        """Store ``dv`` as the Value of ``node`` and tell its subscribers (an unknown node: nothing,
        as the service answers it)."""
        av = self.target(node)
        if av is not None:
            self.store(av, dv)
            return
        data = self.aspace._nodes.get(node)
        av = data.attributes.get(_VALUE) if data is not None else None
        if av is not None and av.value_setter is not None:  # not kept: a setter may replace what it holds
            dv = _null_if_bad(dv)
            av.value_setter(data, _VALUE, dv)
            self._tell(av, dv)

    def target(self, node: ua.NodeId) -> AttributeValue | None:
        """The node's own Value attribute, to ``store`` into (kept until ``forget``); None for an
        unknown node or one whose value has a setter."""
        av = self._values.get(node)
        if av is not None:
            return av
        data = self.aspace._nodes.get(node)
        if data is None:
            return None
        av = data.attributes.get(_VALUE)
        if av is None or av.value_setter is not None:
            return None
        av = own_value(data, _VALUE)  # the node's own from now on: it is the one kept here
        assert av is not None
        self._values[node] = av
        return av

    def store(self, av: AttributeValue, dv: ua.DataValue) -> None:
        """``dv`` into a node's Value attribute from ``target``, and its subscribers told."""
        dv = _null_if_bad(dv)
        av.value = dv
        av.value_callback = None
        if av.datachange_callbacks:
            self._tell(av, dv)

    def _tell(self, av: AttributeValue, dv: ua.DataValue) -> None:
        for handle, callback in list(av.datachange_callbacks.items()):
            if getattr(callback, "__func__", None) is _NOTIFY:
                self._notify(callback.__self__, handle, dv)  # type: ignore[attr-defined]
            else:
                self._run(callback(handle, dv))

    def _notify(self, items: MonitoredItemService, handle: int, dv: ua.DataValue) -> None:
        """What asyncua's MonitoredItemService.datachange_callback does for one monitored item."""
        mid = items._monitored_datachange[handle]
        mdata = items._monitored_items[mid]
        if mdata.mode == _DISABLED:
            return
        values = mdata.mvalue
        old = values.old_dvalue = values.current_dvalue
        values.current_dvalue = dv if type(dv) is SharedDataValue else copy.deepcopy(dv)
        flt = mdata.filter
        if flt:
            if not (items._is_data_changed(values, flt.Trigger) and items._is_deadband_exceeded(values, flt)):
                return
        elif old is not None and old.StatusCode == dv.StatusCode and old.Value == dv.Value:
            return  # asyncua's StatusValue trigger: neither the status nor the value changed
        event = ua.MonitoredItemNotification(ClientHandle=mdata.client_handle, Value=dv)
        sub = items.isub
        queue = sub._triggered_datachanges
        pending = queue.get(mid)
        if pending is None:
            queue[mid] = [event]
            if not sub._task and sub.data.RevisedPublishingInterval <= 0.0:
                self._run(sub.publish_results())  # a subscription that publishes every change
            return
        if mdata.queue_size and len(pending) >= mdata.queue_size:
            pending.pop(0)
        pending.append(event)

    def _run(self, coro: Coroutine[Any, Any, Any]) -> None:
        try:
            yielded = coro.send(None)
        except StopIteration:
            return
        except Exception as exc:
            log.error("an OPC UA data-change callback failed", error=repr(exc))
            return
        task = asyncio.ensure_future(_finish(coro, yielded))
        self._waiting.add(task)
        task.add_done_callback(self._waiting.discard)
