"""The catalogue of model quantities that register maps (and the OPC UA model) can expose.

One table: name, scope (device or circuit), unit, kind and how to read it from the live model. A map
naming a quantity that is not here is rejected at load time.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from device.protocol.faults import BLOCKS, FaultCode, describe

from .quality import device_quality
from .state import CIRCUIT_ALARMS, EVENT_KINDS, EVENT_LOG_SIZE, CircuitState, DeviceState, VoltageEventRecord

Value = float | int | bool | str | None
Kind = Literal["float", "int", "bool", "str"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Quantity:
    name: str
    scope: Literal["device", "circuit"]
    unit: str
    kind: Kind
    description: str
    read: Callable[[DeviceState, int], Value]  # (device, circuit 1..10 or 0) -> value; None = unavailable
    writable: bool = False


def _measure(field: str) -> Callable[[DeviceState, int], Value]:
    def read(dev: DeviceState, c: int) -> Value:
        snap = dev.snapshot
        if snap is None or c > len(snap.circuits):  # a board with fewer circuits measures no more
            return None
        return float(getattr(snap.circuits[c - 1], field))

    return read


def _circuit(fn: Callable[[CircuitState], Value]) -> Callable[[DeviceState, int], Value]:
    return lambda dev, c: fn(dev.circuits[c - 1])


def _alarm(name: str) -> Callable[[DeviceState, int], Value]:
    return lambda dev, c: dev.circuits[c - 1].alarms[name].active


def _hello(field: str) -> Callable[[DeviceState, int], Value]:
    return lambda dev, c: None if dev.hello is None else str(getattr(dev.hello, field))


def _life_remaining(dev: DeviceState, c: int) -> Value:
    return max(0.0, 100.0 * (1 - dev.circuits[c - 1].relay_operations / dev.relay_rated_operations))


def _sram_pct(dev: DeviceState, c: int) -> Value:
    st = dev.status
    if st is None or not st.sram_capacity_blocks:
        return None
    return 100.0 * st.sram_fill_blocks / st.sram_capacity_blocks


def _age(dev: DeviceState, c: int) -> Value:
    age = dev.data_age_s()
    return None if math.isinf(age) else age


_MEASURES = {
    "v_rms": ("V", "RMS voltage (DC removed), window of 10/12 cycles"),
    "i_rms": ("A", "RMS current (DC removed)"),
    "p_w": ("W", "active power, + import, - export"),
    "q_var": ("var", "fundamental reactive power Q1, + inductive, - capacitive"),
    "s_va": ("VA", "apparent power Vrms x Irms"),
    "n_va": ("VA", "non-active power sqrt(S^2 - P^2)"),
    "pf": ("", "power factor P/S, signed like P"),
    "dpf": ("", "displacement power factor P1/S1"),
    "angle_deg": ("deg", "phase angle atan2(Q1, P1), + current lags"),
    "thd_v": ("%", "voltage THD, harmonics 2..40 (IEC 61000-4-7 subgroups)"),
    "thd_i": ("%", "current THD, harmonics 2..40"),
    "v_dc": ("V", "DC component of the voltage channel"),
    "i_dc": ("A", "DC component of the current channel"),
    "urms_half": ("V", "latest Urms(1/2): one-cycle RMS refreshed every half cycle"),
    "import_wh": ("Wh", "active energy imported"),
    "export_wh": ("Wh", "active energy exported"),
    "q_ind_varh": ("varh", "reactive energy, inductive (Q1 > 0)"),
    "q_cap_varh": ("varh", "reactive energy, capacitive (Q1 < 0)"),
    "s_vah": ("VAh", "apparent energy"),
}

QUANTITIES: dict[str, Quantity] = {}


def _q(
    name: str,
    unit: str,
    kind: Kind,
    description: str,
    read: Callable[[DeviceState, int], Value],
    writable: bool = False,
) -> None:
    """Add one quantity; its scope is the name's prefix ("device." or "circuit.")."""
    scope: Literal["device", "circuit"] = "circuit" if name.startswith("circuit.") else "device"
    QUANTITIES[name] = Quantity(
        name=name, scope=scope, unit=unit, kind=kind, description=description, read=read, writable=writable
    )


for _name, (_unit, _desc) in _MEASURES.items():
    _q(f"circuit.{_name}", _unit, "float", _desc, _measure(_name))

HARMONIC_ORDERS = 40  # IEC 61000-4-7 harmonic subgroups 1..40 (1 = the fundamental)


