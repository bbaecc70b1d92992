"""GET /health: every configured device, its link and the age of its data; 200 when every device is
online, else 503 (what a load balancer or a container's health check reads)."""

from __future__ import annotations

import math
from typing import Any

from bridge.model import ModelView, device_quality


def health(model: ModelView) -> tuple[int, dict[str, Any]]:
    devices = {}
    for d in model.devices.values():
        a = d.data_age_s()
        q = device_quality(d)
        devices[d.name] = {
            "serial_number": d.config.serial_number,
            "online": d.online,
            "quality": q.level.name.lower(),
            "quality_reason": q.reason,
            "peer": d.link.peer,
            "data_age_s": round(a, 3) if math.isfinite(a) else None,
            "lost_blocks": d.link.lost_blocks,
            "frame_errors": d.link.frame_errors,
            "scale_changes": d.link.scale_changes,
            "clock_offset_s": None if d.link.clock_offset_s is None else round(d.link.clock_offset_s, 3),
        }
    store = {"ok": model.store_error is None, "error": model.store_error}
    ok = all(v["online"] for v in devices.values()) and model.store_error is None
    return (200 if ok else 503), {"status": "ok" if ok else "degraded", "store": store, "devices": devices}
