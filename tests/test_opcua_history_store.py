"""The measurements' history table: rows of every historized node in one table, read back per node
over a real asyncua client (raw, in order, limits, continuation, reverse), NaN kept, retention
pruned, and a history file of the older one-table-per-node layout moved in once, nothing lost."""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import sqlite3
from pathlib import Path
from typing import Any

from asyncua import Client, ua
from asyncua.common.events import Event, get_filter_from_event_type

from bridge.fronts.opcua.history import MeasurementHistory
from tests.harness import plain_opcua_server

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _at(s: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=s)


def _old_layout(path: Path, table: str, rows: list[tuple[float, float]]) -> None:
    """A history file as the bridge wrote it before: one asyncua-style table per measurement node."""
    db = sqlite3.connect(path)
    db.execute(
        f'CREATE TABLE "{table}" (_Id INTEGER PRIMARY KEY NOT NULL, ServerTimestamp TIMESTAMP, SourceTimestamp '
        "TIMESTAMP, StatusCode INTEGER, Value TEXT, VariantType TEXT, VariantBinary BLOB)"
    )
    for s, v in rows:
        db.execute(
            f'INSERT INTO "{table}" VALUES (NULL, ?, ?, 0, ?, "Double", NULL)',
            (_at(s).isoformat(" "), _at(s).isoformat(" "), str(v)),
        )
    db.commit()
    db.close()