def _harmonic(field: str, order: int) -> Callable[[DeviceState, int], Value]:
    def read(dev: DeviceState, c: int) -> Value:
        snap = dev.snapshot
        if snap is None or c > len(snap.circuits):
            return None
        values = getattr(snap.circuits[c - 1], field)
        x = values[order - 1] if order <= len(values) else math.nan
        return None if math.isnan(x) else float(x)  # NaN: above the Nyquist limit of the sample rate

    return read


for _n in range(1, HARMONIC_ORDERS + 1):
    _q(f"circuit.v_h{_n}", "V", "float", f"voltage harmonic subgroup {_n}, RMS", _harmonic("harmonics_v", _n))
    _q(f"circuit.i_h{_n}", "A", "float", f"current harmonic subgroup {_n}, RMS", _harmonic("harmonics_i", _n))

_q(
    "circuit.relay",
    "",
    "bool",
    "relay: 1 = circuit energised; write to switch (answered after the device confirms)",
    _circuit(lambda c: c.relay_on),
    writable=True,
)


def wiring_of(dev: DeviceState, c: int) -> str | None:
    """A relay's NO/NC wiring as the device's newest STATUS reports it."""
    st = dev.status
    return None if st is None or c > len(st.relay_wiring) else st.relay_wiring[c - 1]


def coil_of(dev: DeviceState, c: int) -> bool | None:
    """Whether the relay's coil is energised: with the load for NO wiring, against it for NC."""
    wiring, on = wiring_of(dev, c), dev.circuits[c - 1].relay_on
    return None if wiring is None or on is None else on != (wiring == "NC")


_q(
    "circuit.relay_wiring",
    "",
    "int",
    "relay wiring: 0 NO (load on while the coil is energised), 1 NC (load on while it is not)",
    lambda d, c: None if wiring_of(d, c) is None else int(wiring_of(d, c) == "NC"),
)
_q("circuit.relay_coil", "", "bool", "relay coil energised (the relay coil, not the load)", coil_of)
_q(
    "circuit.relay_operations",
    "",
    "int",
    "switching operations counted by the bridge (persisted)",
    _circuit(lambda c: c.relay_operations),
)
_q(
    "circuit.relay_life_remaining",
    "%",
    "float",
    "share of the rated operations left (commands.relay_rated_operations)",
    _life_remaining,
)
_q("circuit.dips", "", "int", "voltage dips ever recorded (persisted)", _circuit(lambda c: c.dips))
_q("circuit.swells", "", "int", "voltage swells ever recorded (persisted)", _circuit(lambda c: c.swells))
_q("circuit.interruptions", "", "int", "interruptions ever recorded (persisted)", _circuit(lambda c: c.interruptions))
for _a, _d in (
    ("dip", "a voltage dip is in progress"),
    ("swell", "a voltage swell is in progress"),
    ("interruption", "the supply is interrupted (< 5 % of declared voltage)"),
    ("overcurrent", "current above the configured threshold"),
    ("clipped", "samples at the ADC rail: values of this window are not reliable"),
    ("relay_mismatch", "relay feedback disagrees with the commanded state"),
    ("relay_wear", "relay operations beyond the wear alarm threshold"),
):
    _q(f"circuit.alarm.{_a}", "", "bool", _d, _alarm(_a))

for _f, _d in (
    ("serial_number", "device serial number"),
    ("part_number", "device part number"),
    ("firmware_version", "device firmware version"),
    ("wifi_mac", "Wi-Fi MAC address"),
    ("lan_mac", "LAN MAC address"),
):
    _q(f"device.{_f}", "", "str", _d, _hello(_f))

_q("device.connected", "", "bool", "online: the link is up and data is being counted", lambda d, c: d.online)
_q("device.data_age_s", "s", "float", "seconds since the newest window arrived", _age)
_q(
    "device.freq_hz",
    "Hz",
    "float",
    "mains frequency of the newest window",
    lambda d, c: None if d.snapshot is None else d.snapshot.freq_hz,
)
_q(
    "device.window_time",
    "s",
    "int",
    "start of the newest window, Unix seconds (device clock)",
    lambda d, c: None if d.snapshot is None else int(d.snapshot.time_s),
)
_q("device.gaps", "", "int", "sequence gaps seen", lambda d, c: d.link.gaps)
_q("device.lost_blocks", "", "int", "blocks lost (device SRAM overflow or gaps)", lambda d, c: d.link.lost_blocks)
_q("device.duplicates", "", "int", "replayed blocks dropped", lambda d, c: d.link.duplicates)
_q("device.frame_errors", "", "int", "frames skipped for CRC or format errors", lambda d, c: d.link.frame_errors)
_q("device.sram_fill", "%", "float", "device SRAM buffer fill", _sram_pct)
_q(
    "device.fault_count",
    "",
    "int",
    "active device fault codes",
    lambda d, c: None if d.status is None else len(d.status.fault_codes),
)
_q("device.aux", "", "bool", "ZigBee auxiliary output; write to switch", lambda d, c: d.aux_on, writable=True)

