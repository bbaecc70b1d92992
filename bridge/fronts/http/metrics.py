"""GET /metrics: the live model as Prometheus gauges, collected at scrape time (no copy kept)."""

from __future__ import annotations

import math
from collections.abc import Iterable

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily

from bridge.model import ModelView


class ModelCollector:
    def __init__(self, model: ModelView) -> None:
        self.model = model

    def collect(self) -> Iterable[GaugeMetricFamily]:
        online = GaugeMetricFamily("openstrom_device_online", "1 when the device link is up", labels=["device"])
        age = GaugeMetricFamily("openstrom_data_age_seconds", "age of the newest window", labels=["device"])
        blocks = GaugeMetricFamily("openstrom_blocks_total", "sample blocks measured", labels=["device"])
        gaps = GaugeMetricFamily("openstrom_lost_blocks_total", "blocks lost", labels=["device"])
        dups = GaugeMetricFamily("openstrom_duplicate_blocks_total", "replayed blocks dropped", labels=["device"])
        errs = GaugeMetricFamily("openstrom_frame_errors_total", "frames skipped", labels=["device"])
        power = GaugeMetricFamily("openstrom_active_power_watts", "active power", labels=["device", "circuit"])
        energy = GaugeMetricFamily("openstrom_energy_import_wh", "imported energy", labels=["device", "circuit"])
        for d in self.model.devices.values():
            online.add_metric([d.name], 1.0 if d.online else 0.0)
            a = d.data_age_s()
            age.add_metric([d.name], a if math.isfinite(a) else float("nan"))
            blocks.add_metric([d.name], d.link.blocks)
            gaps.add_metric([d.name], d.link.lost_blocks)
            dups.add_metric([d.name], d.link.duplicates)
            errs.add_metric([d.name], d.link.frame_errors)
            if d.snapshot is not None:
                for c, cv in enumerate(d.snapshot.circuits, 1):
                    power.add_metric([d.name, str(c)], cv.p_w)
                    energy.add_metric([d.name, str(c)], cv.import_wh)
        yield from (online, age, blocks, gaps, dups, errs, power, energy)


def registry_for(model: ModelView) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(ModelCollector(model))
    return registry
