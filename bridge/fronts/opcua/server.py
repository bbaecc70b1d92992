"""OPC UA front: the server's life cycle (security, start, stop), and keeping the address space in
step with the live model: one coalesced update per device however many changes arrived meanwhile.

The pieces: address_space (types and instances from the catalogue), values (projection and quality),
events + conditions (alarms), methods (writes and calls through the command path), security (users,
roles, certificate, trust list), history.
"""

from __future__ import annotations

import asyncio
import gc
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from asyncua import Server, ua
from asyncua.crypto.permission_rules import SimpleRoleRuleset

from bridge import telemetry
from bridge.commands import CommandPath
from bridge.config import Config
from bridge.logs import get_logger
from bridge.model import Change, DeviceState, ModelView

from . import shared_values, speed
from .address_space import AddressSpace
from .certificate import ensure_certificate
from .copies import lazy_nodes
from .events import AlarmEvents
from .history import MeasurementHistory
from .interop import install_standard_event_filters
from .methods import CommandHandlers
from .security import (
    ConfigUsers,
    TrustList,
    application_uri,
    install_session_hooks,
    intercept,
)
from .values import ValueWriter, historized_fields

log = get_logger("bridge.opcua")
FORGET_UNCHANGED_EVERY_S = 300.0  # a browse of everything is rare; a sweep over what it made costs ~1 s of CPU


_NS0_CODE = "asyncua.server.standard_address_space"


def _forget_standard_namespace_code() -> None:
    """asyncua builds the standard namespace by running ~12 MB of generated code, kept imported for
    good; let it go once the namespace is built, so the devices' nodes reuse that memory (another
    server in this process imports it again: 20 ms). Modules are cycles (their functions hold their
    globals); start-up pauses the collector, so they are still in its youngest generation, and
    collecting that one frees them in ~90 ms (a full collection: ~170 ms, the loop waiting)."""
    package = sys.modules.get("asyncua.server")
    if package is not None and hasattr(package, "standard_address_space"):
        delattr(package, "standard_address_space")
    for name in [m for m in sys.modules if m == _NS0_CODE or m.startswith(_NS0_CODE + ".")]:
        del sys.modules[name]
    gc.collect(0)


