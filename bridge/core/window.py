"""One measurement window (10 cycles at 50 Hz, 12 at 60 Hz) for every circuit of a device at once.

Window edges are fractional sample positions (zero crossings). Sample j stands for the interval
[j - 1/2, j + 1/2); the two edge samples count with the share of their interval inside the window, so
consecutive windows split a boundary sample between them and every sample is integrated exactly once.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
MAX_HARMONIC = 40


@dataclass(frozen=True, slots=True, kw_only=True)
class WindowMetrics:
    """Per-circuit results of one window; every array has shape ``(circuits,)`` unless noted.

    Units: volts, amperes, watts, var, VA, degrees, hertz, percent. ``harmonics_v``/``harmonics_i`` are
    ``(circuits, 40)`` rms subgroup magnitudes of orders 1..40 (NaN above the Nyquist limit).
    """

    start: float  # fractional global sample index of the first edge
    end: float
    duration_s: float
    freq_hz: float  # NaN when the window was not synchronised to crossings
    synced: bool
    v_rms: FloatArray
    i_rms: FloatArray
    v_dc: FloatArray
    i_dc: FloatArray
    p_w: FloatArray
    q_var: FloatArray  # Q1, fundamental reactive power: + inductive, - capacitive
    s_va: FloatArray
    n_va: FloatArray  # non-active power sqrt(S^2 - P^2)
    pf: FloatArray  # P/S, signed like P
    dpf: FloatArray  # P1/S1
    angle_deg: FloatArray  # atan2(Q1, P1)
    v1_rms: FloatArray
    i1_rms: FloatArray
    thd_v: FloatArray
    thd_i: FloatArray
    harmonics_v: FloatArray
    harmonics_i: FloatArray
    harmonics_fresh: bool  # False: harmonics_* and thd_* were carried over from an earlier window
    clipped: BoolArray
    p_import_w: FloatArray  # the window's active energy split by cycle direction, as mean powers:
    p_export_w: FloatArray  # p_import_w - p_export_w == p_w; both >= 0
    event: BoolArray  # a dip, swell or interruption touched this window
    t_start_s: float = 0.0  # caller's clock; set by the stream analyzer

    def __reduce__(self) -> tuple[Any, ...]:
        # windows cross from the measuring process to the event loop hundreds of times a second: as
        # one block of their per-circuit rows they pickle in 2.5x less time than as two dozen small arrays
        rows = np.stack([getattr(self, name) for name in _ROWS])
        flags = np.stack((self.clipped, self.event))
        scalars = (self.start, self.end, self.duration_s, self.freq_hz, self.synced, self.harmonics_fresh)
        return (_window_from, (scalars, self.t_start_s, rows, self.harmonics_v, self.harmonics_i, flags))


_ROWS = (
    "v_rms", "i_rms", "v_dc", "i_dc", "p_w", "q_var", "s_va", "n_va", "pf", "dpf", "angle_deg",
    "v1_rms", "i1_rms", "thd_v", "thd_i", "p_import_w", "p_export_w",
)  # fmt: skip


def _window_from(
    scalars: tuple[float, float, float, float, bool, bool],
    t_start_s: float,
    rows: FloatArray,
    harmonics_v: FloatArray,
    harmonics_i: FloatArray,
    flags: BoolArray,
) -> WindowMetrics:
    start, end, duration_s, freq_hz, synced, fresh = scalars
    return WindowMetrics(
        start=start,
        end=end,
        duration_s=duration_s,
        freq_hz=freq_hz,
        synced=synced,
        harmonics_v=harmonics_v,
        harmonics_i=harmonics_i,
        harmonics_fresh=fresh,
        clipped=flags[0],
        event=flags[1],
        t_start_s=t_start_s,
        **{name: rows[k] for k, name in enumerate(_ROWS)},
    )


def with_products(x: FloatArray) -> FloatArray:
    """``(2C, m)`` voltages and currents -> ``(5C, m)``: v, i, v^2, i^2, v*i (C rows each), the rows
    whose per-segment sums give every mean, rms and active power."""
    out = np.empty((5 * (x.shape[0] // 2), x.shape[1]))
    out[: x.shape[0]] = x
    fill_products(out)
    return out


def fill_products(out: FloatArray) -> None:
    """Rows 2C.. of a ``(5C, m)`` buffer from its rows 0..2C: v^2, i^2, v*i (the layout above)."""
    c = out.shape[0] // 5
    np.multiply(out[: 2 * c], out[: 2 * c], out=out[2 * c : 4 * c])
    np.multiply(out[:c], out[c : 2 * c], out=out[4 * c :])


def segment_sums(x: FloatArray, start: int, edges: FloatArray) -> FloatArray:
    """Integrals of the sampled signal between fractional global positions ``edges`` (k+1,).

    Returns ``(rows, k)``: each sample's cell counts with the share of it inside the segment, so
    adjacent segments split a boundary sample and nothing is counted twice.
    """
    j = np.floor(edges + 0.5).astype(np.int64)  # cell holding each edge
    lj = j - start
    m = x.shape[1]
    if lj.size and (lj[0] < 0 or lj[-1] > m):
        raise ValueError(f"segments need samples {j[0]}..{j[-1]}, buffer holds {start}..{start + m - 1}")
    rows = x.shape[0]
    k = edges.size - 1
    if k < 1:
        return np.zeros((rows, 0))
    if lj[-1] > lj[0]:
        whole = np.add.reduceat(x[:, : lj[-1]], np.minimum(lj[:-1], lj[-1] - 1), axis=1)
        whole[:, lj[1:] == lj[:-1]] = 0.0  # reduceat yields x[i] for an empty segment
    else:
        whole = np.zeros((rows, k))
    at = np.where(lj < m, x[:, np.minimum(lj, m - 1)], 0.0)  # a cell at the buffer end has no weight
    frac = edges - j + 0.5  # share of the edge cell before the edge
    part = at * frac
    return whole - part[:, :-1] + part[:, 1:]


def measure_window(
    v: FloatArray,
    i: FloatArray,
    buf_start: int,
    a: float,
    b: float,
    *,
    fs: float,
    cycles: int,
    synced: bool,
    f_nominal: float = 50.0,
    v_clip: FloatArray | None = None,
    i_clip: FloatArray | None = None,
    cycle_edges: FloatArray | None = None,
) -> WindowMetrics:
    """Measure the window ``[a, b)`` (global fractional sample positions) of buffers ``v``, ``i``.

    ``v`` and ``i`` are ``(circuits, m)`` float64 arrays whose column 0 is global sample ``buf_start``;
    they must hold samples ``floor(a + 1/2) .. ceil(b - 1/2)``. ``cycles`` is the number of fundamental
    periods the window spans when ``synced``. ``cycle_edges`` (crossings inside the window) split the
    active energy into cycles, so a window in which power reverses fills both import and export.

    >>> fs, n = 5000.0, 1000
    >>> k = np.arange(n + 2)
    >>> v = np.sqrt(2) * 230 * np.sin(2 * np.pi * 50 * k / fs)[None, :]
    >>> i = np.sqrt(2) * 10 * np.sin(2 * np.pi * 50 * k / fs - np.pi / 6)[None, :]
    >>> m = measure_window(v, i, 0, 0.0, 1000.0, fs=fs, cycles=10, synced=True)
    >>> round(float(m.p_w[0]), 3), round(float(m.q_var[0]), 3), round(float(m.pf[0]), 5)
    (1991.858, 1150.0, 0.86603)
    """
    if v.shape != i.shape or v.ndim != 2:
        raise ValueError(f"v and i must be equal (circuits, samples) arrays, got {v.shape} and {i.shape}")
    (m,) = measure_windows(
        with_products(np.concatenate((v, i), axis=0)),
        buf_start,
        np.array([a, b], dtype=np.float64),
        fs=fs,
        cycles=cycles,
        synced=np.array([synced]),
        f_nominal=f_nominal,
        v_clip=v_clip,
        i_clip=i_clip,
        cycle_edges=cycle_edges,
    )
    return m


def measure_windows(
    x: FloatArray,
    buf_start: int,
    edges: FloatArray,
    *,
    fs: float,
    cycles: int,
    synced: npt.NDArray[np.bool_],
    f_nominal: float = 50.0,
    v_clip: FloatArray | None = None,
    i_clip: FloatArray | None = None,
    cycle_edges: FloatArray | None = None,
    harmonics: npt.NDArray[np.bool_] | None = None,
    held: WindowMetrics | None = None,
    event: npt.NDArray[np.bool_] | None = None,
    t_start_s: FloatArray | None = None,
) -> list[WindowMetrics]:
    """Measure consecutive windows ``[edges[k], edges[k+1])`` of one ``(5 * circuits, m)`` buffer laid
    out as :func:`with_products` makes it (what the stream analyzer keeps, filled block by block).

    All windows are measured together: the sums every quantity needs are taken per cycle segment in
    one pass over the buffer, so the cost per window is a handful of numpy calls, not dozens.
    ``harmonics`` selects the windows whose harmonic spectrum is computed (default: all); the others
    carry over the spectrum of the last window that had one (``held`` before the first), NaN if none,
    with ``harmonics_fresh`` False. ``event`` ``(C, K)`` and ``t_start_s`` ``(K,)`` are passed through.
    """
    if x.ndim != 2 or x.shape[0] % 5:
        raise ValueError(f"x must be a (5 * circuits, samples) array, got {x.shape}")
    edges = np.asarray(edges, dtype=np.float64)
    k_count = edges.size - 1
    if k_count < 1 or not np.all(np.diff(edges) > 0):
        raise ValueError(f"window edges must ascend strictly, got {edges}")
    c = x.shape[0] // 5
    j_first = math.floor(edges[0] + 0.5)
    j_last = math.ceil(edges[-1] - 0.5)  # an edge exactly between two cells takes the earlier one whole
    lo, hi = j_first - buf_start, j_last - buf_start + 1
    if lo < 0 or hi > x.shape[1]:
        raise ValueError(
            f"buffer holds samples {buf_start}..{buf_start + x.shape[1] - 1}, windows need {j_first}..{j_last}"
        )
    full = x[:, lo:hi]
    xs = full[: 2 * c]
    # fine segments: window edges plus the cycle edges inside them (for the per-cycle energy split)
    if cycle_edges is not None and cycle_edges.size:
        inner = cycle_edges[(cycle_edges > edges[0]) & (cycle_edges < edges[-1])]
        fine = np.sort(np.concatenate((edges, inner)))
        fine = fine[np.concatenate(([True], fine[1:] != fine[:-1]))]  # np.union1d, without its overhead
    else:
        fine = edges
    first_seg = np.searchsorted(fine, edges[:-1])
    seg = segment_sums(full, j_first, fine)  # (5C, F): x, x^2, v*i per fine segment
    seg_x, seg_vi = seg[: 2 * c], seg[4 * c :]
    width = np.diff(edges)  # (K,)
    win = np.add.reduceat(seg, first_seg, axis=1) / width  # (5C, K) means
    means = win[: 2 * c]
    ms = win[2 * c : 4 * c] - means * means
    rms = np.sqrt(np.maximum(ms, 0.0))
    sv, si = means[:c], means[c:]
    v_rms, i_rms = rms[:c], rms[c:]
    p = win[4 * c :] - sv * si  # DC: sensor offset, not power
    s = v_rms * i_rms

    # active energy per cycle, DC removed with the window's means, for the import/export split
    seg_len = np.diff(fine)
    per = np.diff(np.append(first_seg, fine.size - 1))  # fine segments per window
    svr, sir = np.repeat(sv, per, axis=1), np.repeat(si, per, axis=1)
    seg_p = seg_vi - sir * seg_x[:c] - svr * seg_x[c:] + svr * sir * seg_len
    p_import = np.add.reduceat(np.maximum(seg_p, 0.0), first_seg, axis=1) / width
    p_export = np.add.reduceat(np.maximum(-seg_p, 0.0), first_seg, axis=1) / width

    # fundamental phasors: a synchronous DFT over exactly `cycles` periods per window, fractional edges
    phasors = np.empty((2 * c, k_count), dtype=np.complex128)
    for k in range(k_count):
        a, b = float(edges[k]), float(edges[k + 1])
        n_cycles = cycles if synced[k] else (b - a) * f_nominal / fs  # unsynced: nominal-rate estimate
        jf, jl = math.floor(a + 0.5), math.ceil(b - 0.5)
        wf, wl = jf + 0.5 - a, b - (jl - 0.5)
        xk = xs[:, jf - j_first : jl - j_first + 1]
        omega = 2.0 * math.pi * n_cycles / (b - a)
        # cos and sin columns as one complex rotation run (a running product: no trig per sample)
        rot = np.full(jl - jf + 1, complex(math.cos(omega), math.sin(omega)))
        rot[0] = complex(math.cos(omega * (jf - a)), math.sin(omega * (jf - a)))
        np.multiply.accumulate(rot, out=rot)
        rot[0] *= wf
        rot[-1] *= wl
        scale = math.sqrt(2.0) / (b - a)
        # a matrix product on the (re, im) view, not two matrix-vector products: BLAS packs the operands
        # of a product, so the result cannot depend on where the window sits in memory (how blocks were cut)
        both = (xk @ rot.view(np.float64).reshape(-1, 2)) * scale  # (2C, 2): Re, -Im
        dc = rot.sum() * scale  # minus what the DC offsets add
        phasors[:, k] = (both[:, 0] - means[:, k] * dc.real) - 1j * (both[:, 1] - means[:, k] * dc.imag)
    v1, i1 = phasors[:c], phasors[c:]
    vi = v1 * np.conj(i1)
    p1, q1 = vi.real, vi.imag
    mag = np.abs(phasors)
    s1 = mag[:c] * mag[c:]
    with np.errstate(divide="ignore", invalid="ignore"):
        pf = np.where(s > 0, p / s, np.nan)
        dpf = np.where(s1 > 0, p1 / s1, np.nan)
    angle = np.degrees(np.arctan2(q1, p1))
    n_va = np.sqrt(np.maximum(s * s - p * p, 0.0))

    clipped = np.zeros((c, k_count), dtype=bool)
    if v_clip is not None or i_clip is not None:
        limit = np.concatenate(
            (
                np.full(c, np.inf) if v_clip is None else np.asarray(v_clip, dtype=np.float64),
                np.full(c, np.inf) if i_clip is None else np.asarray(i_clip, dtype=np.float64),
            )
        )
        # one pass over the whole stretch; per-window peaks only when some row reached its rail
        if np.any(np.maximum(xs.max(axis=1), -xs.min(axis=1)) >= limit):
            cells = np.floor(edges[:-1] + 0.5).astype(np.int64) - j_first  # first cell of each window
            peak = np.maximum(np.maximum.reduceat(xs, cells, axis=1), -np.minimum.reduceat(xs, cells, axis=1))
            hit = peak >= limit[:, None]
            clipped = hit[:c] | hit[c:]

    want = np.ones(k_count, dtype=bool) if harmonics is None else harmonics
    flags = np.zeros((c, k_count), dtype=bool) if event is None else event
    times = np.zeros(k_count) if t_start_s is None else t_start_s
    out: list[WindowMetrics] = []
    if held is not None:
        thd_v, thd_i, hv, hi_ = held.thd_v, held.thd_i, held.harmonics_v, held.harmonics_i
    else:
        thd_v = thd_i = np.full(c, np.nan)
        hv = hi_ = np.full((c, MAX_HARMONIC), np.nan)
    for k in range(k_count):
        a, b = float(edges[k]), float(edges[k + 1])
        w = b - a
        if want[k]:
            jf, jl = math.floor(a + 0.5), math.ceil(b - 0.5)
            n_cyc = cycles if synced[k] else max(1, round(w * f_nominal / fs))
            harm = _harmonics(xs[:, jf - j_first : jl - j_first + 1], w, n_cyc, jf - a, jf + 0.5 - a, b - (jl - 0.5))
            with np.errstate(divide="ignore", invalid="ignore"):
                thd = 100.0 * np.sqrt(np.nansum(harm[:, 1:] ** 2, axis=1)) / harm[:, 0]
            thd_v, thd_i, hv, hi_ = thd[:c], thd[c:], harm[:c], harm[c:]
        out.append(
            WindowMetrics(
                start=a,
                end=b,
                duration_s=w / fs,
                freq_hz=fs * cycles / w if synced[k] else math.nan,
                synced=bool(synced[k]),
                v_rms=v_rms[:, k],
                i_rms=i_rms[:, k],
                v_dc=sv[:, k],
                i_dc=si[:, k],
                p_w=p[:, k],
                q_var=q1[:, k],
                s_va=s[:, k],
                n_va=n_va[:, k],
                pf=pf[:, k],
                dpf=dpf[:, k],
                angle_deg=angle[:, k],
                v1_rms=mag[:c, k],
                i1_rms=mag[c:, k],
                thd_v=thd_v,
                thd_i=thd_i,
                harmonics_v=hv,
                harmonics_i=hi_,
                harmonics_fresh=bool(want[k]),
                clipped=clipped[:, k],
                p_import_w=p_import[:, k],
                p_export_w=p_export[:, k],
                event=flags[:, k],
                t_start_s=float(times[k]),
            )
        )
    return out


@functools.lru_cache(maxsize=1024)
def _largest_prime_factor(n: int) -> int:
    p, f = 2, 1
    while p * p <= n:
        while n % p == 0:
            n, f = n // p, p
        p += 1
    return max(f, n)


def _fft_size(width: float) -> int:
    """The whole-sample FFT length for a window ``width`` samples long: the nearest whole number, or
    the other neighbour when it is nearly as near (within 0.6 sample) and factors into smaller primes:
    10 cycles at 7812.5 Hz are 1562.5 samples, and an FFT over 1563 = 3 * 521 samples takes 3.5 times
    as long as one over 1562 = 2 * 11 * 71. Farther off, leakage into weak orders would grow."""
    lo, hi = max(math.floor(width), 2), max(math.ceil(width), 2)
    near = [n for n in (lo, hi) if abs(n - width) <= 0.6] or [round(width)]
    return min(near, key=lambda n: (_largest_prime_factor(n), abs(n - width)))


def _geometric(alpha: FloatArray, n: int) -> npt.NDArray[np.complex128]:
    """sum_{t<n} e^{i alpha t}, elementwise. A tone exactly on another order's bin (alpha a multiple
    of 2 pi: only in a short, unsynchronised window) sums to n there."""
    half = np.sin(0.5 * alpha)
    on_bin = np.abs(half) < 1e-12
    with np.errstate(divide="ignore", invalid="ignore"):
        m = np.rint(alpha / (2.0 * np.pi))  # the limit of the ratio at alpha = 2 pi m
        ratio = np.where(on_bin, n * np.where(m * (n - 1) % 2, -1.0, 1.0), np.sin(0.5 * n * alpha) / half)
    out: npt.NDArray[np.complex128] = np.exp(0.5j * alpha * (n - 1)) * ratio
    return out


SIGNIFICANT_HARMONIC = 0.02  # share of the fundamental above which an order is measured exactly


def _harmonics(xs: FloatArray, width: float, cycles: int, t0: float, w_first: float, w_last: float) -> FloatArray:
    """IEC 61000-4-7 harmonic subgroups (rms, orders 1..40); NaN above the Nyquist frequency.

    Two steps. An FFT over n ~ width whole samples (see :func:`_fft_size`) finds every order cheaply;
    the window is then short or long by under a sample, which puts order h off its bin by a known
    delta = h*cycles*(n/width - 1) bins, so the subgroup is divided by the share of a tone's energy its
    three bins hold (sum of sinc^2(d - delta)). That still leaks a little energy coherently between
    strong orders, so the orders that matter (the fundamental and any order above 2 % of it, on any
    row) are then measured exactly: a DFT over the fractional window itself (edge samples weighted) at
    their three subgroup frequencies. Weak orders keep the FFT value, once the exactly known strong
    tones' leakage is taken out of their bins.
    """
    n = min(_fft_size(width), xs.shape[1])
    spec = np.fft.rfft(xs[:, :n], axis=1)
    power = spec.real**2 + spec.imag**2
    power *= 2.0 / (n * n)  # rms^2 per bin
    orders = np.arange(1, MAX_HARMONIC + 1)
    centre = orders * cycles
    out = np.full((xs.shape[0], MAX_HARMONIC), np.nan)
    ok = centre + 1 < power.shape[1]
    idx = centre[ok]
    delta = idx * (n / width - 1.0)
    captured = np.sinc(-1.0 - delta) ** 2 + np.sinc(delta) ** 2 + np.sinc(1.0 - delta) ** 2
    out[:, ok] = np.sqrt((power[:, idx - 1] + power[:, idx] + power[:, idx + 1]) / captured)

    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.nan_to_num(out / out[:, :1], nan=0.0, posinf=0.0)
    # only rows that carry a real fundamental vote: an idle channel's noise would make every order look strong
    carried = out[:, 0] > 0.5 * np.sqrt(np.nansum(out * out, axis=1))
    if not np.any(carried) or not ok[0]:
        return out  # no tone anywhere (idle channels): nothing leaks
    strong = np.flatnonzero(share[carried].max(axis=0, initial=0.0) > SIGNIFICANT_HARMONIC)
    strong = np.union1d([0], strong)  # the fundamental always: its leakage dominates a clean sine's THD
    strong = strong[ok[strong]]
    bins = ((strong + 1)[:, None] * cycles + np.array([-1, 0, 1])[None, :]).ravel().astype(np.float64)
    # e^{-i 2 pi k t / width} for every sample t of the window, built by a running product per bin
    m = xs.shape[1]
    step = np.exp(-2j * np.pi * bins / width)
    basis = np.empty((m, bins.size), dtype=np.complex128)
    basis[0] = np.exp(-2j * np.pi * bins * t0 / width)
    basis[1:] = step
    np.cumprod(basis, axis=0, out=basis)
    basis[0] *= w_first
    basis[-1] *= w_last
    # one real matrix product on the interleaved (re, im) view instead of two on strided copies
    exact = (xs @ basis.view(np.float64)).view(np.complex128)  # (rows, 3 * strong)
    p3 = (np.abs(exact) ** 2 * (2.0 / (width * width))).reshape(xs.shape[0], strong.size, 3)
    out[:, strong] = np.sqrt(p3.sum(axis=2))

    # The weak orders' FFT bins also hold the strong tones' leakage (the FFT frame is not a whole
    # number of cycles): ~0.1 % THD on a clean 50 Hz sine at 7812.5 Hz, the whole METROLOGY.md
    # tolerance. Each strong tone is now known exactly (x = Re(c e^{i theta t})), so its share of every
    # weak bin follows in closed form and is taken out before the weak orders are read.
    weak = np.flatnonzero(ok & ~np.isin(np.arange(MAX_HARMONIC), strong))
    if weak.size:
        kb = ((weak + 1)[:, None] * cycles + np.array([-1, 0, 1])[None, :]).ravel()
        theta = 2.0 * np.pi * (strong + 1) * cycles / width  # rad per sample
        c = exact.reshape(xs.shape[0], strong.size, 3)[:, :, 1] * (2.0 / width)  # complex amplitudes
        omega = 2.0 * np.pi * kb / n
        lead = c * np.exp(1j * theta * t0)  # the FFT frame starts t0 samples after the window
        pos, neg = _geometric(theta[:, None] - omega, n), _geometric(-theta[:, None] - omega, n)
        leak = 0.5 * (lead @ pos + lead.conj() @ neg)
        cleaned = spec[:, kb] - leak
        pw = (cleaned.real**2 + cleaned.imag**2).reshape(xs.shape[0], weak.size, 3) * (2.0 / (n * n))
        w_delta = (weak + 1) * cycles * (n / width - 1.0)
        w_cap = np.sinc(-1.0 - w_delta) ** 2 + np.sinc(w_delta) ** 2 + np.sinc(1.0 - w_delta) ** 2
        out[:, weak] = np.sqrt(pw.sum(axis=2) / w_cap)
    return out
