r"""Histogram calibration: :class:`HistogramObserver`, the one-pass histogram the percentile,
KL and MSE methods read, and :class:`PercentileObserver`.

The histogram (one pass, exact re-binning)
------------------------------------------
The histogram observers (percentile, kl, mse) keep one histogram of the signed values on a
grid *anchored at zero* whose bin width is a power of two, ``w = 2^e``: bin ``k`` (an
integer, negative or not) counts the values in ``[k·w, (k+1)·w)``, i.e. ``k = floor(x / w)``,
computed exactly because dividing by a power of two is exact in floating point. At most
``bins`` (default 4096) consecutive bins are kept, always covering
``[min(x_min, 0), max(x_max, 0)]``, so between ``bins/2`` and ``bins`` bins are occupied.

When a batch falls outside the current span, the width is doubled ``s`` times (the
smallest ``s`` that makes the new span fit) and each bin ``k`` is merged into
``k >> s = floor(k / 2^s)``. Because ``floor(floor(x/w)/2^s) = floor(x/(2^s·w))``, the
merged counts are exactly those a histogram of width ``2^s·w`` would have had from the
start: feeding the data in ten batches gives the *identical* histogram as one batch of all
of it, and no second pass over the data is ever needed. Exact zeros are also counted
separately (``x == 0`` is exactly representable by every candidate range, so the KL and
MSE searches leave them out: they cost no error and carry no information about the range;
a post-ReLU tensor's spike at 0 would otherwise dominate the KL search).

From this signed histogram H the searches use either H itself or the histogram of ``|x|``,
``F[m] = H[m] + H[-m-1]`` (bin ``m`` covering ``[m·w, (m+1)·w)``), again exact.

Percentile
----------
``P_p(v)`` is read off the cumulative histogram with linear interpolation inside the bin
that crosses ``p/100`` of the total, that bin taken as ``[edge, edge + w] ∩ [min, max]``
(so it is within one bin width of ``np.percentile``, a constant tensor gets its value and
``p = 100`` is exactly min/max):

* symmetric targets: ``T = P_p(|x|)``, range ``[-T, T] ∩ [x_min, x_max]``;
* asymmetric targets: ``[P_(100-p)(x), P_p(x)]`` — each tail loses (100 - p) % of the
  values (a post-ReLU tensor therefore gets ``[0, P_p(x)]``).
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import OptionError
from .observer_base import Observer

_E_MIN = -126  # smallest bin-width exponent: 2^-e stays a normal float32


class HistogramObserver(Observer):
    """Base of the histogram methods: one-pass, zero-anchored, power-of-two-width histogram.

    ``bins`` is the maximum number of bins kept (between bins/2 and bins are occupied).
    """

    def __init__(self, bins: int = 4096) -> None:
        super().__init__()
        if not isinstance(bins, (int, np.integer)) or isinstance(bins, bool) or bins < 8:
            raise OptionError(f"histogram bins must be an integer >= 8, got {bins!r}")
        self._bins = int(bins)
        self._e: int | None = None       # bin width 2^e
        self._kmin = 0                   # grid index of self._hist[0]
        self._hist: np.ndarray | None = None
        self._zeros = 0

    # -- one pass ------------------------------------------------------------------------
    def _fits(self, e: int, lo: float, hi: float) -> bool:
        w = math.ldexp(1.0, e)
        return math.floor(hi / w) - math.floor(lo / w) + 1 <= self._bins

    def _exponent_for(self, lo: float, hi: float) -> int:
        e = _E_MIN if self._e is None else self._e
        span = hi - lo
        if span > 0:
            e = max(e, math.frexp(span / self._bins)[1] - 1)
        while not self._fits(e, lo, hi):
            e += 1
        return e

    def _observe(self, a: np.ndarray) -> None:
        lo, hi = min(self._min, 0.0), max(self._max, 0.0)
        e = self._exponent_for(lo, hi)
        kmin = math.floor(lo / math.ldexp(1.0, e))
        if self._hist is None:
            self._hist = np.zeros(self._bins, np.int64)
            self._e, self._kmin = e, kmin
        elif e != self._e or kmin != self._kmin:
            self._rebin(e, kmin)
        # floor(x / 2^e) - kmin, exact: scaling by a power of two only moves the exponent
        dt = a.dtype if a.dtype in (np.float32, np.float64) else np.dtype(np.float32)
        t = a * dt.type(math.ldexp(1.0, -e))
        np.floor(t, out=t)
        t -= dt.type(kmin)
        counts = np.bincount(t.astype(np.intp), minlength=self._bins)
        if counts.size > self._bins:  # pragma: no cover - guarded by _exponent_for
            raise RuntimeError("histogram index out of range (internal error)")
        self._hist += counts
        self._zeros += int(np.count_nonzero(a == 0))

    def _rebin(self, e: int, kmin: int) -> None:
        """Coarsen to width 2^e (merging 2^(e - old e) adjacent bins) and re-anchor at kmin."""
        shift = min(e - self._e, 62)
        nz = np.flatnonzero(self._hist)
        k = (nz.astype(np.int64) + self._kmin) >> shift
        new = np.zeros(self._bins, np.int64)
        np.add.at(new, k - kmin, self._hist[nz])
        self._hist, self._e, self._kmin = new, e, kmin

    # -- views ---------------------------------------------------------------------------
    @property
    def bins(self) -> int:
        return self._bins

    @property
    def bin_width(self) -> float:
        """Current bin width (a power of two); 0.0 before any data."""
        return 0.0 if self._e is None else math.ldexp(1.0, self._e)

    @property
    def zeros(self) -> int:
        """Number of exact zeros seen."""
        return self._zeros

    def histogram(self) -> tuple[np.ndarray, np.ndarray]:
        """``(counts, edges)`` over the occupied span ``[min(x_min,0), max(x_max,0)]``."""
        if self._hist is None:
            return np.zeros(0, np.int64), np.zeros(1)
        counts, k0, w = self._signed(drop_zeros=False)
        edges = (k0 + np.arange(counts.size + 1)) * w
        return counts.astype(np.int64), edges

    def _signed(self, drop_zeros: bool) -> tuple[np.ndarray, int, float]:
        """Signed histogram (float64) of bins k0..k0+n-1, trimmed to the occupied span."""
        w = math.ldexp(1.0, self._e)
        kmax = math.floor(max(self._max, 0.0) / w)
        n = kmax - self._kmin + 1
        h = self._hist[:n].astype(np.float64)
        if drop_zeros:
            h[-self._kmin] -= self._zeros
        return h, self._kmin, w

    def _folded(self, drop_zeros: bool) -> tuple[np.ndarray, float]:
        """Histogram of |x|: F[m] counts |x| in [m·w, (m+1)·w), trimmed after the last bin."""
        h, k0, w = self._signed(drop_zeros)
        jz = -k0
        pos, neg = h[jz:], h[:jz][::-1]
        f = np.zeros(max(pos.size, neg.size))
        f[:pos.size] += pos
        f[:neg.size] += neg
        nz = np.flatnonzero(f)
        return (f[:nz[-1] + 1] if nz.size else f[:0]), w


def _quantile(counts: np.ndarray, first_edge: float, w: float, q: float,
              vmin: float, vmax: float) -> float:
    """Value below which a fraction q of the histogram lies (linear inside the bin)."""
    cum = np.cumsum(counts)
    total = cum[-1]
    target = q * total
    # first bin whose cumulative count reaches the target (tolerating the rounding of q·total)
    j = int(np.searchsorted(cum, target - 1e-9 * total, side="left"))
    j = min(j, counts.size - 1)
    below = cum[j] - counts[j]
    frac = 0.0 if counts[j] == 0 else (target - below) / counts[j]
    # the values of bin j lie in [edge, edge + w] ∩ [vmin, vmax]
    b0 = min(max(first_edge + j * w, vmin), vmax)
    b1 = max(min(first_edge + (j + 1) * w, vmax), b0)
    return b0 + min(max(frac, 0.0), 1.0) * (b1 - b0)


class PercentileObserver(HistogramObserver):
    """Percentile clipping read off the histogram (see the module docstring)."""

    method = "percentile"

    def __init__(self, percentile: float = 99.99, bins: int = 4096) -> None:
        super().__init__(bins)
        p = float(percentile)
        if not 50.0 <= p <= 100.0:
            raise OptionError(f"percentile must be in [50, 100], got {percentile!r}")
        self.percentile = p

    def _range(self, signed, bits, symmetric):
        q = self.percentile / 100.0
        if symmetric:
            f, w = self._folded(drop_zeros=False)
            amax = max(-self._min, self._max)
            amin = 0.0 if self._min <= 0.0 <= self._max else min(abs(self._min), abs(self._max))
            t = _quantile(f, 0.0, w, q, amin, amax)
            return -t, t
        h, k0, w = self._signed(drop_zeros=False)
        lo = _quantile(h, k0 * w, w, 1.0 - q, self._min, self._max)
        hi = _quantile(h, k0 * w, w, q, self._min, self._max)
        return lo, hi