class OpcUaFront:
    def __init__(self, config: Config, model: ModelView, commands: CommandPath | None, state_dir: Path) -> None:
        self.config = config
        self.model = model
        self.state_dir = state_dir
        self.endpoint = config.opcua.endpoint
        self._historized = historized_fields(config.opcua.historized)
        self.users = ConfigUsers(config)
        self.server = Server(user_manager=self.users)  # type: ignore[arg-type]
        self.space = AddressSpace(
            self.server,
            lambda device, circuit, name: self.handlers.method(device, circuit, name),
            energy_model=config.opcua.energy_model,
        )
        self.handlers = CommandHandlers(commands, self.users, self.space.nodes, self._schedule, model)
        self.values = ValueWriter(self.server, self.space.nodes)
        self.alarms = AlarmEvents(self.server, self.space.nodes, self.users)
        self.history: MeasurementHistory | None = None
        self._pending: set[str] = set()
        self._known: set[str] = set()  # devices whose nodes exist
        self._structure = asyncio.Lock()  # adding and removing a device's nodes, one at a time
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def idx(self) -> int:
        return self.space.idx

    async def build(self) -> None:
        shared_values.install()  # before the standard namespace is loaded: it shares too
        s = self.server
        await s.init()
        _forget_standard_namespace_code()
        shared_values.share_references(s.iserver.aspace._nodes.values())  # ~1.3 MB, ~30 ms
        s.set_endpoint(self.endpoint)
        s.set_server_name(self.config.bridge.name)
        await s.set_application_uri(application_uri(self.config))
        await self.space.build(list(self.model.devices.values()))
        self._known.update(self.model.devices)
        for dev in self.model.devices.values():
            self.alarms.mark_logged(dev)

    async def start(self) -> None:
        install_session_hooks()
        install_standard_event_filters()
        speed.install()
        await self.build()
        s = self.server
        policies = [
            ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
            ua.SecurityPolicyType.Basic256Sha256_Sign,
            ua.SecurityPolicyType.Aes128Sha256RsaOaep_SignAndEncrypt,
            ua.SecurityPolicyType.Aes128Sha256RsaOaep_Sign,
        ]
        if self.config.opcua.allow_none_security:
            policies.append(ua.SecurityPolicyType.NoSecurity)
        s.set_security_policy(policies, permission_ruleset=SimpleRoleRuleset())
        tokens: list[type] = [ua.UserNameIdentityToken]
        if self.config.opcua.allow_anonymous:
            tokens.append(ua.AnonymousIdentityToken)
        s.set_identity_tokens(tokens)
        cert, key = await ensure_certificate(
            self.state_dir, self.endpoint, application_uri(self.config), self.config.opcua.hostnames
        )
        await s.load_certificate(str(cert))
        await s.load_private_key(str(key))
        s.set_certificate_validator(TrustList(self.state_dir, self.config.opcua.trust_all_clients).validate)  # type: ignore[arg-type]
        intercept(s.iserver, self.handlers, self.users)
        s.iserver.max_connections = self.config.opcua.max_sessions  # each costs buffers and a session
        await s.start()
        self.history = MeasurementHistory(
            s, self.state_dir / "opcua_history.sqlite", self.config.opcua.history_retention_days
        )
        await self.history.start(self.space.nodes.emitters.values())
        await self.history.historize(self._historized_nodes())
        self.values.history = self.history
        self._spawn(self.history.prune_forever())
        self.alarms.link_methods()
        self.model.subscribe(self._on_change)
        iserver = s.iserver
        telemetry.watch_opcua(
            lambda: float(len(getattr(iserver, "_external_sessions", {}))),  # asyncua keeps no public count
            lambda: float(len(iserver.subscription_service.subscriptions)),
            lambda: float(lazy_nodes(iserver.aspace).made_count()),
        )
        self._spawn(self._forget_unchanged_forever())
        self._spawn(self._first_updates())
        log.info("OPC UA server ready", endpoint=self.endpoint, policies=[p.name for p in policies])

    async def _forget_unchanged_forever(self) -> None:
        """Now and then, the copied circuits' nodes that nothing changed since they were made are
        forgotten again (``copies``): what a client's browse of every device made goes back, and is
        made again, the same, when next read. A copy at a time, so the loop serves between them."""
        nodes = lazy_nodes(self.server.iserver.aspace)
        while True:
            await asyncio.sleep(FORGET_UNCHANGED_EVERY_S)
            forgotten = 0
            for copy in nodes.all_copies():
                forgotten += nodes.forget_unchanged(copy)
                await asyncio.sleep(0)
            if forgotten:
                self.values.look_up_again()  # it holds written nodes only, never forgotten; but trust no stale one
                log.info("OPC UA nodes nobody changed forgotten", nodes=forgotten, made=nodes.made_count())

    def reconfigure(self, config: Config) -> None:
        """A reload's configuration: users (devices follow through the model's changes)."""
        self.config = config
        self.users.reconfigure(config)

    async def stop(self) -> None:
        intercept(self.server.iserver, None, None)
        for t in list(self._tasks):
            t.cancel()
        await self.server.stop()

    def _historized_nodes(self, device: str | None = None) -> list[ua.NodeId]:
        return [
            nid
            for (dev, _c, field), nid in self.space.nodes.values.items()
            if field in self._historized and (device is None or dev == device)
        ]

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --------------------------------------------------------------- model -> address space

    def _on_change(self, dev: DeviceState, what: Change) -> None:
        if what is Change.ADDED:  # auto-accepted or added by a reload: give it its nodes, then its values
            self._spawn(self._add_late(dev))
        elif what is Change.REMOVED:
            self._spawn(self._remove(dev.name))
        elif what is Change.CONFIGURED:
            self._spawn(self._reconfigured(dev))
        else:
            self._schedule(dev.name)

    async def _remove(self, name: str) -> None:
        async with self._structure:
            self._known.discard(name)
            try:
                await self.space.remove_device(name)
            except Exception as exc:
                log.error("OPC UA could not remove the device's nodes", device=name, error=repr(exc))
            self.values.forget(name)

    async def _reconfigured(self, dev: DeviceState) -> None:
        async with self._structure:
            if dev.name in self._known:
                try:
                    await self.space.rename_circuits(dev)
                except Exception as exc:
                    log.error("OPC UA could not rename the circuits", device=dev.name, error=repr(exc))
        self._schedule(dev.name)

    async def _add_late(self, dev: DeviceState) -> None:
        async with self._structure:  # after a removal of the same name has finished
            await self._add_nodes(dev)
        self._schedule(dev.name)

    async def _add_nodes(self, dev: DeviceState) -> None:
        try:
            self.values.forget(dev.name)
            await self.space.add_device(dev)
            self.alarms.mark_logged(dev)
            if self.history is not None:
                await self.history.historize(self._historized_nodes(dev.name))
                for circuit in range(len(dev.circuits) + 1):
                    await self.history.historize_events(self.space.nodes.emitters[(dev.name, circuit)])
            self._known.add(dev.name)
        except Exception as exc:
            log.error("OPC UA could not add the device's nodes", device=dev.name, error=repr(exc))

    async def _first_updates(self) -> None:
        """Every device's first values, one device a loop turn: a first write looks up the device's
        nodes (~4 ms), and a hundred of them in one turn held the loop ~0.5 s while Modbus and
        device links waited."""
        for name in list(self.model.devices):
            self._schedule(name)
            await asyncio.sleep(0)

    def _schedule(self, name: str) -> None:
        # coalesce: one pending update per device however many windows arrived meanwhile
        if name in self._pending:
            return
        self._pending.add(name)
        self._spawn(self._update(name))

    async def _update(self, name: str) -> None:
        await asyncio.sleep(0)
        self._pending.discard(name)
        dev = self.model.devices.get(name)
        if dev is None or name not in self._known:
            return  # nodes not built yet (a late device): _add_late schedules again
        try:
            await self.values.write_device(dev)
            await self.alarms.follow(dev)
            await self.alarms.follow_log(dev, self.space.voltage_event_type)
        except Exception as exc:  # an address-space hiccup must not stop the bridge
            log.error("OPC UA update failed", device=name, error=repr(exc))

    @property
    def updates(self) -> int:
        return self.values.updates
