"""Processed history (OPC UA Part 13): Average, Minimum, Maximum, Count, Start and End of a
historized measurement over each processing interval, computed from the stored raw values. Pure
functions; ``history.py`` answers HistoryRead with ReadProcessedDetails through them (asyncua
answers BadNotImplemented).

The values are those of the windows stored for the node (one per live update); every aggregate is
computed over the raw values whose source timestamp falls in [start, end) of the interval. Status:
Good when every raw value in it was Good, Uncertain_DataSubNormal when some were not (they are left
out), Bad_NoData when none was Good; each carries the historian's Calculated bit. Time: the
interval's start (Part 13 for these aggregates).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from asyncua import ua

OID = ua.ObjectIds
_CALCULATED = 0x0400 | 0x0001  # InfoType DataValue + HistorianCalculated
MAX_INTERVALS = 10_000  # in one request; more is refused (ask for a longer interval)

RawRow = tuple[dt.datetime, int, float]  # source time, status code, value


def _average(v: Sequence[float]) -> float:
    return sum(v) / len(v)


@dataclass(frozen=True, slots=True)
class AggregateFunction:
    name: str
    compute: Callable[[Sequence[float]], float]
    vtype: ua.VariantType = ua.VariantType.Double


AGGREGATES: dict[ua.NodeId, AggregateFunction] = {
    ua.NodeId(OID.AggregateFunction_Average): AggregateFunction("Average", _average),
    ua.NodeId(OID.AggregateFunction_Minimum): AggregateFunction("Minimum", min),
    ua.NodeId(OID.AggregateFunction_Maximum): AggregateFunction("Maximum", max),
    ua.NodeId(OID.AggregateFunction_Count): AggregateFunction("Count", len, ua.VariantType.Int32),
    ua.NodeId(OID.AggregateFunction_Start): AggregateFunction("Start", lambda v: v[0]),
    ua.NodeId(OID.AggregateFunction_End): AggregateFunction("End", lambda v: v[-1]),
}


def intervals(start: dt.datetime, end: dt.datetime, interval_s: float) -> list[tuple[dt.datetime, dt.datetime]]:
    """The processing intervals from start to end (one for an interval of 0); the last may be short.
    Raises ValueError for more than MAX_INTERVALS."""
    if end <= start:
        raise ValueError("the end time must be after the start time")
    if interval_s <= 0:
        return [(start, end)]
    span = (end - start).total_seconds()
    if span / interval_s > MAX_INTERVALS:
        raise ValueError(f"{span / interval_s:.0f} intervals asked, at most {MAX_INTERVALS} in one request")
    step = dt.timedelta(seconds=interval_s)
    out, a = [], start
    while a < end:
        out.append((a, min(a + step, end)))
        a += step
    return out


def process(
    rows: Sequence[RawRow], spans: Sequence[tuple[dt.datetime, dt.datetime]], fn: AggregateFunction
) -> list[ua.DataValue]:
    """One DataValue per interval; ``rows`` sorted by time."""
    out: list[ua.DataValue] = []
    k = 0
    for a, b in spans:
        while k < len(rows) and rows[k][0] < a:
            k += 1
        good: list[float] = []
        other = 0
        j = k
        while j < len(rows) and rows[j][0] < b:
            status, value = rows[j][1], rows[j][2]
            if ua.StatusCode(status).is_good():
                good.append(value)
            else:
                other += 1
            j += 1
        if not good:
            code = ua.StatusCodes.BadNoData
            out.append(ua.DataValue(ua.Variant(None), StatusCode=ua.StatusCode(code), SourceTimestamp=a))
            continue
        code = ua.StatusCodes.UncertainDataSubNormal if other else ua.StatusCodes.Good
        out.append(
            ua.DataValue(
                ua.Variant(fn.compute(good), fn.vtype),
                StatusCode=ua.StatusCode(code | _CALCULATED),
                SourceTimestamp=a,
                ServerTimestamp=a,
            )
        )
    return out
