"""The Sparkplug B edge node against a real broker process (Mosquitto) and a host application that
subscribes with aiomqtt: births with the catalogue's metrics, DDATA by exception with aliases, a relay
DCMD through the command path, Rebirth on NCMD, DDEATH when a board goes offline, NDEATH at a stop."""

from __future__ import annotations

import asyncio
import contextlib
import time
import types
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from bridge.app import BridgeApp
from bridge.fronts.mqtt.sparkplug_b_pb2 import Payload
from device.simulator.process import SimulatorProcess
from tests.harness import PLANT, bridge_config, free_port, running_bridge, wait_for
from tests.mqtt_host import Host, listening, metric, mosquitto

pytestmark = pytest.mark.e2e


async def test_edge_node_births_data_commands_rebirth_and_deaths(tmp_path: Path) -> None:
    async with mosquitto(tmp_path) as port:
        config, ports = bridge_config(
            tmp_path,
            mqtt={
                "enabled": True,
                "url": f"mqtt://127.0.0.1:{port}",
                "edge_node_id": "bridge1",
                "command_role": "operator",
            },
        )
        host = Host()
        async with listening(host, port) as hc:
            sim = SimulatorProcess(["--connect", f"127.0.0.1:{ports['device']}", "--scenario", str(PLANT)])
            async with running_bridge(config, tmp_path) as app, sim:
                dev = app.model.devices["board1"]
                await wait_for(lambda: host.of("NBIRTH"), 20, "NBIRTH")
                nbirth = host.of("NBIRTH")[0]
                assert nbirth.seq == 0 and metric(nbirth, "bdSeq").long_value >= 0
                assert metric(nbirth, "Node Control/Rebirth").boolean_value is False
                await wait_for(lambda: host.of("DBIRTH", "board1"), 20, "DBIRTH")
                await wait_for(lambda: len(host.of("DDATA", "board1")) >= 3, 20, "DDATA")
                births = host.of("DBIRTH", "board1")
                volts = metric(births[-1], "Circuit01/v_rms")
                assert volts.datatype == 10 and volts.alias > 0  # Double, aliased
                assert volts.properties.keys[0] == "engUnit" and volts.properties.values[0].string_value == "V"
                # DDATA by alias only, and the live value analytic
                by_alias = {m.alias: m for p in host.of("DDATA", "board1") for m in p.metrics}
                assert all(not m.name for m in by_alias.values())
                assert by_alias[volts.alias].double_value == pytest.approx(230.0, rel=5e-4)
                seqs = [p.seq for t, p in host.got if "NDEATH" not in t]
                assert seqs == [k % 256 for k in range(len(seqs))]  # one sequence over the node's messages
                # a relay DCMD from the host goes through the command path
                relay = metric(births[-1], "Circuit02/relay")
                cmd = Payload(timestamp=int(time.time() * 1000))
                cmd.metrics.add(name="Circuit02/relay", datatype=11, boolean_value=False)
                await hc.publish("spBv1.0/OpenStrom/DCMD/bridge1/board1", cmd.SerializeToString(), qos=1)
                await wait_for(lambda: dev.circuits[1].relay_on is False, 10, "relay 2 off")
                await wait_for(
                    lambda: any(
                        m.alias == relay.alias and m.boolean_value is False
                        for p in host.of("DDATA", "board1")
                        for m in p.metrics
                    ),
                    10,
                    "the relay's DDATA",
                )
                # Rebirth on NCMD: a new NBIRTH (seq 0) and DBIRTH
                reb = Payload()
                reb.metrics.add(name="Node Control/Rebirth", datatype=11, boolean_value=True)
                await hc.publish("spBv1.0/OpenStrom/NCMD/bridge1", reb.SerializeToString(), qos=1)
                await wait_for(lambda: len(host.of("NBIRTH")) >= 2, 10, "the rebirth")
                await wait_for(lambda: len(host.of("DBIRTH", "board1")) >= 2, 10, "the device's rebirth")
                # the board goes offline: DDEATH
                await sim.stop()
                await wait_for(lambda: host.of("DDEATH", "board1"), 15, "DDEATH")
            # the bridge stopped: NDEATH with the session's bdSeq
            await wait_for(lambda: host.of("NDEATH"), 10, "NDEATH")
            assert metric(host.of("NDEATH")[-1], "bdSeq").long_value == metric(nbirth, "bdSeq").long_value


