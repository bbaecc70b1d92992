"""OPC UA history: asyncua's SQLite storage (and its HistoryRead) for events; measurements in tables
of the bridge's own, written by the bridge itself, one transaction per device update on one worker
thread, and read back for HistoryRead (raw and processed).

A device update's measurements (40 a board: 4 a circuit) share their timestamps, so they are one row:
the nodes' values packed together, their node numbers once in a layout the row refers to. asyncua
keeps a table per historized node instead (4 000 for 100 boards, each table's schema held by both
connections, ~25 MB, a CREATE TABLE each at start-up and a prepared INSERT each while streaming); a
row per value in one table indexed by node and time (the bridge's previous layout) inserts into
4 000 places of its index at once, which outgrows SQLite's page cache within minutes and then costs
a page read a value. One row per update touches one place per device, and takes a tenth of the
disk. Tables of both older layouts are moved in once.

Events, likewise, are rows of one table of the bridge's own, numbered by the node that emitted them,
with a column per event field any emitter's event types have; asyncua keeps a table per emitter (11
a board: the device and each circuit), whose schemas both connections hold (~8 MB for 100 boards)
and each of which a first start creates. HistoryRead of events reads that table as asyncua reads its
own (select clauses by browse name, bounds, order, limit, continuation), and an emitter's table of
asyncua's layout is moved in when it is historized."""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import sqlite3
import struct
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from asyncua import Server, ua
from asyncua.common.events import Event
from asyncua.common.utils import Buffer
from asyncua.server.history_sql import HistorySQLite
from asyncua.ua.ua_binary import variant_from_binary, variant_to_binary

from bridge.logs import get_logger

from .processed import AGGREGATES, RawRow, intervals, process

log = get_logger("bridge.opcua")
HistoryRow = tuple[ua.NodeId, dt.datetime, dt.datetime, int, float]  # node, server time, source time, status, value
_ROWS = "MeasurementRows"
_LAYOUTS = "MeasurementLayouts"
_NODES = "MeasurementNodes"
_VALUES = "MeasurementValues"  # the previous layout: a row per value
_EVENTS = "EventRows"
_SOURCES = "EventSources"
_NAN = float("nan")  # SQLite stores a REAL NaN as NULL (packed values keep theirs)


def _packed(fmt: str, items: list[Any]) -> bytes:
    return struct.pack(f"<{len(items)}{fmt}", *items)


def _utc(t: dt.datetime) -> dt.datetime:
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


def _log_history_error(done: concurrent.futures.Future[None]) -> None:
    exc = done.exception()
    if exc is not None:
        log.error("OPC UA history could not store values", error=repr(exc))


