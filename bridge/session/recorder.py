"""The event recorder: a short ring of every device's raw samples, cut into a COMTRADE record around
each trigger (a voltage event's start, or a manual request), kept under a size and age policy.

Memory per device is bounded by the ring: pre-trigger + the detection delay (an event is seen at most
a measurement batch and a block after it starts; once a batch has been measured, by its end less the
detector's settling), and the post-trigger cycles too while a record waits for them, as the
device's binary payloads (its delta coding, smaller than the counts) or as 16- or 24-bit counts
where the ADC allows. A record waits until its post-trigger samples have arrived;
one whose samples are gone (a trigger older than the ring, as for events in blocks replayed after an
outage that outlasted it) is written with what the ring still holds, or not at all, and the log says
so. File names carry device, trigger time and kind, so a replayed block's event is not recorded
twice.
"""

from __future__ import annotations

import collections
import datetime as dt
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bridge.config import Config
from bridge.logs import audit, get_logger
from bridge.model import Model, SampleBlock, Trigger, WaveformRecord
from bridge.records.comtrade import AnalogChannel, record
from device.protocol.encoding import decode_samples_binary

log = get_logger("bridge.records")
_NAME = re.compile(r"^(?P<dev>.+)_(?P<t>\d{8}T\d{6}\.\d{6})Z_(?P<kind>dip|swell|interruption|manual)(?P<c>\d*)$")
# How long after its start an event is noticed, beyond the batch and the block that completed it (a
# batch runs once that block brings at least analysis.batch_s of new signal, and decides every
# half-cycle boundary it has settled): a boundary put in for a missing crossing lags by 1.5 half
# cycles (15 ms at 50 Hz), the crossing fit by a few samples, the device's block stamps jitter; 0.1 s
# holds all of them with room.
DETECTION_SLACK_S = 0.1


@dataclass(slots=True)
class _Held:
    t0_s: float
    t1_s: float
    fs: float
    channels: int
    # either the binary payload the block came in (and the samples of it counted before) ...
    wire: bytes | None
    skip: int
    # ... or the counts themselves, (2 x circuits, n), as narrow as they fit (``_narrow``)
    counts: np.ndarray | None
    high: np.ndarray | None
    scale: np.ndarray
    offset: np.ndarray


