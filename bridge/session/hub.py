"""All device sessions: admission of links by the serial number in HELLO (and the auto-accept
policy), the receive loop of each link, and the silence watchdog that marks devices offline."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Collection

from bridge.config import Config, Device
from bridge.errors import DeviceOffline, StoreError
from bridge.logs import audit, get_logger
from bridge.measuring import LocalMeasurer, Measurer
from bridge.model import DeviceState, Model
from bridge.model.state import LOSS_ALARMS
from bridge.shard import ShardPlan
from bridge.store import EnergyCommit, Store
from device.protocol import (
    HELLO_MAX_PAYLOAD,
    Connection,
    ConnectionClosed,
    EncodedSamples,
    ErrorMessage,
    FrameError,
    Hello,
    Message,
    ProtocolError,
    Role,
)

from ..link.streams import ByteStream
from .runtime import DeviceRuntime


class DeviceHub:
    """Routes links to device runtimes by the serial number in HELLO; refuses unknown devices.
    Implements the command path's :class:`~bridge.commands.port.DevicePorts`."""

    def __init__(
        self,
        config: Config,
        model: Model,
        store: Store,
        shards: ShardPlan | None = None,
        measurer: Measurer | None = None,
    ) -> None:
        self.config = config
        self.measurer: Measurer = measurer if measurer is not None else LocalMeasurer()
        self.shards = shards
        self.model = model
        self.store = store
        self.runtimes: dict[str, DeviceRuntime] = {
            name: DeviceRuntime(state, model, store, config.analysis, config.pq, self.measurer)
            for name, state in model.devices.items()
        }
        self.log = get_logger("bridge.hub")
        self._refused_links: set[tuple[str, str, str]] = set()  # (reason, serial, peer host) logged once
        self._unidentified: dict[str, int] = {}  # links not past HELLO, by peer address
        self._unidentified_total = 0
        self._streams: set[ByteStream] = set()  # every link being served, closed at shutdown
        self._links: dict[str, ByteStream] = {}  # device -> the link it speaks on

    # ------------------------------------------------------------------ DevicePorts

    def port(self, name: str) -> DeviceRuntime | None:
        return self.runtimes.get(name)

    def names(self) -> Collection[str]:
        return self.runtimes.keys()

    # ------------------------------------------------------------------ admission

    # ------------------------------------------------------------------ reload

    def reconfigure(self, config: Config) -> None:
        """A reload's new configuration (links' limits, timeouts and the revoked list read it)."""
        self.config = config

    def add_device(self, device: Device) -> DeviceRuntime:
        """A device the configuration did not have at start (a reload, or auto-accept)."""
        state = self.model.add_device(device)
        runtime = self.runtimes[device.name] = DeviceRuntime(
            state, self.model, self.store, self.config.analysis, self.config.pq, self.measurer
        )
        return runtime

    async def drop_link(self, name: str, reason: str) -> None:
        """Close the device's link (it reconnects and resends what is not acknowledged)."""
        stream = self._links.pop(name, None)
        if stream is not None:
            self.log.info("device link closed", device=name, reason=reason)
            with contextlib.suppress(Exception):
                await stream.close()

    async def remove_device(self, name: str) -> None:
        """Commit its counters, close its link and take it out of the model (the store keeps its
        history and counters: added again, it goes on from them)."""
        runtime = self.runtimes.pop(name, None)
        if runtime is not None:
            with contextlib.suppress(Exception):
                await runtime.settle()
                runtime.commit()
            runtime.forget()
        await self.drop_link(name, "removed from the configuration")
        self.model.remove_device(name)

    def _auto_accept(self, hello: Hello) -> DeviceRuntime:
        used = {d.config.unit_id for d in self.model.devices.values()}
        unit = next(u for u in range(1, 248) if u not in used)
        name = "dev_" + "".join(ch if ch.isalnum() else "_" for ch in hello.serial_number)[:36]
        runtime = self.add_device(Device(name=name, serial_number=hello.serial_number, unit_id=unit))
        self.log.warning(
            "unknown device accepted (auto_accept is on)", serial=hello.serial_number, name=name, unit_id=unit
        )
        return runtime

    def _refuse_once(self, reason: str, serial: str, peer: str, message: str, **fields: object) -> None:
        """Log a refused link at warning and audit it, once per (reason, serial, peer host); repeats
        at debug, so a device retrying every few seconds does not flood the log."""
        key = (reason, serial, peer.rpartition(":")[0])
        if key in self._refused_links:
            self.log.debug(message, serial=serial, peer=peer, **fields)
            return
        if len(self._refused_links) >= 4096:  # bounded, whatever the number of addresses trying
            self._refused_links.clear()
        self._refused_links.add(key)
        self.log.warning(message, serial=serial, peer=peer, **fields)
        audit("link refused", reason=reason, serial=serial, peer=peer, **fields)

    def _authenticated(self, hello: Hello, stream: ByteStream) -> str | None:
        """None when the link may speak for the HELLO's serial; else the reason it may not."""
        if stream.identity is None:
            return None  # plain TCP: allowed on loopback only (links.tls_for), serial lines by isolation
        if stream.identity != hello.serial_number:
            self._refuse_once(
                "identity-mismatch",
                hello.serial_number,
                stream.peer,
                "device refused: its certificate is issued to another serial than its HELLO claims",
                certificate_serial=stream.identity,
                certificate=stream.subject,
            )
            return f"the certificate is issued to {stream.identity}, not {hello.serial_number}"
        if stream.identity in self.config.links.revoked:
            self._refuse_once(
                "revoked",
                hello.serial_number,
                stream.peer,
                "device refused: its serial is in links.revoked",
                certificate=stream.subject,
            )
            return f"the certificate of {stream.identity} is revoked on this bridge"
        return None

    def _admit(self, hello: Hello, peer: str, expected: str | None) -> DeviceRuntime | None:
        state = self.model.by_serial(hello.serial_number)
        if state is None and self.shards is not None and not self.shards.owns(hello.serial_number):
            owner = self.shards.owner(hello.serial_number)
            self._refuse_once(
                "other-shard",
                hello.serial_number,
                peer,
                f"device refused: it belongs to shard {owner}, this is shard {self.shards.ordinal} (let it dial "
                f"shard {owner}'s device address; `openstrom-bridge shards` lists every board's shard)",
                shard=owner,
            )
            return None
        if state is None and self.config.bridge.auto_accept:
            return self._auto_accept(hello)
        if state is None:
            self._refuse_once(
                "unknown-device",
                hello.serial_number,
                peer,
                "device refused: serial number not in the configuration (add it under [[devices]] "
                "or set bridge.auto_accept)",
            )
            return None
        if expected is not None and state.name != expected:
            self.log.warning(
                "device on this link is not the configured one",
                expected=expected,
                got=state.name,
                serial=hello.serial_number,
                peer=peer,
            )
            return None
        return self.runtimes[state.name]

    def _refuse_takeover(self, runtime: DeviceRuntime, hello: Hello, peer: str) -> None:
        self._refuse_once(
            "device-connected",
            hello.serial_number,
            peer,
            "second link refused: the device is connected and streaming on another link",
            device=runtime.name,
            connected_peer=runtime.state.link.peer,
        )

    # ------------------------------------------------------------------ links

    def _admit_unidentified(self, stream: ByteStream) -> bool:
        """Room for one more link that has not said HELLO yet (in all, and from its address)?"""
        links = self.config.links
        host = stream.peer.rpartition(":")[0]
        if self._unidentified_total >= links.max_unidentified:
            self._refuse_once("too-many-unidentified", "?", stream.peer, "link refused: too many links without HELLO")
            return False
        if self._unidentified.get(host, 0) >= links.max_unidentified_per_host:
            self._refuse_once(
                "too-many-from-host", "?", stream.peer, "link refused: too many links without HELLO from this address"
            )
            return False
        self._unidentified[host] = self._unidentified.get(host, 0) + 1
        self._unidentified_total += 1
        return True

    def _identified(self, stream: ByteStream) -> None:
        host = stream.peer.rpartition(":")[0]
        left = self._unidentified.get(host, 0) - 1
        if left > 0:
            self._unidentified[host] = left
        else:
            self._unidentified.pop(host, None)
        self._unidentified_total -= 1

    async def _read(self, stream: ByteStream, deadline: float | None) -> bytes | None:
        """The next bytes; None when the HELLO deadline passed first."""
        if deadline is None:
            return await stream.read()
        remaining = deadline - asyncio.get_running_loop().time()
        try:
            async with asyncio.timeout(max(remaining, 0.0)):
                return await stream.read()
        except TimeoutError:
            return None

    async def handle(self, stream: ByteStream, expected: str | None) -> None:
        """Serve one link until it closes. Errors stay on this link: other devices never notice.

        Until its HELLO a link is bounded: it counts against the unidentified caps, its frames may be
        at most HELLO_MAX_PAYLOAD, and it is closed when no HELLO came within links.hello_timeout_s.
        Serial lines, configured one by one, are exempt from the caps and the deadline."""
        self._streams.add(stream)
        serial = stream.kind == "serial"
        capped = stream.kind.startswith("tcp-in")
        if capped and not self._admit_unidentified(stream):
            self._streams.discard(stream)
            await stream.close()
            return
        unidentified = capped
        conn = Connection(
            Role.BRIDGE,
            skip_before_hello=serial,
            max_payload_before_hello=HELLO_MAX_PAYLOAD,
            defer_samples=True,  # decoded when measured: the runtime holds a batch as payloads
        )
        runtime: DeviceRuntime | None = None
        log = self.log.bind(peer=stream.peer, link=stream.kind)
        loop = asyncio.get_running_loop()
        deadline = None if serial else loop.time() + self.config.links.hello_timeout_s

        def sender(msg: Message) -> None:
            stream.write_nowait(conn.send(msg))

        first_error = True
        ev: Message | EncodedSamples | FrameError | ConnectionClosed | None = None
        try:
            while True:
                data = await self._read(stream, deadline if runtime is None else None)
                if data is None:
                    self._refuse_once(
                        "hello-timeout",
                        "?",
                        stream.peer,
                        f"link closed: no HELLO within {self.config.links.hello_timeout_s:g} s",
                    )
                    return
                for ev in conn.events(data):
                    if isinstance(ev, ConnectionClosed):
                        return
                    if isinstance(ev, FrameError):
                        if runtime is not None:
                            self.model.links.count(runtime.state, frame_errors=1)
                        (log.warning if first_error else log.debug)(
                            "frame skipped", error=str(ev.error), code=ev.error.code
                        )
                        first_error = False
                        continue
                    if isinstance(ev, Hello):
                        why = self._authenticated(ev, stream)
                        if why is not None:
                            await stream.write(conn.send(ErrorMessage(code="not-authenticated", text=why)))
                            return
                        new = self._admit(ev, stream.peer, expected)
                        if new is None:
                            text = f"serial {ev.serial_number} is not configured on this bridge"
                            if self.shards is not None and not self.shards.owns(ev.serial_number):
                                text = (
                                    f"serial {ev.serial_number} is served by shard "
                                    f"{self.shards.owner(ev.serial_number)}, this is shard {self.shards.ordinal}"
                                )
                            await stream.write(conn.send(ErrorMessage(code="unknown-device", text=text)))
                            return
                        if new is not runtime and new.connected and new.state.online and stream.identity is None:
                            # the device is connected and streaming on another link: this one cannot
                            # prove it is that device, so it may not take it over (one that proves it
                            # with its certificate may: the old link is then the stale one)
                            self._refuse_takeover(new, ev, stream.peer)
                            text = f"device {ev.serial_number} is already connected and streaming"
                            await stream.write(conn.send(ErrorMessage(code="device-connected", text=text)))
                            return
                        if unidentified:
                            self._identified(stream)
                            unidentified = False
                        await new.settle()  # what came before the HELLO is measured as it was sent
                        if new is not runtime:
                            if runtime is not None:
                                runtime.detach(sender)
                            runtime = new
                            self._links[runtime.name] = stream
                            log = log.bind(device=runtime.name)
                            runtime.on_hello(ev)
                            runtime.attach(sender, stream.peer, stream.kind)
                            log.info("device connected")
                        else:
                            runtime.on_hello(ev)
                        continue
                    if runtime is not None:
                        runtime.on_message(ev)
                if runtime is not None and runtime.backlogged:
                    await runtime.caught_up()  # its blocks wait to be measured: the device buffers meanwhile
                if not data:
                    return
                # neither is held through the next read, which waits a block's time: a chunk of up to
                # 64 KB on every link (6.5 MB at a hundred boards), and the last message (a decoded
                # block on a JSON link)
                data = ev = None
        except ProtocolError as exc:
            log.warning("link closed: device broke the protocol", error=str(exc))
        except (ConnectionError, OSError) as exc:
            log.info("link lost", error=str(exc))
        finally:
            if unidentified:
                self._identified(stream)
            if runtime is not None:
                runtime.detach(sender)
                if self._links.get(runtime.name) is stream:
                    del self._links[runtime.name]
                log.info("device disconnected")
            self._streams.discard(stream)
            await stream.close()

    async def close_links(self) -> None:
        """At shutdown, before the last commit: no link may touch the store after it is closed."""
        # together: each close is bounded, but a hundred in turn would add up
        await asyncio.gather(*(stream.close() for stream in list(self._streams)), return_exceptions=True)

    # ------------------------------------------------------------------ background duties

    async def settle_all(self) -> None:
        """Every device's blocks measured and applied (before an answer that acknowledges them, and
        before the last commit at shutdown)."""
        await self.measurer.settle()

    async def commit_settled(self, serial: str | None = None) -> None:
        """Commit what every block received so far from the device with this serial (or every
        device) counted: the HTTP ingest's answer acknowledges them. Only that device is settled:
        the others' batches stay whole."""
        for rt in list(self.runtimes.values()):
            if serial is None or rt.state.config.serial_number == serial:
                await rt.settle()
        self.commit_all()

    def commit_all(self) -> None:
        """Persist every device's counters (one transaction for all) and acknowledge what is durable.
        A failed commit acknowledges nothing (the devices keep the blocks); the first failure of an
        outage is logged at error, and /health reports it until a commit succeeds again."""
        failed = None
        log = self.log.error if self.model.store_error is None else self.log.debug
        prepared: list[tuple[DeviceRuntime, EnergyCommit]] = []
        refused: dict[str, Exception] = {}
        for rt in self.runtimes.values():
            try:
                what = rt.counters()
            except Exception as exc:  # one device's trouble must not stop the others' commits
                refused[rt.name] = exc
                continue
            if what is not None:
                prepared.append((rt, what))
        try:
            refused.update(self.store.commit_energy_many([what for _, what in prepared]))
        except StoreError as exc:
            failed = str(exc)
            log("commit failed; blocks stay unacknowledged on the devices", devices=len(prepared), error=failed)
            self.model.set_store_health(failed)
            return
        for rt, (name, _, pos) in prepared:
            if name not in refused:
                try:
                    rt.committed(pos)
                except Exception as exc:
                    refused[name] = exc
        for name, why in refused.items():
            failed = f"{name}: {why}"
            log("commit failed; blocks stay unacknowledged on the device", device=name, error=str(why))
        if failed is None and self.model.store_error is not None:
            self.log.info("commits succeed again", was=self.model.store_error)
        self.model.set_store_health(failed)

    async def watch_health(self) -> None:
        """Mark a device offline when its link is down or no data was counted for ``offline_after_s``
        (received but dropped data, e.g. replays, does not count); clear loss alarms that saw no new
        loss for ``loss_alarm_hold_s``."""
        while True:
            limit = self.config.bridge.offline_after_s  # read each time: a reload may change them
            hold = self.config.bridge.loss_alarm_hold_s
            await asyncio.sleep(min(1.0, limit / 4))
            now, wall = time.monotonic(), time.time()
            self._sync_clocks(now)
            for d in self.model.devices.values():
                self._check_counted(d, now, limit)
                stale = [
                    (0, name, False, "")
                    for name in LOSS_ALARMS
                    if d.alarms[name].active and wall - (d.alarms[name].last_s or wall) > hold
                ]
                if stale:
                    self.model.reports.set_alarms(d, stale)

    def _sync_clocks(self, now: float) -> None:
        every = self.config.links.time_sync_interval_s
        if not every:
            return
        for rt in self.runtimes.values():
            if rt.connected and rt.synced_at is not None and now - rt.synced_at >= every:
                with contextlib.suppress(DeviceOffline):
                    rt.sync_clock()

    def _check_counted(self, d: DeviceState, now: float, limit: float) -> None:
        link = d.link
        if not link.connected:
            self.model.links.mark_silent(d, "link down")
            return
        since = link.last_counted_monotonic
        if since is None or (link.connected_monotonic is not None and since < link.connected_monotonic):
            since = link.connected_monotonic  # nothing counted on this link yet
        if since is None or now - since <= limit:
            return
        dropped = f"; {link.duplicates} blocks dropped as replays so far" if link.duplicates else ""
        if self.model.links.mark_silent(d, f"no data counted for {now - since:.1f} s{dropped}"):
            self.log.warning("device not counted, marked offline", device=d.name, silent_s=round(now - since, 1))
