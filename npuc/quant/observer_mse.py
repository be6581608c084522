r"""MSE calibration: :class:`MSEObserver`, the range that minimises the expected squared
quantization error (rounding plus clipping) over the histogram.

MSE
---
The expected squared error of quantizing the observed values with the range [lo, hi]:

    E(lo, hi) = Σ_j H_j · mean_{x ∈ [u_j, v_j]} (x − x̂_{lo,hi}(x))²

over the non-empty bins, ``[u_j, v_j] = [edge_j, edge_j + w] ∩ [x_min, x_max]``, with
exactly the quantizer of :func:`quantization_mse` and exact zeros excluded (their error is
0 for every candidate). It covers rounding (inside the range) and clipping (outside). The
values are taken as uniform inside each bin rather than all at its center: with ``e(x)``
the error, the mean over a bin is integrated exactly in closed form, ``∫(x − v)² dx`` on
the clipped parts and, on the part inside the range, ``s³·(G(b/s) − G(a/s))`` with
``G(y) = ∫(v − round v)² dv = m/12 + ((y − m)³ + 1/8)/3``, ``m = round(y)``. (Evaluating
at bin centers is badly wrong once the quantization step is not much wider than a bin:
for int16, or when rare huge outliers make the histogram coarse.) The histogram is first
merged by a power of two down to at most ``eval_bins`` (1024) bins, which the
integration tolerates, to bound the cost.

Candidates: symmetric targets ``T = α·max|x|``; asymmetric ``[α·lo₀, α·hi₀]`` with
``[lo₀, hi₀] = [min(x_min,0), max(x_max,0)]``, for 100 values ``α ∈ (0, 1]`` and then 41
finer ones around the best; asymmetric targets then refine each end separately with the
other fixed (41 factors in ±20 % of it, two rounds). min/max is always a candidate, so
the expected error is never above that of min/max.
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import OptionError
from .observer_base import _affine, _fake_quant
from .observer_histogram import HistogramObserver


# ----------------------------------------------------------------------------------------
# MSE


def _sawtooth_integral(y):
    """G(y) = ∫ (v − round(v))² dv, an antiderivative (G(-1/2) = 0)."""
    m = np.floor(y + 0.5)
    f = y - m
    return m / 12.0 + (f * f * f + 0.125) / 3.0


def _mean_sq_error(u0, u1, scale, zp, qmin, qmax):
    """Mean of (x − x̂)² for x uniform on [u0, u1] (x̂ the quantizer (scale, zp, qmin, qmax));
    the squared error at u0 where u1 == u0. Arrays broadcast; scale > 0."""
    vlo = (qmin - zp) * scale
    vhi = (qmax - zp) * scale
    # clipped below vlo, rounded on [vlo, vhi], clipped above vhi
    a0 = np.minimum(u0, vlo) - vlo
    a1 = np.minimum(u1, vlo) - vlo
    c0 = np.maximum(u0, vhi) - vhi
    c1 = np.maximum(u1, vhi) - vhi
    b0 = np.clip(u0, vlo, vhi) / scale
    b1 = np.clip(u1, vlo, vhi) / scale
    integral = ((a1 ** 3 - a0 ** 3) + (c1 ** 3 - c0 ** 3)) / 3.0 \
        + scale ** 3 * (_sawtooth_integral(b1) - _sawtooth_integral(b0))
    width = u1 - u0
    point = u0 - _fake_quant(u0, scale, zp, qmin, qmax)
    return np.where(width > 0, integral / np.where(width > 0, width, 1.0), point * point)


class MSEObserver(HistogramObserver):
    """Clipping range minimising the expected squared quantization error (module docstring).

    After :meth:`range`, :attr:`last_search` holds the expected MSE of the chosen range and
    of min/max (per value, from the histogram).
    """

    method = "mse"

    def __init__(self, bins: int = 4096, grid: int = 100, eval_bins: int = 1024) -> None:
        super().__init__(bins)
        if int(grid) < 10:
            raise OptionError(f"MSE grid must be >= 10, got {grid!r}")
        if int(eval_bins) < 64:
            raise OptionError(f"MSE eval_bins must be >= 64, got {eval_bins!r}")
        self.grid = int(grid)
        self.eval_bins = int(eval_bins)
        self.last_search: dict = {}

    def _range(self, signed, bits, symmetric):
        h, k0, w = self._signed(drop_zeros=True)
        # evaluate on at most `eval_bins` bins: merging 2^k neighbours is exact, and the
        # within-bin integration keeps coarser bins accurate for smooth densities
        shift = 0
        if h.size > self.eval_bins:
            shift = math.ceil(math.log2(h.size / self.eval_bins))
        if shift:
            kk = (np.arange(h.size, dtype=np.int64) + k0) >> shift
            h = np.bincount(kk - kk[0], weights=h)
            k0, w = int(kk[0]), w * (1 << shift)
        nz = np.flatnonzero(h)
        lo0, hi0 = min(self._min, 0.0), max(self._max, 0.0)
        if nz.size == 0:
            return lo0, hi0
        # the values of bin j lie in [u0, u1] = [edge, edge + w] ∩ [x_min, x_max]
        u0 = np.clip((nz + k0) * w, self._min, self._max)
        u1 = np.clip((nz + k0 + 1) * w, self._min, self._max)
        cnt = h[nz]
        total = float(cnt.sum()) + self._zeros

        def cost(lo, hi):
            lo = np.asarray(lo, np.float64)
            hi = np.asarray(hi, np.float64)
            out = np.empty(lo.size)
            step = max(1, (1 << 20) // u0.size)      # bound the (candidates × bins) arrays
            for s0 in range(0, lo.size, step):
                sc, zp, qmin, qmax = _affine(lo[s0:s0 + step, None], hi[s0:s0 + step, None],
                                             signed, bits, symmetric)
                err2 = _mean_sq_error(u0[None, :], u1[None, :], sc, zp, qmin, qmax)
                out[s0:s0 + step] = err2 @ cnt
            return out

        def best_alpha(f):
            """Best α of a 1/grid .. 1 sweep, then 41 values within ±1/grid of it."""
            alphas = np.arange(1, self.grid + 1) / self.grid
            v = f(alphas)
            i = alphas.size - 1 - int(np.argmin(v[::-1]))
            d = 1.0 / self.grid
            fine = np.clip(np.linspace(alphas[i] - d, alphas[i] + d, 41), d / 40, 1.0)
            vf = f(fine)
            j = int(np.argmin(vf))
            return (fine[j], vf[j]) if vf[j] < v[i] else (alphas[i], v[i])

        def local(f, cur):
            """Best factor in [0.8·cur, 1.2·cur] ∩ (0, 1] (41 values)."""
            fs = np.clip(np.linspace(0.8 * cur, 1.2 * cur, 41), 1e-6, 1.0)
            v = f(fs)
            j = int(np.argmin(v))
            return fs[j], v[j]

        e_minmax = float(cost([lo0], [hi0])[0])
        if symmetric:
            amax = max(-lo0, hi0)
            al, val = best_alpha(lambda al: cost(np.maximum(-al * amax, lo0),
                                                 np.minimum(al * amax, hi0)))
            lo, hi = max(-al * amax, lo0), min(al * amax, hi0)
        else:
            al, val = best_alpha(lambda al: cost(al * lo0, al * hi0))
            lo, hi = al * lo0, al * hi0
            for _ in range(2):                      # refine each end with the other fixed
                if lo0 < 0:
                    bl, vl = local(lambda f: cost(f * lo0, np.full(f.size, hi)), lo / lo0)
                    if vl < val:
                        lo, val = bl * lo0, vl
                if hi0 > 0:
                    bh, vh = local(lambda f: cost(np.full(f.size, lo), f * hi0), hi / hi0)
                    if vh < val:
                        hi, val = bh * hi0, vh
        if e_minmax <= val:
            lo, hi, val = lo0, hi0, e_minmax
        self.last_search = {"expected_mse": val / total, "expected_mse_minmax": e_minmax / total}
        return lo, hi
