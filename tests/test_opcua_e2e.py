"""Simulator process -> bridge -> asyncua client over a secure endpoint with users and roles."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from asyncua import Client, ua
from asyncua.common.events import get_filter_from_event_type
from asyncua.crypto.cert_gen import setup_self_signed_certificate
from asyncua.crypto.security_policies import SecurityPolicyAes128Sha256RsaOaep, SecurityPolicyBasic256Sha256
from cryptography.x509.oid import ExtendedKeyUsageOID

from bridge.config import Config
from bridge.fronts.opcua.passwords import hash_password
from device.simulator.process import SimulatorProcess
from tests.harness import PLANT, bridge_config, running_bridge, wait_for, with_opcua

pytestmark = pytest.mark.e2e
NS = "urn:openstrom:bridge"


async def _client_cert(tmp: Path, name: str) -> tuple[Path, Path]:
    key, cert = tmp / f"{name}_key.pem", tmp / f"{name}_cert.der"
    await setup_self_signed_certificate(
        key, cert, f"urn:test:{name}", "localhost", [ExtendedKeyUsageOID.CLIENT_AUTH], {"commonName": name}
    )
    return cert, key


async def trusted_client(tmp: Path, name: str) -> tuple[Path, Path]:
    """A client certificate the bridge's OPC UA trust list holds (certificate, key)."""
    cert, key = await _client_cert(tmp, name)
    trusted = tmp / "state" / "pki" / "trusted"
    trusted.mkdir(parents=True, exist_ok=True)
    (trusted / f"{name}.der").write_bytes(cert.read_bytes())
    return cert, key


def _config(tmp: Path) -> tuple[Config, dict[str, int]]:
    config, ports = bridge_config(tmp)
    users = [
        {"name": "op", "password_hash": hash_password("op-secret"), "role": "operator"},
        {"name": "viewer", "password_hash": hash_password("view-secret"), "role": "viewer"},
    ]
    return with_opcua(config, users=users), ports


async def _connect(
    config: Config, cert: Path, key: Path, user: str, password: str, policy: Any = SecurityPolicyBasic256Sha256
) -> Client:
    c = Client(config.opcua.endpoint, timeout=10)
    c.application_uri = f"urn:test:{cert.stem.split('_')[0]}"
    await c.set_security(policy, str(cert), str(key), mode=ua.MessageSecurityMode.SignAndEncrypt)
    c.set_user(user)
    c.set_password(password)
    await c.connect()
    return c


async def _circuit(c: Client, n: int) -> Any:
    idx = await c.get_namespace_index(NS)
    return await c.nodes.objects.get_child(
        [f"{idx}:OpenStrom", f"{idx}:board1", f"{idx}:Circuits", f"{idx}:Circuit{n:02d}"]
    )


class Collector:
    def __init__(self) -> None:
        self.values: list[Any] = []
        self.events: list[Any] = []

    def datachange_notification(self, node: Any, val: Any, data: Any) -> None:
        self.values.append(val)

    def event_notification(self, event: Any) -> None:
        self.events.append(event)


