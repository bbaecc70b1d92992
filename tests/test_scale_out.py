"""Scale-out on one machine: 4 bridge replicas x 10 simulated boards into one Mosquitto broker, each
replica an edge node serving only the boards its shard owns. The host application sees all 40 boards;
a replica stopped gives its DDEATHs and NDEATH, one killed gives its NDEATH (the MQTT will); both come
back with new births, and every board's energy at the end is the analytic energy of its load: the
boards kept their blocks in SRAM through the outage and no replica counted a block twice."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import pytest

from bridge.config import load_config
from bridge.errors import ConfigError
from bridge.shard import ShardPlan
from device.simulator.process import SimulatorProcess
from tests.cluster import Cluster, SparkplugHost, steady_scenario
from tests.harness import wait_for
from tests.mqtt_host import listening, metric, mosquitto

pytestmark = pytest.mark.e2e

POWER_W = 2000.0
DURATION_S = 40.0  # of signal per board (64 blocks of 0.625 s at 1 kHz)
# Energy is counted by whole measurement windows (10 cycles): the signal after a board's last window
# boundary, and before its first zero crossing, waits for signal that never comes. So a board's count
# lies between the energy of DURATION_S - TAIL_S and of DURATION_S. A block is 0.625 s of signal: one
# block counted twice (+0.625 s) or lost (-0.625 s) falls outside that band.
TAIL_S = 0.3


async def test_four_replicas_forty_boards_one_broker_with_a_stop_and_a_kill(tmp_path: Path) -> None:
    async with mosquitto(tmp_path) as port:
        cluster = Cluster(tmp_path, port, shards=4, boards_per_shard=10, batch_s=0.2, publish_s=0.2)
        cluster.write_configs()
        scenario = steady_scenario(tmp_path / "steady.yaml", 1000.0, POWER_W)
        host = SparkplugHost()
        try:
            async with listening(host, port):
                await cluster.start_replicas()
                nodes = [f"bridge-{k}" for k in range(4)]
                await wait_for(lambda: all(host.of("NBIRTH", n) for n in nodes), 20, "four NBIRTHs")
                await cluster.start_boards(scenario, DURATION_S)
                t0 = time.monotonic()
                await wait_for(lambda: len(host.devices_born()) == 40, 30, "40 boards born")
                for k, n in enumerate(nodes):  # each board on its own shard's node, none on two
                    assert host.devices_born(n) == {cluster.name(b) for b in cluster.boards if cluster.shard_of(b) == k}

                # a board dialling another shard's replica is refused by name and counted nowhere else
                stray = SimulatorProcess(
                    ["--connect", f"127.0.0.1:{cluster.replicas[0].ports['device']}", "--serial-number",
                     cluster.serial(11), "--scenario", str(scenario), "--duration", "3"]
                )  # fmt: skip
                async with stray:
                    await wait_for(
                        lambda: "belongs to shard 1" in cluster.replicas[0].log.read_text(), 15, "the refusal"
                    )
                assert cluster.name(11) not in host.devices_born("bridge-0")

                await asyncio.sleep(max(0.0, t0 + 8 - time.monotonic()))
                born1 = metric(host.of("NBIRTH", "bridge-1")[-1], "bdSeq").long_value
                born2 = metric(host.of("NBIRTH", "bridge-2")[-1], "bdSeq").long_value
                await cluster.replicas[1].stop(signal.SIGTERM)
                await cluster.replicas[2].stop(signal.SIGKILL)
                await wait_for(lambda: host.of("NDEATH", "bridge-1") and host.of("NDEATH", "bridge-2"), 10, "NDEATHs")
                assert metric(host.of("NDEATH", "bridge-1")[-1], "bdSeq").long_value == born1
                assert metric(host.of("NDEATH", "bridge-2")[-1], "bdSeq").long_value == born2  # the will
                dead1 = {cluster.name(b) for b in range(11, 21)}
                assert {d for d in dead1 if host.of("DDEATH", "bridge-1", d)} == dead1  # a planned stop says so

                await asyncio.sleep(5)  # the boards keep sampling into SRAM
                births = {n: len(host.of("NBIRTH", n)) for n in ("bridge-1", "bridge-2")}
                for k in (1, 2):
                    await cluster.replicas[k].start()
                await asyncio.gather(cluster.replicas[1].serving(), cluster.replicas[2].serving())
                for k in (1, 2):
                    n = f"bridge-{k}"
                    await wait_for(lambda n=n: len(host.of("NBIRTH", n)) > births[n], 20, f"{n}'s rebirth")
                    assert metric(host.of("NBIRTH", n)[-1], "bdSeq").long_value != (born1, born2)[k - 1]

                def all_done() -> bool:
                    return all(s.proc is not None and s.proc.returncode is not None for s in cluster.sims)

                await wait_for(all_done, DURATION_S + 40, "the boards to finish their signal")
                await asyncio.sleep(2.0)  # the last batch's DDATA
                low, high = POWER_W * (DURATION_S - TAIL_S) / 3600, POWER_W * DURATION_S / 3600 * (1 + 1e-5)
                energy = {b: host.values[cluster.name(b)]["Circuit01/import_wh"].double_value for b in cluster.boards}
                off = {b: round(e, 4) for b, e in energy.items() if not low <= e <= high}
                assert not off, f"energy outside the analytic {low:.4f}..{high:.4f} Wh: {off}"
                for k in (1, 2):  # the restarted replicas' boards were born again on their own node
                    n = f"bridge-{k}"
                    again = host.of("DBIRTH", n)
                    assert len(again) >= 20, f"{n}: {len(again)} DBIRTHs for 10 boards born twice"
        finally:
            await cluster.close()


def test_rendezvous_shards_move_few_boards_and_keys_pin_them(tmp_path: Path) -> None:
    devices = "\n".join(
        f"[[devices]]\nname = 'b{k}'\nserial_number = 'OS-{k:05d}'\nunit_id = {k % 247 + 1}\n" for k in range(1, 201)
    )
    cfg = tmp_path / "bridge.toml"
    cfg.write_text(f"[shard]\ncount = 4\n\n{devices}\n[[devices]]\nname = 'pinned'\nserial_number = 'OS-P'\n"
                   "unit_id = 247\nshard = 3\n")  # fmt: skip
    config = load_config(cfg)
    four = ShardPlan(config, 0).assignment(config.devices)
    assert sum(len(v) for v in four.values()) == 201 and "pinned" in {d.name for d in four[3]}
    assert all(35 <= len(v) <= 65 for v in four.values()), {k: len(v) for k, v in four.items()}
    grown = config.model_copy(update={"shard": config.shard.model_copy(update={"count": 5})})
    owner4, owner5 = ShardPlan(config, 0), ShardPlan(grown, 0)
    assert owner5.owner("OS-P") == 3  # a shard key holds whatever the count
    moved = [d for d in config.devices if owner4.owner(d.serial_number) != owner5.owner(d.serial_number)]
    assert 0 < len(moved) < 200 * 0.35  # about a fifth move to the new replica, not most
    assert all(owner5.owner(d.serial_number) == 4 for d in moved)  # and only to it
    replica = ShardPlan(config, 2).replica(config)
    assert {d.name for d in replica.devices} == {d.name for d in four[2]}
    assert replica.bridge.state_dir.endswith("shard-2") and replica.mqtt.edge_node_id == "bridge-2"
    assert replica.links.pki_dir is not None and replica.links.pki_dir.endswith("link-pki")
    assert "shard-" not in replica.links.pki_dir  # one link CA for every replica


def test_the_ordinal_comes_from_a_statefulset_pod_name_and_is_checked(tmp_path: Path) -> None:
    cfg = tmp_path / "bridge.yaml"
    cfg.write_text("shard: {count: 3, ordinal: hostname}\n")
    config = load_config(cfg)
    assert ShardPlan(config, hostname="openstrom-bridge-2").ordinal == 2
    with pytest.raises(ConfigError, match="does not end in -N"):
        ShardPlan(config, hostname="bridgehost")
    with pytest.raises(ConfigError, match=r"outside 0\.\.2"):
        ShardPlan(config, hostname="openstrom-bridge-3")
    cfg.write_text("shard: {count: 2}\ndevices: [{name: a, serial_number: S1, unit_id: 1, shard: 2}]\n")
    with pytest.raises(ConfigError, match=r"devices\[0\]\.shard 2 is not below shard.count 2"):
        load_config(cfg)
