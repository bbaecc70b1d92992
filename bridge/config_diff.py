"""What a live reload would change: two validated configurations compared, key by key.

Reloadable without dropping any link or client: the devices (added, removed, changed), the OPC UA
users, the register maps a server serves (and the map files), the relay policies and command limits
(``[commands]``), the power-quality limits (``[pq]``), revoked device certificates, the waveform
record policy and a few service settings. Everything else (addresses, ports, TLS, the state folder,
the shard plan, the analysis settings) changes what is bound or built at start: a reload that touches
it is refused as a whole, naming the keys, and changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .config import Config, Device

# (section, key) pairs a reload may change; "*" for every key of the section
RELOADABLE: dict[str, set[str]] = {
    "devices": {"*"},
    "commands": {"*"},
    "pq": {"*"},
    "bridge": {"auto_accept", "offline_after_s", "loss_alarm_hold_s"},
    "links": {"revoked", "hello_timeout_s", "time_sync_interval_s"},
    "opcua": {"users"},
    "mqtt": {"command_role"},
    "records": {"pre_cycles", "post_cycles", "max_mb", "max_age_days"},
    "modbus": {"map_dirs"},
}
# a device whose measuring set-up changes needs a new analyzer: its link is closed and it reconnects
# (its unacknowledged blocks stay in its SRAM, nothing is lost)
MEASURING = ("f_nominal", "u_nominal")


@dataclass
class ReloadPlan:
    added: list[Device] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[Device] = field(default_factory=list)  # same name and serial, other settings
    reconnect: list[str] = field(default_factory=list)  # changed in what the analyzer is built from
    keys: list[str] = field(default_factory=list)  # every dotted key that changed
    restart_keys: list[str] = field(default_factory=list)  # changed keys a reload cannot apply

    @property
    def empty(self) -> bool:
        return not self.keys

    def summary(self) -> dict[str, Any]:
        return {
            "added": [d.name for d in self.added],
            "removed": self.removed,
            "changed": [d.name for d in self.changed],
            "reconnected": self.reconnect,
            "keys": self.keys,
        }


def _diff(a: Any, b: Any, path: str, out: list[str]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            _diff(a.get(k), b.get(k), f"{path}.{k}" if path else str(k), out)
    elif a != b:
        out.append(path)


def _map_keys(old: Config, new: Config) -> tuple[list[str], list[str]]:
    """Keys of the servers' lists: only a server's map may change, at the same place in the list."""
    keys, restart = [], []
    for section in ("servers", "rtu"):
        a, b = getattr(old.modbus, section), getattr(new.modbus, section)
        if len(a) != len(b):
            keys.append(f"modbus.{section}")
            restart.append(f"modbus.{section} (servers added or removed)")
            continue
        for k, (x, y) in enumerate(zip(a, b, strict=True)):
            changed: list[str] = []
            _diff(x.model_dump(), y.model_dump(), f"modbus.{section}[{k}]", changed)
            keys += changed
            restart += [c for c in changed if not c.endswith(".map")]
    return keys, restart


def plan_reload(old: Config, new: Config) -> ReloadPlan:
    plan = ReloadPlan()
    a, b = old.model_dump(), new.model_dump()
    for section in sorted(set(a) | set(b)):
        if section in ("devices", "modbus"):
            continue
        changed: list[str] = []
        _diff(a.get(section), b.get(section), section, changed)
        plan.keys += changed
        allowed = RELOADABLE.get(section, set())
        plan.restart_keys += [k for k in changed if "*" not in allowed and k.split(".")[1] not in allowed]
    changed = []
    _diff({k: v for k, v in a["modbus"].items() if k not in ("servers", "rtu")},
          {k: v for k, v in b["modbus"].items() if k not in ("servers", "rtu")}, "modbus", changed)  # fmt: skip
    plan.keys += changed
    plan.restart_keys += [k for k in changed if k.split(".")[1] not in RELOADABLE["modbus"]]
    keys, restart = _map_keys(old, new)
    plan.keys += keys
    plan.restart_keys += restart
    before = {d.name: d for d in old.devices}
    after = {d.name: d for d in new.devices}
    for name, d in after.items():
        was = before.get(name)
        if was is None:
            plan.added.append(d)
        elif was.serial_number != d.serial_number:
            plan.removed.append(name)  # another board under the old name: a new device
            plan.added.append(d)
        elif was != d:
            plan.changed.append(d)
            if any(getattr(was, k) != getattr(d, k) for k in MEASURING):
                plan.reconnect.append(name)
    plan.removed += [name for name in before if name not in after]
    if plan.added or plan.removed or plan.changed:
        plan.keys.append("devices")
    return plan