async def test_secure_browse_read_subscribe_switch_alarm_history(tmp_path: Path) -> None:
    config, ports = _config(tmp_path)
    cert, key = await trusted_client(tmp_path, "scada")
    sim = SimulatorProcess(["--connect", f"127.0.0.1:{ports['device']}", "--scenario", str(PLANT), "--speed", "2"])
    async with running_bridge(config, tmp_path) as app, sim:
        dev = app.model.devices["board1"]
        await wait_for(lambda: dev.snapshot is not None and dev.snapshot.number > 3, 20, "windows")
        op = await _connect(config, cert, key, "op", "op-secret")
        try:
            c1 = await _circuit(op, 1)
            idx = await op.get_namespace_index(NS)
            # typed model: circuit object of OpenStromCircuitType, AnalogItemType with units and range
            tdef = await c1.read_type_definition()
            assert (await op.get_node(tdef).read_browse_name()).Name == "OpenStromCircuitType"
            power = await c1.get_child([f"{idx}:ActivePower"])
            assert (await power.read_type_definition()) == ua.NodeId(ua.ObjectIds.AnalogItemType)
            eu = await (await power.get_child(["0:EngineeringUnits"])).read_value()
            assert eu.DisplayName.Text == "W" and eu.UnitId == 0x575454  # UNECE "WTT"
            dv = await power.read_data_value()
            assert dv.StatusCode.is_good()
            assert dv.Value.Value == pytest.approx(2000.0, rel=5e-4)
            assert dv.SourceTimestamp is not None
            c2 = await _circuit(op, 2)
            pf = await (await c2.get_child([f"{idx}:PowerFactor"])).read_value()
            q = await (await c2.get_child([f"{idx}:ReactivePower"])).read_value()
            assert pf == pytest.approx(0.8, abs=1e-3) and q == pytest.approx(825.0, abs=1.5)
            serial = await op.nodes.objects.get_child([f"{idx}:OpenStrom", f"{idx}:board1", f"{idx}:SerialNumber"])
            assert await serial.read_value() == "OS-SIM-0001"

            # subscription: values keep coming; alarm events for the scenario's dip at t = 6 s
            handler = Collector()
            sub = await op.create_subscription(100, handler)
            await sub.subscribe_data_change(power)
            await sub.subscribe_events(c1, ua.ObjectIds.AlarmConditionType)
            # a client that subscribes late asks for the retained conditions (the dip may be over already)
            await op.nodes.server.call_method(
                ua.NodeId(ua.ObjectIds.ConditionType_ConditionRefresh),
                ua.Variant(sub.subscription_id, ua.VariantType.UInt32),
            )
            await wait_for(lambda: len(handler.values) >= 3, 15, "data changes")
            await wait_for(lambda: any("dip" in str(e.Message.Text) for e in handler.events), 20, "dip alarm")
            dip = next(e for e in handler.events if "dip active" in str(e.Message.Text))
            assert dip.Severity == 600 and dip.Retain is True
            fields = vars(dip)
            assert fields["ActiveState/Id"] is True and fields["AckedState/Id"] is False
            # acknowledge it the standard way: Acknowledge(EventId, Comment) on the ConditionId
            condition = op.get_node(fields["NodeId"])
            await condition.call_method(
                ua.NodeId(ua.ObjectIds.AcknowledgeableConditionType_Acknowledge),
                ua.Variant(dip.EventId, ua.VariantType.ByteString),
                ua.Variant(ua.LocalizedText("seen"), ua.VariantType.LocalizedText),
            )
            await wait_for(lambda: any(vars(e).get("AckedState/Id") is True for e in handler.events), 10, "acked")
            await op.nodes.server.call_method(
                ua.NodeId(ua.ObjectIds.ConditionType_ConditionRefresh),
                ua.Variant(sub.subscription_id, ua.VariantType.UInt32),
            )

            # relay by method (operator) and by writing Relay; the load follows
            relay = await c1.get_child([f"{idx}:Relay"])
            await c1.call_method(f"{idx}:SwitchOff")
            assert await relay.read_value() is False
            assert dev.circuits[0].relay_on is False
            await relay.write_value(ua.DataValue(ua.Variant(True, ua.VariantType.Boolean)))
            assert await relay.read_value() is True
            # bad method arguments are refused with the standard codes and never execute
            for args, code in (
                ((ua.Variant("x", ua.VariantType.String), ua.Variant(5, ua.VariantType.Int32)), "BadTooManyArguments"),
            ):
                with pytest.raises(ua.UaStatusCodeError) as bad:
                    await c1.call_method(f"{idx}:SwitchOff", *args)
                assert bad.value.code == getattr(ua.StatusCodes, code)
            for args, code in (
                ((), "BadArgumentsMissing"),
                ((ua.Variant("yes", ua.VariantType.String),), "BadTypeMismatch"),
            ):
                with pytest.raises(ua.UaStatusCodeError) as bad:
                    await c1.call_method(f"{idx}:Select", *args)
                assert bad.value.code == getattr(ua.StatusCodes, code)
            assert dev.circuits[0].relay_on is True and dev.circuits[0].selected is None

            # aggregates: the first complete 3 s interval that starts after the relay was back on (the
            # earlier ones hold the off time and the dip, so they are rightly below 2000 W)
            assert dev.snapshot is not None
            # the latest window ended before the switch; blocks arrive well within a second of their time
            relay_on_s = dev.snapshot.time_s + dev.snapshot.duration_s + 1.0
            await wait_for(
                lambda: "3s" in dev.aggregates and dev.aggregates["3s"].t_start_s > relay_on_s, 30, "3 s aggregate"
            )
            await asyncio.sleep(0.3)
            p3 = await (await c1.get_child([f"{idx}:ActivePower3s"])).read_value()
            assert p3 == pytest.approx(2000.0, rel=5e-4)

            # history of the historized power values
            await asyncio.sleep(1.0)
            end = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=5)
            hist = await power.read_raw_history(end - dt.timedelta(minutes=5), end)
            assert len(hist) >= 3
            # rows as the bridge wrote them: one per device update, the window's time, Good, the value
            assert all(h.StatusCode.is_good() and h.Value.VariantType == ua.VariantType.Double for h in hist)
            times = [h.SourceTimestamp for h in hist]
            assert times == sorted(times) and len(set(times)) == len(times)
            assert any(h.Value.Value == pytest.approx(2000.0, rel=5e-4) for h in hist)
        finally:
            await op.disconnect()

        # a viewer may read but not switch
        viewer = await _connect(config, cert, key, "viewer", "view-secret", SecurityPolicyAes128Sha256RsaOaep)
        try:
            c1 = await _circuit(viewer, 1)
            idx = await viewer.get_namespace_index(NS)
            relay = await c1.get_child([f"{idx}:Relay"])
            with pytest.raises(ua.UaStatusCodeError) as denied:
                await relay.write_value(ua.DataValue(ua.Variant(False, ua.VariantType.Boolean)))
            assert denied.value.code == ua.StatusCodes.BadUserAccessDenied
            with pytest.raises(ua.UaStatusCodeError) as denied2:
                await c1.call_method(f"{idx}:SwitchOff")
            assert denied2.value.code == ua.StatusCodes.BadUserAccessDenied
            assert dev.circuits[0].relay_on is True
        finally:
            await viewer.disconnect()

        # the device goes away: values keep their last value but turn Uncertain_LastUsableValue
        await sim.stop()
        await wait_for(lambda: not dev.online, 10, "offline")
        await asyncio.sleep(0.3)
        op = await _connect(config, cert, key, "op", "op-secret")
        try:
            c1 = await _circuit(op, 1)
            idx = await op.get_namespace_index(NS)
            dv = await (await c1.get_child([f"{idx}:ActivePower"])).read_data_value(raise_on_bad_status=False)
            assert dv.StatusCode.value == ua.StatusCodes.UncertainLastUsableValue
            assert dv.Value.Value == pytest.approx(2000.0, rel=5e-4)
            connected = await op.nodes.objects.get_child([f"{idx}:OpenStrom", f"{idx}:board1", f"{idx}:Connected"])
            assert await connected.read_value() is False
        finally:
            await op.disconnect()

        # wrong password and anonymous are refused
        with pytest.raises((ua.UaError, OSError, TimeoutError)):
            bad = await _connect(config, cert, key, "op", "wrong")
            await bad.disconnect()


