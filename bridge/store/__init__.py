"""Durable state: the one place that opens the bridge's database file."""

from .database import Progress, RelayRecord, Store, StreamRecord

__all__ = ["Progress", "RelayRecord", "Store", "StreamRecord"]
