r"""Calibration observers for post-training quantization.

An observer watches every value one tensor takes over the calibration set, one batch at a
time (:meth:`Observer.update`), and then proposes the clipping range ``[lo, hi]`` the tensor
should be quantized with (:meth:`Observer.range`). Four methods:

``minmax``      the exact running min and max (no clipping). Never loses an outlier, spends
                the integer levels on the whole observed range.
``percentile``  the p-th percentile (default 99.99) read off a histogram.
``kl``          TensorRT-style entropy calibration: the threshold whose clipped-and-quantized
                distribution diverges least (Kullback-Leibler) from the observed one.
``mse``         the range that minimises the expected squared quantization error (rounding
                plus clipping) over the histogram.

Whatever the method, ``lo <= 0 <= hi`` and ``[lo, hi]`` lies inside
``[min(x_min, 0), max(x_max, 0)]``: the range always contains 0 so that zero (padding, ReLU
outputs) is exactly representable, and no method ever proposes a range wider than the data.
For symmetric targets the consumer uses ``max(|lo|, |hi|)``; the observers still report the
side that is actually occupied (e.g. ``[0, T]`` for a post-ReLU tensor). An observer that
saw only zeros (or nothing) returns ``(0.0, 0.0)``; the qparams code picks a scale for it.

Non-finite values (NaN, ±inf) are ignored and counted in :attr:`Observer.nonfinite`;
:attr:`Observer.count` is the number of finite values used.

Target integer types
--------------------
``range(signed=, bits=, symmetric=)`` names the integer type, because the KL and MSE searches
depend on how many levels the quantizer has. The quantizer modelled here is the one of
``npuc.quant.qparams`` (re-implemented privately in :func:`quantization_mse`; nothing is
imported from it)::

    qmin, qmax = (-2^(b-1), 2^(b-1)-1) if signed else (0, 2^b-1)
    asymmetric: s = (hi - lo) / (qmax - qmin),  z = clamp(round(qmin - lo/s), qmin, qmax)
    symmetric:  s = max(|lo|, |hi|) / (2^(b-1) - 1),  z = 0 (signed) or 2^(b-1) (unsigned)
    q = clamp(round_half_even(x / s) + z, qmin, qmax),   x̂ = s · (q - z)

so uint8 asymmetric has L = 255 steps over [lo, hi], int8 symmetric 127 steps per side.

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

KL divergence (entropy calibration)
-----------------------------------
For a candidate window of histogram bins ``[a, b)`` (clipping range ``[a·w, b·w]``) and the
quantizer of the target type over that range (step ``s``, grid points ``n·s``,
``n ∈ [n0, n0 + L]``):

* the reference ``P`` is the histogram restricted to the window with the clipped outliers
  added to the first and last bin: ``P_a += Σ_{j<a} H_j``, ``P_{b-1} += Σ_{j≥b} H_j``;
* the candidate ``Q`` is the *unclipped* window ``H[a:b]`` quantized and expanded back:
  every bin ``j`` belongs to the level ``n(j) = round(c_j / s)`` of its center ``c_j`` (the
  real round-to-nearest quantizer, not TensorRT's ``floor(j·L/i)`` grouping; computed in
  integers, a center exactly on a boundary going up), the mass ``S_n`` of a level is spread
  evenly over its ``cnt_n`` non-empty bins and empty bins stay empty:
  ``Q_j = S_{n(j)} / cnt_{n(j)}`` if ``H_j > 0`` else 0;
* ``p = P / ΣP``, ``q = Q / ΣQ``, ``D(p‖q) = Σ_j p_j log(p_j / q_j)``.

Smoothing. ``q_j = 0 < p_j`` can only happen in the two clipping bins (an empty bin that
receives the outliers). TensorRT smooths zero bins to a fixed probability ``ε = 1e-4``;
that makes clipping any tail lighter than ~1e-4 of the values free (``p log(p/ε) ≤ 0``
there), whatever the sample size, so KL degenerates into a 99.99th percentile, and on
post-ReLU data far worse (see below). npuc gives an empty clipping bin a pseudo-count of
``smoothing = 0.5`` values (``Q_j = 0.5`` before normalisation): clipping k values costs
about ``(k/N)·log(2k)``, positive for every k ≥ 1 and comparable across sample sizes.
``tensorrt_eps=1e-4`` restores TensorRT's rule (for comparison; the ``ε·n_zero/n_nonzero``
TensorRT also takes from non-empty bins shifts D by O(ε) and is left out).

Bias correction. D is computed from a finite sample: flattening a level with ``cnt_n``
non-empty bins removes the sampling noise of those bins, which alone makes the empirical
D grow by about ``(cnt_n − 1)/(2N)`` per level (the Miller–Madow bias of the within-level
entropy), i.e. by ~``(bins in the window − L)/(2N)`` in total: a bias towards narrow
windows that, at 10k-100k calibration values, outweighs the real rounding loss. npuc
subtracts ``Σ_n (cnt_n − 1)/(2N)`` (``bias_correction=True``).

Exact zeros are left out (``exclude_zeros=True``): they are quantized exactly by every
candidate, and a post-ReLU tensor's spike at 0 — half of its values in the first bin —
otherwise dominates Q's first level, so every wider window looks worse and the threshold
collapses (for a ReLU'd N(0,1) whose max is ~4.7, TensorRT's recipe picks ~1.5 and
multiplies the uint8 quantization MSE by ~1600, ONNX Runtime's 2048-bin entropy calibrator
picks ~2.7, ~50x; plausibly the accuracy loss seen with nncase 1.x's KL too).

Closed form. Grouping the sums by level,

    D = (Σ_j P_j log P_j − Σ_n S_n log(S_n / cnt_n) − corr) / ΣP − log ΣP + log ΣQ
        − Σ_n (cnt_n − 1) / (2 ΣP)

where ``Σ_j P_j log P_j`` and all ``S_n``, ``cnt_n`` come from prefix sums of ``H``,
``H log H`` and ``[H > 0]``, and ``corr`` adds the outlier mass of the two clipping bins
times ``log Q`` of their bins. One candidate costs O(L), not O(bins), and hundreds of
candidates are evaluated at once as one (candidates × levels) array.

Which window family is searched:

* non-negative tensors (post-ReLU) or non-positive ones: one-sided, thresholds ``T = i·w``
  over the histogram of ``|x|`` with ``L = qmax - qmin`` steps (255 for uint8/int8
  asymmetric: the whole type is spent on [0, T]) or ``2^(b-1) - 1`` for symmetric targets
  (127 for int8: the negative half is unusable);
* signed tensors, symmetric target: one-sided on ``|x|`` with ``2^(b-1) - 1`` levels, range
  ``[-T, T] ∩ [x_min, x_max]``;
* signed tensors, asymmetric target: the two ends are searched. Starting from the symmetric
  solution (with ``floor(L/2)`` levels per side), coordinate descent alternately searches
  the lower end with the upper one fixed and the upper end with the lower one fixed, with
  the real asymmetric grid (``s = (hi - lo)/L``, ``z = round(-lo/s)``), until neither moves
  (at most 4 rounds). The full window (min/max) is always a candidate.

Thresholds run from ``L`` bins (one bin per level: finer windows cannot show any rounding
loss) up to all bins, first with a stride that keeps at most ``candidates`` (512) of them,
then every bin around the best strided one. Ties go to the wider window. If the histogram
has no more bins than the quantizer has levels (e.g. a 128-bin histogram, or int16 targets
with ``L = 32767``) the divergence cannot see any rounding loss and the search would always
answer min/max: the observer then returns min/max *and logs a warning saying so* (and
records the reason in :attr:`KLObserver.last_search`) instead of silently degenerating the
way ONNX Runtime's entropy calibrator does with its default 128 bins and 128 quantized
bins (only one candidate, the whole range, is ever examined there). For types with at
least as many levels as the histogram budget has bins (int16) min/max is simply the
answer (the rounding error is negligible at histogram resolution): logged at INFO level.

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

import logging
import math
from abc import ABC, abstractmethod

import numpy as np

from ..errors import OptionError

__all__ = [
    "METHODS",
    "Observer",
    "MinMaxObserver",
    "HistogramObserver",
    "PercentileObserver",
    "KLObserver",
    "MSEObserver",
    "make_observer",
    "quantization_mse",
]

log = logging.getLogger(__name__)

METHODS = ("minmax", "percentile", "kl", "mse")

_E_MIN = -126  # smallest bin-width exponent: 2^-e stays a normal float32


# ----------------------------------------------------------------------------------------
# the quantizer (private copy; the real qparams math lives in npuc.quant.qparams)


def _check_target(signed, bits, symmetric) -> tuple[bool, int, bool]:
    if not isinstance(bits, (int, np.integer)) or isinstance(bits, bool) or not 2 <= bits <= 32:
        raise OptionError(f"quantization bits must be an integer in [2, 32], got {bits!r}")
    return bool(signed), int(bits), bool(symmetric)


def _qlimits(signed: bool, bits: int) -> tuple[int, int]:
    if signed:
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1


def _affine(lo, hi, signed: bool, bits: int, symmetric: bool):
    """Scale and zero point (float64 arrays broadcast from lo/hi) and the code limits."""
    qmin, qmax = _qlimits(signed, bits)
    lo = np.minimum(np.asarray(lo, np.float64), 0.0)
    hi = np.maximum(np.asarray(hi, np.float64), 0.0)
    if symmetric:
        half = (1 << (bits - 1)) - 1
        scale = np.maximum(-lo, hi) / half
        zp = np.full_like(scale, 0.0 if signed else float(1 << (bits - 1)))
    else:
        scale = (hi - lo) / (qmax - qmin)
        safe = np.where(scale > 0, scale, 1.0)
        zp = np.clip(np.rint(qmin - lo / safe), qmin, qmax)
    return scale, zp, qmin, qmax


def _fake_quant(x, scale, zp, qmin, qmax):
    """``s·(clamp(rint(x/s) + z) − z)``; a zero scale (all-zero range) maps everything to 0."""
    safe = np.where(scale > 0, scale, 1.0)
    q = np.clip(np.rint(x / safe) + zp, qmin, qmax)
    return np.where(scale > 0, (q - zp) * safe, 0.0)


def quantization_mse(x, lo, hi, signed, bits, symmetric) -> float:
    """Mean squared error of quantizing ``x`` with the clipping range ``[lo, hi]``.

    Simulates the affine quantizer described in the module docstring (range widened to
    contain 0; round half to even; clamp to the type) in float64 and returns
    ``mean((x − x̂)²)`` over the finite values of ``x`` (0.0 if there are none).
    """
    signed, bits, symmetric = _check_target(signed, bits, symmetric)
    v = np.asarray(x, dtype=np.float64).reshape(-1)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return 0.0
    scale, zp, qmin, qmax = _affine(float(lo), float(hi), signed, bits, symmetric)
    err = v - _fake_quant(v, scale, zp, qmin, qmax)
    return float(np.mean(err * err))


# ----------------------------------------------------------------------------------------
# observers


class Observer(ABC):
    """Watches one tensor's values batch by batch and proposes its clipping range."""

    method: str = ""

    def __init__(self) -> None:
        self._count = 0
        self._nonfinite = 0
        self._min = math.inf
        self._max = -math.inf

    # -- data ----------------------------------------------------------------------------
    def update(self, x: np.ndarray) -> None:
        """Add one batch of the tensor's values (any shape; NaN/inf are counted and skipped)."""
        a = np.asarray(x)
        if a.dtype.kind != "f":
            a = a.astype(np.float32)
        a = a.reshape(-1)
        if a.size == 0:
            return
        mn, mx = a.min(), a.max()
        if not (np.isfinite(mn) and np.isfinite(mx)):
            ok = np.isfinite(a)
            n_ok = int(np.count_nonzero(ok))
            self._nonfinite += a.size - n_ok
            if n_ok == 0:
                return
            a = a[ok]
            mn, mx = a.min(), a.max()
        self._count += a.size
        self._min = min(self._min, float(mn))
        self._max = max(self._max, float(mx))
        self._observe(a)

    def _observe(self, a: np.ndarray) -> None:  # noqa: B027 - optional hook
        """Subclass hook: ``a`` is a flat array of finite values; min/max are updated."""

    @property
    def count(self) -> int:
        """Number of (finite) values seen."""
        return self._count

    @property
    def nonfinite(self) -> int:
        """Number of NaN/±inf values that were ignored."""
        return self._nonfinite

    @property
    def min(self) -> float:
        """Exact minimum of the finite values seen (+inf if none)."""
        return self._min

    @property
    def max(self) -> float:
        """Exact maximum of the finite values seen (-inf if none)."""
        return self._max

    # -- result --------------------------------------------------------------------------
    def range(self, *, signed: bool, bits: int, symmetric: bool) -> tuple[float, float]:
        """The clipping range ``(lo, hi)`` for the given integer type, ``lo <= 0 <= hi``.

        ``(0.0, 0.0)`` if no finite value or only zeros were seen.
        """
        signed, bits, symmetric = _check_target(signed, bits, symmetric)
        if self._count == 0:
            return 0.0, 0.0
        lo0, hi0 = min(self._min, 0.0), max(self._max, 0.0)
        if lo0 == 0.0 and hi0 == 0.0:
            return 0.0, 0.0
        lo, hi = self._range(signed, bits, symmetric)
        lo = float(min(max(lo, lo0), 0.0))
        hi = float(max(min(hi, hi0), 0.0))
        return lo, hi

    @abstractmethod
    def _range(self, signed: bool, bits: int, symmetric: bool) -> tuple[float, float]:
        """The method's range; called with at least one non-zero finite value seen."""

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(count={self._count}, min={self._min:g}, "
                f"max={self._max:g})")


