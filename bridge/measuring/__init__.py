"""The measuring of every device's blocks, apart from the event loop that receives them.

The session sends each device's requests (:mod:`.jobs`) to a measurer and applies the answers, in
order, as they come. :class:`~.local.LocalMeasurer` answers at once in the caller's thread;
:class:`~.process.ProcessMeasurer` measures in a process of its own, so that decoding and measuring
a hundred boards (about half a core) does not hold up the event loop that serves every client."""

from .jobs import Block, Create, Drop, Flush, Measured, Request, Restart, SetScales, SetThresholds
from .local import LocalMeasurer
from .port import Handler, Measurer, MeasuringFailed

__all__ = [
    "Block",
    "Create",
    "Drop",
    "Flush",
    "Handler",
    "LocalMeasurer",
    "Measured",
    "Measurer",
    "MeasuringFailed",
    "Request",
    "Restart",
    "SetScales",
    "SetThresholds",
]
