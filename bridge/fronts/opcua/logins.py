"""Password logins: verified off the event loop, failed attempts throttled per client address and per
user (a growing delay, then a lockout), every failure and lockout audited."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field

from bridge.config import OpcUaSection
from bridge.logs import audit, get_logger

from .passwords import verify_password

log = get_logger("bridge.opcua")
MAX_DELAY_S = 8.0


@dataclass(slots=True)
class _Record:
    failures: deque[float] = field(default_factory=deque)
    locked_until: float = 0.0


class LoginThrottle:
    """Failure records by key ("address 10.1.2.3", "user op")."""

    def __init__(self, cfg: OpcUaSection) -> None:
        self.cfg = cfg
        self._records: dict[str, _Record] = {}

    def _record(self, key: str, now: float) -> _Record:
        rec = self._records.setdefault(key, _Record())
        while rec.failures and now - rec.failures[0] > self.cfg.login_window_s:
            rec.failures.popleft()
        return rec

    def locked(self, keys: list[str], now: float) -> str | None:
        """The key that is locked out now, if any."""
        return next((k for k in keys if self._record(k, now).locked_until > now), None)

    def failed(self, keys: list[str], now: float) -> tuple[float, list[str]]:
        """Count one failure; returns the delay to wait before answering and the keys newly locked."""
        worst, locked = 0, []
        for k in keys:
            rec = self._record(k, now)
            rec.failures.append(now)
            worst = max(worst, len(rec.failures))
            if len(rec.failures) >= self.cfg.login_max_failures and rec.locked_until <= now:
                rec.locked_until = now + self.cfg.login_lockout_s
                locked.append(k)
        return min(self.cfg.login_delay_s * 2 ** (worst - 1), MAX_DELAY_S), locked

    def succeeded(self, keys: list[str]) -> None:
        for k in keys:
            self._records.pop(k, None)

    def forget_idle(self, now: float) -> None:
        """Bound the memory an address-scanning attacker can cost: drop records with nothing left."""
        for k in [k for k, r in self._records.items() if not r.failures and r.locked_until <= now]:
            del self._records[k]


class PasswordLogins:
    """Checks a user name and password for a client address. The scrypt hash runs in a worker
    thread; a failure's answer is delayed without holding the event loop."""

    def __init__(self, cfg: OpcUaSection) -> None:
        self.hashes = {u.name: u.password_hash for u in cfg.users}
        self.throttle = LoginThrottle(cfg)
        self._told: set[str] = set()  # locked keys whose refusal was logged at warning
        # a locked-out attempt waits as long as the last failure before the lockout did
        self.locked_delay_s = min(cfg.login_delay_s * 2 ** (cfg.login_max_failures - 1), MAX_DELAY_S)

    async def check(self, user: str, password: str, address: str) -> bool:
        now = time.monotonic()
        keys = [f"address {address}", f"user {user}"]
        self.throttle.forget_idle(now)
        locked = self.throttle.locked(keys, now)
        if locked is not None:
            # no hash is computed for a locked key; the refusal is logged once per lockout, audited always
            first = locked not in self._told
            self._told.add(locked)
            (log.warning if first else log.debug)(
                "OPC UA login refused: locked out after repeated failures", user=user, client=address
            )
            audit("login refused", front="opcua", user=user, client=address, reason="locked-out", key=locked)
            await asyncio.sleep(self.locked_delay_s)
            return False
        stored = self.hashes.get(user)
        ok = stored is not None and await asyncio.to_thread(verify_password, password, stored)
        if ok:
            self.throttle.succeeded(keys)
            self._told.difference_update(keys)
            return True
        delay, newly_locked = self.throttle.failed(keys, time.monotonic())
        log.warning("OPC UA login refused", user=user, client=address, retry_delay_s=delay)
        audit("login refused", front="opcua", user=user, client=address, reason="wrong user or password")
        for k in newly_locked:
            self._told.discard(k)
            log.warning("OPC UA logins locked out", key=k, lockout_s=self.throttle.cfg.login_lockout_s)
            audit("login lockout", front="opcua", key=k, lockout_s=self.throttle.cfg.login_lockout_s)
        await asyncio.sleep(delay)
        return False