async def test_untrusted_client_certificate_lands_in_rejected(tmp_path: Path) -> None:
    config, _ = _config(tmp_path)
    cert, key = await _client_cert(tmp_path, "stranger")
    async with running_bridge(config, tmp_path):
        with pytest.raises((ua.UaError, OSError, TimeoutError)):
            c = await _connect(config, cert, key, "op", "op-secret")
            await c.disconnect()
    rejected = list((tmp_path / "state" / "pki" / "rejected").glob("*.der"))
    assert len(rejected) == 1 and rejected[0].read_bytes() == cert.read_bytes()


async def test_auto_accepted_device_appears_in_the_address_space(tmp_path: Path) -> None:
    config, ports = _config(tmp_path)
    doc = config.model_dump()
    doc["bridge"]["auto_accept"] = True
    doc["opcua"]["allow_anonymous"] = True
    doc["opcua"]["allow_none_security"] = True
    config = Config.model_validate(doc)
    sim = SimulatorProcess(
        [
            "--connect",
            f"127.0.0.1:{ports['device']}",
            "--serial-number",
            "OS-NEW-0042",
            "--scenario",
            str(PLANT),
            "--speed",
            "2",
        ]
    )
    async with running_bridge(config, tmp_path) as app, sim:
        await wait_for(lambda: "dev_OS_NEW_0042" in app.model.devices, 20, "auto-accepted")
        dev = app.model.devices["dev_OS_NEW_0042"]
        await wait_for(lambda: dev.snapshot is not None and dev.snapshot.number > 3, 20, "windows")
        async with Client(config.opcua.endpoint, timeout=10) as c:
            idx = await c.get_namespace_index(NS)
            path = [f"{idx}:OpenStrom", f"{idx}:dev_OS_NEW_0042", f"{idx}:Circuits", f"{idx}:Circuit01"]
            # its nodes are built while the bridge serves (a circuit at a time), then its values follow
            async with asyncio.timeout(20):
                while True:
                    try:
                        power = await c.nodes.objects.get_child([*path, f"{idx}:ActivePower"])
                        if await power.read_value() == pytest.approx(2000.0, rel=5e-4):
                            break
                    except ua.UaStatusCodeError:
                        pass  # not built yet
                    await asyncio.sleep(0.2)
            # a device accepted at run time is historized like a configured one
            await wait_for(lambda: dev.snapshot is not None and dev.snapshot.number > 15, 20, "more windows")
            await asyncio.sleep(0.5)
            end = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=5)
            hist = await power.read_raw_history(end - dt.timedelta(minutes=5), end)
            assert len(hist) >= 2 and any(h.Value.Value == pytest.approx(2000.0, rel=5e-4) for h in hist)
        assert dev.config.unit_id == 2  # the next free unit after board1


