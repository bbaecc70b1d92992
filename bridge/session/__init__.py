"""Per-device life: admission by HELLO, sequence numbers, replay de-duplication, measurement into
the live model (its only writer), durable acknowledgements, the device port for commands."""

from .hub import DeviceHub
from .runtime import DeviceRuntime

__all__ = ["DeviceHub", "DeviceRuntime"]
