"""The measuring of every device, sans-IO: each device's blocks held as payloads until its analyzer
would measure, then decoded and fed with the scales they were sent under. :class:`Meters` answers
requests in order; an adapter runs it in the event loop (``local``) or in a process (``process``)."""

from __future__ import annotations

from bridge.core import StreamAnalyzer, Update
from device.protocol import EncodedSamples, Samples
from device.protocol.encoding import scan_samples_binary

from .jobs import Block, Create, Drop, FloatArray, Flush, Measured, Request, Restart, SetScales, SetThresholds


def _merged(updates: list[Update]) -> Update:
    if len(updates) == 1:
        return updates[0]
    return Update(
        [w for u in updates for w in u.windows],
        [e for u in updates for e in u.events],
        [a for u in updates for a in u.aggregates],
        [f for u in updates for f in u.freq_10s],
    )


class Meter:
    """One device's analyzer and the blocks it holds until a batch is due."""

    def __init__(self, req: Create, before: Meter | None) -> None:
        self.device = req.device
        self.analyzer = StreamAnalyzer(req.circuits, req.settings)
        if req.keep_energy and before is not None and len(before.analyzer.energy) == req.circuits:
            self.analyzer.energy = before.analyzer.energy
        else:
            for c, reg, whole, residual in req.restore:
                self.analyzer.energy.restore(c, reg, whole, residual)
        self.scale: FloatArray = req.scale
        self.offset: FloatArray | None = req.offset
        # held as payloads (a binary block is about half its counts even as int32), with the samples
        # of each not counted before a restart
        self._held: list[tuple[Samples | EncodedSamples, int]] = []
        self._held_n = 0

    def block(self, req: Block) -> Measured | None:
        block = scan_samples_binary(req.payload) if isinstance(req.payload, bytes) else req.payload
        self._held.append((block, req.skip))
        self._held_n += block.n - req.skip
        if req.now or self.analyzer.due(self._held_n):
            return self.measure()
        return None

    def measure(self, *, always: bool = False) -> Measured | None:
        """Every held block into the analyzer, decoded one by one: results come at the batch's last
        block, the same as if each had been fed on arrival."""
        held, self._held, self._held_n = self._held, [], 0
        if not held and not always:
            return None
        an = self.analyzer
        an.reserve(sum(block.n - skip for block, skip in held))
        updates = []
        for payload, skip in held:
            block = payload.decode() if isinstance(payload, EncodedSamples) else payload
            t0 = block.t0_ns / 1e9 + skip / block.sample_rate_hz
            # ADC counts go in as they are: the analyzer scales them while copying them into its buffer
            v, i = block.v[:, skip:], block.i[:, skip:]
            updates.append(an.feed(v, i, seq=block.block_seq, t0_s=t0, scale=self.scale, offset=self.offset))
        return self.answer(_merged(updates) if updates else Update([], []), ran=bool(held))

    def answer(self, update: Update, *, ran: bool = True) -> Measured:
        an = self.analyzer
        origin_s, origin_idx = an.origin
        # a batch ran when the analyzer has measured everything it holds: its events are triggered
        decided = an.time_of(an.end) if ran and an.measured_until == an.end else None
        return Measured(
            device=self.device,
            update=update,
            energy=an.energy.copy(),
            ongoing=tuple(an.events.ongoing()),
            last_urms_half=an.last_urms_half.copy(),
            integrated_until=an.integrated_until,
            end=an.end,
            origin_s=origin_s,
            origin_idx=origin_idx,
            fs=an.cfg.fs,
            decided_s=decided,
        )

    def restart(self) -> Measured:
        first = self.measure()
        pre = self.analyzer.restart_stream()
        update = pre if first is None else _merged([first.update, pre])
        return self.answer(update)


class Meters:
    """Every device's :class:`Meter`, by name: requests in, answers out."""

    def __init__(self) -> None:
        self.meters: dict[str, Meter] = {}

    def handle(self, req: Request) -> Measured | None:
        """The answer to ``req``, if it has one: a batch measured, an analyzer made or restarted, or a
        :class:`Flush` of a device that has an analyzer."""
        match req:
            case Create():
                made = self.meters[req.device] = Meter(req, self.meters.get(req.device))
                return made.answer(Update([], []), ran=False)
            case Drop():
                self.meters.pop(req.device, None)
                return None
        meter = self.meters.get(req.device)
        if meter is None:  # no analyzer (yet, or any more): nothing to measure
            return None
        match req:
            case Block():
                return meter.block(req)
            case Flush():
                return meter.measure(always=True)
            case Restart():
                return meter.restart()
            case SetScales():
                answer = meter.measure()
                meter.scale, meter.offset = req.scale, req.offset
                return answer
            case SetThresholds():
                meter.analyzer.events.th = req.thresholds
                return None
        raise TypeError(f"not a measuring request: {req!r}")
