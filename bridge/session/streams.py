"""A device's numbering of its blocks and the loss seen in it: which stream (boot) the stored
position belongs to, how often the device started anew, and how many blocks it reported dropped.
Kept in the store's stream record, so all of it survives a bridge restart."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from bridge.store import Store, StreamRecord
from device.protocol import Hello
from device.protocol.sequence import is_after

Persist = Callable[[Callable[[], None]], None]  # runs a write; the session decides what a refusal means


class StreamBook:
    def __init__(self, store: Store, device: str, persist: Persist) -> None:
        self.store = store
        self.device = device
        self.persist = persist
        self.record: StreamRecord = store.stream(device)

    def _save(self, *, new_stream: bool = False) -> None:
        rec = self.record
        self.persist(lambda: self.store.save_stream(self.device, rec, new_stream=new_stream))

    def restart_reason(self, hello: Hello, last_seq: int | None) -> str | None:
        """Why this HELLO starts a new stream (the device numbers its blocks anew), or None."""
        known = self.record.boot_id
        if hello.boot_id and known and hello.boot_id != known:
            return f"boot id {known} -> {hello.boot_id}"
        if last_seq is not None and not is_after(hello.next_block_seq, last_seq):
            # a device never numbers backwards within one stream: its next block would be a replay
            return f"its next block {hello.next_block_seq} is not after the last counted {last_seq}"
        return None

    def on_hello(self, hello: Hello, last_seq: int | None) -> str | None:
        """Take a HELLO; returns the reason when it starts a new stream (then the stored position,
        which belongs to the old numbering, goes in the same transaction as the new record)."""
        reason = self.restart_reason(hello, last_seq)
        if reason is None:
            if hello.boot_id and hello.boot_id != self.record.boot_id:  # first seen: remember it
                self.record = dataclasses.replace(self.record, boot_id=hello.boot_id)
                self._save()
            return None
        self.record = dataclasses.replace(
            self.record, boot_id=hello.boot_id, restarts=self.record.restarts + 1, device_dropped=0
        )
        self._save(new_stream=True)
        return reason

    def on_dropped(self, reported: int) -> int:
        """The device's own dropped-blocks counter (since its boot); returns the blocks newly dropped.
        The baseline is persisted, so drops while the bridge was down are seen after a restart too."""
        if reported == self.record.device_dropped:
            return 0
        lost = reported - self.record.device_dropped
        if lost < 0:  # the device's counter started again (a reboot): what it reports now is new
            lost = reported
        self.record = dataclasses.replace(
            self.record, dropped_blocks=self.record.dropped_blocks + lost, device_dropped=reported
        )
        self._save()
        return lost
