"""``POST /api/status``: the plant at a glance for ``openstrom-bridge status``: every device's link
health, data age and alarms, and per circuit V, I, P, energy, relay and active alarms."""

from __future__ import annotations

import math
from typing import Any

from bridge.model import ModelView, device_quality


def _num(x: float, digits: int) -> float | None:
    return round(x, digits) if math.isfinite(x) else None


def status(model: ModelView) -> dict[str, Any]:
    devices = []
    for d in model.devices.values():
        snap = d.snapshot
        age = d.data_age_s()
        q = device_quality(d)
        circuits = []
        for cs in d.circuits:
            v = snap.circuits[cs.index - 1] if snap is not None and cs.index <= len(snap.circuits) else None
            circuits.append(
                {
                    "circuit": cs.index,
                    "name": cs.name,
                    "v_rms": None if v is None else _num(v.v_rms, 2),
                    "i_rms": None if v is None else _num(v.i_rms, 3),
                    "p_w": None if v is None else _num(v.p_w, 1),
                    "import_wh": None if v is None else _num(v.import_wh, 3),
                    "export_wh": None if v is None else _num(v.export_wh, 3),
                    "relay_on": cs.relay_on,
                    "alarms": sorted(a.name for a in cs.alarms.values() if a.active),
                }
            )
        devices.append(
            {
                "name": d.name,
                "serial_number": d.config.serial_number,
                "online": d.online,
                "quality": q.level.name.lower(),
                "quality_reason": q.reason,
                "peer": d.link.peer,
                "transport": d.link.transport,
                "data_age_s": _num(age, 2),
                "frequency_hz": None if snap is None else _num(snap.freq_hz, 3),
                "lost_blocks": d.link.lost_blocks,
                "alarms": sorted(a.name for a in d.alarms.values() if a.active),
                "voltage_events": d.events_total,
                "records": len(d.records),
                "circuits": circuits,
            }
        )
    return {"ok": True, "store_error": model.store_error, "devices": devices}