FAULT_SLOTS = 8  # active faults and self-test faults shown on register fronts


def active_faults(dev: DeviceState) -> list[FaultCode]:
    """The faults of the newest STATUS, with the dictionary's block and text."""
    return [] if dev.status is None else [describe(code) for code in dev.status.fault_codes]


def self_test_faults(dev: DeviceState) -> list[FaultCode]:
    """The faults the last self-test found, as the device described them."""
    return [describe(f["code"], f.get("block", ""), f.get("text", "")) for f in dev.last_self_test or ()]


def _fault(
    k: int, which: Callable[[DeviceState], list[FaultCode]], fn: Callable[[FaultCode], Value]
) -> Callable[[DeviceState, int], Value]:
    def read(dev: DeviceState, c: int) -> Value:
        found = which(dev)
        return fn(found[k - 1]) if k <= len(found) else (None if fn is _fault_code else 0)

    return read


def _fault_code(f: FaultCode) -> Value:
    return f.code


for _k in range(1, FAULT_SLOTS + 1):
    for _prefix, _which, _what in (
        ("fault", active_faults, "active device fault"),
        ("selftest", self_test_faults, "fault of the last self-test"),
    ):
        _q(
            f"device.{_prefix}{_k}.number",
            "",
            "int",
            f"{_what} {_k}: its number in the fault dictionary (0 = none, 65534 = not in the dictionary)",
            _fault(_k, _which, lambda f: f.number),
        )
        _q(
            f"device.{_prefix}{_k}.block",
            "",
            "int",
            f"{_what} {_k}: the device block, " + ", ".join(f"{n} {b}" for b, n in BLOCKS.items()) + " (0 other)",
            _fault(_k, _which, lambda f: BLOCKS.get(f.block, 0)),
        )
        _q(f"device.{_prefix}{_k}.code", "", "str", f"{_what} {_k}: its code", _fault(_k, _which, _fault_code))
_q(
    "device.self_test",
    "",
    "int",
    "write 1 to run the device self-test; reads the number of faults found last time",
    lambda d, c: None if d.last_self_test is None else len(d.last_self_test),
    writable=True,
)
_q(
    "device.alarm.offline",
    "",
    "bool",
    "no data counted for longer than offline_after_s (silent, or its blocks dropped)",
    lambda d, c: d.alarms["offline"].active,
)
_q(
    "device.alarm.sram_loss",
    "",
    "bool",
    "the device reported blocks dropped from a full SRAM; clears after bridge.loss_alarm_hold_s without new loss",
    lambda d, c: d.alarms["sram_loss"].active,
)
_q(
    "device.alarm.stream_restart",
    "",
    "bool",
    "the device started numbering its blocks anew (reboot, SRAM lost); clears after bridge.loss_alarm_hold_s",
    lambda d, c: d.alarms["stream_restart"].active,
)
_q(
    "device.clock_offset_s",
    "s",
    "float",
    "device clock minus bridge clock, measured on the freshest recent blocks (set every links.time_sync_interval_s)",
    lambda d, c: d.link.clock_offset_s,
)
_q(
    "device.alarm.frequency",
    "",
    "bool",
    "mains frequency outside the configured band (pq.freq_low_hz..freq_high_hz)",
    lambda d, c: d.alarms["frequency"].active,
)
_q(
    "device.stream_restarts",
    "",
    "int",
    "times the device started a new stream (persisted)",
    lambda d, c: d.link.stream_restarts,
)
_q(
    "device.sram_dropped_blocks",
    "",
    "int",
    "blocks the device reported dropped from a full SRAM (persisted)",
    lambda d, c: d.link.sram_dropped_blocks,
)
_q(
    "device.quality",
    "",
    "int",
    "0 good, 1 uncertain (offline or data not counted: last usable value), 2 bad (no data yet)",
    lambda d, c: int(device_quality(d).level),
)

_q("device.unit_id", "", "int", "Modbus unit ID", lambda d, c: d.config.unit_id)


def _alarm_bits(dev: DeviceState, c: int) -> Value:
    alarms = dev.circuits[c - 1].alarms
    return sum(1 << k for k, name in enumerate(CIRCUIT_ALARMS) if alarms[name].active)


