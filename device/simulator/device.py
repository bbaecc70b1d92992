"""The simulated OpenStrom device as a state machine without I/O: blocks, SRAM, relays, self-test.

The asyncio runner (``runner.py``) only moves bytes and keeps time; everything the device *decides*
happens here, so tests can drive it with plain calls.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass

import numpy as np

from device.protocol import (
    PROTOCOL_VERSION,
    Ack,
    AuxCommand,
    Calibrate,
    CommandResult,
    Fault,
    Heartbeat,
    Hello,
    Message,
    RelayCommand,
    RelayWiring,
    Samples,
    SelfTestRequest,
    SelfTestResult,
    Status,
    TimeSync,
)
from device.protocol.sequence import at_or_before, is_after, wrap

from .scenario import Event, Scenario
from .waveforms import ADC_BITS, CIRCUITS, I_LSB, V_LSB, Board

FIRMWARE_VERSION = "0.8.3-sim"
PART_NUMBER = "OS-10C-40A-DIN"


@dataclass(frozen=True, slots=True, kw_only=True)
class Identity:
    serial_number: str
    part_number: str = PART_NUMBER
    wifi_mac: str = "02:00:00:00:00:01"
    lan_mac: str = "02:00:00:00:00:02"
    firmware_version: str = FIRMWARE_VERSION

    @classmethod
    def for_serial(cls, serial_number: str) -> Identity:
        # locally administered MACs derived from the serial, stable per device
        h = sum(ord(ch) * 31**k for k, ch in enumerate(serial_number)) & 0xFFFFFF
        tail = f"{h >> 16 & 0xFF:02X}:{h >> 8 & 0xFF:02X}:{h & 0xFF:02X}"
        return cls(serial_number=serial_number, wifi_mac=f"02:4F:53:{tail}", lan_mac=f"06:4F:53:{tail}")


class SimulatedDevice:
    def __init__(
        self,
        scenario: Scenario,
        *,
        identity: Identity,
        seed: int = 0,
        sram_blocks: int = 4096,
        clock_start_ns: int = 1_790_000_000_000_000_000,
        boot_id: str = "",
        first_block: int = 0,
        clock_jump: tuple[float, float] | None = None,
    ) -> None:
        """``boot_id``: announced in HELLO, new at every boot of a real device ("" announces none, as a
        v1 device); ``first_block``: the number of the first block (a device's numbering may start
        anywhere, and wraps at 2**32); ``clock_jump``: (at, by) seconds: at simulated time ``at`` the
        device's clock jumps by ``by`` (an NTP step, a battery-backed clock reset)."""
        self.scenario = scenario
        self.identity = identity
        self.boot_id = boot_id
        self.board = Board(scenario, seed)
        self.sram_capacity = sram_blocks
        self.sram: collections.deque[Samples] = collections.deque()
        self.dropped_blocks = 0
        self.next_index = 0
        self.first_block = first_block
        self.clock_ns = clock_start_ns
        self._clock_jump = clock_jump
        self.wiring: tuple[str, ...] = tuple(scenario.circuit(c).wiring for c in range(1, CIRCUITS + 1))
        self.circuit_on = [scenario.circuit(c).on for c in range(1, CIRCUITS + 1)]
        self.relay_operations = [0] * CIRCUITS
        self.aux_on = False
        self.v_lsb = [V_LSB] * CIRCUITS
        self.i_lsb = [I_LSB] * CIRCUITS
        self._pending: list[RelayCommand] = []
        self.acked_seq: int | None = None
        self.status_dirty = True

    # ---------------------------------------------------------------- time & faults

    @property
    def sim_time_s(self) -> float:
        return self.next_index * self.board.n / self.board.fs

    def _active(self, kind: str) -> list[Event]:
        t = self.sim_time_s
        return [
            e
            for e in self.scenario.events
            if e.kind == kind and e.at <= t and (not e.duration or t < e.at + e.duration)
        ]

    def faults(self) -> tuple[Fault, ...]:
        found = [Fault(code=e.code, block=e.block, text=e.text) for e in self._active("fault")]
        for e in self._active("relay_stuck"):
            c = e.circuit
            found.append(
                Fault(
                    code=f"RELAY{c:02d}_STUCK",
                    block="relay",
                    text=f"relay {c} contact does not follow its coil",
                )
            )
        return tuple(found)

    # ---------------------------------------------------------------- messages out

    def hello(self) -> Hello:
        return Hello(
            serial_number=self.identity.serial_number,
            part_number=self.identity.part_number,
            wifi_mac=self.identity.wifi_mac,
            lan_mac=self.identity.lan_mac,
            firmware_version=self.identity.firmware_version,
            protocol_version=PROTOCOL_VERSION,
            circuit_count=CIRCUITS,
            sample_rate_hz=self.board.fs,
            v_adc_bits=ADC_BITS,
            i_adc_bits=ADC_BITS,
            v_lsb_volts=tuple(self.v_lsb),
            i_lsb_amps=tuple(self.i_lsb),
            sram_capacity_blocks=self.sram_capacity,
            next_block_seq=wrap(self.first_block + self.next_index),
            boot_id=self.boot_id,
        )

    def status(self) -> Status:
        self.status_dirty = False
        return Status(
            circuit_on=tuple(self.circuit_on),
            relay_wiring=self.wiring,
            relay_operations=tuple(self.relay_operations),
            aux_on=self.aux_on,
            fault_codes=tuple(f.code for f in self.faults()),
            sram_fill_blocks=len(self.sram),
            sram_capacity_blocks=self.sram_capacity,
            dropped_blocks=self.dropped_blocks,
            uptime_s=self.sim_time_s,
        )

    def generate(self) -> tuple[Samples, list[CommandResult]]:
        """Sample the next block, apply pending relay switchings at its first zero crossing, store it."""
        index = self.next_index
        n = self.board.n
        energised = np.repeat(np.array(self.circuit_on, dtype=bool)[:, None], n, axis=1)
        results: list[CommandResult] = []
        if self._pending:
            z = self.board.zero_crossing(index)
            for cmd in self._pending:
                c = cmd.circuit - 1
                energised[c, z:] = cmd.on
                if self.circuit_on[c] != cmd.on:
                    self.relay_operations[c] += 1
                self.circuit_on[c] = cmd.on
                state = "on" if cmd.on else "off"
                results.append(
                    CommandResult(command_id=cmd.command_id, ok=True, code="ok", text=f"circuit {cmd.circuit} {state}")
                )
            self._pending.clear()
            self.status_dirty = True
        v, i = self.board.block(index, energised)
        vc, ic = self.board.adc(index, v, i)
        if self._clock_jump is not None and index * n / self.board.fs >= self._clock_jump[0]:
            self.clock_ns += round(self._clock_jump[1] * 1e9)
            self._clock_jump = None
        t0 = self.clock_ns + round(index * n / self.board.fs * 1e9)
        block = Samples(
            block_seq=wrap(self.first_block + index),
            t0_ns=t0,
            sample_rate_hz=self.board.fs,
            circuits=tuple(range(1, CIRCUITS + 1)),
            v=vc,
            i=ic,
        )
        self.next_index += 1
        if len(self.sram) >= self.sram_capacity:
            self.sram.popleft()
            self.dropped_blocks += 1  # reported in STATUS: a loss is never hidden
            self.status_dirty = True
        self.sram.append(block)
        return block, results

    # ---------------------------------------------------------------- messages in

    def handle(self, msg: Message) -> list[Message]:
        """Apply one message from the bridge; return the immediate answers."""
        match msg:
            case Ack(block_seq=seq):
                self.acked_seq = seq
                before = len(self.sram)
                # free every block at or before seq (u32 numbers, within half the space)
                while self.sram and at_or_before(self.sram[0].block_seq, seq):
                    self.sram.popleft()
                if len(self.sram) != before:
                    self.status_dirty = True
                return []
            case RelayCommand():
                if self._active("no_ack"):
                    return []
                if any(e.circuit == msg.circuit for e in self._active("relay_stuck")):
                    return [
                        CommandResult(
                            command_id=msg.command_id,
                            ok=False,
                            code="relay-stuck",
                            text=f"relay {msg.circuit} did not move: contact feedback disagrees with coil",
                        )
                    ]
                self._pending = [p for p in self._pending if p.circuit != msg.circuit] + [msg]
                return []  # answered once the switching happened (see generate)
            case AuxCommand():
                self.aux_on = msg.on
                self.status_dirty = True
                return [
                    CommandResult(
                        command_id=msg.command_id, ok=True, code="ok", text=f"aux {'on' if msg.on else 'off'}"
                    )
                ]
            case SelfTestRequest():
                return [SelfTestResult(command_id=msg.command_id, faults=self.faults())]
            case Calibrate():
                table = self.v_lsb if msg.channel == "v" else self.i_lsb
                table[msg.circuit - 1] = msg.lsb
                return [CommandResult(command_id=msg.command_id, ok=True, code="ok", text="calibration stored")]
            case RelayWiring():
                wiring: list[str] = list(self.wiring)
                wiring[msg.circuit - 1] = msg.wiring
                self.wiring = tuple(wiring)
                self.status_dirty = True
                return [
                    CommandResult(
                        command_id=msg.command_id, ok=True, code="ok", text=f"relay {msg.circuit} {msg.wiring}"
                    )
                ]
            case TimeSync():
                now = self.clock_ns + round(self.sim_time_s * 1e9)
                self.clock_ns += msg.unix_time_ns - now
                return [CommandResult(command_id=msg.command_id, ok=True, code="ok", text="clock set")]
            case Heartbeat():
                return []
        return []

    def unsent_after(self, seq: int | None) -> list[Samples]:
        """Blocks in SRAM after ``seq`` (all of them for None), oldest first."""
        if seq is None:
            return list(self.sram)
        return [b for b in self.sram if is_after(b.block_seq, seq)]
