"""The live model (one writer: the session), the quantity catalogue fronts expose, the change kinds
it announces and the one quality rule."""

from .changes import Change
from .live import Model, ModelView
from .quality import Level, Quality, device_quality, relay_quality
from .state import Alarm, CircuitState, CircuitValues, DeviceSnapshot, DeviceState, LinkHealth

__all__ = [
    "Alarm",
    "Change",
    "CircuitState",
    "CircuitValues",
    "DeviceSnapshot",
    "DeviceState",
    "Level",
    "LinkHealth",
    "Model",
    "ModelView",
    "Quality",
    "device_quality",
    "relay_quality",
]