_q(
    "circuit.alarm_bits",
    "",
    "int",
    "bit 0 dip, 1 swell, 2 interruption, 3 overcurrent, 4 clipped, 5 relay mismatch, 6 wear",
    _alarm_bits,
)


def _aggregate(kind: str, stat: str, q: str) -> Callable[[DeviceState, int], Value]:
    def read(dev: DeviceState, c: int) -> Value:
        agg = dev.aggregates.get(kind)
        if agg is None:
            return None
        return float(getattr(agg, stat)[q][c - 1])

    return read


_AGGREGATES = (
    ("v_rms_3s", "3s", "mean", "v_rms", "V", "RMS voltage over 150/180 cycles (~3 s)"),
    ("i_rms_3s", "3s", "mean", "i_rms", "A", "RMS current over 150/180 cycles"),
    ("p_w_3s", "3s", "mean", "p_w", "W", "active power over 150/180 cycles"),
    ("v_rms_10min", "10min", "mean", "v_rms", "V", "RMS voltage over the last clock-aligned 10 minutes"),
    ("v_min_10min", "10min", "minimum", "v_rms", "V", "lowest window RMS voltage of the last 10 minutes"),
    ("v_max_10min", "10min", "maximum", "v_rms", "V", "highest window RMS voltage of the last 10 minutes"),
    ("i_rms_10min", "10min", "mean", "i_rms", "A", "RMS current over the last 10 minutes"),
    ("p_w_10min", "10min", "mean", "p_w", "W", "active power averaged over the last 10 minutes"),
    ("thd_v_10min", "10min", "mean", "thd_v", "%", "voltage THD averaged over the last 10 minutes"),
    ("p_demand_w", "15min-demand", "mean", "p_w", "W", "15-minute block demand of active power (last block)"),
)
for _name, _kind, _stat, _field, _unit, _desc in _AGGREGATES:
    _q(f"circuit.{_name}", _unit, "float", _desc, _aggregate(_kind, _stat, _field))

_q(
    "device.freq_10s",
    "Hz",
    "float",
    "Class A frequency of the last absolute 10 s interval (IEC 61000-4-30)",
    lambda d, c: None if d.freq_10s is None else d.freq_10s[1],
)

_q(
    "circuit.relay_select",
    "",
    "int",
    "select-before-operate: write 1 to arm ON, 2 to arm OFF; reads the armed state (0 none)",
    _circuit(lambda c: 0 if c.selected is None else (1 if c.selected else 2)),
    writable=True,
)
_q(
    "circuit.maintenance_lock",
    "",
    "bool",
    "an admin has locked this relay for maintenance (set over OPC UA or the CLI)",
    _circuit(lambda c: c.maintenance_lock),
)


# the voltage-event log: event 1 is the newest; an empty slot reads "not available" (kind: 0)
def _logged(
    k: int, fn: Callable[[VoltageEventRecord], Value], kind_code: bool = False
) -> Callable[[DeviceState, int], Value]:
    def read(dev: DeviceState, c: int) -> Value:
        if k > len(dev.events):
            return 0 if kind_code else None
        return fn(dev.events[-k])

    return read


_q("device.events_total", "", "int", "voltage events ever recorded on this device", lambda d, c: d.events_total)
_kinds = ", ".join(f"{code} {kind}" for kind, code in EVENT_KINDS.items())
for _k in range(1, EVENT_LOG_SIZE + 1):
    _q(
        f"device.event{_k}.kind",
        "",
        "int",
        f"voltage event {_k} (1 = newest): kind, {_kinds} (0 = empty slot)",
        _logged(_k, lambda e: EVENT_KINDS[e.kind], kind_code=True),
    )
    _q(f"device.event{_k}.circuit", "", "int", f"voltage event {_k}: circuit", _logged(_k, lambda e: e.circuit))
    _q(
        f"device.event{_k}.start",
        "ms",
        "int",
        f"voltage event {_k}: start, Unix milliseconds (device clock)",
        _logged(_k, lambda e: round(e.start_s * 1000)),
    )
    _q(
        f"device.event{_k}.duration",
        "ms",
        "int",
        f"voltage event {_k}: duration in milliseconds",
        _logged(_k, lambda e: round(e.duration_s * 1000)),
    )
    _q(
        f"device.event{_k}.extreme",
        "V",
        "float",
        f"voltage event {_k}: residual voltage (dip, interruption) or peak (swell)",
        _logged(_k, lambda e: e.extreme_v),
    )
