"""The streaming analyzer: sample blocks of one device in, windows, voltage events and energy out.

State carried across blocks is only what the next block needs (a sample tail, detector states,
counters), and every decision is taken on sample positions, never on where a block happened to end,
so feeding the same samples in any cuts gives the same results bit for bit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from .aggregate import Aggregate, Aggregator, ClassAFrequency
from .crossings import CrossingDetector, fit_half
from .energy import EnergyBank
from .events import EventDetector, Thresholds, VoltageEvent
from .window import WindowMetrics, fill_products, measure_windows, segment_sums

FloatArray = npt.NDArray[np.float64]


def _fits_int32(a: npt.NDArray[Any]) -> bool:
    """Counts the buffer holds exactly as int32: an ADC of up to 24 bits gives them (decoded as
    int64), but a device's word is checked, not trusted."""
    if a.dtype.kind not in "iu":
        return False
    if a.dtype.itemsize < 4 or (a.dtype.kind == "i" and a.dtype.itemsize == 4):
        return True
    return a.size == 0 or (int(a.min()) >= -(2**31) and int(a.max()) < 2**31)


def _same(a: FloatArray | None, b: npt.ArrayLike | None) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and np.array_equal(a, b))


SYNC_TOLERANCE = 1.25  # a window may be this much longer than nominal (down to 40 Hz at 50 Hz nominal)


@dataclass(frozen=True, slots=True, kw_only=True)
class AnalyzerSettings:
    fs: float
    f_nominal: float = 50.0
    u_nominal: float = 230.0
    thresholds: Thresholds = field(default_factory=Thresholds)
    v_clip: tuple[float, ...] | None = None  # |volts| at the ADC rail, per circuit
    i_clip: tuple[float, ...] | None = None
    # work on at least this much new signal at a time: per-call numpy overhead dominates small blocks,
    # and results cannot depend on it (every decision is taken on sample positions)
    min_batch_s: float = 0.2
    # the share of min_batch_s by which the first batch comes early (0..1): boards that connected
    # together would otherwise all be measured in the same event-loop turn, once a batch, and the
    # last of a hundred waits for the other 99; a per-board phase spreads them over the batch period
    batch_phase: float = 0.0
    # measure the harmonic spectrum in one window out of this many (1 = every window); the windows in
    # between carry the last spectrum over (``WindowMetrics.harmonics_fresh`` False). The spectrum is
    # the dearest thing the core computes: an FFT over ~1563 samples per channel and window.
    harmonics_every: int = 1

    def __post_init__(self) -> None:
        if not 500 <= self.fs <= 100_000:
            raise ValueError(f"fs must be a sample rate in Hz (500..100000), got {self.fs}")
        if self.f_nominal not in (50.0, 60.0):
            raise ValueError(f"f_nominal must be 50 or 60 Hz, got {self.f_nominal}")
        if not self.u_nominal > 0:
            raise ValueError(f"u_nominal must be > 0 V, got {self.u_nominal}")
        if not 0 <= self.min_batch_s <= 10:
            raise ValueError(f"min_batch_s must be 0..10 s, got {self.min_batch_s}")
        if not 0 <= self.batch_phase < 1:
            raise ValueError(f"batch_phase must be 0..1, got {self.batch_phase}")
        if not 1 <= self.harmonics_every <= 3000:
            raise ValueError(f"harmonics_every must be 1..3000 windows, got {self.harmonics_every}")

    @property
    def cycles(self) -> int:
        """Cycles per window: 10 at 50 Hz, 12 at 60 Hz (about 200 ms)."""
        return 10 if self.f_nominal == 50.0 else 12

    @property
    def nominal_window(self) -> float:
        return self.cycles * self.fs / self.f_nominal


@dataclass(frozen=True, slots=True)
class Update:
    windows: list[WindowMetrics]
    events: list[VoltageEvent]
    aggregates: list[Aggregate] = field(default_factory=list)
    freq_10s: list[tuple[float, float]] = field(default_factory=list)  # (interval start s, Class A Hz)