async def test_store_and_forward_through_a_broker_outage_and_the_primary_host_state(tmp_path: Path) -> None:
    """With a primary host configured the node is born only while the host's STATE says online; the
    changes noted while the broker was down, kept across a bridge restart, come after the rebirth as
    is_historical DDATA."""
    port = free_port()
    config, ports = bridge_config(
        tmp_path,
        mqtt={
            "enabled": True,
            "url": f"mqtt://127.0.0.1:{port}",
            "edge_node_id": "bridge1",
            "primary_host_id": "scada",
        },
    )
    sim = SimulatorProcess(["--connect", f"127.0.0.1:{ports['device']}", "--scenario", str(PLANT)])
    state_topic = "spBv1.0/STATE/scada"
    host = Host()
    async with sim:
        async with running_bridge(config, tmp_path) as app:
            dev = app.model.devices["board1"]
            await wait_for(lambda: dev.online and dev.snapshot is not None, 20, "online")
            async with mosquitto(tmp_path, port), aiomqtt.Client("127.0.0.1", port, identifier="scada") as hc:
                await hc.subscribe("spBv1.0/OpenStrom/#", qos=1)
                listener = asyncio.ensure_future(host.listen(hc))
                try:
                    await hc.publish(state_topic, b'{"online": false, "timestamp": 1}', qos=1, retain=True)
                    await asyncio.sleep(2.0)
                    assert not host.of("NBIRTH")  # the primary host is offline: no birth
                    await hc.publish(state_topic, b'{"online": true, "timestamp": 2}', qos=1, retain=True)
                    await wait_for(lambda: host.of("DBIRTH", "board1"), 20, "births once the host is online")
                finally:
                    listener.cancel()
            # the broker is gone: the node keeps the changes, and they survive a restart of the bridge
            await wait_for(lambda: len(app.mqtt.backlog) >= 3, 20, "changes kept while the broker is away")
        async with running_bridge(config, tmp_path) as app:
            kept = len(app.mqtt.backlog)
            assert kept >= 3
            dev = app.model.devices["board1"]
            await wait_for(lambda: dev.online, 20, "the device again")
            host2 = Host()
            async with mosquitto(tmp_path, port), aiomqtt.Client("127.0.0.1", port, identifier="scada2") as hc:
                await hc.subscribe("spBv1.0/OpenStrom/#", qos=1)
                listener = asyncio.ensure_future(host2.listen(hc))
                try:
                    await hc.publish(state_topic, b'{"online": true, "timestamp": 3}', qos=1, retain=True)
                    await wait_for(lambda: host2.of("NBIRTH"), 30, "the rebirth after the outage")
                    await wait_for(
                        lambda: sum(m.is_historical for p in host2.of("DDATA", "board1") for m in p.metrics) > 0,
                        10,
                        "historical DDATA",
                    )
                    historical = [m for p in host2.of("DDATA", "board1") for m in p.metrics if m.is_historical]
                    assert all(m.timestamp > 0 and m.alias > 0 for m in historical)
                    await wait_for(lambda: len(app.mqtt.backlog) == 0, 10, "the store emptied")
                    nb = host2.of("NBIRTH")[-1]
                    assert metric(nb, "bdSeq").long_value != metric(host.of("NBIRTH")[0], "bdSeq").long_value
                finally:
                    listener.cancel()


async def test_a_stop_ends_even_when_the_clients_disconnect_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """aiomqtt raises MqttError out of its exit when its DISCONNECT is not confirmed in time (or the
    broker answers it with an error), in place of the cancellation that brought it there. The front's
    reconnect loop catches MqttError: a stop must still end the bridge, after the DDEATHs and NDEATH."""
    import bridge.fronts.mqtt.client as front

    waits: list[float | None] = []

    class ExitFails(aiomqtt.Client):
        async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
            waits.append(self.timeout)
            await super().__aexit__(exc_type, exc, tb)
            if exc_type is asyncio.CancelledError:
                raise aiomqtt.MqttError("Operation timed out")

    monkeypatch.setattr(front, "aiomqtt", types.SimpleNamespace(**{**vars(aiomqtt), "Client": ExitFails}))
    async with mosquitto(tmp_path) as port:
        mqtt = {"enabled": True, "url": f"mqtt://127.0.0.1:{port}", "edge_node_id": "bridge1"}
        config, ports = bridge_config(tmp_path, mqtt=mqtt)
        host = Host()
        async with listening(host, port):
            sim = SimulatorProcess(["--connect", f"127.0.0.1:{ports['device']}", "--scenario", str(PLANT)])
            async with sim:
                app = BridgeApp(config, base_dir=tmp_path)
                task = asyncio.create_task(app.run())
                await wait_for(lambda: host.of("DBIRTH", "board1"), 30, "DBIRTH")
                task.cancel()
                done, _ = await asyncio.wait({task}, timeout=10)
                assert task in done, "the bridge kept running after its stop"
                assert task.cancelled()
                assert waits == [front.DEATH_TIMEOUT_S]  # the DISCONNECT's wait is bounded at a stop
            await wait_for(lambda: host.of("DDEATH", "board1") and host.of("NDEATH"), 5, "DDEATH and NDEATH")


