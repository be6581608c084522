r"""Entropy (KL-divergence) calibration: :class:`KLObserver`.

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
"""
from __future__ import annotations

import logging
import math

import numpy as np

from ..errors import OptionError
from .observer_base import _qlimits
from .observer_histogram import HistogramObserver

# the logger of npuc.quant.observers, where this code lived and where users configure it
log = logging.getLogger("npuc.quant.observers")


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
