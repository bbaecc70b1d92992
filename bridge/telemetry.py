"""The service's own measurements, for Prometheus: how long a window takes to reach each front, how
long commands take and how they end, Modbus requests by function and exception, OPC UA sessions and
subscriptions. Names follow the Prometheus conventions (base units, ``_total`` for counters,
``_seconds`` for durations). One registry, served by ``GET /metrics`` beside the live model's values.

Module-level like the logger: every room may count here, and none needs to be handed a collector.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

WINDOW_LATENCY = Histogram(
    "openstrom_window_latency_seconds",
    "end of a measurement window (device clock, corrected by the measured clock offset) to its values "
    "in a front: modbus (readable), opcua (written; clients see it at their next publishing interval), mqtt "
    "(published)",
    ["front"],
    # 50 ms steps up to 0.6 s: the p99 that the targets (300 ms to Modbus, 400 to OPC UA) are judged by
    # lies there, and a bucket's upper bound is what a quantile read from it can say
    buckets=(0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0),
    registry=REGISTRY,
)
COMMAND_DURATION = Histogram(
    "openstrom_command_duration_seconds",
    "a command from its arrival to its answer (a relay's: the device's acknowledgement and the confirming STATUS)",
    ["action"],
    buckets=(0.01, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0),
    registry=REGISTRY,
)
COMMANDS = Counter(
    "openstrom_commands",
    "commands by action, front and outcome (ok, refused, denied, offline, timeout, failed)",
    ["action", "front", "outcome"],
    registry=REGISTRY,
)
MODBUS_REQUESTS = Counter(
    "openstrom_modbus_requests",
    "Modbus requests answered, by function code and exception code (none: answered with data)",
    ["function", "exception"],
    registry=REGISTRY,
)
OPCUA_SESSIONS = Gauge("openstrom_opcua_sessions", "OPC UA sessions open", registry=REGISTRY)
OPCUA_SUBSCRIPTIONS = Gauge("openstrom_opcua_subscriptions", "OPC UA subscriptions", registry=REGISTRY)
OPCUA_NODES = Gauge(
    "openstrom_opcua_nodes_made", "OPC UA nodes held in memory (a copied circuit's are made when first read)",
    registry=REGISTRY,
)  # fmt: skip


def observe_window(front: str, window_end_device_s: float, clock_offset_s: float | None) -> None:
    """One window's values reached ``front`` now. The window's end is on the device's clock; the
    offset (device minus bridge, measured from the blocks' arrival) brings it onto ours."""
    late = time.time() - (window_end_device_s - (clock_offset_s or 0.0))
    if late >= 0:
        WINDOW_LATENCY.labels(front).observe(late)


def outcome_of(exc: BaseException | None) -> str:
    """The outcome word of a command (the CLI's exit codes follow the same words)."""
    from .errors import CommandRejected, CommandTimeout, DeviceOffline, DeviceRefused, DeviceUnknown, NotAuthorised

    if exc is None:
        return "ok"
    if isinstance(exc, NotAuthorised):
        return "denied"
    if isinstance(exc, (DeviceUnknown, CommandRejected, DeviceRefused)):
        return "refused"
    if isinstance(exc, DeviceOffline):
        return "offline"
    if isinstance(exc, CommandTimeout):
        return "timeout"
    return "failed"


def watch_opcua(sessions: Callable[[], float], subscriptions: Callable[[], float], nodes: Callable[[], float]) -> None:
    """The OPC UA front's counts, read at scrape time."""
    OPCUA_SESSIONS.set_function(sessions)
    OPCUA_SUBSCRIPTIONS.set_function(subscriptions)
    OPCUA_NODES.set_function(nodes)
