"""The live model (one writer: the session), the quantity catalogue fronts expose, the change kinds
it announces and the one quality rule."""

from .changes import Change
from .live import Model, ModelView
from .quality import Level, Quality, device_quality, relay_quality
from .samples import SampleBlock, SampleTaps, Trigger
from .state import (
    EVENT_KINDS,
    EVENT_LOG_SIZE,
    Alarm,
    CircuitState,
    CircuitValues,
    DeviceSnapshot,
    DeviceState,
    Limits,
    LinkHealth,
    VoltageEventRecord,
    WaveformRecord,
)

__all__ = [
    "EVENT_KINDS",
    "EVENT_LOG_SIZE",
    "Alarm",
    "Change",
    "CircuitState",
    "CircuitValues",
    "DeviceSnapshot",
    "DeviceState",
    "Level",
    "Limits",
    "LinkHealth",
    "Model",
    "ModelView",
    "Quality",
    "SampleBlock",
    "SampleTaps",
    "Trigger",
    "VoltageEventRecord",
    "WaveformRecord",
    "device_quality",
    "relay_quality",
]
