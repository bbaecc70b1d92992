"""Pure numpy metering core: windows, power quantities, harmonics, voltage events, energy.

No asyncio, no I/O. ``analyze`` serves offline captures; :class:`StreamAnalyzer` is the same code fed
block by block, as the service runs it.
"""

from .analyze import Analysis, analyze
from .energy import EnergyBank, EnergyCounters, Register
from .events import Thresholds, VoltageEvent
from .stream import AnalyzerSettings, StreamAnalyzer, Update
from .window import WindowMetrics, measure_window

__all__ = [
    "Analysis",
    "AnalyzerSettings",
    "EnergyBank",
    "EnergyCounters",
    "Register",
    "StreamAnalyzer",
    "Thresholds",
    "Update",
    "VoltageEvent",
    "WindowMetrics",
    "analyze",
    "measure_window",
]
