"""Waveform captures: the scaled V and I samples of chosen circuits, as the live stream brought them,
in one HDF5 file laid out as NILM datasets are (one group per meter channel, samples in time order,
the time base beside them). Written block by block into chunked, growing datasets: memory stays one
block whatever the length of the capture.

    /                      attrs: format, device, serial_number, part_number, firmware_version,
                           sample_rate_hz, start_utc, bridge_version, blocks, dropped_blocks
    /timestamp             float64 (N,)  device clock, seconds since 1970-01-01 UTC
    /blocks                (seq uint32, first uint64, n uint32, t0_s float64): where each block begins
    /circuit_NN            attrs: circuit, name, v_lsb_volts, i_lsb_amps (the device's ADC scales)
    /circuit_NN/voltage    float32 (N,)  V
    /circuit_NN/current    float32 (N,)  A

The capture stream the bridge sends (``POST /api/capture``) is a sequence of frames: a 4-byte
big-endian length, a JSON header line, and for a block its samples as float32, voltages of the chosen
circuits then their currents, each row ``n`` long.
"""

from __future__ import annotations

import datetime as dt
import json
import struct
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import numpy.typing as npt

FORMAT = "openstrom-capture/1"
CHUNK = 65536
BLOCK_DTYPE = np.dtype([("seq", "<u4"), ("first", "<u8"), ("n", "<u4"), ("t0_s", "<f8")])


def frame(header: dict[str, Any], payload: bytes = b"") -> bytes:
    body = json.dumps(header, separators=(",", ":")).encode() + b"\n" + payload
    return struct.pack(">I", len(body)) + body


def parse_frame(body: bytes) -> tuple[dict[str, Any], bytes]:
    head, _, payload = body.partition(b"\n")
    return json.loads(head), payload


def block_payload(v: npt.NDArray[np.float64], i: npt.NDArray[np.float64]) -> bytes:
    return np.concatenate((v, i)).astype("<f4").tobytes()


class CaptureWriter:
    """``with CaptureWriter(path, start_header) as w: w.block(header, payload)``."""

    def __init__(self, path: Path, start: dict[str, Any]) -> None:
        import h5py  # only the capture needs it: the service does not import it

        self.circuits: list[int] = [int(c) for c in start["circuits"]]
        self.f = h5py.File(path, "w")
        root = self.f.attrs
        root["format"] = FORMAT
        for key in ("device", "serial_number", "part_number", "firmware_version", "bridge_version"):
            root[key] = str(start.get(key, ""))
        root["sample_rate_hz"] = float(start["sample_rate_hz"])
        self.n = 0
        self.blocks = 0

        def grow(where: Any, name: str, dtype: Any) -> Any:
            return where.create_dataset(name, (0,), maxshape=(None,), dtype=dtype, chunks=(CHUNK,), compression="gzip")

        self.t = grow(self.f, "timestamp", "<f8")
        self.t.attrs["units"] = "s since 1970-01-01 UTC (device clock)"
        self.index = self.f.create_dataset("blocks", (0,), maxshape=(None,), dtype=BLOCK_DTYPE, chunks=(1024,))
        self.v, self.i = [], []
        names = start.get("circuit_names", {})
        for k, c in enumerate(self.circuits):
            g = self.f.create_group(f"circuit_{c:02d}")
            g.attrs["circuit"] = c
            g.attrs["name"] = str(names.get(str(c), f"Circuit{c:02d}"))
            g.attrs["v_lsb_volts"] = float(start["v_lsb_volts"][k])
            g.attrs["i_lsb_amps"] = float(start["i_lsb_amps"][k])
            self.v.append(grow(g, "voltage", "<f4"))
            self.i.append(grow(g, "current", "<f4"))
            self.v[-1].attrs["units"] = "V"
            self.i[-1].attrs["units"] = "A"

    def block(self, header: dict[str, Any], payload: bytes) -> None:
        n, fs = int(header["n"]), float(self.f.attrs["sample_rate_hz"])
        rows = np.frombuffer(payload, dtype="<f4").reshape(2 * len(self.circuits), n)
        end = self.n + n
        for ds in (self.t, *self.v, *self.i):
            ds.resize((end,))
        self.t[self.n : end] = float(header["t0_s"]) + np.arange(n) / fs
        for k in range(len(self.circuits)):
            self.v[k][self.n : end] = rows[k]
            self.i[k][self.n : end] = rows[len(self.circuits) + k]
        self.index.resize((self.blocks + 1,))
        self.index[self.blocks] = (int(header["seq"]), self.n, n, float(header["t0_s"]))
        if self.blocks == 0:
            self.f.attrs["start_utc"] = dt.datetime.fromtimestamp(float(header["t0_s"]), dt.UTC).isoformat()
        self.n, self.blocks = end, self.blocks + 1

    def finish(self, end: dict[str, Any]) -> None:
        self.f.attrs["blocks"] = self.blocks
        self.f.attrs["dropped_blocks"] = int(end.get("dropped", 0))

    def __enter__(self) -> CaptureWriter:
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.f.close()