class StreamAnalyzer:
    """Analyse a device's circuits from consecutive sample blocks.

    ``feed`` takes float64 volts and amperes shaped ``(circuits, n)``; window synchronisation follows
    the first circuit's voltage (circuits of one board share the mains frequency; a whole number of
    cycles of one phase is a whole number of cycles of every phase).
    """

    def __init__(self, circuits: int, settings: AnalyzerSettings, *, origin_s: float = 0.0) -> None:
        if circuits < 1:
            raise ValueError("circuits must be >= 1")
        self.c = circuits
        self.cfg = settings
        for name in ("v_clip", "i_clip"):
            clip = getattr(settings, name)
            if clip is not None and len(clip) != circuits:
                raise ValueError(f"{name} needs one value per circuit ({circuits}), got {len(clip)}")
        self._v_clip = None if settings.v_clip is None else np.asarray(settings.v_clip, dtype=np.float64)
        self._i_clip = None if settings.i_clip is None else np.asarray(settings.i_clip, dtype=np.float64)
        self.energy = EnergyBank(circuits)
        self.events = EventDetector(circuits, settings.u_nominal, settings.thresholds)
        self.aggregator = Aggregator(circuits)
        self.class_a = ClassAFrequency()
        self.last_seq: int | None = None
        self.duplicates = 0
        self.gaps = 0
        self._reset(origin_s, 0)

    def _reset(self, origin_s: float, index: int) -> None:
        self._origin_s = origin_s
        self._origin_idx = index
        self._processed_until = index - round(self.cfg.batch_phase * self.cfg.min_batch_s * self.cfg.fs)
        self._start = index  # global index of buffer column 0
        # rows: v, i (c each); columns past _n are free room for new blocks. The products the
        # measurement sums (v^2, i^2, v*i: window.with_products) are made per batch, for that batch
        # only: kept here they were 3/5 of a board's memory (~3 MB at 10 circuits), for no gain in speed.
        # ADC counts are kept as counts (int32: half of float64, 0.9 MB a board) with the scale and
        # offset of each run of blocks (``_segments``: first column, scale, offset), turned into volts
        # and amperes per batch with the same float64 arithmetic as block by block: the same results
        # bit for bit. Volts and amperes fed as floats are kept as float64.
        self._buf: npt.NDArray[Any] = np.empty((2 * self.c, 0))
        self._segments: list[tuple[int, FloatArray, FloatArray | None]] = []
        self._scratch = np.empty((2 * self.c, 0))
        self._n = 0
        self._win_count = 0  # synchronised windows since the reset: picks those whose spectrum is measured
        self._held: WindowMetrics | None = None  # the last window with a fresh spectrum
        self._det = CrossingDetector(0.05 * math.sqrt(2) * self.cfg.u_nominal, half=fit_half(self.cfg.fs))
        self._det.settled_until = index + self._det.half
        self._rising = np.empty(0)  # settled rising crossings not yet used as a window end
        self._cycle_edges = np.empty(0)  # settled rising crossings from the open window on
        self._win_start: float | None = None
        self._synced = False
        self._bounds_last = index - 0.5  # last half-cycle boundary (crossing or synthetic)
        self._half_prev: tuple[FloatArray, float] | None = None  # v^2 integral and length, last half cycle
        self._flag_pos = np.empty(0)
        self._flag_val = np.empty((self.c, 0), dtype=bool)
        self.last_urms_half = np.full(self.c, np.nan)  # latest Urms(1/2) per circuit, volts

    @property
    def end(self) -> int:
        """Global index one past the last sample fed."""
        return self._start + self._n

    @property
    def integrated_until(self) -> int:
        """Global index of the first sample whose energy is not yet in the counters (the open
        window's first sample; its edge share is counted, a difference of under one sample)."""
        if self._win_start is None:
            return self._origin_idx
        return math.floor(self._win_start + 0.5)

    @property
    def measured_until(self) -> int:
        """Global index one past the last sample a batch has measured (events decided up to it, but
        for the detector's settling)."""
        return max(self._processed_until, self._origin_idx)

    @property
    def room(self) -> int:
        """Samples the buffer has room for (what it holds in memory), per channel."""
        return int(self._buf.shape[1])

    def due(self, more: int) -> bool:
        """Whether ``more`` further samples, fed in order with no gap, would make a batch run: a
        caller that holds blocks until then (as encoded payloads, smaller than counts) feeds them
        all at that point and gets the same results at the same block as when feeding each at once."""
        return self.end + more - self._processed_until >= self.cfg.min_batch_s * self.cfg.fs

    def reserve(self, more: int) -> None:
        """Room for ``more`` samples, made at once (blocks fed one after the other grow it in steps)."""
        if self._n + more > self._buf.shape[1]:
            grown = np.empty((2 * self.c, self._n + more), dtype=self._buf.dtype)
            grown[:, : self._n] = self._buf[:, : self._n]
            self._buf = grown

    @property
    def origin(self) -> tuple[float, int]:
        """(seconds, global index) of the sample the clock counts from: ``time_of`` elsewhere."""
        return self._origin_s, self._origin_idx

    def time_of(self, position: float) -> float:
        """Seconds (on the caller's clock) of a global sample position."""
        return self._origin_s + (position - self._origin_idx) / self.cfg.fs

    # ------------------------------------------------------------------ input

    def feed(
        self,
        v: npt.ArrayLike,
        i: npt.ArrayLike,
        *,
        seq: int | None = None,
        t0_s: float | None = None,
        scale: FloatArray | None = None,
        offset: FloatArray | None = None,
    ) -> Update:
        """Add one block. ``seq`` (u32) makes feeding idempotent: a block at or before the last one seen
        is ignored; a jump resynchronises (the gap is counted). ``t0_s`` is the time of the block's
        first sample; it sets the clock after a gap or at the start.

        Without ``scale`` the samples are volts and amperes. With it they are ADC counts (any numeric
        dtype) and ``scale``/``offset`` (``2 * circuits``: voltages, then currents) turn them into
        volts and amperes as they are copied in, so the caller makes no scaled copy of its own."""
        va = np.asarray(v)
        ia = np.asarray(i)
        if va.ndim == 1:
            va, ia = va[None, :], ia[None, :]
        if va.shape != ia.shape or va.shape[0] != self.c:
            raise ValueError(f"v and i must both be ({self.c}, n) arrays, got {va.shape} and {ia.shape}")
        pre: Update | None = None
        if seq is not None:
            if self.last_seq is not None:
                step = (seq - self.last_seq) & 0xFFFFFFFF
                if step == 0 or step >= 0x80000000:
                    self.duplicates += 1
                    return Update([], [])
                if step > 1:
                    self.gaps += 1
                    pre = self.flush()
                    self.class_a = ClassAFrequency()  # cycles were lost: this interval cannot be counted
                    self._reset(t0_s if t0_s is not None else self.time_of(self.end), self.end)
            self.last_seq = seq
        if t0_s is not None and self.end == self._origin_idx:
            self._origin_s = t0_s
        self._append(va, ia, scale, offset)
        if pre is None and self.end - self._processed_until < self.cfg.min_batch_s * self.cfg.fs:
            return Update([], [])
        out = self._process(final=False)
        if pre is not None:
            return Update(
                pre.windows + out.windows,
                pre.events + out.events,
                pre.aggregates + out.aggregates,
                pre.freq_10s + out.freq_10s,
            )
        return out

    def _append(
        self, va: npt.NDArray[Any], ia: npt.NDArray[Any], scale: FloatArray | None, offset: FloatArray | None
    ) -> None:
        c, n = self.c, va.shape[1]
        need = self._n + n
        counts = scale is not None and _fits_int32(va) and _fits_int32(ia)
        if counts != (self._buf.dtype == np.int32):
            if self._n == 0:
                self._buf = np.empty((2 * c, self._buf.shape[1]), dtype=np.int32 if counts else np.float64)
                self._segments = []
            else:  # floats after counts: what is held becomes volts and amperes, and stays so
                self._buf, counts = self._volts(self._buf.shape[1]), False
                self._segments = []
        if need > self._buf.shape[1]:
            # room for two more blocks, not double: the buffer settles at one batch plus the open
            # window after a few grows in the first batch (a copy each), where doubling left it ~60 %
            # and a quarter to spare ~25 % larger than it ever needs
            grown = np.empty((2 * c, max(need + 2 * n, 4096)), dtype=self._buf.dtype)
            grown[:, : self._n] = self._buf[:, : self._n]
            self._buf = grown
        if counts:
            assert scale is not None
            last = self._segments[-1] if self._segments else None
            if last is None or not _same(last[1], scale) or not _same(last[2], offset):
                self._segments.append((self._n, np.array(scale, dtype=np.float64),
                                       None if offset is None else np.array(offset, dtype=np.float64)))  # fmt: skip
            self._buf[:c, self._n : need] = va
            self._buf[c : 2 * c, self._n : need] = ia
            self._n = need
            return
        # Built in a small contiguous block first, then copied in: numpy's elementwise loops over
        # short rows of a wide buffer cost 3-4x the same work on contiguous memory, a strided copy does not.
        if self._scratch.shape[1] != n:
            self._scratch = np.empty((2 * c, n))
        blk = self._scratch
        blk[:c] = va
        blk[c : 2 * c] = ia
        if scale is not None:
            blk *= scale[:, None]
        if offset is not None:
            blk += offset[:, None]
        self._buf[:, self._n : need] = blk
        self._n = need

    def flush(self) -> Update:
        """Close the open window at the last sample (for the end of a capture or before a gap)."""
        return self._process(final=True)

    def restart_stream(self) -> Update:
        """The source started numbering its blocks anew (a device reboot): close what is open and
        forget the numbering; the next block starts a new timeline at its own ``t0_s``. Energy goes
        on accumulating: nothing is invented for the time between."""
        pre = self.flush()
        self.class_a = ClassAFrequency()
        self.last_seq = None
        self._reset(self.time_of(self.end), self.end)
        return pre

    # ------------------------------------------------------------------ processing

    def _volts(self, columns: int) -> FloatArray:
        """The held samples as float64 volts and amperes, ``columns`` wide."""
        out = np.empty((2 * self.c, columns))
        self._volts_into(out)
        return out

    def _volts_into(self, out: FloatArray) -> None:
        """The held samples into ``out[:, :n]`` as volts and amperes (counts scaled run by run)."""
        n = self._n
        out[:, :n] = self._buf[:, :n]
        if self._buf.dtype == np.int32:
            bounds = [a for a, _, _ in self._segments[1:]] + [n]
            for (a, scale, offset), b in zip(self._segments, bounds, strict=True):
                part = out[:, a:b]
                part *= scale[:, None]  # as block by block: counts times scale, then the offset
                if offset is not None:
                    part += offset[:, None]

    def _process(self, *, final: bool) -> Update:
        self._processed_until = self.end
        c, n = self.c, self._n
        work = np.empty((5 * c, n))  # this batch's samples with their products (freed after it)
        self._volts_into(work[: 2 * c])
        fill_products(work)
        events, crossings = self._half_cycles(work)
        if crossings.size:
            self._rising = np.concatenate((self._rising, crossings))
            self._cycle_edges = np.concatenate((self._cycle_edges, crossings))
        # first decide every window whose samples have all arrived, then measure them together
        edges: list[float] = []
        synced: list[bool] = []

        def ready(a: float, b: float, sync: bool, allow_edge: bool = False) -> bool:
            if math.ceil(b - 0.5) + (0 if allow_edge else 1) >= self.end:
                return False  # the window's last samples have not arrived yet
            if not edges:
                edges.append(max(a, self._start - 0.5))
            edges.append(b)
            synced.append(sync)
            return True

        cfg = self.cfg
        limit = SYNC_TOLERANCE * cfg.nominal_window
        while True:
            a = self._win_start
            if a is None:
                if not self._rising.size:
                    # no crossing yet: a dead or missing voltage still needs windows (energy, events)
                    stream_start = self._origin_idx - 0.5
                    if self._det.settled_until > stream_start + limit:
                        self._win_start, self._synced = stream_start, False
                        continue
                    break
                first = float(self._rising[0])
                if first - (self._origin_idx - 0.5) >= 1.0 and not ready(self._origin_idx - 0.5, first, False):
                    break
                self._rising = self._rising[1:]
                self._win_start, self._synced = first, True
                continue
            later = self._rising[self._rising > a]
            need = cfg.cycles if self._synced else 1
            if later.size >= need and later[need - 1] <= a + limit:
                b = float(later[need - 1])
                if not ready(a, b, self._synced):
                    break
                self._rising = later[need:]
                self._win_start, self._synced = b, True
                continue
            if self._det.settled_until > a + limit:
                b = a + cfg.nominal_window
                if not ready(a, b, False):
                    break
                self._rising = later[later > b]
                self._win_start, self._synced = b, False
                continue
            break
        if final:
            a = self._origin_idx - 0.5 if self._win_start is None else self._win_start
            if self.end > self._origin_idx and self.end - 0.5 - a >= 1.0 and ready(a, self.end - 0.5, False, True):
                self._win_start = self.end - 0.5
        windows = self._measure(work, np.asarray(edges), np.asarray(synced, dtype=bool)) if synced else []
        self._trim()
        aggregates = self.aggregator.add_windows(windows)
        times = self._origin_s + (crossings - self._origin_idx) / self.cfg.fs
        freq = self.class_a.add(times) if crossings.size else []
        return Update(windows, events, aggregates, freq)

    def _measure(self, work: FloatArray, edges: FloatArray, synced: npt.NDArray[np.bool_]) -> list[WindowMetrics]:
        # the spectrum of a window that is not synchronised to the mains is not a harmonic spectrum
        # (IEC 61000-4-7 asks for 10/12 whole cycles): only synchronised windows measure one, every
        # `harmonics_every`-th of them and the first ever; the others carry the last one over
        every = self.cfg.harmonics_every
        index = self._win_count + np.cumsum(synced) - 1
        self._win_count += int(synced.sum())
        want = synced & (index % every == 0)
        if self._held is None and synced.any():
            want[int(np.argmax(synced))] = True
        # event flags: any Urms(1/2) value inside the window taken during a dip, swell or interruption
        cut = np.searchsorted(self._flag_pos, edges, side="right")
        counts = np.diff(cut)
        event = np.zeros((self.c, synced.size), dtype=bool)
        if self._flag_val.shape[1] and counts.any():
            nonempty = counts > 0
            event[:, nonempty] = np.logical_or.reduceat(
                self._flag_val[:, cut[0] : cut[-1]], (cut[:-1] - cut[0])[nonempty], axis=1
            )
        windows = measure_windows(
            work,
            self._start,
            edges,
            fs=self.cfg.fs,
            cycles=self.cfg.cycles,
            synced=synced,
            f_nominal=self.cfg.f_nominal,
            v_clip=self._v_clip,
            i_clip=self._i_clip,
            cycle_edges=self._cycle_edges,
            harmonics=want,
            held=self._held,
            event=event,
            t_start_s=self._origin_s + (edges[:-1] - self._origin_idx) / self.cfg.fs,
        )
        fresh = [w for w in windows if w.harmonics_fresh]
        if fresh:
            self._held = fresh[-1]
        self.energy.add_windows(windows)
        return windows

    def _half_cycles(self, work: FloatArray) -> tuple[list[VoltageEvent], FloatArray]:
        """Settle crossings, form half-cycle boundaries, compute Urms(1/2) and run the event detector.
        Returns the finished events and the newly settled rising crossings."""
        det = self._det
        begin = max(self._start, det.settled_until - det.half - 1)
        cr = det.push(work[0, begin - self._start :], begin)
        rising = cr.position[cr.rising]
        half = self.cfg.fs / (2 * self.cfg.f_nominal)
        bounds = self._merge_bounds(cr.position, det.settled_until, half)
        if not bounds.size:
            return [], rising
        # v^2 integrals per half cycle between consecutive boundaries (fractional edges)
        edges = np.concatenate(([max(self._bounds_last, self._start - 0.5)], bounds))
        edges = np.minimum(edges, self.end - 0.5)
        lo = math.floor(edges[0] + 0.5) - self._start
        hi = min(math.floor(edges[-1] + 0.5) + 1 - self._start, self._n)
        sums = segment_sums(work[2 * self.c : 3 * self.c, lo:hi], self._start + lo, edges)
        counts = np.diff(edges)
        self._bounds_last = float(bounds[-1])
        prev = self._half_prev
        all_sums = sums if prev is None else np.concatenate((prev[0][:, None], sums), axis=1)
        all_counts = counts if prev is None else np.concatenate(([prev[1]], counts))
        self._half_prev = (sums[:, -1], float(counts[-1]))
        if all_sums.shape[1] < 2:
            return [], rising
        cyc = all_sums[:, 1:] + all_sums[:, :-1]
        n = all_counts[1:] + all_counts[:-1]
        with np.errstate(divide="ignore", invalid="ignore"):
            urms = np.sqrt(cyc / n)
        pos = bounds[-urms.shape[1] :]
        finished, flagged = self.events.push(pos, urms)
        self._flag_pos = np.concatenate((self._flag_pos, pos))
        self._flag_val = np.concatenate((self._flag_val, flagged), axis=1)
        self.last_urms_half = urms[:, -1].copy()
        return finished, rising

    def _merge_bounds(self, real: FloatArray, settled: int, half: float) -> FloatArray:
        """Crossings as half-cycle boundaries, with boundaries at nominal spacing where crossings are
        missing (an interruption has none, but must still be measured)."""
        gap = 1.5 * half
        last = self._bounds_last
        if real.size and real[0] - last <= gap and (np.diff(real) <= gap).all() and settled - real[-1] <= gap:
            return real
        out: list[float] = []
        k = 0
        while True:
            nxt = float(real[k]) if k < real.size else math.inf
            if nxt - last <= gap:
                out.append(nxt)
                last = nxt
                k += 1
            elif last + gap < settled:
                last = last + half
                out.append(last)
            else:
                break
        return np.asarray(out, dtype=np.float64)

    def _trim(self) -> None:
        keep = self._det.settled_until - self._det.half - 2
        keep = min(keep, math.floor(self._bounds_last + 0.5) - 1)
        if self._win_start is not None:
            keep = min(keep, math.floor(self._win_start + 0.5) - 1)
        else:
            keep = min(keep, self._origin_idx)
        drop = keep - self._start
        if drop > 0:
            rest = self._n - drop
            if self._buf.shape[1] - rest > 2048:
                # between batches only the open window is held, not the room its batch needed: that
                # room is made again for the next batch (``reserve``), one board at a time
                self._buf = self._buf[:, drop : self._n].copy()
            else:
                self._buf[:, :rest] = self._buf[:, drop : self._n]
            self._n = rest
            self._start = keep
            if self._segments:  # the runs of counts move with their samples; the run at 0 stays
                moved = [(max(0, a - drop), sc, off) for a, sc, off in self._segments]
                self._segments = [seg for k, seg in enumerate(moved) if k + 1 == len(moved) or moved[k + 1][0] > 0]
        if self._win_start is not None and self._cycle_edges.size:
            self._cycle_edges = self._cycle_edges[self._cycle_edges > self._win_start]
        if self._win_start is not None and self._flag_pos.size:
            old = self._flag_pos <= self._win_start
            if old.any():
                self._flag_pos = self._flag_pos[~old]
                self._flag_val = self._flag_val[:, ~old]
