"""Durable state in SQLite (WAL): energy registers with the stream position they include, relay
operation counts and last states, calibration. Written from one place (the app's commit loop).

The stream position is what makes acknowledgement safe: a block is acknowledged to the device only
after a commit that includes its energy, and after a restart blocks up to that position are dropped
as replays while the rest are counted once.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bridge.errors import StoreError

SCHEMA = """
CREATE TABLE IF NOT EXISTS energy (
    device TEXT NOT NULL, circuit INTEGER NOT NULL, register TEXT NOT NULL,
    whole INTEGER NOT NULL, residual REAL NOT NULL,
    PRIMARY KEY (device, circuit, register)
);
CREATE TABLE IF NOT EXISTS progress (
    device TEXT PRIMARY KEY, block_seq INTEGER NOT NULL, sample_offset INTEGER NOT NULL, updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS relay (
    device TEXT NOT NULL, circuit INTEGER NOT NULL, operations INTEGER NOT NULL, last_state INTEGER,
    switched_at REAL, day TEXT, day_count INTEGER NOT NULL DEFAULT 0, maintenance_lock INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (device, circuit)
);
CREATE TABLE IF NOT EXISTS calibration (
    device TEXT NOT NULL, circuit INTEGER NOT NULL, channel TEXT NOT NULL, gain REAL NOT NULL, offset REAL NOT NULL,
    changed_at REAL NOT NULL, changed_by TEXT NOT NULL,
    PRIMARY KEY (device, circuit, channel)
);
CREATE TABLE IF NOT EXISTS events (
    device TEXT NOT NULL, circuit INTEGER NOT NULL, kind TEXT NOT NULL, t REAL NOT NULL, duration_s REAL,
    extreme_v REAL, message TEXT
);
CREATE INDEX IF NOT EXISTS events_key ON events (device, t);
CREATE TABLE IF NOT EXISTS limit_overrides (
    device TEXT PRIMARY KEY, doc TEXT NOT NULL, changed_at REAL NOT NULL, changed_by TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS event_counts (
    device TEXT NOT NULL, circuit INTEGER NOT NULL, kind TEXT NOT NULL, count INTEGER NOT NULL,
    PRIMARY KEY (device, circuit, kind)
);
CREATE TABLE IF NOT EXISTS streams (
    device TEXT PRIMARY KEY, boot_id TEXT NOT NULL, restarts INTEGER NOT NULL DEFAULT 0,
    dropped_blocks INTEGER NOT NULL DEFAULT 0, device_dropped INTEGER NOT NULL DEFAULT 0, updated REAL NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class Progress:
    block_seq: int
    sample_offset: int  # samples of the block *after* block_seq already counted


Registers = dict[tuple[int, str], tuple[int, float]]  # (circuit, register) -> (whole, residual)
EnergyCommit = tuple[str, Registers, Progress | None]  # a device's counters and the position they include


@dataclass(frozen=True, slots=True)
class StreamRecord:
    """Which numbering (stream) of a device's blocks the stored position belongs to, and the loss
    the bridge has seen: stream restarts and blocks the device reported dropped (persistent counters)."""

    boot_id: str = ""
    restarts: int = 0
    dropped_blocks: int = 0
    device_dropped: int = 0  # the device's own dropped-blocks counter as last reported (its baseline)


@dataclass(frozen=True, slots=True)
class RelayRecord:
    operations: int
    last_state: bool | None
    switched_at: float | None
    day: str | None
    day_count: int
    maintenance_lock: bool


class Store:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # fail fast when another process holds a lock (a backup tool): the commit loop retries, and the
            # event loop is never held for sqlite's default 5 s
            self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=0.2)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.executescript(SCHEMA)
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open state database {self.path}: {exc}; check the folder's permissions") from None

    def close(self) -> None:
        self.db.close()

    @contextlib.contextmanager
    def _writing(self, what: str) -> Iterator[None]:
        """One transaction; sqlite's errors become a StoreError naming what could not be written."""
        try:
            with self.db:
                yield
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write {what} to {self.path}: {exc}") from None

    # ------------------------------------------------------------------ energy + progress (one transaction)

    def commit_energy(self, device: str, registers: Registers, progress: Progress | None) -> None:
        try:
            with self.db:
                self.db.execute("BEGIN IMMEDIATE")
                self._write_energy(device, registers, progress)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write energy counters of {device} to {self.path}: {exc}") from None

    def commit_energy_many(self, commits: Sequence[EnergyCommit]) -> dict[str, StoreError]:
        """Every device's counters and position in one transaction: one write to disk for all of
        them, where a transaction each held the event loop 0.3-0.5 ms a device (27-47 ms every commit
        at a hundred boards, 10 ms in one; bench/commits.py) and, with the database locked by another
        process, the lock's 0.2 s wait a device (20 s). The database refusing as a whole (locked,
        full, read-only, an I/O error) raises StoreError and writes nothing. Rows of one device that
        it refuses (a constraint) are written again device by device, so that the others still
        commit: returns the devices not written, with why."""
        if not commits:
            return {}
        try:
            with self.db:
                self.db.execute("BEGIN IMMEDIATE")
                for device, registers, progress in commits:
                    self._write_energy(device, registers, progress)
            return {}
        except sqlite3.OperationalError as exc:
            raise StoreError(f"cannot write energy counters to {self.path}: {exc}") from None
        except sqlite3.Error:
            refused: dict[str, StoreError] = {}
            for device, registers, progress in commits:
                try:
                    self.commit_energy(device, registers, progress)
                except StoreError as exc:
                    refused[device] = exc
            return refused

    def _write_energy(self, device: str, registers: Registers, progress: Progress | None) -> None:
        self.db.executemany(
            "INSERT INTO energy VALUES (?, ?, ?, ?, ?) ON CONFLICT (device, circuit, register) "
            "DO UPDATE SET whole = excluded.whole, residual = excluded.residual",
            [(device, c, r, w, res) for (c, r), (w, res) in registers.items()],
        )
        if progress is not None:
            self.db.execute(
                "INSERT INTO progress VALUES (?, ?, ?, ?) ON CONFLICT (device) DO UPDATE SET "
                "block_seq = excluded.block_seq, sample_offset = excluded.sample_offset, "
                "updated = excluded.updated",
                (device, progress.block_seq, progress.sample_offset, time.time()),
            )

    def energy(self, device: str) -> dict[tuple[int, str], tuple[int, float]]:
        rows = self.db.execute("SELECT circuit, register, whole, residual FROM energy WHERE device = ?", (device,))
        return {(c, r): (w, res) for c, r, w, res in rows}

    def progress(self, device: str) -> Progress | None:
        row = self.db.execute("SELECT block_seq, sample_offset FROM progress WHERE device = ?", (device,)).fetchone()
        return None if row is None else Progress(int(row[0]), int(row[1]))

    # ------------------------------------------------------------------ streams

    def stream(self, device: str) -> StreamRecord:
        row = self.db.execute(
            "SELECT boot_id, restarts, dropped_blocks, device_dropped FROM streams WHERE device = ?", (device,)
        ).fetchone()
        return StreamRecord() if row is None else StreamRecord(str(row[0]), int(row[1]), int(row[2]), int(row[3]))

    def save_stream(self, device: str, rec: StreamRecord, *, new_stream: bool = False) -> None:
        """Persist the stream record; with ``new_stream`` the stored position goes in the same
        transaction (it belongs to the old numbering), so a restart of the bridge never takes the new
        stream's blocks for replays of the old one."""
        try:
            with self.db:
                self.db.execute("BEGIN IMMEDIATE")
                self.db.execute(
                    "INSERT INTO streams VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (device) DO UPDATE SET "
                    "boot_id = excluded.boot_id, restarts = excluded.restarts, "
                    "dropped_blocks = excluded.dropped_blocks, device_dropped = excluded.device_dropped, "
                    "updated = excluded.updated",
                    (device, rec.boot_id, rec.restarts, rec.dropped_blocks, rec.device_dropped, time.time()),
                )
                if new_stream:
                    self.db.execute("DELETE FROM progress WHERE device = ?", (device,))
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write the stream record of {device} to {self.path}: {exc}") from None

    # ------------------------------------------------------------------ relays

    def relay(self, device: str, circuit: int) -> RelayRecord:
        row = self.db.execute(
            "SELECT operations, last_state, switched_at, day, day_count, maintenance_lock FROM relay "
            "WHERE device = ? AND circuit = ?",
            (device, circuit),
        ).fetchone()
        if row is None:
            return RelayRecord(0, None, None, None, 0, False)
        return RelayRecord(
            int(row[0]), None if row[1] is None else bool(row[1]), row[2], row[3], int(row[4]), bool(row[5])
        )

    def save_relay(self, device: str, circuit: int, rec: RelayRecord) -> None:
        try:
            with self.db:
                self.db.execute(
                    "INSERT INTO relay VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (device, circuit) DO UPDATE SET "
                    "operations = excluded.operations, last_state = excluded.last_state, "
                    "switched_at = excluded.switched_at, "
                    "day = excluded.day, day_count = excluded.day_count, maintenance_lock = excluded.maintenance_lock",
                    (
                        device,
                        circuit,
                        rec.operations,
                        None if rec.last_state is None else int(rec.last_state),
                        rec.switched_at,
                        rec.day,
                        rec.day_count,
                        int(rec.maintenance_lock),
                    ),
                )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write relay state of {device} circuit {circuit}: {exc}") from None

    # ------------------------------------------------------------------ calibration

    def save_calibration(self, device: str, circuit: int, channel: str, gain: float, offset: float, by: str) -> None:
        with self._writing(f"the calibration of {device}"):
            self.db.execute(
                "INSERT INTO calibration VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (device, circuit, channel) "
                "DO UPDATE SET gain = excluded.gain, offset = excluded.offset, changed_at = excluded.changed_at, "
                "changed_by = excluded.changed_by",
                (device, circuit, channel, gain, offset, time.time(), by),
            )

    def calibration(self, device: str) -> dict[tuple[int, str], tuple[float, float]]:
        rows = self.db.execute("SELECT circuit, channel, gain, offset FROM calibration WHERE device = ?", (device,))
        return {(c, ch): (g, o) for c, ch, g, o in rows}

    # ------------------------------------------------------------------ alarm limits changed at run time

    def save_limit_overrides(self, device: str, doc: dict[str, Any], by: str) -> None:
        """The limits an admin changed at run time (only those: the rest follows the configuration)."""
        with self._writing(f"the alarm limits of {device}"):
            if not doc:
                self.db.execute("DELETE FROM limit_overrides WHERE device = ?", (device,))
                return
            self.db.execute(
                "INSERT INTO limit_overrides VALUES (?, ?, ?, ?) ON CONFLICT (device) DO UPDATE SET "
                "doc = excluded.doc, changed_at = excluded.changed_at, changed_by = excluded.changed_by",
                (device, json.dumps(doc, sort_keys=True), time.time(), by),
            )

    def limit_overrides(self, device: str) -> dict[str, Any]:
        row = self.db.execute("SELECT doc FROM limit_overrides WHERE device = ?", (device,)).fetchone()
        return dict(json.loads(row[0])) if row else {}

    # ------------------------------------------------------------------ voltage events

    def append_event(
        self,
        device: str,
        circuit: int,
        kind: str,
        t: float,
        duration_s: float | None,
        extreme_v: float | None,
        message: str,
    ) -> bool:
        """Record an ended event and count it, in one transaction. An event already recorded (the
        same circuit, kind and start to the millisecond: blocks replayed after a restart) is neither
        recorded nor counted again; returns whether it was new."""
        with self._writing(f"a voltage event of {device}"):
            seen = self.db.execute(
                "SELECT 1 FROM events WHERE device = ? AND t BETWEEN ? AND ? AND circuit = ? AND kind = ?",
                (device, t - 5e-4, t + 5e-4, circuit, kind),
            ).fetchone()
            if seen:
                return False
            self.db.execute(
                "INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?)",
                (device, circuit, kind, t, duration_s, extreme_v, message),
            )
            self.db.execute(
                "INSERT INTO event_counts VALUES (?, ?, ?, 1) ON CONFLICT (device, circuit, kind) "
                "DO UPDATE SET count = count + 1",
                (device, circuit, kind),
            )
        return True

    def event_counts(self, device: str) -> dict[tuple[int, str], int]:
        """Voltage events ever recorded, by (circuit, kind): kept when the event rows are pruned."""
        rows = self.db.execute("SELECT circuit, kind, count FROM event_counts WHERE device = ?", (device,))
        return {(c, k): n for c, k, n in rows}

    def recent_events(self, device: str, n: int) -> list[tuple[int, str, float, float, float]]:
        """The newest ``n`` events, oldest first: (circuit, kind, start, duration_s, extreme_v)."""
        rows = self.db.execute(
            "SELECT circuit, kind, t, duration_s, extreme_v FROM events WHERE device = ? ORDER BY t DESC LIMIT ?",
            (device, n),
        ).fetchall()
        return [(c, k, t, d or 0.0, x or 0.0) for c, k, t, d, x in reversed(rows)]

    def prune(self, older_than_s: float) -> None:
        with self._writing("the event pruning"):
            self.db.execute("DELETE FROM events WHERE t < ?", (older_than_s,))
