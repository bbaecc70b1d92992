"""The Sparkplug B front's MQTT side (aiomqtt): one session to the broker with NDEATH as its will,
NBIRTH and a DBIRTH per online board, DDATA by exception on every model change, DDEATH when a board
goes offline, Rebirth on NCMD, and DCMDs through the command path and the authoriser."""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiomqtt

from bridge import telemetry
from bridge.commands import CommandPath, Origin, Role
from bridge.config import Config
from bridge.errors import BridgeError
from bridge.logs import audit, get_logger
from bridge.model import Change, DeviceState, ModelView

from .backlog import Backlog
from .sparkplug import EdgeNode, MetricDef, device_metrics, topic, wants_rebirth

log = get_logger("bridge.mqtt")
# a planned stop's DDEATHs and NDEATH, then its DISCONNECT, each wait this long at most: a stop is bounded
DEATH_TIMEOUT_S = 2.0


def _ms() -> int:
    return int(time.time() * 1000)


class _HostOffline(Exception):
    """The primary host application said it is offline."""


def _still_cancelled() -> None:
    """Raise the cancellation a publish swallowed. aiomqtt waits for each publish with
    ``asyncio.wait_for``, which on Python 3.11 returns the result instead of raising when the
    cancellation and the publish's confirmation come in the same turn: the stopping bridge's front
    then went on waiting for the next change, which never came, and the bridge never stopped."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class SparkplugFront:
    def __init__(self, config: Config, model: ModelView, commands: CommandPath | None, state_dir: Path) -> None:
        self.cfg = config.mqtt
        self.model = model
        self.commands = commands
        self.bd_seq_file = state_dir / "mqtt-bdseq"
        self._last_bd_seq = self._stored_bd_seq()
        self.node = EdgeNode(self.cfg.group_id, self.cfg.edge_node_id, bd_seq=self._last_bd_seq or 0)
        self._dirty: set[str] = set()
        self._published: dict[str, int] = {}  # device -> snapshot number last published
        self._wake = asyncio.Event()
        self.role = Role.named(self.cfg.command_role)
        self.connected = False
        self.publishing = False  # born, and the primary host (if any) online
        self.host_online = asyncio.Event()
        # store-and-forward: changes noted while not publishing, sent as historical DDATA after the
        # next birth; bounded (the oldest go first when it is full) and kept across restarts
        self.backlog = Backlog(state_dir / "mqtt-store-and-forward.sqlite", self.cfg.store_forward_max)
        self.dropped = 0

    def _stored_bd_seq(self) -> int | None:
        try:
            return int(self.bd_seq_file.read_text().strip()) % 256
        except (OSError, ValueError):
            return None

    def _next_bd_seq(self) -> None:
        """Every MQTT session a new bdSeq, across restarts and kills too: a host must never pair the
        NDEATH of a session that died (the broker may send its will late) with a newer NBIRTH. Stored
        before the session starts, so a kill -9 cannot make the next one repeat it."""
        bd = 0 if self._last_bd_seq is None else (self._last_bd_seq + 1) % 256
        self.bd_seq_file.write_text(str(bd))
        self._last_bd_seq = self.node.bd_seq = bd

    def _on_change(self, dev: DeviceState, what: Change) -> None:
        self._dirty.add(dev.name)
        self._wake.set()

    def reconfigure(self, config: Config) -> None:
        """A reload: who may command over MQTT (the broker session itself stays)."""
        self.cfg = config.mqtt
        self.role = Role.named(self.cfg.command_role)

    def _password(self) -> str | None:
        if self.cfg.password_file is None:
            return self.cfg.password
        try:  # read at every connect: a rotated secret is used without a restart
            return Path(self.cfg.password_file).read_text().strip()
        except OSError as exc:
            raise aiomqtt.MqttError(f"mqtt.password_file {self.cfg.password_file}: {exc.strerror}") from None

    def _tls(self) -> ssl.SSLContext | None:
        if not self.cfg.url.startswith("mqtts://"):
            return None
        ctx = ssl.create_default_context(cafile=self.cfg.tls_ca)
        if self.cfg.tls_cert and self.cfg.tls_key:
            ctx.load_cert_chain(self.cfg.tls_cert, self.cfg.tls_key)
        return ctx

    async def run(self) -> None:
        """Connect, and again after every loss (each session a new bdSeq, as the spec says)."""
        kinds = {Change.SNAPSHOT, Change.LINK, Change.ALARM, Change.RELAY, Change.STATUS, Change.REMOVED}
        self.model.subscribe(self._on_change, kinds)
        recorder = asyncio.ensure_future(self.record_while_away())
        self._background = recorder  # held for the front's life
        u = urlsplit(self.cfg.url)
        tls = self._tls()
        port = u.port or (8883 if tls else 1883)
        delay = 0.5
        stopping = False
        while True:
            self._next_bd_seq()
            will = aiomqtt.Will(
                topic(self.node.group, "NDEATH", self.node.node), self.node.ndeath(), qos=1, retain=False
            )
            try:
                async with aiomqtt.Client(
                    u.hostname or "127.0.0.1",
                    port,
                    username=self.cfg.username,
                    password=self._password(),
                    tls_context=tls,
                    will=will,
                    identifier=f"openstrom-{self.node.group}-{self.node.node}",
                    clean_session=True,
                ) as client:
                    delay = 0.5
                    try:
                        await self._session(client)
                    except (_HostOffline, asyncio.CancelledError) as exc:
                        stopping = isinstance(exc, asyncio.CancelledError)
                        await self._say_death(client)  # leaving on purpose: a DISCONNECT drops the will
                        if stopping:  # the client's DISCONNECT waits this long at most, not its 10 s
                            client.timeout = DEATH_TIMEOUT_S
                        raise
            except _HostOffline:
                self.connected = False
            except aiomqtt.MqttError as exc:
                self.connected = False
                if stopping:
                    # The client's way out failed (its DISCONNECT unconfirmed, or the broker gone): it
                    # raises that instead of the cancellation, and a retry here would keep a stopping
                    # bridge running until it is killed.
                    log.info("mqtt disconnect unconfirmed at stop", broker=self.cfg.url, error=str(exc))
                    raise asyncio.CancelledError from exc
                log.warning("mqtt broker unreachable; retrying", broker=self.cfg.url, error=str(exc), retry_s=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    async def _say_death(self, client: aiomqtt.Client) -> None:
        """A planned stop: each born board's DDEATH, so hosts learn which boards went with the node
        without inferring it, then the NDEATH that the DISCONNECT keeps the broker from sending."""
        g, n = self.node.group, self.node.node
        with contextlib.suppress(Exception):
            async with asyncio.timeout(DEATH_TIMEOUT_S):
                for name in sorted(self.node.born):
                    dev = self.model.devices.get(name)
                    if dev is not None:
                        await client.publish(topic(g, "DDEATH", n, name), self.node.ddeath(dev, _ms()), qos=0)
                await client.publish(topic(self.node.group, "NDEATH", self.node.node), self.node.ndeath(), qos=1)

    async def _session(self, client: aiomqtt.Client) -> None:
        g, n = self.node.group, self.node.node
        await client.subscribe(topic(g, "NCMD", n), qos=1)
        await client.subscribe(topic(g, "DCMD", n, "+"), qos=1)
        self.connected = True
        messages = asyncio.ensure_future(self._messages(client))
        try:
            if self.cfg.primary_host_id:
                # births wait for the primary host's STATE (retained: it arrives at once when known)
                self.host_online.clear()
                await client.subscribe(f"spBv1.0/STATE/{self.cfg.primary_host_id}", qos=1)
                online = asyncio.ensure_future(self.host_online.wait())
                await asyncio.wait([online, messages], return_when=asyncio.FIRST_COMPLETED)
                online.cancel()
                if messages.done():
                    messages.result()
            await self._birth(client)
            await self._replay(client)
            self.publishing = True
            log.info("sparkplug edge node online", broker=self.cfg.url, group=g, node=n, bd_seq=self.node.bd_seq)
            while not messages.done():
                # cleared before the changes are taken: one that comes while they are being sent
                # wakes the next turn (cleared after, a board that went offline then, with nothing
                # changing after it, never had its DDEATH sent)
                self._wake.clear()
                await self._publish_changes(client)
                _still_cancelled()
                waiter = asyncio.ensure_future(self._wake.wait())
                await asyncio.wait([waiter, messages], return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
            messages.result()
        finally:
            self.publishing = self.connected = False
            messages.cancel()

    async def record_while_away(self) -> None:
        """Store-and-forward: while not publishing, every change of a born device is kept (bounded)."""
        while True:
            await self._wake.wait()
            if self.publishing:
                await asyncio.sleep(0.05)  # the session publishes; look again later
                continue
            self._wake.clear()
            dirty, self._dirty = self._dirty, set()
            for name in sorted(dirty):
                dev = self.model.devices.get(name)
                if dev is None or not dev.online:
                    continue
                if name not in self.node.metrics:  # never born in this run (started while away)
                    self.node.metrics[name] = device_metrics(dev)
                changed = self.node.changes(dev)
                if changed and self.cfg.store_forward_max:
                    source = int(dev.snapshot.time_s * 1000) if dev.snapshot is not None else _ms()
                    self.dropped += self.backlog.append(name, source, [(d.alias, v) for d, v in changed])

    async def _replay(self, client: aiomqtt.Client) -> None:
        g, n = self.node.group, self.node.node
        if self.dropped:
            log.warning("sparkplug store-and-forward was full: oldest changes dropped", dropped=self.dropped)
            self.dropped = 0
        sent = 0
        for row_id, name, source, values in self.backlog.pending():
            defs = {d.alias: d for d in self.node.metrics.get(name, ())}
            changed = [(defs[a], v) for a, v in values if a in defs]
            if name in self.node.born:  # a device not online now has its stored changes dropped with it
                data = self.node.ddata(changed, _ms(), source, historical=True)
                if data is not None:
                    await client.publish(topic(g, "DDATA", n, name), data, qos=0)
                    sent += 1
            self.backlog.done(row_id)
        if sent:
            log.info("sparkplug stored changes sent as historical", messages=sent)

    async def _birth(self, client: aiomqtt.Client) -> None:
        g, n = self.node.group, self.node.node
        await client.publish(topic(g, "NBIRTH", n), self.node.nbirth(_ms()), qos=0)
        for dev in self.model.devices.values():
            if dev.online:
                await client.publish(topic(g, "DBIRTH", n, dev.name), self.node.dbirth(dev, _ms()), qos=0)

    async def _publish_changes(self, client: aiomqtt.Client) -> None:
        g, n = self.node.group, self.node.node
        dirty, self._dirty = self._dirty, set()
        for name in sorted(dirty):
            dev = self.model.devices.get(name)
            now = _ms()
            if dev is None:  # removed by a reload: dead to the host from now on
                if name in self.node.born:
                    await client.publish(topic(g, "DDEATH", n, name), self.node.ddeath(name, now), qos=0)
                continue
            if not dev.online:
                if name in self.node.born:
                    await client.publish(topic(g, "DDEATH", n, name), self.node.ddeath(dev, now), qos=0)
                continue
            if name not in self.node.born:
                await client.publish(topic(g, "DBIRTH", n, name), self.node.dbirth(dev, now), qos=0)
                continue
            source = int(dev.snapshot.time_s * 1000) if dev.snapshot is not None else now
            data = self.node.ddata(self.node.changes(dev), now, source)
            if data is not None:
                await client.publish(topic(g, "DDATA", n, name), data, qos=0)
                if dev.snapshot is not None and dev.snapshot.number != self._published.get(name):
                    self._published[name] = dev.snapshot.number
                    end = dev.snapshot.time_s + dev.snapshot.duration_s
                    telemetry.observe_window("mqtt", end, dev.link.clock_offset_s)

    async def _messages(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            parts = str(message.topic).split("/")
            payload = bytes(message.payload) if isinstance(message.payload, bytes | bytearray) else b""
            if parts[1] == "STATE":
                self._state(payload)
                continue
            try:
                if parts[2] == "NCMD" and wants_rebirth(payload):
                    log.info("sparkplug rebirth asked")
                    await self._birth(client)
                elif parts[2] == "DCMD" and len(parts) == 5:
                    await self._command(parts[4], payload)
            except Exception as exc:  # a malformed command must not end the session
                log.warning("sparkplug command not understood", topic=str(message.topic), error=repr(exc))

    def _state(self, payload: bytes) -> None:
        """The primary host's STATE ({"online": bool, "timestamp": ms}): offline ends the session (the
        edge node dies and births again when the host is back), as Sparkplug 3.0 asks."""
        try:
            online = bool(json.loads(payload.decode())["online"])
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            log.warning("sparkplug STATE not understood", payload=payload[:100].decode(errors="replace"))
            return
        if online:
            self.host_online.set()
        elif self.publishing:
            log.warning("sparkplug primary host offline: the edge node goes offline until it returns")
            raise _HostOffline

    async def _command(self, device: str, payload: bytes) -> None:
        origin = Origin(front="mqtt", user=self.cfg.username or "", client=self.cfg.url, role=self.role)
        for d, value in self.node.command_targets(device, payload):
            try:
                await self._write(device, d, value, origin)
            except BridgeError as exc:
                log.warning("sparkplug command refused", device=device, metric=d.name, error=str(exc))
        self._dirty.add(device)
        self._wake.set()

    async def _write(self, device: str, d: MetricDef, value: Any, origin: Origin) -> None:
        if self.commands is None:
            return
        name = d.quantity.name
        if name == "circuit.relay":
            await self.commands.switch_relay(device, d.circuit, bool(value), origin)
        elif name == "circuit.relay_select":
            self.commands.select(device, d.circuit, int(value) == 1, origin)
        elif name == "device.aux":
            await self.commands.switch_aux(device, bool(value), origin)
        elif name == "device.self_test" and value:
            await self.commands.self_test(device, origin)
        else:
            audit("sparkplug command refused", device=device, metric=d.name, reason="not writable")
