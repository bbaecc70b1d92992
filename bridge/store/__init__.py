"""Durable state: the one place that opens the bridge's database file."""

from .database import Progress, RelayRecord, Store

__all__ = ["Progress", "RelayRecord", "Store"]