class MinMaxObserver(Observer):
    """Exact running min/max: ``[min(x_min, 0), max(x_max, 0)]``, no clipping."""

    method = "minmax"

    def _range(self, signed, bits, symmetric):
        return min(self._min, 0.0), max(self._max, 0.0)


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


# ----------------------------------------------------------------------------------------
# KL divergence


def _xlogx(v):
    v = np.asarray(v, np.float64)
    return np.where(v > 0, v * np.log(np.where(v > 0, v, 1.0)), 0.0)


class _KLTables:
    """Prefix sums of a histogram G (bin j covers [(j+k0)·w, (j+k0+1)·w))."""

    def __init__(self, g: np.ndarray, k0: int, w: float) -> None:
        self.g = g
        self.k0 = k0
        self.w = w
        self.n = g.size
        self.cum = np.concatenate(([0.0], np.cumsum(g)))
        self.cnz = np.concatenate(([0.0], np.cumsum(g > 0)))
        self.cxl = np.concatenate(([0.0], np.cumsum(_xlogx(g))))
        self.total = float(self.cum[-1])

    def divergence(self, a, b, n0, levels: int, *, smoothing: float = 0.5,
                   tensorrt_eps: float | None = None, bias_correction: bool = True
                   ) -> np.ndarray:
        """D(P‖Q) for windows [a, b) (int arrays) quantized on grid n0 .. n0+levels.

        The step is ``s = (b - a)·w / levels``; see the module docstring for P, Q, the
        smoothing (``smoothing`` counts, or TensorRT's probability ``tensorrt_eps``), the
        Miller-Madow ``bias_correction`` and the closed form.
        """
        a = np.asarray(a, np.int64)
        b = np.asarray(b, np.int64)
        n0 = np.asarray(n0, np.int64)
        g, cum, k0 = self.g, self.cum, self.k0
        # In integers (exact, no floating-point ties): with D = b - a the step is D/L bins
        # and bin j (center j + k0 + 1/2) rounds to level floor(((2(j+k0)+1)·L + D) / 2D),
        # a center exactly on a rounding boundary going up. The first bin of level n is
        # therefore ceil((2D·n - D - L) / 2L) - k0.
        d = b - a
        n = n0[:, None] + np.arange(levels + 2, dtype=np.int64)[None, :]
        num = 2 * d[:, None] * n - d[:, None] - levels
        e = -((-num) // (2 * levels)) - k0
        e = np.clip(e, a[:, None], b[:, None])
        e[:, 0] = a
        e[:, -1] = b
        s_lv = cum[e[:, 1:]] - cum[e[:, :-1]]            # S_n, shape (C, levels+1)
        c_lv = self.cnz[e[:, 1:]] - self.cnz[e[:, :-1]]  # cnt_n
        ok = s_lv > 0
        safe_c = np.where(ok, c_lv, 1.0)
        safe_s = np.where(ok, s_lv, 1.0)
        logq_lv = np.log(safe_s / safe_c)
        plogq = np.sum(np.where(ok, s_lv * logq_lv, 0.0), axis=1)
        q_tot = cum[b] - cum[a]
        out_lo = cum[a]
        out_hi = self.total - cum[b]
        rows = np.arange(a.size)
        if tensorrt_eps is None:
            log_empty = np.full(a.size, math.log(smoothing))
        else:  # q_j = eps after normalisation by ΣQ
            log_empty = np.log(tensorrt_eps * np.maximum(q_tot, 1e-300))

        def edge(j, out):
            # level of bin j, log Q_j (smoothed if the bin is empty), and its P-correction
            lv = ((2 * (j + k0) + 1) * levels + d) // (2 * d) - n0
            lv = np.clip(lv, 0, levels)
            gj = g[j]
            logq = np.where(gj > 0, logq_lv[rows, lv], log_empty)
            corr_q = np.where(out > 0, out * logq, 0.0)
            corr_p = _xlogx(gj + out) - _xlogx(gj)
            return corr_q, corr_p

        cq_lo, cp_lo = edge(a, out_lo)
        cq_hi, cp_hi = edge(b - 1, out_hi)
        plogp = self.cxl[b] - self.cxl[a] + cp_lo + cp_hi
        plogq = plogq + cq_lo + cq_hi
        tot = self.total
        with np.errstate(divide="ignore"):
            d = (plogp - plogq) / tot - math.log(tot) + np.log(q_tot)
        if bias_correction:
            extra = np.sum(np.where(ok, c_lv - 1.0, 0.0), axis=1)
            d = d - extra / (2.0 * tot)
        return np.where(q_tot > 0, d, np.inf)


def _search(cands: np.ndarray, f, max_cand: int, prefer_high: bool = True
            ) -> tuple[int, float, int]:
    """argmin of f over the sorted int array cands: strided pass, then a full local pass.

    Ties go to the larger candidate (``prefer_high``, the wider window when the candidate
    is an upper end) or the smaller one. Returns (best, value, evaluations).
    """
    stride = max(1, -(-cands.size // max_cand))
    coarse = cands[::stride]
    if coarse[-1] != cands[-1]:
        coarse = np.append(coarse, cands[-1])
    v = f(coarse)
    evals = coarse.size

    def pick(c, vals):
        order = np.argsort(c)
        c, vals = c[order], vals[order]
        i = c.size - 1 - int(np.argmin(vals[::-1])) if prefer_high else int(np.argmin(vals))
        return int(c[i]), float(vals[i])

    best, val = pick(coarse, v)
    if stride > 1:
        lo = np.searchsorted(cands, best - stride + 1)
        hi = np.searchsorted(cands, best + stride - 1, side="right")
        fine = cands[lo:hi]
        vf = f(fine)
        evals += fine.size
        best, val = pick(np.append(fine, best), np.append(vf, val))
    return best, val, evals


class KLObserver(HistogramObserver):
    """Entropy (KL-divergence) calibration, TensorRT style, done right (module docstring).

    ``bins``: histogram budget; ``candidates``: maximum thresholds per strided pass;
    ``exclude_zeros``: leave exact zeros out of the search (default; see the docstring).
    After :meth:`range`, :attr:`last_search` describes what the search did.
    """

    method = "kl"

    def __init__(self, bins: int = 4096, candidates: int = 512, *, smoothing: float = 0.5,
                 bias_correction: bool = True, exclude_zeros: bool = True,
                 tensorrt_eps: float | None = None) -> None:
        super().__init__(bins)
        if int(candidates) < 8:
            raise OptionError(f"KL candidates must be >= 8, got {candidates!r}")
        if not float(smoothing) > 0:
            raise OptionError(f"KL smoothing must be > 0 (a pseudo-count), got {smoothing!r}")
        if tensorrt_eps is not None and not 0 < float(tensorrt_eps) < 1:
            raise OptionError(f"tensorrt_eps must be in (0, 1), got {tensorrt_eps!r}")
        self.candidates = int(candidates)
        self.smoothing = float(smoothing)
        self.bias_correction = bool(bias_correction)
        self.exclude_zeros = bool(exclude_zeros)
        self.tensorrt_eps = None if tensorrt_eps is None else float(tensorrt_eps)
        self.last_search: dict = {}

    def _kw(self) -> dict:
        return {"smoothing": self.smoothing, "tensorrt_eps": self.tensorrt_eps,
                "bias_correction": self.bias_correction}

    def _fallback(self, reason: str, nonempty: int, levels: int, minmax):
        """min/max when no threshold search is possible, said out loud.

        A warning when more histogram bins would have allowed a search (levels < bins, e.g.
        an ORT-like 128-bin histogram for int8); only an info message when the type has
        more levels than any practical histogram (int16: min/max is then the right
        answer, its rounding error being negligible) or the data has < 3 distinct bins.
        """
        self.last_search = {"fallback": reason, "evaluated": 0}
        if nonempty > 2 and levels < self._bins:
            log.warning("KL calibration degenerates to min/max: %s", reason)
        else:
            log.info("KL calibration uses min/max: %s", reason)
        return minmax

    def _one_sided(self, f: np.ndarray, w: float, levels: int):
        """Best threshold T = i·w on the |x| histogram f with `levels` steps over [0, T]."""
        if f.size == 0 or f.sum() <= 0:
            return None, "no non-zero values"
        m = f.size
        if m <= levels:
            return None, (f"the |x| histogram has {m} bins for {levels} quantization steps; "
                          f"use more histogram bins (bins=) for a real threshold search")
        tab = _KLTables(f, 0, w)
        cands = np.arange(max(levels, 2), m + 1)

        def div(i):
            return tab.divergence(np.zeros_like(i), i, np.zeros(i.size), levels, **self._kw())

        best, val, evals = _search(cands, div, self.candidates)
        full = float(div(np.array([m]))[0])
        return (best, val, evals, full, m), None

    def _range(self, signed, bits, symmetric):
        qmin, qmax = _qlimits(signed, bits)
        full_l = qmax - qmin
        half_l = (1 << (bits - 1)) - 1
        lo0, hi0 = min(self._min, 0.0), max(self._max, 0.0)
        minmax = (lo0, hi0)
        amax = max(-lo0, hi0)
        one_sided = self._min >= 0.0 or self._max <= 0.0
        f, w = self._folded(drop_zeros=self.exclude_zeros)
        nonempty = int(np.count_nonzero(f))
        if one_sided or symmetric:
            levels = half_l if symmetric else full_l
            res, why = self._one_sided(f, w, levels)
            if res is None:
                return self._fallback(why, nonempty, levels, minmax)
            i, val, evals, full, m = res
            t = min(i * w, amax)
            self.last_search = {"levels": levels, "bins": m, "bin_width": w, "evaluated": evals,
                                "threshold": t, "divergence": val, "divergence_minmax": full}
            return -t, t
        return self._two_sided(full_l, f, w, nonempty, minmax)

    def _two_sided(self, levels, f, w, nonempty, minmax):
        h, k0, _ = self._signed(drop_zeros=self.exclude_zeros)
        n, jz = h.size, -k0
        if n <= levels:
            return self._fallback(f"the histogram has {n} bins for {levels} quantization "
                                  f"steps; use more histogram bins (bins=)", nonempty, levels,
                                  minmax)
        tab = _KLTables(h, k0, w)

        def div(a, b):
            a = np.asarray(a, np.int64)
            b = np.asarray(b, np.int64)
            lo_l = (a + k0) * levels / (b - a)     # lo / s (≤ 0)
            z = np.clip(np.rint(-lo_l), 0, levels)
            return tab.divergence(a, b, -z, levels, **self._kw())

        # start: the symmetric solution with floor(L/2) levels per side
        res, _ = self._one_sided(f, w, levels // 2)
        if res is None:
            a, b = 0, n
        else:
            i = res[0]
            a, b = max(0, jz - i), min(n, jz + i)
            if b - a < levels:
                a, b = 0, n
        evals = 0
        val = float(div([a], [b])[0])
        for _ in range(4):
            moved = False
            ca = np.arange(0, min(jz, b - levels) + 1)
            if ca.size:
                na, va, ev = _search(ca, lambda c: div(c, np.full(c.size, b)), self.candidates,
                                     prefer_high=False)
                evals += ev
                if va < val - 1e-12 or (va <= val and na < a):
                    moved |= na != a
                    a, val = na, va
            cb = np.arange(max(jz + 1, a + levels), n + 1)
            if cb.size:
                nb, vb, ev = _search(cb, lambda c: div(np.full(c.size, a), c), self.candidates)
                evals += ev
                if vb < val - 1e-12 or (vb <= val and nb > b):
                    moved |= nb != b
                    b, val = nb, vb
            if not moved:
                break
        full = float(div([0], [n])[0])
        if full <= val:
            a, b, val = 0, n, full
        lo, hi = (a + k0) * w, (b + k0) * w
        self.last_search = {"levels": levels, "bins": n, "bin_width": w, "evaluated": evals,
                            "threshold": (lo, hi), "divergence": val,
                            "divergence_minmax": full}
        return lo, hi


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


# ----------------------------------------------------------------------------------------


_CLASSES = {
    "minmax": MinMaxObserver,
    "percentile": PercentileObserver,
    "kl": KLObserver,
    "mse": MSEObserver,
}


def make_observer(method: str, **kw) -> Observer:
    """A new observer for ``method`` (one of :data:`METHODS`), with its keyword options."""
    key = str(getattr(method, "value", method)).strip().lower()
    cls = _CLASSES.get(key)
    if cls is None:
        raise OptionError(f"unknown calibration method {method!r}; choose one of: "
                          f"{', '.join(METHODS)}")
    try:
        return cls(**kw)
    except TypeError as exc:
        import inspect

        params = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
        raise OptionError(f"invalid option for calibration method {key!r} ({exc}); "
                          f"accepted options: {', '.join(params) or 'none'}") from None
