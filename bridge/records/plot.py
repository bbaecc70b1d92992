"""One PNG of a capture (matplotlib, headless): the waveform of the first cycles, RMS and active power
per mains cycle over the whole capture, and the harmonic spectrum (orders 1-40) of the first ten
cycles. Reads the HDF5 file in slices, so a long capture is never loaded whole."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def whole_cycles(fs: float, f_line: float, at_least: int) -> tuple[int, int]:
    """(samples, cycles): the fewest cycles, at least ``at_least``, that are a whole number of samples
    (at 7812.5 samples/s and 50 Hz a cycle is 156.25 samples, four cycles 625), so a mean over them
    or a spectrum of them has no leakage; if none is within 100 cycles, the nearest whole samples.

    >>> whole_cycles(7812.5, 50, 10), whole_cycles(8000, 50, 1)
    ((1875, 12), (160, 1))
    """
    for k in range(at_least, at_least + 100):
        samples = k * fs / f_line
        if abs(samples - round(samples)) < 1e-6:
            return round(samples), k
    return round(at_least * fs / f_line), at_least


def plot_capture(h5: Path, png: Path, f_line: float = 50.0) -> None:
    import h5py
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with h5py.File(h5, "r") as f:
        fs = float(f.attrs["sample_rate_hz"])
        groups = sorted(k for k in f if k.startswith("circuit_"))
        t = f["timestamp"]
        n = t.shape[0]
        cyc, per = whole_cycles(fs, f_line, 1)  # a step of the RMS and power trends: whole cycles
        cycles = n // cyc
        fig, ax = plt.subplots(4, 1, figsize=(11, 13), constrained_layout=True)
        device, serial, start = f.attrs["device"], f.attrs["serial_number"], f.attrs.get("start_utc", "")
        title = f"{device} ({serial}), {fs:g} samples/s, {n / fs:.1f} s from {start}"
        fig.suptitle(title)
        show = min(n, round(3 * fs / f_line))
        ms = np.arange(show) / fs * 1000
        cur = ax[0].twinx()
        for g in groups[:4]:
            name = f[g].attrs["name"]
            ax[0].plot(ms, f[g]["voltage"][:show], label=f"{name} V")
            cur.plot(ms, f[g]["current"][:show], "--", label=f"{name} I")
        ax[0].set(xlabel="ms", ylabel="V", title="waveform, first three cycles")
        cur.set_ylabel("A")
        ax[0].legend(loc="upper left", fontsize=8)
        cur.legend(loc="upper right", fontsize=8)
        # per-cycle RMS and power, in slices of whole cycles
        tc = np.arange(cycles) * cyc / fs
        step = 500 * cyc
        for g in groups[:4]:
            vr, ir, p = [], [], []
            for a in range(0, cycles * cyc, step):
                b = min(a + step, cycles * cyc)
                v = f[g]["voltage"][a:b].astype(np.float64).reshape(-1, cyc)
                i = f[g]["current"][a:b].astype(np.float64).reshape(-1, cyc)
                vr.append(np.sqrt((v * v).mean(axis=1)))
                ir.append(np.sqrt((i * i).mean(axis=1)))
                p.append((v * i).mean(axis=1))
            name = f[g].attrs["name"]
            if cycles:
                ax[1].plot(tc, np.concatenate(vr), label=f"{name} Vrms")
                ax[2].plot(tc, np.concatenate(p), label=f"{name} P")
                ax[1].plot(tc, np.concatenate(ir), ":", label=f"{name} Irms")
        ax[1].set(xlabel="s", ylabel="V / A", title=f"RMS per {per} cycle{'s' if per > 1 else ''}")
        ax[1].legend(fontsize=8)
        ax[2].set(xlabel="s", ylabel="W", title=f"active power per {per} cycle{'s' if per > 1 else ''}")
        ax[2].legend(fontsize=8)
        # spectrum of whole cycles (ten or a few more): each order falls on one bin
        m, _ = whole_cycles(fs, f_line, 10)
        m = min(n, m)
        orders = np.arange(1, 41)
        width = 0.8 / max(1, len(groups[:4]))
        for k, g in enumerate(groups[:4]):
            i = f[g]["current"][:m].astype(np.float64)
            spec = np.abs(np.fft.rfft(i)) * 2 / max(m, 1) / np.sqrt(2)
            bins = np.round(orders * f_line * m / fs).astype(int)
            amps = np.where(bins < spec.size, spec[np.minimum(bins, spec.size - 1)], 0.0)
            ax[3].bar(orders + k * width, amps, width=width, label=f"{f[g].attrs['name']} I")
        title = f"current harmonics, first {m * f_line / fs:.0f} cycles"
        ax[3].set(xlabel="harmonic order", ylabel="A rms", title=title, yscale="log")
        ax[3].legend(fontsize=8)
        fig.savefig(png, dpi=90)
        plt.close(fig)
