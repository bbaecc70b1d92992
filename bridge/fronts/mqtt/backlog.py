"""Store-and-forward for the Sparkplug B front: the changes noted while the broker or the primary
host is away, bounded and persisted (SQLite in the state folder, so a bridge restarted during an
outage still sends them), oldest first."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

Stored = tuple[int, str, int, list[tuple[int, Any]]]  # row id, device, source time (ms), (alias, value)


class Backlog:
    def __init__(self, path: Path, maxlen: int) -> None:
        self.maxlen = maxlen
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")  # a lost second of stored changes is not energy
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS changes (id INTEGER PRIMARY KEY AUTOINCREMENT, device TEXT NOT NULL, "
            "source_ms INTEGER NOT NULL, metrics TEXT NOT NULL)"
        )
        self._count = int(self.db.execute("SELECT count(*) FROM changes").fetchone()[0])

    def __len__(self) -> int:
        return self._count

    def append(self, device: str, source_ms: int, metrics: list[tuple[int, Any]]) -> int:
        """Keep one device's changes; returns how many of the oldest were dropped to stay bounded."""
        with self.db:
            self.db.execute(
                "INSERT INTO changes (device, source_ms, metrics) VALUES (?, ?, ?)",
                (device, source_ms, json.dumps(metrics)),
            )
            self._count += 1
            over = self._count - self.maxlen
            if over > 0:
                self.db.execute("DELETE FROM changes WHERE id IN (SELECT id FROM changes ORDER BY id LIMIT ?)", (over,))
                self._count -= over
        return max(over, 0)

    def pending(self) -> Iterator[Stored]:
        """Everything kept, oldest first; :meth:`done` forgets a row once it was sent."""
        for row_id, device, source_ms, metrics in self.db.execute(
            "SELECT id, device, source_ms, metrics FROM changes ORDER BY id"
        ).fetchall():
            yield row_id, device, source_ms, [(int(a), v) for a, v in json.loads(metrics)]

    def done(self, row_id: int) -> None:
        with self.db:
            self.db.execute("DELETE FROM changes WHERE id <= ?", (row_id,))
        self._count = int(self.db.execute("SELECT count(*) FROM changes").fetchone()[0])

    def close(self) -> None:
        self.db.close()