class _SlowClient:
    """A broker client whose publishes take a loop turn (as a real one's do), with a hook into them."""

    def __init__(self, during: Any) -> None:
        self.topics: list[str] = []
        self.during = during

    async def subscribe(self, *args: Any, **kwargs: Any) -> None:
        pass

    async def publish(self, topic: str, payload: bytes, qos: int = 0) -> None:
        self.topics.append(topic)
        self.during(topic)
        await asyncio.sleep(0)

    @property
    def messages(self) -> Any:
        async def silence() -> Any:
            await asyncio.Event().wait()
            yield

        return silence()


def _front_with_a_board(tmp_path: Path) -> tuple[Any, Any, Any]:
    """A Sparkplug B front (no broker) and its model with one board, identified and connected."""
    from bridge.config import Config
    from bridge.fronts.mqtt.client import SparkplugFront
    from bridge.model import Model
    from device.simulator.device import Identity, SimulatedDevice
    from device.simulator.scenario import load_scenario

    config = Config.model_validate(
        {
            "mqtt": {"enabled": True, "url": "mqtt://127.0.0.1:1"},
            "devices": [{"name": "board1", "serial_number": "OS-SIM-0001", "unit_id": 1}],
        }
    )
    model = Model(config)
    dev = model.devices["board1"]
    sim = SimulatedDevice(load_scenario(PLANT), identity=Identity.for_serial("OS-SIM-0001"), seed=1)
    model.links.identify(dev, sim.hello())
    model.links.connect(dev, "127.0.0.1:1", "tcp-in")
    front = SparkplugFront(config, model, None, tmp_path)
    model.subscribe(front._on_change)
    return front, model, dev


async def test_a_board_that_goes_offline_while_its_birth_is_sent_still_gets_its_ddeath(tmp_path: Path) -> None:
    """A change that comes while the node is sending the changes before it wakes the node again,
    though nothing changes after it: the board's DDEATH is not lost."""
    front, model, dev = _front_with_a_board(tmp_path)

    def during(topic: str) -> None:
        if "DBIRTH" in topic:  # the link drops while the board's birth is on its way
            model.links.disconnect(dev, "link closed")

    client = _SlowClient(during)
    session = asyncio.ensure_future(front._session(client))  # type: ignore[arg-type]
    try:
        await wait_for(lambda: any("NBIRTH" in t for t in client.topics), 2, "NBIRTH")
        model.links.count(dev, blocks=1)  # data counted: the board is online, and is born
        await wait_for(lambda: any("DDEATH" in t for t in client.topics), 2, "DDEATH")
    finally:
        session.cancel()
        await asyncio.gather(session, return_exceptions=True)
    assert [t.split("/")[2] for t in client.topics] == ["NBIRTH", "DBIRTH", "DDEATH"]


class _SwallowingClient(_SlowClient):
    """Publishes as aiomqtt's do on Python 3.11 at worst: a cancellation that comes with the
    publish's confirmation is swallowed (``asyncio.wait_for``), and the publish returns."""

    async def publish(self, topic: str, payload: bytes, qos: int = 0) -> None:
        self.topics.append(topic)
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(0.5 if "DDEATH" in topic else 0)


async def test_a_stop_is_not_lost_in_a_publish(tmp_path: Path) -> None:
    """The front stops when told, even if a publish swallowed the cancellation (a bridge that
    waited for the next change there never stopped)."""
    front, model, dev = _front_with_a_board(tmp_path)
    model.links.count(dev, blocks=1)
    client = _SwallowingClient(lambda topic: None)
    session = asyncio.ensure_future(front._session(client))  # type: ignore[arg-type]
    await wait_for(lambda: any("DBIRTH" in t for t in client.topics), 2, "DBIRTH")
    model.links.disconnect(dev, "link closed")  # a change: its DDEATH is being published ...
    await wait_for(lambda: any("DDEATH" in t for t in client.topics), 2, "DDEATH")
    session.cancel()  # ... when the stop comes
    done, _ = await asyncio.wait([session], timeout=2)
    assert done, "the front went on waiting after its stop"
    with pytest.raises(asyncio.CancelledError):
        session.result()