def _narrow(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Counts as narrow as they fit: 16 bits; 24 (a 24-bit ADC's: the low 16 bits and the top byte
    apart, a quarter less than int32); else 32. Wrapping casts of the whole block, no byte shuffling."""
    if counts.size == 0:
        return counts.astype(np.int16), None
    lo, hi = int(counts.min()), int(counts.max())
    if lo >= -0x8000 and hi <= 0x7FFF:
        return counts.astype(np.int16), None
    if lo >= -0x800000 and hi <= 0x7FFFFF:
        return counts.astype(np.uint16), (counts >> 16).astype(np.int8)
    return counts.astype(np.int32), None


def _hold(block: SampleBlock) -> _Held:
    """A block for the ring. Its binary payload when the block came as one and it is no larger than
    the counts held as 24-bit (it is smaller for a household board: the device's delta coding), so a
    block costs nothing on the receive path; else the counts, narrowed."""
    t1 = block.t0_s + block.n / block.fs
    scale, offset = block.scale.copy(), block.offset.copy()
    if block.wire is not None and len(block.wire) <= 3 * 2 * block.circuits * block.n:
        return _Held(block.t0_s, t1, block.fs, 2 * block.circuits, block.wire, block.skip, None, None, scale, offset)
    counts, high = _narrow(block.counts)
    return _Held(block.t0_s, t1, block.fs, 2 * block.circuits, None, 0, counts, high, scale, offset)


def _wide(held: _Held) -> np.ndarray:
    """Held counts back as integers, (2 x circuits, n)."""
    if held.wire is not None:
        msg = decode_samples_binary(held.wire)  # it was decoded once already: it decodes again
        return np.concatenate((msg.v[:, held.skip :], msg.i[:, held.skip :]))
    assert held.counts is not None
    if held.high is None:
        return held.counts
    return (held.high.astype(np.int32) << 16) | held.counts.astype(np.int32)


def record_name(device: str, trigger: Trigger) -> str:
    stamp = dt.datetime.fromtimestamp(trigger.t_s, dt.UTC).strftime("%Y%m%dT%H%M%S.%f")
    return f"{device}_{stamp}Z_{trigger.kind}{trigger.circuit or ''}"


class EventRecorder:
    def __init__(self, config: Config, model: Model, state_dir: Path) -> None:
        self.cfg = config.records
        self.model = model
        self.station = config.bridge.name
        folder = Path(self.cfg.folder)
        self.folder = folder if folder.is_absolute() else state_dir / folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self._ring: dict[str, collections.deque[_Held]] = {}
        self._newest: dict[str, float] = {}  # the end of the newest sample each ring holds
        self._decided: dict[str, float] = {}  # measured up to here: every event before it triggered
        self._pending: dict[str, list[Trigger]] = {}
        self._written: dict[str, collections.deque[tuple[float, float]]] = {}  # recent record spans
        self._batch_s = config.analysis.batch_s
        model.samples.subscribe(self._on_block)
        model.samples.on_trigger(self._on_trigger)
        model.samples.on_decided(self._on_decided)
        self.saved = 0
        for name in model.devices:
            self._publish(name)

    def reconfigure(self, config: Config) -> None:
        """A reload's record policy (``enabled`` and the folder stay: changing them needs a restart)."""
        self.cfg = config.records
        for name in self.model.devices:
            self._publish(name)

    def forget(self, device: str) -> None:
        """A reload removed the device: its ring goes (its records stay on disk)."""
        self._ring.pop(device, None)
        self._newest.pop(device, None)
        self._decided.pop(device, None)
        self._pending.pop(device, None)

    # ------------------------------------------------------------------ timing

    def _cycles_s(self, device: str) -> tuple[float, float]:
        f = float(self.model.devices[device].config.f_nominal)
        return self.cfg.pre_cycles / f, self.cfg.post_cycles / f

    def _ring_s(self, device: str) -> float:
        """The span the ring holds: the pre-trigger cycles before the earliest moment an event not
        yet noticed can have started, and the post-trigger cycles only while a record waits for them."""
        pre, post = self._cycles_s(device)
        ring = self._ring.get(device)
        block = ring[-1].t1_s - ring[-1].t0_s if ring else 0.0  # the newest, which completed the last batch
        detection = self._batch_s + block + DETECTION_SLACK_S
        return pre + (post if self._pending.get(device) else 0.0) + detection

    # ------------------------------------------------------------------ input

    def _on_block(self, block: SampleBlock) -> None:
        if block.device not in self.model.devices or not self.cfg.enabled:
            return
        held = _hold(block)
        ring = self._ring.setdefault(block.device, collections.deque())
        newest = self._newest.get(block.device)
        if newest is not None and held.t1_s < newest - self._ring_s(block.device):
            self._clock_went_back(block.device, newest - held.t1_s)
        ring.append(held)
        self._newest[block.device] = max(held.t1_s, self._newest.get(block.device, held.t1_s))
        if self._pending.get(block.device):
            # before the trim: a record due now gets every sample the ring held (after a gap in the
            # stream, an outage the device could not buffer through, the trim would drop them first)
            self._due(block.device)
        self._trim(block.device)

    def _clock_went_back(self, device: str, by_s: float) -> None:
        """A block from before everything the ring holds: the device's clock was set back (a reset,
        a new time source). A record still waiting is written with what the ring holds of the old
        clock, and the ring starts again on the new one (the old blocks cannot share a record with
        the new, and would hide them: the ring keeps what is near its newest block)."""
        log.warning(
            "device clock went back: waveform records start again on its new time", device=device, by_s=round(by_s, 3)
        )
        pre, post = self._cycles_s(device)
        for trigger in self._pending.pop(device, []):
            self._write(device, trigger, pre, post)
        self._ring[device].clear()
        self._newest.pop(device, None)
        self._decided.pop(device, None)
        self._written.pop(device, None)  # spans on the old clock

    def _on_decided(self, device: str, t_s: float) -> None:
        if device in self._ring:
            self._decided[device] = t_s
            self._trim(device)

    def _trim(self, device: str) -> None:
        """Drop what no record can need. Without word from the analyzer, the ring keeps the whole
        detection delay (``_ring_s``). Once a batch has been measured, every event that started
        before its end (less the detector's settling) has been triggered, so only the pre-trigger
        cycles before that are kept, and what a waiting record still needs: between batches about a
        third of what the detection delay asks (the blocks of the next batch come in together)."""
        ring = self._ring[device]  # never emptied: the cut is always before the newest sample it holds
        pre, _ = self._cycles_s(device)
        cut = self._newest[device] - self._ring_s(device)
        decided = self._decided.get(device)
        if decided is not None:
            # (the newest block's end, should the device's clock have gone back since)
            undecided = min(decided, ring[-1].t1_s) - DETECTION_SLACK_S
            waiting = [t.t_s for t in self._pending.get(device, ())]
            cut = max(cut, min([undecided, *waiting]) - pre)
        while ring and ring[0].t1_s < cut:
            ring.popleft()

    def _on_trigger(self, trigger: Trigger) -> None:
        """Triggers within one record's span are one record (a mains dip starts on every circuit at
        once: one record of all channels, named after the first circuit that saw it)."""
        device = trigger.device
        if device not in self.model.devices:
            return
        pre, post = self._cycles_s(device)
        spans = [(t.t_s - pre, t.t_s + post) for t in self._pending.get(device, [])]
        spans += list(self._written.get(device, ()))
        if any(a <= trigger.t_s <= b for a, b in spans):
            return
        self._pending.setdefault(device, []).append(trigger)
        self._due(device)

    def manual(self, device: str) -> Trigger:
        """A record of now (the newest sample), as for an event: pre- and post-trigger cycles."""
        t = self._newest[device] if self._ring.get(device) else time.time()
        trigger = Trigger(device, t, "manual", 0)
        self._on_trigger(trigger)
        return trigger

    # ------------------------------------------------------------------ output

    def _due(self, device: str) -> None:
        if not self._ring.get(device):
            return
        newest = self._newest[device]
        pre, post = self._cycles_s(device)
        waiting = []
        for trig in self._pending.get(device, []):
            if trig.t_s + post <= newest or trig.t_s < newest - self._ring_s(device):
                self._write(device, trig, pre, post)
            else:
                waiting.append(trig)
        self._pending[device] = waiting

    def _write(self, device: str, trigger: Trigger, pre: float, post: float) -> None:
        name = record_name(device, trigger)
        cfg_path, dat_path = self.folder / f"{name}.cfg", self.folder / f"{name}.dat"
        self._written.setdefault(device, collections.deque(maxlen=16)).append((trigger.t_s - pre, trigger.t_s + post))
        if cfg_path.exists():
            return  # the same event from blocks replayed after a restart
        ring = self._ring[device]
        start, end = trigger.t_s - pre, trigger.t_s + post
        # the contiguous run of blocks (in time order) that holds the trigger
        held = sorted((h for h in ring if h.t1_s > start and h.t0_s < end), key=lambda h: h.t0_s)
        if not held:
            log.warning("no samples left for a waveform record", device=device, trigger=trigger.reason)
            return
        fs = held[0].fs
        run = [held[0]]
        for h in held[1:]:
            if abs(h.t0_s - run[-1].t1_s) > 1.5 / fs or h.channels != run[0].channels:
                if run[-1].t1_s > trigger.t_s:
                    break
                run = [h]  # a gap before the trigger: start after it
                continue
            run.append(h)
        counts = np.concatenate([_wide(h) for h in run], axis=1)
        t0 = run[0].t0_s
        first = max(0, round((start - t0) * fs))
        last = min(counts.shape[1], round((end - t0) * fs))
        counts = counts[:, first:last]
        if counts.shape[1] == 0:
            return
        dev = self.model.devices[device]
        circuits = counts.shape[0] // 2
        scale, offset = run[-1].scale, run[-1].offset
        channels = [
            AnalogChannel(
                f"C{c + 1:02d} {'V' if q == 0 else 'I'}",
                "",
                dev.circuits[c].name,
                "V" if q == 0 else "A",
                float(scale[q * circuits + c]),
                float(offset[q * circuits + c]),
            )
            for q in (0, 1)
            for c in range(circuits)
        ]
        cfg_text, dat = record(
            station=self.station,
            device_id=f"{device} {dev.config.serial_number}",
            channels=channels,
            counts=counts,
            fs=fs,
            f_line=float(dev.config.f_nominal),
            start_s=t0 + first / fs,
            trigger_s=trigger.t_s,
        )
        tmp = dat_path.with_suffix(".dat.tmp")
        tmp.write_bytes(dat)
        os.replace(tmp, dat_path)
        cfg_path.write_text(cfg_text, newline="")  # the .cfg last: a listed record is complete
        self.saved += 1
        log.info("waveform record saved", device=device, trigger=trigger.reason, file=str(cfg_path))
        audit("waveform record saved", device=device, trigger=trigger.reason, record=name)
        self._retain()
        self._publish(device)

    # ------------------------------------------------------------------ retention and listing

    def _records(self) -> list[tuple[float, Path]]:
        out = []
        for cfg in self.folder.glob("*.cfg"):
            try:
                out.append((cfg.stat().st_mtime, cfg))
            except OSError:
                continue
        return sorted(out)

    def _retain(self) -> None:
        now = time.time()
        records = self._records()
        sizes = {p: _size(p) for _, p in records}
        total = sum(sizes.values())
        limit = self.cfg.max_mb * 1e6
        touched = set()
        for mtime, cfg in records:
            if total <= limit and now - mtime <= self.cfg.max_age_days * 86400:
                continue
            total -= sizes[cfg]
            for p in (cfg, cfg.with_suffix(".dat")):
                p.unlink(missing_ok=True)
            m = _NAME.match(cfg.stem)
            if m:
                touched.add(m.group("dev"))
            log.info("waveform record removed by the retention policy", record=cfg.stem)
        for device in touched & set(self.model.devices):
            self._publish(device)

    def listing(self, device: str) -> list[WaveformRecord]:
        out = []
        for _, cfg in self._records():
            m = _NAME.match(cfg.stem)
            if m is None or m.group("dev") != device:
                continue
            t = dt.datetime.strptime(m.group("t"), "%Y%m%dT%H%M%S.%f").replace(tzinfo=dt.UTC).timestamp()
            out.append(WaveformRecord(cfg.stem, t, m.group("kind"), int(m.group("c") or 0), str(self.folder)))
        return sorted(out, key=lambda r: r.trigger_s)

    def _publish(self, device: str) -> None:
        self.model.reports.set_records(self.model.devices[device], self.listing(device))


def _size(cfg: Path) -> int:
    try:
        return cfg.stat().st_size + cfg.with_suffix(".dat").stat().st_size
    except OSError:
        return 0
