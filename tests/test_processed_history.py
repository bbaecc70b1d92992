"""Processed history (Part 13 Average, Minimum, Maximum, Count, Start, End) against hand-computed
values, and over a real asyncua client against the bridge's stored history."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import pytest
from asyncua import Client, ua

from bridge.fronts.opcua.processed import AGGREGATES, intervals, process
from device.simulator.process import SimulatorProcess
from tests.harness import ROOT, bridge_config, running_bridge, wait_for, with_opcua

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
GOOD, UNCERTAIN = ua.StatusCodes.Good, ua.StatusCodes.UncertainLastUsableValue


def _at(s: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=s)


def _fn(name: str):  # type: ignore[no-untyped-def]
    return next(f for f in AGGREGATES.values() if f.name == name)


ROWS = [(_at(0.5), GOOD, 10.0), (_at(1.5), GOOD, 20.0), (_at(2.5), GOOD, 60.0), (_at(10.5), UNCERTAIN, 5.0),
        (_at(11.0), GOOD, 7.0)]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "first", "third"),
    [("Average", 30.0, 7.0), ("Minimum", 10.0, 7.0), ("Maximum", 60.0, 7.0), ("Count", 3, 1), ("Start", 10.0, 7.0),
     ("End", 60.0, 7.0)],
)  # fmt: skip
def test_each_interval_aggregates_its_good_values(name: str, first: float, third: float) -> None:
    spans = intervals(_at(0), _at(12), 4.0)  # [0, 4), [4, 8), [8, 12)
    out = process(ROWS, spans, _fn(name))
    assert [d.SourceTimestamp for d in out] == [_at(0), _at(4), _at(8)]
    assert out[0].Value.Value == pytest.approx(first) and out[0].StatusCode.value == GOOD | 0x401
    assert out[1].StatusCode.value == ua.StatusCodes.BadNoData and out[1].Value.Value is None
    # the uncertain value is left out and makes the interval's status uncertain
    assert out[2].Value.Value == pytest.approx(third)
    assert out[2].StatusCode.value == ua.StatusCodes.UncertainDataSubNormal | 0x401


def test_interval_zero_is_the_whole_range_and_too_many_intervals_are_refused() -> None:
    assert intervals(_at(0), _at(12), 0) == [(_at(0), _at(12))]
    assert process(ROWS, intervals(_at(0), _at(12), 0), _fn("Average"))[0].Value.Value == pytest.approx(97 / 4)
    assert intervals(_at(0), _at(10), 4.0)[-1] == (_at(8), _at(10))  # the last one is short
    with pytest.raises(ValueError, match="at most"):
        intervals(_at(0), _at(86400 * 30), 1.0)


@pytest.mark.e2e
async def test_processed_reads_over_opcua(tmp_path: Path) -> None:
    config, ports = bridge_config(tmp_path)
    config = with_opcua(config, allow_none_security=True, allow_anonymous=True, historized=["ActivePower", "Frequency"])
    steady = ROOT / "tests/scenarios/steady.yaml"  # a 2000 W heater on circuit 1, nothing else happens
    sim = SimulatorProcess(["--connect", f"127.0.0.1:{ports['device']}", "--scenario", str(steady), "--speed", "2"])
    async with running_bridge(config, tmp_path) as app, sim:
        dev = app.model.devices["board1"]
        await wait_for(lambda: dev.snapshot is not None and dev.snapshot.number > 30, 30, "windows")
        await asyncio.sleep(0.5)
        async with Client(config.opcua.endpoint, timeout=10) as c:
            idx = await c.get_namespace_index(NS)
            path = [f"{idx}:OpenStrom", f"{idx}:board1", f"{idx}:Circuits", f"{idx}:Circuit01"]
            power = await c.nodes.objects.get_child([*path, f"{idx}:ActivePower"])
            voltage = await c.nodes.objects.get_child([*path, f"{idx}:Voltage"])
            start = dt.datetime(2026, 9, 1, tzinfo=dt.UTC)  # before the simulator's clock start
            end = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
            details = ua.ReadProcessedDetails(
                StartTime=start,
                EndTime=end,
                ProcessingInterval=0,
                AggregateType=[ua.NodeId(ua.ObjectIds.AggregateFunction_Average)] * 2,
            )
            params = ua.HistoryReadParameters(
                HistoryReadDetails=details,
                TimestampsToReturn=ua.TimestampsToReturn.Source,
                NodesToRead=[ua.HistoryReadValueId(NodeId=n.nodeid) for n in (power, voltage)],
            )
            res = await c.uaclient.history_read(params)
            avg = res[0].HistoryData.DataValues
            assert len(avg) == 1 and avg[0].StatusCode.is_good()
            assert avg[0].Value.Value == pytest.approx(2000.0, rel=5e-4)  # the heater, analytic
            # Voltage is not in opcua.historized this time
            assert res[1].StatusCode.value == ua.StatusCodes.BadHistoryOperationUnsupported
            details.AggregateType = [ua.NodeId(ua.ObjectIds.AggregateFunction_TimeAverage2)]
            params.NodesToRead = params.NodesToRead[:1]
            res = await c.uaclient.history_read(params)
            assert res[0].StatusCode.value == ua.StatusCodes.BadAggregateNotSupported
            for agg, rel in (
                (ua.ObjectIds.AggregateFunction_Minimum, 5e-4),
                (ua.ObjectIds.AggregateFunction_Maximum, 5e-4),
            ):
                details.AggregateType = [ua.NodeId(agg)]
                res = await c.uaclient.history_read(params)
                assert res[0].HistoryData.DataValues[0].Value.Value == pytest.approx(2000.0, rel=rel)
            # Count against the raw rows of one closed interval (rows keep arriving, once a second)
            last = (await power.read_raw_history(start, end))[-1].SourceTimestamp
            details.AggregateType = [ua.NodeId(ua.ObjectIds.AggregateFunction_Count)]
            details.EndTime = last + dt.timedelta(milliseconds=1)
            res = await c.uaclient.history_read(params)
            raw = await power.read_raw_history(start, last)
            assert res[0].HistoryData.DataValues[0].Value.Value == len(raw) >= 3


NS = "urn:openstrom:bridge"


ECM = "http://opcfoundation.org/UA/ECM/"


@pytest.mark.e2e
async def test_circuits_are_opc_34100_energy_measurements(tmp_path: Path) -> None:
    """A client browses the ECM namespace: every circuit is an EnergyMeasurementType with the E2
    profile interface and its values as EnergyMeasurementValueType with the standard MeasurementIDs."""
    config, ports = bridge_config(tmp_path)
    config = with_opcua(config, allow_none_security=True, allow_anonymous=True)
    steady = ROOT / "tests/scenarios/steady.yaml"
    sim = SimulatorProcess(["--connect", f"127.0.0.1:{ports['device']}", "--scenario", str(steady), "--speed", "2"])
    async with running_bridge(config, tmp_path) as app, sim:
        dev = app.model.devices["board1"]
        await wait_for(lambda: dev.snapshot is not None and dev.snapshot.number > 5, 30, "windows")
        await asyncio.sleep(0.5)
        async with Client(config.opcua.endpoint, timeout=10) as c:
            idx, ecm = await c.get_namespace_index(NS), await c.get_namespace_index(ECM)
            ia = await c.get_namespace_index("http://opcfoundation.org/UA/IA/")
            circuits = await c.nodes.objects.get_child([f"{idx}:OpenStrom", f"{idx}:board1", f"{idx}:Circuits"])
            energy = [
                await (await cn.get_child([f"{idx}:Energy"])).read_type_definition()
                for cn in await circuits.get_children()
            ]
            assert energy == [ua.NodeId(1006, ecm)] * 10  # EnergyMeasurementType on every circuit
            e1 = await circuits.get_child([f"{idx}:Circuit01", f"{idx}:Energy"])
            interfaces = await e1.get_referenced_nodes(ua.ObjectIds.HasInterface)
            assert [n.nodeid for n in interfaces] == [ua.NodeId(1009, ecm)]  # IEnergyProfileE2Type
            power = await e1.get_child([f"{ecm}:AcActivePowerTotal"])
            assert await power.read_type_definition() == ua.NodeId(2002, ecm)
            dv = await power.read_data_value()
            assert dv.Value.VariantType == ua.VariantType.Float and dv.Value.Value == pytest.approx(2000.0, rel=5e-4)
            assert await (await power.get_child([f"{ecm}:MeasurementID"])).read_value() == 1412
            eu = await (await power.get_child(["0:EngineeringUnits"])).read_value()
            assert eu.UnitId == 0x575454 and eu.DisplayName.Text == "W"
            assert await (await power.get_child([f"{ecm}:AccuracyDomain"])).read_value() == ua.NodeId(5027, ecm)
            assert await (await power.get_child([f"{ecm}:AccuracyClass"])).read_value() == 5
            ids = {}
            for n in await e1.get_children():
                if n.nodeid.Identifier.endswith("ApplicationTag"):
                    continue
                ids[(await n.read_browse_name()).Name] = await (
                    await n.get_child([f"{ecm}:MeasurementID"])
                ).read_value()
            assert (
                ids["AcVoltageL1N"] == 1100
                and ids["AcCurrentL1"] == 1200
                and ids["AcActiveEnergyTotalImportHp"] == 1002
            )
            # the counters hang on HasStatisticComponent, as the profiles define them
            stats = await e1.get_referenced_nodes(ua.NodeId(4002, ia))
            assert {(await n.read_browse_name()).Name for n in stats} >= {
                "AcActiveEnergyTotalImportLp",
                "AcActiveEnergyTotalExportLp",
            }
            voltage = await (await e1.get_child([f"{ecm}:AcVoltageL1N"])).read_value()
            assert voltage == pytest.approx(230.0, rel=5e-4)
            domain = await c.nodes.server.get_child(
                ["0:ServerCapabilities", f"{ecm}:AccuracyDomains", f"{ecm}:ACCURACY_DOMAIN_IEC"]
            )
            classes = await (await domain.get_child(["0:EnumValues"])).read_value()
            assert classes[5].DisplayName.Text == "ACCURACY_CLASS_5" and classes[5].Description.Text == "0,5"
