"""Alarm limits changed at run time: the power-quality limits (``[pq]`` keys) and each circuit's
overcurrent limit. An admin's change is kept as overrides on top of the configuration (so an edited
file still applies to every limit nobody changed at run time), validated by the same schema as the
file, and a change that would leave the limits inconsistent is refused whole."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from bridge.config import Device, PowerQualityLimits
from bridge.errors import CommandRejected
from bridge.model import Limits
from device.protocol import BOARD_CIRCUITS

PQ_KEYS = tuple(PowerQualityLimits.model_fields)
MAX_OVERCURRENT_A = 200.0  # the configuration's bound


def configured(device: Device, bridge_pq: PowerQualityLimits | None) -> Limits:
    """The limits the configuration gives a device (its own [pq] before the bridge's)."""
    pq = device.pq or bridge_pq or PowerQualityLimits()
    oc = tuple(device.circuit_overcurrent_a.get(c, device.overcurrent_a) for c in range(1, BOARD_CIRCUITS + 1))
    return Limits(pq, oc)


def effective(base: Limits, overrides: Mapping[str, Any]) -> Limits:
    """``base`` with the stored overrides applied (``{"pq": {key: value}, "overcurrent_a": {circuit: A}}``)."""
    pq_doc = {**base.pq.model_dump(), **overrides.get("pq", {})}
    try:
        pq = PowerQualityLimits.model_validate(pq_doc)
    except ValidationError as exc:
        detail = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'limits'}: {e['msg']}" for e in exc.errors())
        raise CommandRejected(f"limits not changed: {detail}", code="bad-limits") from None
    oc = list(base.overcurrent_a)
    for key, amps in overrides.get("overcurrent_a", {}).items():
        c = int(key)
        if not 1 <= c <= len(oc):
            raise CommandRejected(f"limits not changed: no circuit {c} (1..{len(oc)})", code="bad-limits")
        if not (isinstance(amps, int | float) and 0 < amps <= MAX_OVERCURRENT_A):
            raise CommandRejected(
                f"limits not changed: overcurrent of circuit {c} must be above 0 and at most "
                f"{MAX_OVERCURRENT_A:g} A, not {amps!r}",
                code="bad-limits",
            )
        oc[c - 1] = float(amps)
    return Limits(pq, tuple(oc))


def merged(
    stored: Mapping[str, Any], pq: Mapping[str, float | None], overcurrent_a: Mapping[int, float]
) -> dict[str, Any]:
    """The stored overrides with a new change on top; unknown keys are refused by name."""
    unknown = sorted(set(pq) - set(PQ_KEYS))
    if unknown:
        raise CommandRejected(
            f"limits not changed: unknown limit {', '.join(unknown)} (known: {', '.join(PQ_KEYS)})",
            code="bad-limits",
        )
    doc: dict[str, Any] = {
        "pq": {**stored.get("pq", {}), **pq},
        "overcurrent_a": {**stored.get("overcurrent_a", {}), **{str(c): a for c, a in overcurrent_a.items()}},
    }
    return {k: v for k, v in doc.items() if v}