class _Storage(HistorySQLite):  # type: ignore[misc]
    """asyncua's SQLite history, with table names safe for our readable string NodeIds
    ("board1.Circuit01.Voltage" would otherwise trip its SQL-injection guard on the quotes)."""

    def _get_table_name(self, node_id: ua.NodeId) -> str:
        ident = "".join(ch if ch.isalnum() else "_" for ch in str(node_id.Identifier))
        return f"{node_id.NamespaceIndex}_{ident}"

    async def init(self) -> None:
        await super().init()
        # asyncua's connection stores the rare events and answers HistoryRead (scans of one node's
        # rows by index): 512 KB of page cache, not SQLite's 2 MB, which start-up's event tables filled
        await self._db.execute("PRAGMA cache_size=-512")
        # A second connection of our own writes the measurements, one transaction per device update,
        # on one worker thread: asyncua's save_node_value makes a thread hop and a commit per row.
        # WAL lets HistoryRead (asyncua's connection) read while a batch is written; NORMAL sync is
        # enough for history (the energy registers live in the bridge's own store).
        self._writer = sqlite3.connect(self._db_file, check_same_thread=False)
        self._writer.execute("PRAGMA journal_mode=WAL")
        self._writer.execute("PRAGMA synchronous=NORMAL")
        w = self._writer
        with w:
            w.execute(f"CREATE TABLE IF NOT EXISTS {_NODES} (Node INTEGER PRIMARY KEY, NodeId TEXT UNIQUE)")
            w.execute(f"CREATE TABLE IF NOT EXISTS {_LAYOUTS} (Layout INTEGER PRIMARY KEY, Nodes BLOB NOT NULL UNIQUE)")
            # StatusCode: one integer for every value of the row, or their codes packed (uint32 each);
            # Value: the values packed (float64 each, in the layout's order), or a REAL of a moved row
            w.execute(
                f"CREATE TABLE IF NOT EXISTS {_ROWS} (Layout INTEGER NOT NULL, SourceTimestamp TEXT NOT NULL, "
                "ServerTimestamp TEXT NOT NULL, StatusCode NOT NULL, Value)"
            )
            w.execute(f"CREATE INDEX IF NOT EXISTS {_ROWS}ByTime ON {_ROWS} (Layout, SourceTimestamp)")
        self._keys: dict[ua.NodeId, int] = {}  # a historized measurement node's number
        self._queued: list[tuple[Any, ...]] = []  # rows for the history thread's next transaction
        self._queued_layouts: list[tuple[int, bytes]] = []  # and the layouts they need
        self._lock = threading.Lock()  # for both, and for the layouts (the history thread adds some)
        self._layouts: dict[bytes, int] = dict(w.execute(f"SELECT Nodes, Layout FROM {_LAYOUTS}").fetchall())
        self._places: dict[int, list[tuple[int, int]]] = {}  # node number: (layout, position) of its values
        for nodes, layout in self._layouts.items():
            self._place(layout, nodes)
        self._move_value_rows()
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="opcua-history")
        await self._init_events()

    async def _init_events(self) -> None:
        db = self._db
        # a commit per historized emitter at a first start, and one per event: WAL without a sync
        # at each commit, as the measurements' connection (history is not the energy registers)
        await db.execute("PRAGMA synchronous=NORMAL")
        await db.execute(f"CREATE TABLE IF NOT EXISTS {_SOURCES} (Source INTEGER PRIMARY KEY, NodeId TEXT UNIQUE)")
        await db.execute(
            f"CREATE TABLE IF NOT EXISTS {_EVENTS} "
            # the time as text: asyncua's TIMESTAMP column is read back through sqlite3's converter,
            # which fails on a time with no fraction of a second (and with it the whole HistoryRead)
            '(Source INTEGER NOT NULL, "_Timestamp" TEXT, "_EventTypeName" TEXT)'
        )
        await db.execute(f'CREATE INDEX IF NOT EXISTS {_EVENTS}ByTime ON {_EVENTS} (Source, "_Timestamp")')
        await db.commit()
        async with db.execute(f"SELECT NodeId, Source FROM {_SOURCES}") as cursor:
            self._numbers: dict[str, int] = {text: n for text, n in await cursor.fetchall()}
        async with db.execute(f"PRAGMA table_info({_EVENTS})") as cursor:
            self._event_columns: set[str] = {row[1] for row in await cursor.fetchall()}
        async with db.execute("SELECT name FROM sqlite_master WHERE type = 'table'") as cursor:
            self._tables: set[str] = {name for (name,) in await cursor.fetchall()}
        self._sources: dict[ua.NodeId, int] = {}  # a historized emitter's number
        self.moved_events = 0  # rows moved in from tables of asyncua's layout

    async def _add_event_columns(self, names: Iterable[str]) -> None:
        for name in names:
            if name not in self._event_columns:
                await self._db.execute(f'ALTER TABLE {_EVENTS} ADD COLUMN "{name}" BLOB')
                self._event_columns.add(name)

    def _place(self, layout: int, nodes: bytes) -> None:
        for pos, (key,) in enumerate(struct.iter_unpack("<i", nodes)):
            self._places.setdefault(key, []).append((layout, pos))

    def _layout(self, keys: list[int]) -> int:
        """The layout of these node numbers in this order (call with the lock held); a new one is
        stored with the next write."""
        nodes = _packed("i", keys)
        layout = self._layouts.get(nodes)
        if layout is None:
            layout = self._layouts[nodes] = len(self._layouts) + 1
            self._place(layout, nodes)
            self._queued_layouts.append((layout, nodes))
        return layout

    def _single(self, w: sqlite3.Connection, key: int) -> int:
        """A one-node layout, for rows moved from an older layout, stored at once (history thread)."""
        with self._lock:
            layout = self._layout([key])
        w.execute(f"INSERT OR IGNORE INTO {_LAYOUTS} VALUES (?, ?)", (layout, _packed("i", [key])))
        return layout

    def _move_value_rows(self) -> None:
        """Rows of the previous layout (a row per value, in MeasurementValues) moved in, in their
        order, as rows of one-node layouts; the old table dropped."""
        w = self._writer
        if not w.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (_VALUES,)).fetchone():
            return
        with w:
            w.execute("CREATE TEMP TABLE Moved (Node INTEGER PRIMARY KEY, Layout INTEGER)")
            w.executemany(
                "INSERT INTO Moved VALUES (?, ?)",
                [
                    (key, self._single(w, key))
                    for (key,) in w.execute(f"SELECT DISTINCT Node FROM {_VALUES}").fetchall()
                ],
            )
            moved = w.execute(
                f"INSERT INTO {_ROWS} SELECT m.Layout, v.SourceTimestamp, v.ServerTimestamp, v.StatusCode, v.Value "
                f"FROM {_VALUES} v JOIN Moved m USING (Node) ORDER BY v.rowid"
            ).rowcount
            w.execute(f"DROP TABLE {_VALUES}")
            w.execute("DROP TABLE Moved")
        log.info("OPC UA history moved into the measurements' rows", rows=moved)

    async def _get_event_fields(self, evtypes: list[Any]) -> list[str]:
        # asyncua lists a field once per event type that has it; a column twice fails the whole table
        return list(dict.fromkeys(await super()._get_event_fields(evtypes)))

    async def new_historized_event(
        self, source_id: ua.NodeId, evtypes: list[Any], period: dt.timedelta | None, count: int = 0
    ) -> None:
        """The emitter's events into the events' table: its number (kept from run to run), a column
        for each field of its event types that no emitter had before, and its table of asyncua's
        layout, if the history file has one, moved in, rows in their order, and dropped."""
        # a name that cannot be a column is left out, as asyncua's HistoryRead then leaves it
        fields = [f for f in await self._get_event_fields(evtypes) if '"' not in f]
        self._datachanges_period[source_id] = period
        self._event_fields[source_id] = fields
        await self._add_event_columns(fields)
        text = source_id.to_string()
        number = self._numbers.get(text)
        if number is None:
            cursor = await self._db.execute(f"INSERT INTO {_SOURCES} (NodeId) VALUES (?)", (text,))
            number = self._numbers[text] = int(cursor.lastrowid or 0)
        self._sources[source_id] = number
        old = self._get_table_name(source_id)
        if old in self._tables:
            await self._move_event_table(old, number)
        await self._db.commit()

    async def _move_event_table(self, table: str, number: int) -> None:
        async with self._db.execute(f'PRAGMA table_info("{table}")') as cursor:
            columns = [row[1] for row in await cursor.fetchall() if row[1] != "_Id" and '"' not in row[1]]
        await self._add_event_columns(columns)
        names = self._list_to_sql_str(columns)
        cursor = await self._db.execute(
            f'INSERT INTO {_EVENTS} (Source, {names}) SELECT ?, {names} FROM "{table}" ORDER BY "_Id"', (number,)
        )
        self.moved_events += max(cursor.rowcount, 0)
        await self._db.execute(f'DROP TABLE "{table}"')
        self._tables.discard(table)

    async def save_event(self, event: Any) -> None:
        """One event row. asyncua's own version then looks up a retention period by the emitting
        node, which fails for events that also reach the Server object; retention is pruned hourly
        by :meth:`MeasurementHistory.prune_forever` instead."""
        source = self._sources.get(event.SourceNode)
        if source is None:
            log.error("OPC UA event history has no place for an event", source=str(event.SourceNode))
            return
        # the columns are the event types' properties; state variables (ActiveState/Id ...) have
        # none, as asyncua's HistoryRead selects by the first browse name only
        columns = set(self._event_fields[event.SourceNode])
        fields = {k: v for k, v in event.get_event_props_as_fields_dict().items() if k in columns}
        names = sorted(fields)
        columns_sql = "".join(f', "{n}"' for n in names)
        try:
            await self._db.execute(
                f'INSERT INTO {_EVENTS} (Source, "_Timestamp", "_EventTypeName"{columns_sql}) '
                f"VALUES (?, ?, ?{', ?' * len(names)})",
                (
                    source,
                    _utc(event.Time).isoformat(" "),
                    str(event.EventType),
                    *(sqlite3.Binary(variant_to_binary(fields[n])) for n in names),
                ),
            )
            await self._db.commit()
        except sqlite3.Error as exc:
            log.error("OPC UA event history could not store an event", source=str(event.SourceNode), error=str(exc))

    async def read_event_history(
        self, source_id: ua.NodeId, start: dt.datetime | None, end: dt.datetime | None, nb_values: int, evfilter: Any
    ) -> tuple[list[Any], Any]:
        """HistoryRead of events, as asyncua's (its select clauses, bounds, order, limit and
        continuation), from the emitter's rows of the events' table."""
        source = self._sources.get(source_id)
        if source is None:
            return [], None
        start_s, end_s, order, limit = self._get_bounds(start, end, nb_values)
        clauses, selected = self._get_select_clauses(source_id, evfilter)
        times: list[str] = []
        results = []
        async with self._db.execute(
            f'SELECT "_Timestamp"{", " + selected if clauses else ""} FROM {_EVENTS} '
            f'WHERE Source = ? AND "_Timestamp" BETWEEN ? AND ? ORDER BY rowid {order} LIMIT ?',
            (source, start_s, end_s, limit),
        ) as cursor:
            async for row in cursor:
                times.append(row[0])
                values = {
                    clause: variant_from_binary(Buffer(field)) if field is not None else ua.Variant(None)
                    for clause, field in zip(clauses, row[1:], strict=True)
                }
                results.append(Event.from_field_dict(values))
        most = self.max_history_data_response_size
        more = _utc(dt.datetime.fromisoformat(times[most])) if len(results) > most else None
        return results[:most], more

    async def prune_events(self, cutoff: dt.datetime) -> None:
        await self._db.execute(f'DELETE FROM {_EVENTS} WHERE "_Timestamp" < ?', (_utc(cutoff).isoformat(" "),))
        await self._db.commit()

    async def _values(
        self, key: int, start: str, end: str, order: str, limit: int
    ) -> list[tuple[str, str, int, float]]:
        """(server time, source time, status, value) of a node's values with source times from start
        to end (ISO text), in time order (ASC or DESC), at most ``limit`` (-1: all)."""
        at: dict[int, list[int]] = {}
        for layout, pos in self._places.get(key, ()):
            at.setdefault(layout, []).append(pos)
        if not at:
            return []
        found: list[tuple[str, str, int, float]] = []
        async with self._db.execute(
            f"SELECT Layout, ServerTimestamp, SourceTimestamp, StatusCode, Value FROM {_ROWS} WHERE Layout IN "
            f"({', '.join('?' * len(at))}) AND SourceTimestamp BETWEEN ? AND ? "
            f"ORDER BY SourceTimestamp {order}, rowid {order} LIMIT ?",
            (*at, start, end, limit),
        ) as cursor:
            async for layout, server_ts, source_ts, status, value in cursor:
                for pos in at[layout]:
                    if isinstance(value, bytes):
                        v = struct.unpack_from("<d", value, 8 * pos)[0]
                    else:
                        v = _NAN if value is None else value
                    code = struct.unpack_from("<I", status, 4 * pos)[0] if isinstance(status, bytes) else status
                    found.append((server_ts, source_ts, int(code), v))
        return found if limit < 0 else found[:limit]

    async def raw_rows(self, node_id: ua.NodeId, start: dt.datetime, end: dt.datetime) -> list[RawRow]:
        """(source time, status, value) of a measurement node's rows from start to end, in time order."""
        values = await self._values(
            self._keys.get(node_id, -1), _utc(start).isoformat(" "), _utc(end).isoformat(" "), "ASC", -1
        )
        return [(_utc(dt.datetime.fromisoformat(ts)), status, v) for _, ts, status, v in values]

    async def read_node_history(
        self, node_id: ua.NodeId, start: dt.datetime | None, end: dt.datetime | None, nb_values: int
    ) -> tuple[list[ua.DataValue], dt.datetime | None]:
        """HistoryRead of raw values, as asyncua's (bounds, order, limit, continuation), from the
        measurements' rows; a node historized by asyncua itself reads from its own table."""
        key = self._keys.get(node_id)
        if key is None:
            return await super().read_node_history(node_id, start, end, nb_values)  # type: ignore[no-any-return]
        results = [
            ua.DataValue(
                ua.Variant(v, ua.VariantType.Double),
                StatusCode=ua.StatusCode(status),
                SourceTimestamp=dt.datetime.fromisoformat(source_ts),
                ServerTimestamp=dt.datetime.fromisoformat(server_ts),
            )
            for server_ts, source_ts, status, v in await self._values(key, *self._get_bounds(start, end, nb_values))
        ]
        most = self.max_history_data_response_size
        more = results[most].SourceTimestamp if len(results) > most else None
        return results[:most], more

    async def stop(self) -> None:
        self._pool.shutdown(wait=True)
        self._writer.close()
        await super().stop()

    async def new_historized_nodes(self, node_ids: list[ua.NodeId]) -> None:
        """Numbers for measurement nodes in the measurements' table (a node's number is kept from
        run to run), all in one transaction on the history thread; a node's table of the older
        layout is moved into it, rows in their order, and dropped."""
        for nid in node_ids:
            self._datachanges_period[nid] = None, 0
        keys = await asyncio.wrap_future(self._pool.submit(self._number, node_ids))
        self._keys.update(keys)

    def _number(self, node_ids: list[ua.NodeId]) -> dict[ua.NodeId, int]:
        w = self._writer
        old = {name for (name,) in w.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        moved = 0
        with w:
            w.executemany(f"INSERT OR IGNORE INTO {_NODES} (NodeId) VALUES (?)", [(n.to_string(),) for n in node_ids])
            known = dict(w.execute(f"SELECT NodeId, Node FROM {_NODES}").fetchall())
            keys = {n: known[n.to_string()] for n in node_ids}
            for nid, key in keys.items():
                table = self._get_table_name(nid)
                if table in old:  # asyncua's table of this node: its rows, then the table, go
                    moved += w.execute(
                        f"INSERT INTO {_ROWS} SELECT ?, SourceTimestamp, ServerTimestamp, StatusCode, CASE Value "
                        "WHEN 'nan' THEN NULL WHEN 'inf' THEN 9e999 WHEN '-inf' THEN -9e999 ELSE CAST(Value AS REAL) "
                        f'END FROM "{table}" ORDER BY _Id',
                        (self._single(w, key),),
                    ).rowcount
                    w.execute(f'DROP TABLE "{table}"')
        if moved:
            log.info("OPC UA history moved into the measurements' rows", rows=moved)
        return keys

    def save_many(self, rows: list[HistoryRow]) -> None:
        """Queue a device update's measurements for the history thread, a row for the values of each
        pair of timestamps. Not awaited: the update is done when its values are in the address space;
        the single worker thread keeps the rows in order, writes what has queued up meanwhile in one
        transaction, and stop() waits for it."""
        groups: dict[tuple[dt.datetime, dt.datetime], tuple[list[int], list[int], list[float]]] = {}
        keys = self._keys
        for node_id, server_ts, source_ts, status, value in rows:
            key = keys.get(node_id)
            if key is None:
                continue  # not historized (the projection only sends historized nodes)
            group = groups.get((source_ts, server_ts))
            if group is None:
                group = groups[(source_ts, server_ts)] = ([], [], [])
            group[0].append(key)
            group[1].append(status)
            group[2].append(value)
        if not groups:
            return
        with self._lock:
            idle = not self._queued
            for (source_ts, server_ts), (nodes, statuses, values) in groups.items():
                code: int | bytes = statuses[0]
                if statuses.count(code) != len(statuses):
                    code = _packed("I", statuses)
                # timestamps as sqlite3's datetime adapter stores them (asyncua's bounds compare with these)
                row = (self._layout(nodes), source_ts.isoformat(" "), server_ts.isoformat(" "), code)
                self._queued.append((*row, _packed("d", values)))
        if idle:
            self._pool.submit(self._write).add_done_callback(_log_history_error)

    def _write(self) -> None:
        with self._lock:
            batch, self._queued = self._queued, []
            layouts, self._queued_layouts = self._queued_layouts, []
        with self._writer:  # one transaction for every update queued since the last
            self._writer.executemany(f"INSERT OR IGNORE INTO {_LAYOUTS} VALUES (?, ?)", layouts)
            self._writer.executemany(f"INSERT INTO {_ROWS} VALUES (?, ?, ?, ?, ?)", batch)

    async def prune(self, cutoff: dt.datetime) -> None:
        """Measurement rows older than ``cutoff`` deleted (a statement a layout, by its index, on the
        history thread)."""
        await asyncio.wrap_future(self._pool.submit(self._prune, _utc(cutoff).isoformat(" ")))

    def _prune(self, cutoff: str) -> None:
        with self._writer:
            layouts = [(layout, cutoff) for (layout,) in self._writer.execute(f"SELECT Layout FROM {_LAYOUTS}")]
            self._writer.executemany(f"DELETE FROM {_ROWS} WHERE Layout = ? AND SourceTimestamp < ?", layouts)


class MeasurementHistory:
    """Which measurement nodes are historized, their rows, event history, and hourly pruning."""

    def __init__(self, server: Server, path: Path, retention_days: float) -> None:
        self.server = server
        self.storage = _Storage(str(path))
        self.keep = dt.timedelta(days=retention_days)
        self.nodes: set[ua.NodeId] = set()

    async def start(self, emitters: Iterable[Any]) -> None:
        await self.storage.init()
        manager = self.server.iserver.history_manager
        manager.set_storage(self.storage)
        raw_or_events = manager.read_history

        async def read_history(params: ua.HistoryReadParameters) -> list[ua.HistoryReadResult]:
            if isinstance(params.HistoryReadDetails, ua.ReadProcessedDetails):
                return await self.read_processed(params.HistoryReadDetails, params.NodesToRead)
            return list(await raw_or_events(params))

        manager.read_history = read_history  # type: ignore[method-assign]  # asyncua's: BadNotImplemented
        for emitter in emitters:
            await self.historize_events(emitter)
        if self.storage.moved_events:
            log.info("OPC UA event history moved into the events' table", rows=self.storage.moved_events)
            self.storage.moved_events = 0

    async def historize_events(self, emitter: Any) -> None:
        # no period for asyncua: it would run a DELETE on every insert; retention is pruned hourly
        await self.server.historize_node_event(emitter, period=None, count=0)

    async def historize(self, node_ids: Iterable[ua.NodeId]) -> None:
        """Give measurement nodes their tables (at once). The value projection stores their rows
        itself, batched: asyncua's historize_node_data_change would route every value through an
        internal subscription and commit each row on its own."""
        new = [nid for nid in dict.fromkeys(node_ids) if nid not in self.nodes]
        if new:
            await self.storage.new_historized_nodes(new)
            self.nodes.update(new)

    def save_many(self, rows: list[HistoryRow]) -> None:
        self.storage.save_many(rows)

    async def read_processed(
        self, details: ua.ReadProcessedDetails, nodes: list[ua.HistoryReadValueId]
    ) -> list[ua.HistoryReadResult]:
        """HistoryRead with ReadProcessedDetails: one aggregate per node, as Part 13 asks."""
        kinds = list(details.AggregateType or ())
        results = []
        for k, rv in enumerate(nodes):
            result = ua.HistoryReadResult()
            fn = AGGREGATES.get(kinds[k]) if len(kinds) == len(nodes) else None
            if len(kinds) != len(nodes):
                result.StatusCode = ua.StatusCode(ua.StatusCodes.BadAggregateListMismatch)
            elif fn is None:
                result.StatusCode = ua.StatusCode(ua.StatusCodes.BadAggregateNotSupported)
            elif rv.NodeId not in self.nodes:
                result.StatusCode = ua.StatusCode(ua.StatusCodes.BadHistoryOperationUnsupported)
            else:
                try:
                    spans = intervals(_utc(details.StartTime), _utc(details.EndTime), details.ProcessingInterval / 1e3)
                except ValueError as exc:
                    log.warning("OPC UA processed history read refused", node=str(rv.NodeId), error=str(exc))
                    result.StatusCode = ua.StatusCode(ua.StatusCodes.BadInvalidArgument)
                else:
                    rows = await self.storage.raw_rows(rv.NodeId, spans[0][0], spans[-1][1])
                    result.HistoryData = ua.HistoryData(DataValues=process(rows, spans, fn))
            results.append(result)
        return results

    async def prune_forever(self) -> None:
        while True:
            cutoff = dt.datetime.now(dt.UTC) - self.keep
            await self.storage.prune(cutoff)
            await self.storage.prune_events(cutoff)
            await asyncio.sleep(3600)
