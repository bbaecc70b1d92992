"""The composition root: builds every piece from the validated config, wires them, owns start-up and
graceful shutdown. Nothing else creates servers or long-running tasks."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import ssl
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from device.link import client_context, server_context

from . import __version__
from .commands import CommandPath
from .config import Config
from .config import ModbusServer as ModbusServerConfig
from .errors import CommandRejected, ConfigError, DeviceUnknown
from .fronts.modbus.register_map import load_map
from .link.transports import dial_tcp, open_serial, serve_tcp
from .logs import audit, get_logger
from .measuring import LocalMeasurer, Measurer
from .measuring.process import ProcessMeasurer
from .model import Change, DeviceState, Model
from .pki import PkiPaths
from .session import DeviceHub
from .session.recorder import EventRecorder
from .shard import ShardPlan
from .store import Store
from .systemd import Notifier

log = get_logger("bridge.app")
# While streaming, every value written replaces objects that lived about a second: with Python's
# default thresholds (700, 10, 10) they outlived the young generations, and the full collections
# their promotion set off walked everything made since start-up, 130-210 ms each, ~15 a minute at
# 100 boards (~10 % of the thread, and the loop's longest waits). A young generation of 20 000
# lets them die young; cyclic garbage is still collected once 20 000 objects have accumulated.
STREAMING_GC_THRESHOLDS = (20_000, 50, 10)


def _split(hostport: str) -> tuple[str, int]:
    host, _, port = hostport.rpartition(":")
    return host or "0.0.0.0", int(port)


@dataclass
class Endpoints:
    devices: str | None = None
    modbus: list[tuple[str, str, int]] = field(default_factory=list)  # (map, host, port)
    rtu: list[tuple[str, str, int]] = field(default_factory=list)  # (map, serial port, baud rate)
    opcua: str | None = None
    http: str | None = None
    http_ingest: str | None = None
    mqtt: str | None = None


class BridgeApp:
    def __init__(
        self,
        config: Config,
        *,
        base_dir: Path | None = None,
        shard_ordinal: int | None = None,
        config_path: Path | None = None,
    ) -> None:
        self.config_path = config_path  # what a reload reads
        self.shards = ShardPlan(config, shard_ordinal)
        config = self.config = self.shards.replica(config)
        base = self.base_dir = base_dir or Path.cwd()
        state_dir = Path(config.bridge.state_dir)
        self.state_dir = state_dir if state_dir.is_absolute() else base / state_dir
        self.model = Model(config)
        self.store = Store(self.state_dir / "bridge.sqlite")
        self.measurer: Measurer = ProcessMeasurer() if config.analysis.processes else LocalMeasurer()
        self.hub = DeviceHub(config, self.model, self.store, self.shards, self.measurer)
        self.recorder = EventRecorder(config, self.model, self.state_dir) if config.records.enabled else None
        self.commands = CommandPath(config, self.hub, self.store)
        map_names = [s.map for s in config.modbus.servers] + [r.map for r in config.modbus.rtu]
        folders = config.modbus.map_folders(base)
        self.maps = {name: load_map(name, folders) for name in map_names}
        pki_dir = Path(config.links.pki_dir) if config.links.pki_dir else self.state_dir / "link-pki"
        self.pki = PkiPaths(pki_dir if pki_dir.is_absolute() else base / pki_dir)
        self.endpoints = Endpoints()
        self.systemd = Notifier()
        self.ready = asyncio.Event()
        self._servers: list[Any] = []
        self._map_users: list[tuple[Any, str, int]] = []  # (Modbus server, "servers"/"rtu", index in config)
        self._reloading = asyncio.Lock()
        self.opcua: Any = None
        self.mqtt: Any = None
        self.ingest: Any = None
        self._safe_state_done: set[str] = set()
        self._wired: set[str] = set()  # devices told their relay wiring in this connection
        self._commands_running: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        cfg = self.config
        # Start-up makes most of the objects the bridge will ever hold (the OPC UA address space above
        # all): the cyclic collector's passes over them, while they are made, took half of it. It is
        # paused until every front serves; then what was made is moved out of its scans for good, so
        # that later collections only walk what changes.
        gc.disable()
        thresholds = gc.get_threshold()
        try:
            await self.measurer.start()
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self.measurer.watch(), name="measuring")  # it ends: the bridge stops
                waits = []
                if cfg.links.listen:
                    host, port = _split(cfg.links.listen)
                    ev = asyncio.Event()
                    tls = self._link_tls(server=True) if cfg.links.tls_for(host) else None
                    tg.create_task(serve_tcp(host, port, self.hub.handle, ev, tls), name="device-listener")
                    waits.append(ev.wait())
                    self.endpoints.devices = f"{host}:{port}" + (" (mutual TLS)" if tls else "")
                if cfg.links.http_listen:
                    from .link.http_ingest import HttpIngest, serve_http_ingest

                    host, _, port_text = cfg.links.http_listen.rpartition(":")
                    tls = self._http_tls() if cfg.links.tls_for(host) else None
                    ingest = self.ingest = HttpIngest(cfg, self.hub.handle, self.hub.commit_settled)
                    ready = asyncio.Event()
                    tg.create_task(serve_http_ingest(ingest, host, int(port_text), tls, ready), name="http-ingest")
                    await ready.wait()
                    self.endpoints.http_ingest = f"{'https' if tls else 'http'}://{host}:{port_text}/v1/packages"
                for d in cfg.links.dial:
                    tls = self._link_tls(server=False) if cfg.links.tls_for(d.host, d.tls) else None
                    tg.create_task(dial_tcp(d.host, d.port, self.hub.handle, d.device, cfg.links.reconnect_max_s, tls))
                for s in cfg.links.serial:
                    tg.create_task(
                        open_serial(s.port, s.baudrate, self.hub.handle, s.device, cfg.links.reconnect_max_s)
                    )
                if cfg.modbus.enabled:
                    from .fronts.modbus.server import start_modbus

                    for k_srv, srv in enumerate(cfg.modbus.servers):
                        server = await start_modbus(
                            self.model,
                            self.maps[srv.map],
                            self.commands,
                            srv,
                            name=cfg.bridge.name,
                            version=__version__,
                            tls=self._modbus_tls(srv) if srv.tls else None,
                        )
                        self._servers.append(server)
                        self._map_users.append((server, "servers", k_srv))
                        self.endpoints.modbus.append((srv.map, srv.host, srv.port))
                    if cfg.modbus.rtu:
                        from .fronts.modbus.rtu import start_rtu

                    for k_line, line in enumerate(cfg.modbus.rtu):
                        rtu = await start_rtu(
                            self.model,
                            self.maps[line.map],
                            self.commands,
                            line,
                            name=cfg.bridge.name,
                            version=__version__,
                        )
                        self._servers.append(rtu)
                        self._map_users.append((rtu, "rtu", k_line))
                        self.endpoints.rtu.append((line.map, line.port, line.baudrate))
                if cfg.opcua.enabled:
                    from .fronts.opcua.server import OpcUaFront

                    self.opcua = OpcUaFront(cfg, self.model, self.commands, self.state_dir)
                    await self.opcua.start()
                    self.endpoints.opcua = self.opcua.endpoint
                if cfg.mqtt.enabled:
                    from .fronts.mqtt.client import SparkplugFront

                    self.mqtt = SparkplugFront(cfg, self.model, self.commands, self.state_dir)
                    tg.create_task(self.mqtt.run(), name="mqtt")
                    self.endpoints.mqtt = f"{cfg.mqtt.url} group {cfg.mqtt.group_id} node {cfg.mqtt.edge_node_id}"
                if cfg.metrics.enabled:
                    from .fronts.http.server import serve_http
                    from .fronts.http.token import create_api_token

                    host, port = _split(cfg.metrics.listen)
                    ev = asyncio.Event()
                    token, files = create_api_token(self.state_dir, port)
                    log.info("control API token written", files=[str(f) for f in files])
                    http = serve_http(host, port, self.model, self.commands, token, ev, self.ready, self._api())
                    tg.create_task(http, name="http")
                    waits.append(ev.wait())
                    self.endpoints.http = f"{host}:{port}"
                await asyncio.gather(*waits)
                tg.create_task(self._commit_loop(), name="commit")
                tg.create_task(self.hub.watch_health(), name="watchdog")
                self.model.subscribe(self._on_link, {Change.LINK})
                gc.freeze()  # no full collection first: 0.6 s for ~1 % garbage (~1 MB), once
                gc.set_threshold(*STREAMING_GC_THRESHOLDS)
                gc.enable()
                self.ready.set()
                self.systemd.ready(f"{len(self.model.devices)} devices configured")
                tg.create_task(self.systemd.feed_watchdog(), name="watchdog-ping")
                log.info("bridge running", devices=len(self.model.devices))
        finally:
            gc.enable()
            await self._shutdown()
            gc.unfreeze()  # what start-up made may be collected again (a process that runs bridges in turn)
            gc.set_threshold(*thresholds)

    # ------------------------------------------------------------------ live reload

    async def reload(self) -> dict[str, Any]:
        """Read the configuration file again and apply what changed, without dropping other devices'
        links or any client. Validated whole first: a file that fails validation, or that changes what
        only a restart can (addresses, ports, TLS, state folder, shards, analysis), changes nothing and
        raises ConfigError saying exactly why. Safe states are never applied by a reload."""
        if self.config_path is None:
            raise ConfigError("this bridge was not started from a configuration file: nothing to reload")
        async with self._reloading:
            self.systemd.reloading()
            try:
                return await self._reload()
            except ConfigError as exc:
                log.warning("configuration reload refused; nothing changed", error=str(exc))
                audit("reload refused", file=str(self.config_path), reason=str(exc))
                raise
            finally:
                self.systemd.ready(f"{len(self.model.devices)} devices configured")

    async def _reload(self) -> dict[str, Any]:
        from .config import load_config
        from .config_diff import plan_reload
        from .fronts.modbus.register_map import load_map
        from .fronts.modbus.rtu import rtu_units

        assert self.config_path is not None
        full = load_config(self.config_path)  # read once: the file may be edited again meanwhile
        if full.shard.count != self.shards.count:
            raise ConfigError(
                f"{self.config_path}: shard.count changed ({self.shards.count} -> {full.shard.count}): restart"
            )
        config = ShardPlan(full, self.shards.ordinal).replica(full)
        plan = plan_reload(self.config, config)
        if plan.restart_keys:
            raise ConfigError(
                f"{self.config_path}: these changes need a restart, so nothing was changed: "
                + ", ".join(sorted(set(plan.restart_keys)))
            )
        folders = config.modbus.map_folders(self.base_dir)
        names = {s.map for s in config.modbus.servers} | {r.map for r in config.modbus.rtu}
        maps = {name: load_map(name, folders) for name in names}  # a bad map file: nothing changed yet
        # ---- from here on every step applies
        self.config = config
        self.hub.reconfigure(config)
        self.commands.config = config
        for name in plan.removed:
            await self.hub.remove_device(name)
            if self.recorder is not None:
                self.recorder.forget(name)
        for device in plan.added:
            self.hub.add_device(device)
            self._safe_state_done.add(device.name)  # a reload never switches a relay
        for device in plan.changed:
            self.model.reconfigure(device)
            runtime = self.hub.runtimes[device.name]
            runtime.reconfigure(config)
            if device.name in plan.reconnect:
                await self.hub.drop_link(device.name, "its measuring set-up changed (f_nominal, u_nominal)")
        if "pq" in {k.split(".")[0] for k in plan.keys}:
            for name in self.model.devices:
                self.hub.runtimes[name].reconfigure(config)
        for server, section, k in self._map_users:
            entry = getattr(config.modbus, section)[k]
            units = rtu_units(entry, self.model) if section == "rtu" else None
            server.context.use_map(maps[entry.map], entry, units)
        if self.opcua is not None:
            self.opcua.reconfigure(config)
        if self.mqtt is not None:
            self.mqtt.reconfigure(config)
        if self.ingest is not None:
            self.ingest.reconfigure(config)
        if self.recorder is not None:
            self.recorder.reconfigure(config)
        summary = plan.summary()
        log.info("configuration reloaded", **summary)
        audit("configuration reloaded", file=str(self.config_path), **summary)
        return {"ok": True, **summary}

    def _api(self) -> dict[str, Any]:
        """Control API endpoints beyond the command path's."""

        async def record(req: dict[str, Any], origin: Any) -> dict[str, Any]:
            device = str(req["device"])
            if self.recorder is None:
                raise CommandRejected("waveform records are off (records.enabled)", code="records-off")
            if device not in self.model.devices:
                raise DeviceUnknown(f"unknown device {device!r}")
            trig = self.recorder.manual(device)
            audit("manual waveform record", device=device, user=origin.user, client=origin.client)
            f_line = float(self.model.devices[device].config.f_nominal)
            return {"ok": True, "trigger_s": trig.t_s, "post_s": self.config.records.post_cycles / f_line}

        async def reload(req: dict[str, Any], origin: Any) -> dict[str, Any]:
            audit("reload requested", user=origin.user, client=origin.client)
            try:
                return await self.reload()
            except ConfigError as exc:
                raise CommandRejected(str(exc), code="config") from None

        return {"/api/record": record, "/api/reload": reload}

    def _link_tls(self, *, server: bool) -> ssl.SSLContext:
        """Mutual TLS with the bridge's link certificate. Dialling out, the device's certificate is not
        checked against a host name (devices carry their serial, not a DNS name): the session binds
        the certificate's serial to the device's HELLO instead."""
        self.pki.require()
        files = (self.pki.bridge_cert, self.pki.bridge_key, self.pki.ca_cert)
        return server_context(*files) if server else client_context(*files, check_hostname=False)

    def _http_tls(self) -> ssl.SSLContext:
        """HTTPS with the bridge's link certificate; a device's certificate is asked for, not required:
        a device without one authenticates with its token."""
        ctx = self._link_tls(server=True)
        ctx.verify_mode = ssl.CERT_OPTIONAL
        return ctx

    def _modbus_tls(self, srv: ModbusServerConfig) -> ssl.SSLContext:
        """Modbus/TCP Security: our certificate (the link PKI's by default) and the CA that client
        certificates must chain to; a client without one fails the handshake."""
        if srv.tls_cert and srv.tls_key and srv.tls_ca:
            files = tuple(self._path(p) for p in (srv.tls_cert, srv.tls_key, srv.tls_ca))
        else:
            self.pki.require()
            files = (self.pki.bridge_cert, self.pki.bridge_key, self.pki.ca_cert)
        return server_context(*files)

    def _path(self, p: str) -> Path:
        path = Path(p)
        return path if path.is_absolute() else self.base_dir / path

    def _on_link(self, device: DeviceState, what: Change) -> None:
        if not device.online:
            self._wired.discard(device.name)
            return
        if device.name not in self._safe_state_done:
            self._safe_state_done.add(device.name)
            self._spawn(self.commands.apply_safe_state(device.name))
        if device.name not in self._wired:  # every connect: the device may have been replaced or reset
            self._wired.add(device.name)
            self._spawn(self.commands.apply_wiring(device.name))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._commands_running.add(task)  # held until done: the loop keeps weak references only
        task.add_done_callback(self._commands_running.discard)

    async def _commit_loop(self) -> None:
        interval = self.config.bridge.commit_interval_s
        last_prune = 0.0
        while True:
            await asyncio.sleep(interval)
            self.hub.commit_all()
            if time.time() - last_prune > 3600:
                last_prune = time.time()
                self.store.prune(time.time() - self.config.opcua.history_retention_days * 86400)

    async def _shutdown(self) -> None:
        self.ready.clear()  # /health/ready says 503 from here: take this replica out of its Services
        self.systemd.stopping()
        await self.hub.close_links()
        with contextlib.suppress(Exception):  # the last blocks counted; a measurer that failed counts none
            async with asyncio.timeout(10):
                await self.hub.settle_all()
        with contextlib.suppress(Exception):
            self.hub.commit_all()
        for s in self._servers:
            with contextlib.suppress(Exception):
                await s.shutdown()
        if self.opcua is not None:
            with contextlib.suppress(Exception):
                await self.opcua.stop()
        self.store.close()
        with contextlib.suppress(Exception):
            await self.measurer.close()
        log.info("bridge stopped; counters committed")