def _of_type(evfilter: Any, type_id: int) -> Any:
    """The where clause other stacks send: OfType(type), which includes the type's subtypes."""
    el = ua.ContentFilterElement()
    el.FilterOperator = ua.FilterOperator.OfType
    el.FilterOperands = [ua.LiteralOperand(Value=ua.Variant(ua.NodeId(type_id)))]
    evfilter.WhereClause = ua.ContentFilter(Elements=[el])
    return evfilter


async def test_conditions_are_part9_instances_clients_browse_acknowledge_and_refresh(tmp_path: Path) -> None:
    config, ports = _config(tmp_path)
    cert, key = await trusted_client(tmp_path, "scada")
    sim = SimulatorProcess(["--connect", f"127.0.0.1:{ports['device']}", "--scenario", str(PLANT), "--speed", "2"])
    async with running_bridge(config, tmp_path) as app, sim:
        dev = app.model.devices["board1"]
        await wait_for(lambda: dev.circuits[0].dips >= 1, 30, "the scenario's dip")
        op = await _connect(config, cert, key, "op", "op-secret")
        try:
            idx = await op.get_namespace_index(NS)
            c1 = await _circuit(op, 1)
            # the circuit is the condition source: HasCondition to one instance per alarm, of the fitting type
            conds = {
                (await n.read_browse_name()).Name: n
                for n in await c1.get_referenced_nodes(ua.ObjectIds.HasCondition, ua.BrowseDirection.Forward)
            }
            assert set(conds) == {"dip", "swell", "interruption", "overcurrent", "relay_mismatch", "relay_wear"}
            dip = conds["dip"]
            assert await dip.read_type_definition() == ua.NodeId(ua.ObjectIds.ExclusiveLimitAlarmType)
            assert await conds["relay_wear"].read_type_definition() == ua.NodeId(ua.ObjectIds.OffNormalAlarmType)

            async def read(path: str) -> Any:
                return await (await dip.get_child([f"0:{p}" for p in path.split("/")])).read_value()

            assert await read("LowLimit") == pytest.approx(0.9 * 230)
            assert await read("InputNode") == ua.NodeId("board1.Circuit01.Voltage", idx)
            assert await read("ConditionClassId") == ua.NodeId(ua.ObjectIds.ProcessConditionClassType)
            # the 70 % sag came and went: inactive, not acknowledged, so still retained
            assert await read("ActiveState/Id") is False and await read("AckedState/Id") is False
            assert await read("Retain") is True and await read("EnabledState/Id") is True
            # a client that filters with OfType(AlarmConditionType), as other stacks do, and refreshes
            handler = Collector()
            sub = await op.create_subscription(100, handler)
            evfilter = await get_filter_from_event_type([op.get_node(ua.ObjectIds.BaseEventType), dip])
            await sub.subscribe_events(
                op.nodes.server, evfilter=_of_type(evfilter, ua.ObjectIds.BaseEventType), where_clause_generation=False
            )
            handler2 = Collector()
            sub2 = await op.create_subscription(100, handler2)
            afilter = await get_filter_from_event_type([op.get_node(ua.ObjectIds.ExclusiveLimitAlarmType)])
            await sub2.subscribe_events(
                c1, evfilter=_of_type(afilter, ua.ObjectIds.AlarmConditionType), where_clause_generation=False
            )
            await op.nodes.server.call_method(
                ua.NodeId(ua.ObjectIds.ConditionType_ConditionRefresh),
                ua.Variant(sub2.subscription_id, ua.VariantType.UInt32),
            )
            await wait_for(lambda: any(e.ConditionName == "dip" for e in handler2.events), 10, "the refreshed dip")
            refreshed = next(e for e in handler2.events if e.ConditionName == "dip")
            assert refreshed.EventType == ua.NodeId(ua.ObjectIds.ExclusiveLimitAlarmType) and refreshed.Retain
            # the refresh went to the asking subscription only
            assert all(e.EventType != ua.NodeId(ua.ObjectIds.RefreshStartEventType) for e in handler.events)
            # acknowledge the way an alarm view does: the EventId read from the instance
            event_id = await read("EventId")
            await dip.call_method(
                ua.NodeId(ua.ObjectIds.AcknowledgeableConditionType_Acknowledge),
                ua.Variant(event_id, ua.VariantType.ByteString),
                ua.Variant(ua.LocalizedText("seen the sag"), ua.VariantType.LocalizedText),
            )
            assert await read("AckedState/Id") is True and await read("Retain") is False
            assert (await read("Comment")).Text == "seen the sag" and await read("ClientUserId") == "op"
            with pytest.raises(ua.UaStatusCodeError) as again:
                await dip.call_method(
                    ua.NodeId(ua.ObjectIds.AcknowledgeableConditionType_Acknowledge),
                    ua.Variant(event_id, ua.VariantType.ByteString),
                    ua.Variant(ua.LocalizedText("twice"), ua.VariantType.LocalizedText),
                )
            assert again.value.code == ua.StatusCodes.BadConditionBranchAlreadyAcked
            await dip.call_method(
                ua.NodeId(ua.ObjectIds.AcknowledgeableConditionType_Confirm),
                ua.Variant(await read("EventId"), ua.VariantType.ByteString),
                ua.Variant(ua.LocalizedText("fine"), ua.VariantType.LocalizedText),
            )
            assert await read("ConfirmedState/Id") is True
            # Disable and Enable
            await dip.call_method(ua.NodeId(ua.ObjectIds.ConditionType_Disable))
            assert await read("EnabledState/Id") is False
            with pytest.raises(ua.UaStatusCodeError) as off:
                await dip.call_method(ua.NodeId(ua.ObjectIds.ConditionType_Disable))
            assert off.value.code == ua.StatusCodes.BadConditionAlreadyDisabled
            await dip.call_method(ua.NodeId(ua.ObjectIds.ConditionType_Enable))
            assert await read("EnabledState/Id") is True
            # nothing is retained now: a second refresh replays no dip
            handler2.events.clear()
            await op.nodes.server.call_method(
                ua.NodeId(ua.ObjectIds.ConditionType_ConditionRefresh),
                ua.Variant(sub2.subscription_id, ua.VariantType.UInt32),
            )
            await asyncio.sleep(0.5)
            assert not any(e.ConditionName == "dip" and e.Retain for e in handler2.events)
        finally:
            await op.disconnect()
