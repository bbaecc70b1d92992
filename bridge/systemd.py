"""systemd's service notifications (sd_notify(3)): READY=1 when every front serves, WATCHDOG=1 from
the event loop, RELOADING=1 / READY=1 around a live reload, STOPPING=1 at shutdown.

The protocol is one datagram to the Unix socket in $NOTIFY_SOCKET; written here rather than taken
from ``sdnotify`` (unmaintained since 2017) or ``systemd-python`` (needs libsystemd's headers to
build). Outside systemd (no $NOTIFY_SOCKET) every call does nothing.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Mapping

from .logs import get_logger

log = get_logger("bridge.systemd")


class Notifier:
    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        addr = env.get("NOTIFY_SOCKET", "")
        self.address = "\0" + addr[1:] if addr.startswith("@") else addr  # @: the abstract namespace
        pid = env.get("WATCHDOG_PID")
        usec = int(env.get("WATCHDOG_USEC", "0") or 0)
        # the watchdog is ours when systemd set it for this process (not for a parent that ran us)
        self.watchdog_s = usec / 1e6 if usec > 0 and (pid is None or pid == str(os.getpid())) else 0.0
        self._warned = False

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def notify(self, *fields: str) -> bool:
        if not self.address:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
                s.sendto("\n".join(fields).encode(), self.address)
            return True
        except OSError as exc:
            if not self._warned:  # once: a service manager that went away is not worth a log line a tick
                self._warned = True
                log.warning("systemd notification failed", socket=self.address, error=str(exc))
            return False

    def ready(self, status: str = "") -> None:
        self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def reloading(self) -> None:
        self.notify("RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")

    def stopping(self) -> None:
        self.notify("STOPPING=1")

    async def feed_watchdog(self) -> None:
        """WATCHDOG=1 at half the interval systemd asked for, from the event loop itself: a blocked or
        hung loop stops the pings and systemd restarts the service."""
        if not self.watchdog_s:
            return
        while True:
            self.notify("WATCHDOG=1")
            await asyncio.sleep(self.watchdog_s / 2)