async def test_measurements_share_one_table_and_each_node_reads_its_own_rows(tmp_path: Path) -> None:
    path = tmp_path / "opcua_history.sqlite"
    server, url, idx = await plain_opcua_server("history")
    objects = server.nodes.objects
    volts = await objects.add_variable(ua.NodeId("dev.Circuit01.Voltage", idx), "Voltage", 0.0)
    amps = await objects.add_variable(ua.NodeId("dev.Circuit01.Current", idx), "Current", 0.0)
    old_table = f"{idx}_dev_Circuit01_Current"
    _old_layout(path, old_table, [(0.0, 1.25), (1.0, math.nan), (2.0, 2.5)])

    history = MeasurementHistory(server, path, retention_days=7)
    await history.start([])
    await history.historize([volts.nodeid, amps.nodeid])
    history.save_many([(volts.nodeid, _at(s), _at(s), 0, 230.0 + s) for s in range(10)])
    history.save_many([(amps.nodeid, _at(3), _at(3), ua.StatusCodes.UncertainLastUsableValue, 3.75)])
    await asyncio.wrap_future(history.storage._pool.submit(lambda: None))  # the writes are in
    history.storage.max_history_data_response_size = 4  # continuation points after 4 values

    db = sqlite3.connect(path)
    tables = {n for (n,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert old_table not in tables and tables >= {"MeasurementRows", "MeasurementLayouts", "MeasurementNodes"}
    # the moved table's 3 rows, one row per update (10 of volts, 1 of amps): nothing counted twice
    assert db.execute("SELECT count(*) FROM MeasurementRows").fetchone() == (14,)
    db.close()

    assert await server.start() is None
    try:
        async with Client(url) as client:
            v = await client.get_node(volts.nodeid).read_raw_history(_at(0), _at(60))  # 3 continuation reads
            assert [d.Value.Value for d in v] == [230.0 + s for s in range(10)]
            assert [d.SourceTimestamp for d in v] == [_at(s) for s in range(10)]
            a = await client.get_node(amps.nodeid).read_raw_history(_at(0), _at(60))
            assert [d.SourceTimestamp for d in a] == [_at(s) for s in range(4)]
            assert a[0].Value.Value == 1.25 and math.isnan(a[1].Value.Value) and a[2].Value.Value == 2.5
            assert a[3].Value.Value == 3.75 and a[3].StatusCode.value == ua.StatusCodes.UncertainLastUsableValue
            last = await client.get_node(volts.nodeid).read_raw_history(None, _at(60), numvalues=2)
            assert [d.Value.Value for d in last] == [239.0, 238.0]  # no start: newest first
            some = await client.get_node(volts.nodeid).read_raw_history(_at(2), _at(4))
            assert [d.Value.Value for d in some] == [232.0, 233.0, 234.0]

            await history.storage.prune(_at(5))
            v = await client.get_node(volts.nodeid).read_raw_history(_at(0), _at(60))
            assert [d.Value.Value for d in v] == [230.0 + s for s in range(5, 10)]
            assert await client.get_node(amps.nodeid).read_raw_history(_at(0), _at(60)) == []
    finally:
        await server.stop()
        await history.storage.stop()

    again = MeasurementHistory(server, path, retention_days=7)  # the same numbers from run to run
    await again.storage.init()
    await again.historize([amps.nodeid, volts.nodeid])
    rows = await again.storage.raw_rows(volts.nodeid, _at(0), _at(60))
    assert [r[2] for r in rows] == [230.0 + s for s in range(5, 10)]
    await again.storage.stop()


async def test_an_update_is_one_row_and_the_previous_layout_is_moved_in(tmp_path: Path) -> None:
    path = tmp_path / "opcua_history.sqlite"
    server, _, idx = await plain_opcua_server("history-rows")
    volts, amps = ua.NodeId("dev.Circuit01.Voltage", idx), ua.NodeId("dev.Circuit01.Current", idx)
    db = sqlite3.connect(path)  # the previous layout: a row per value, node numbers kept
    db.execute("CREATE TABLE MeasurementNodes (Node INTEGER PRIMARY KEY, NodeId TEXT UNIQUE)")
    db.executemany("INSERT INTO MeasurementNodes VALUES (?, ?)", [(1, volts.to_string()), (2, amps.to_string())])
    db.execute(
        "CREATE TABLE MeasurementValues (Node INTEGER NOT NULL, SourceTimestamp TEXT NOT NULL, "
        "ServerTimestamp TEXT NOT NULL, StatusCode INTEGER NOT NULL, Value REAL)"
    )
    db.executemany(
        "INSERT INTO MeasurementValues VALUES (?, ?, ?, 0, ?)",
        [
            (n, _at(s).isoformat(" "), _at(s).isoformat(" "), v)
            for n, s, v in [(1, 0, 230.0), (2, 0, None), (1, 1, 231.0)]
        ],
    )
    db.commit()
    db.close()

    history = MeasurementHistory(server, path, retention_days=7)
    await history.storage.init()
    await history.historize([volts, amps])
    uncertain = ua.StatusCodes.UncertainLastUsableValue
    history.save_many([(volts, _at(5), _at(5), 0, 235.0), (amps, _at(5), _at(5), uncertain, 5.5)])
    history.save_many([(volts, _at(6), _at(6), 0, 236.0), (amps, _at(6), _at(6), 0, math.inf)])
    await asyncio.wrap_future(history.storage._pool.submit(lambda: None))

    db = sqlite3.connect(path)
    tables = {n for (n,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "MeasurementValues" not in tables
    assert db.execute("SELECT count(*) FROM MeasurementRows").fetchone() == (3 + 2,)  # an update is one row
    db.close()
    v = await history.storage.raw_rows(volts, _at(0), _at(60))
    assert v == [(_at(0), 0, 230.0), (_at(1), 0, 231.0), (_at(5), 0, 235.0), (_at(6), 0, 236.0)]
    a = await history.storage.raw_rows(amps, _at(0), _at(60))
    assert [r[:2] for r in a] == [(_at(0), 0), (_at(5), uncertain), (_at(6), 0)]
    assert math.isnan(a[0][2]) and a[1][2] == 5.5 and a[2][2] == math.inf
    newest, _ = await history.storage.read_node_history(amps, None, _at(60), 2)
    assert [d.Value.Value for d in newest] == [math.inf, 5.5]
    await history.storage.prune(_at(5))
    assert [r[2] for r in await history.storage.raw_rows(volts, _at(0), _at(60))] == [235.0, 236.0]
    await history.storage.stop()


def _old_event_table(path: Path, table: str, source: ua.NodeId, events: list[tuple[float, str]]) -> None:
    """Events as asyncua stored them for the bridge before: a table per emitter, a column per field."""
    from asyncua.ua.ua_binary import variant_to_binary

    db = sqlite3.connect(path)
    db.execute(
        f'CREATE TABLE "{table}" (_Id INTEGER PRIMARY KEY NOT NULL, _Timestamp TIMESTAMP, _EventTypeName TEXT, '
        "EventId BLOB, EventType BLOB, Message BLOB, Severity BLOB, SourceNode BLOB, Time BLOB)"
    )
    base = ua.NodeId(ua.ObjectIds.BaseEventType)
    for k, (s, text) in enumerate(events):
        fields = [
            ua.Variant(bytes([k]) * 16, ua.VariantType.ByteString),
            ua.Variant(base, ua.VariantType.NodeId),
            ua.Variant(ua.LocalizedText(text), ua.VariantType.LocalizedText),
            ua.Variant(300, ua.VariantType.UInt16),
            ua.Variant(source, ua.VariantType.NodeId),
            ua.Variant(_at(s), ua.VariantType.DateTime),
        ]
        db.execute(
            f'INSERT INTO "{table}" VALUES (NULL, ?, ?, ?, ?, ?, ?, ?, ?)',
            (_at(s), str(base), *(sqlite3.Binary(variant_to_binary(f)) for f in fields)),
        )
    db.commit()
    db.close()


async def test_events_of_every_emitter_share_one_table_and_each_emitter_reads_its_own(tmp_path: Path) -> None:
    """Every emitter's events in one table (asyncua makes one per emitter: 11 a board, whose schemas
    each connection holds), read back per emitter over a real client as asyncua's own storage reads
    them: in order, newest first without a start, limited, through continuation points, pruned; an
    emitter's table of asyncua's layout moved in, its rows first and each once."""
    path = tmp_path / "opcua_history.sqlite"
    server, url, idx = await plain_opcua_server("history-events")
    objects = server.nodes.objects
    device = await objects.add_object(ua.NodeId("dev", idx), "dev")
    circuit = await objects.add_object(ua.NodeId("dev.Circuit01", idx), "Circuit01")
    generators = {
        node.nodeid: await server.get_event_generator(ua.ObjectIds.BaseEventType, node) for node in (device, circuit)
    }
    old_table = f"{idx}_dev_Circuit01"
    _old_event_table(path, old_table, circuit.nodeid, [(0.0, "before 1"), (1.0, "before 2")])

    history = MeasurementHistory(server, path, retention_days=7)
    await history.start([device, circuit])
    assert await server.start() is None
    try:
        sent = [
            (circuit, 10.0, "dip 1"),
            (device, 11.0, "relay 3 on"),
            (circuit, 12.0, "dip 2"),
            (circuit, 13.0, "dip 3"),
        ]
        for node, s, text in sent:
            gen = generators[node.nodeid]
            gen.event.Message = ua.LocalizedText(text)
            gen.event.Severity = 500
            await gen.trigger(time_attr=_at(s))
        db = sqlite3.connect(path)
        async with asyncio.timeout(10):
            while db.execute("SELECT count(*) FROM EventRows").fetchone() != (2 + len(sent),):
                await asyncio.sleep(0.05)
        tables = {n for (n,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        db.close()
        assert old_table not in tables and not any(t.startswith(f"{idx}_") for t in tables)

        def texts(events: list[Any]) -> list[str]:
            return [e.Message.Text for e in events]

        async with Client(url) as client:
            c, d = client.get_node(circuit.nodeid), client.get_node(device.nodeid)
            assert texts(await c.read_event_history(_at(0), _at(60))) == [
                "before 1",
                "before 2",
                "dip 1",
                "dip 2",
                "dip 3",
            ]
            assert texts(await d.read_event_history(_at(0), _at(60))) == ["relay 3 on"]
            events = await c.read_event_history(_at(0), _at(60))
            assert [e.Time for e in events] == [_at(s) for s in (0, 1, 10, 12, 13)]
            assert events[0].Severity == 300 and events[2].Severity == 500
            assert events[2].SourceNode == circuit.nodeid
            assert texts(await c.read_event_history(None, _at(60), numvalues=2)) == ["dip 3", "dip 2"]
            assert texts(await c.read_event_history(_at(1), _at(12))) == ["before 2", "dip 1", "dip 2"]

            history.storage.max_history_data_response_size = 2  # the rest behind a continuation point
            details = ua.ReadEventDetails(StartTime=_at(0), EndTime=_at(60), NumValuesPerNode=0)
            details.Filter = await get_filter_from_event_type([client.get_node(ua.ObjectIds.BaseEventType)])
            page = await c.history_read_events(details)
            pages = [page]
            while page.ContinuationPoint and len(pages) < 5:
                read = ua.HistoryReadValueId(NodeId=circuit.nodeid, ContinuationPoint=page.ContinuationPoint)
                params = ua.HistoryReadParameters(HistoryReadDetails=details, NodesToRead=[read])
                page = (await client.uaclient.history_read(params))[0]
                pages.append(page)
            got = [
                Event.from_event_fields(details.Filter.SelectClauses, f.EventFields)
                for p in pages
                for f in p.HistoryData.Events
            ]
            assert [len(p.HistoryData.Events) for p in pages] == [2, 2, 1]
            assert texts(got) == ["before 1", "before 2", "dip 1", "dip 2", "dip 3"]  # each once

            await history.storage.prune_events(_at(11.5))
            assert texts(await c.read_event_history(_at(0), _at(60))) == ["dip 2", "dip 3"]
            assert texts(await d.read_event_history(_at(0), _at(60))) == []
    finally:
        await server.stop()
        await history.storage.stop()
