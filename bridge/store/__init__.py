"""Durable state: the one place that opens the bridge's database file."""

from .database import EnergyCommit, Progress, Registers, RelayRecord, Store, StreamRecord

__all__ = ["EnergyCommit", "Progress", "Registers", "RelayRecord", "Store", "StreamRecord"]
