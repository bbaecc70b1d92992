"""GET /metrics: the live model as Prometheus metrics, collected at scrape time (no copy kept), beside
the service's own (bridge/telemetry.py). Base units (seconds, volts, amperes, watts, joules, hertz),
``_total`` on counters, as the Prometheus naming conventions ask."""

from __future__ import annotations

import math
from collections.abc import Iterable

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from bridge.model import ModelView

WH = 3600.0  # joules per watt-hour


class ModelCollector:
    def __init__(self, model: ModelView) -> None:
        self.model = model

    def collect(self) -> Iterable[Metric]:
        dev_l, circ_l = ["device"], ["device", "circuit"]
        online = GaugeMetricFamily("openstrom_device_online", "1 while its data is being counted", labels=dev_l)
        age = GaugeMetricFamily("openstrom_data_age_seconds", "age of the newest measurement window", labels=dev_l)
        blocks = CounterMetricFamily("openstrom_blocks", "sample blocks measured", labels=dev_l)
        lost = CounterMetricFamily("openstrom_lost_blocks", "blocks missing from the device stream", labels=dev_l)
        dups = CounterMetricFamily("openstrom_duplicate_blocks", "replayed blocks recognised and dropped", labels=dev_l)
        errs = CounterMetricFamily("openstrom_frame_errors", "frames skipped as damaged", labels=dev_l)
        events = CounterMetricFamily(
            "openstrom_voltage_events", "dips, swells and interruptions ever recorded", labels=[*dev_l, "kind"]
        )
        records = GaugeMetricFamily("openstrom_waveform_records", "COMTRADE records on disk", labels=dev_l)
        freq = GaugeMetricFamily("openstrom_frequency_hertz", "mains frequency, newest window", labels=dev_l)
        volts = GaugeMetricFamily("openstrom_voltage_volts", "RMS voltage, newest window", labels=circ_l)
        amps = GaugeMetricFamily("openstrom_current_amperes", "RMS current, newest window", labels=circ_l)
        power = GaugeMetricFamily("openstrom_active_power_watts", "active power, newest window", labels=circ_l)
        e_in = CounterMetricFamily("openstrom_energy_import_joules", "active energy imported", labels=circ_l)
        e_out = CounterMetricFamily("openstrom_energy_export_joules", "active energy exported", labels=circ_l)
        relay = GaugeMetricFamily("openstrom_relay_on", "1 while the relay is on (device's STATUS)", labels=circ_l)
        alarm = GaugeMetricFamily(
            "openstrom_alarm_active", "1 while the alarm is active (circuit 0: the device's)", labels=[*circ_l, "alarm"]
        )
        for d in self.model.devices.values():
            n = d.name
            online.add_metric([n], 1.0 if d.online else 0.0)
            a = d.data_age_s()
            age.add_metric([n], a if math.isfinite(a) else float("nan"))
            blocks.add_metric([n], d.link.blocks)
            lost.add_metric([n], d.link.lost_blocks)
            dups.add_metric([n], d.link.duplicates)
            errs.add_metric([n], d.link.frame_errors)
            records.add_metric([n], len(d.records))
            for kind in ("dips", "swells", "interruptions"):
                events.add_metric([n, kind[:-1]], sum(getattr(cs, kind) for cs in d.circuits))
            for name, al in d.alarms.items():
                alarm.add_metric([n, "0", name], 1.0 if al.active else 0.0)
            for cs in d.circuits:
                c = str(cs.index)
                if cs.relay_on is not None:
                    relay.add_metric([n, c], 1.0 if cs.relay_on else 0.0)
                for name, al in cs.alarms.items():
                    alarm.add_metric([n, c, name], 1.0 if al.active else 0.0)
            if d.snapshot is not None:
                freq.add_metric([n], d.snapshot.freq_hz)
                for k, cv in enumerate(d.snapshot.circuits, 1):
                    c = str(k)
                    volts.add_metric([n, c], cv.v_rms)
                    amps.add_metric([n, c], cv.i_rms)
                    power.add_metric([n, c], cv.p_w)
                    e_in.add_metric([n, c], cv.import_wh * WH)
                    e_out.add_metric([n, c], cv.export_wh * WH)
        yield from (online, age, blocks, lost, dups, errs, events, records, freq, volts, amps, power, e_in, e_out)
        yield from (relay, alarm)


def registry_for(model: ModelView) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(ModelCollector(model))
    return registry
