"""Scale-out: which replica serves which board, and the configuration one replica runs with.

Every replica reads the same device list. A device's ``shard`` key, when set, names its replica;
otherwise rendezvous hashing of its serial number decides: each replica scores
SHA-256(ordinal, serial) and the highest score wins. The choice needs no coordination between
replicas, is the same on every machine and Python version, and when ``shard.count`` grows from n to
n + 1 only the boards the new replica wins move (about 1/(n + 1) of them), not most of them as
``hash mod n`` would. A replica refuses every board another one owns, so a board that dials the wrong
address is refused by name, never counted twice.
"""

from __future__ import annotations

import hashlib
import re
import socket
from pathlib import Path

from .config import Config, Device, ShardSection
from .errors import ConfigError

__all__ = ["ShardPlan", "rendezvous_owner"]


def rendezvous_owner(serial: str, count: int) -> int:
    """The replica (0..count-1) that the highest-random-weight rule gives ``serial``.

    >>> [rendezvous_owner("OS-0001", n) for n in (1, 2, 4)]
    [0, 0, 0]
    """
    if count == 1:
        return 0
    return max(range(count), key=lambda k: hashlib.sha256(f"{k}\x00{serial}".encode()).digest())


def ordinal_from_hostname(hostname: str | None = None) -> int:
    """The trailing ``-N`` of a host name: a StatefulSet pod ``openstrom-bridge-3`` is replica 3."""
    name = hostname if hostname is not None else socket.gethostname()
    m = re.search(r"-(\d+)$", name.split(".")[0])
    if m is None:
        raise ConfigError(
            f"shard.ordinal is 'hostname' but the host name {name!r} does not end in -N (a StatefulSet pod's "
            "ordinal): give `run --shard-ordinal N` or a number in shard.ordinal"
        )
    return int(m.group(1))


class ShardPlan:
    """The assignment of every configured board to a replica, seen from replica ``ordinal``."""

    def __init__(self, config: Config, ordinal: int | None = None, *, hostname: str | None = None) -> None:
        self.count = config.shard.count
        given = config.shard.ordinal if ordinal is None else ordinal
        self.ordinal = ordinal_from_hostname(hostname) if given == "hostname" else int(given)
        if not 0 <= self.ordinal < self.count:
            raise ConfigError(
                f"this replica's shard ordinal {self.ordinal} is outside 0..{self.count - 1} (shard.count "
                f"{self.count}): a StatefulSet with more replicas than shard.count, or a wrong --shard-ordinal"
            )
        self._explicit = {d.serial_number: d.shard for d in config.devices if d.shard is not None}

    @property
    def sharded(self) -> bool:
        return self.count > 1

    def owner(self, serial: str) -> int:
        explicit = self._explicit.get(serial)
        return explicit if explicit is not None else rendezvous_owner(serial, self.count)

    def owns(self, serial: str) -> bool:
        return self.owner(serial) == self.ordinal

    def assignment(self, devices: tuple[Device, ...]) -> dict[int, list[Device]]:
        out: dict[int, list[Device]] = {k: [] for k in range(self.count)}
        for d in devices:
            out[self.owner(d.serial_number)].append(d)
        return out

    def replica(self, config: Config) -> Config:
        """The configuration this replica runs: its own boards only, its own state folder
        (``state_dir/shard-N``, so replicas sharing a machine or a volume never share a database) but
        the shared link PKI (``links.pki_dir``, default ``state_dir/link-pki``),
        its own Sparkplug edge node (``edge_node_id-N``), and a resolved ordinal."""
        if not self.sharded:
            return config
        own = tuple(d for d in config.devices if self.owns(d.serial_number))
        units = {d.name for d in own}
        rtu = tuple(
            line.model_copy(update={"units": {u: n for u, n in line.units.items() if n in units}})
            for line in config.modbus.rtu
        )
        # one link CA for every replica (a board's certificate stays valid wherever it is served)
        pki_dir = config.links.pki_dir or str(Path(config.bridge.state_dir) / "link-pki")
        return config.model_copy(
            update={
                "devices": own,
                "links": config.links.model_copy(update={"pki_dir": pki_dir}),
                "bridge": config.bridge.model_copy(
                    update={"state_dir": str(Path(config.bridge.state_dir) / f"shard-{self.ordinal}")}
                ),
                "modbus": config.modbus.model_copy(update={"rtu": rtu}),
                "mqtt": config.mqtt.model_copy(update={"edge_node_id": f"{config.mqtt.edge_node_id}-{self.ordinal}"}),
                "shard": ShardSection(count=self.count, ordinal=self.ordinal),
            }
        )
