"""Fitting the KPU's 16-segment activation table: the fused activation's reference function
and kinks, sampling of ``t(v)``, greedy anchored segments under a bisected tolerance, slope
quantization, and the exact error report (see :mod:`.params` for the method)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .conv_bn import QParams
from .encode import ActTable, apply_act_table
from .spec import ACT_SEGMENTS, ACT_START_MAX, ACT_START_MIN, KpuError

_ETA = 0.02                   # safety margin (codes) inside the rounding interval
_DENSE = 4096                 # samples over the active range
_EVAL_POINTS = 1 << 18        # points of the exact error measurement
_EPS_FLOOR = 1.0 / 1024       # fit tolerance (codes) treated as exact


@dataclass(frozen=True)
class FitReport:
    """How well the activation table reproduces ``y*(v)``, in output codes."""

    activation: str
    max_error: int           #: max |table(v) − y*(v)| over the measured points
    mean_error: float        #: mean |table(v) − y*(v)|
    mismatch_rate: float     #: fraction of measured points where they differ
    points: int              #: measured points (every integer v of the active range, or a grid)
    segments: int            #: segments used (≤ 16)
    epsilon: float           #: fit tolerance beyond rounding (0 = every sample rounds right or is exact)
    active_range: tuple[float, float]   #: the pre-activation interval (real units) where y* varies

    def __str__(self) -> str:
        return (f"{self.activation}: {self.segments} segments, max error {self.max_error} code(s), "
                f"mean {self.mean_error:.4f}, {100 * self.mismatch_rate:.2f}% of {self.points} points differ")

# ----------------------------------------------------------------------------- activation
def activation_function(spec) -> tuple[Callable[[np.ndarray], np.ndarray], list[float], str]:
    """``(f, kinks, name)`` for a fused activation spec (``None`` = identity), with the
    registry's reference semantics (``npuc.ops.epilogue.apply_activation``)."""
    if spec is None or spec == {} or (isinstance(spec, dict) and spec.get("op") in ("Identity", None)):
        return (lambda u: np.asarray(u, np.float64)), [], "Identity"
    from ...ops.epilogue import apply_activation, check_activation

    spec = check_activation(spec)
    name = spec["op"]
    if name == "PRelu":
        slope = np.asarray(spec["slope"], np.float64).reshape(-1)
        if slope.size != 1 and not np.all(slope == slope[0]):
            raise KpuError("a per-channel PRelu cannot be one KPU activation table (it is shared by all channels)")
        spec = {"op": "LeakyRelu", "alpha": float(slope[0])}
        name = "LeakyRelu"
    kinks: list[float] = []
    if name in ("Relu", "LeakyRelu", "Elu", "Celu", "Selu"):
        kinks = [0.0]
    elif name == "Clip":
        kinks = [float(v) for v in (spec.get("min"), spec.get("max")) if v is not None]
    elif name == "HardSigmoid":
        a, b = float(spec["alpha"]), float(spec["beta"])
        if a != 0:
            kinks = [-b / a, (1 - b) / a]
    elif name == "HardSwish":
        kinks = [-3.0, 3.0]
    elif name == "ThresholdedRelu":
        kinks = [float(spec["alpha"])]
    fixed = dict(spec)

    def f(u):
        with np.errstate(over="ignore", invalid="ignore"):
            return np.asarray(apply_activation(np.asarray(u, np.float64), fixed), np.float64)

    return f, kinks, name


def _uniq(a) -> np.ndarray:
    """Sorted distinct values (sort-based; faster here than numpy's hashing unique)."""
    a = np.sort(np.asarray(a).reshape(-1))
    if a.size:
        a = a[np.concatenate(([True], a[1:] != a[:-1]))]
    return a


class _Target:
    """Samples of ``t(v)`` and the bands of one fit."""

    def __init__(self, f, s_v: float, s_y: float, z_y: int):
        self.f, self.s_v, self.s_y, self.z_y = f, s_v, s_y, z_y

    def t(self, v: np.ndarray) -> np.ndarray:
        t = self.f(np.asarray(v, np.float64) * self.s_v) / self.s_y + self.z_y
        return np.nan_to_num(t, nan=0.0, posinf=1e9, neginf=-1e9)

    @staticmethod
    def codes(t: np.ndarray) -> np.ndarray:
        return np.clip(np.rint(t), 0, 255)


def _sample_domain(tg: _Target, kinks_v: list[int], v_lo: int, v_hi: int):
    """Integer sample points: dense over the active range, sparse out to the worst case."""
    out_lo = (0 - tg.z_y) * tg.s_y / tg.s_v
    out_hi = (255 - tg.z_y) * tg.s_y / tg.s_v
    coarse = [np.linspace(v_lo, v_hi, 8193)]
    a, b = max(out_lo, v_lo), min(out_hi, v_hi)
    if a < b:
        coarse.append(np.linspace(a, b, 4097))
    coarse.append(np.asarray(kinks_v, np.float64))
    xc = _uniq(np.clip(np.rint(np.concatenate(coarse)), v_lo, v_hi).astype(np.int64))
    rc = tg.codes(tg.t(xc))
    changed_lo = np.flatnonzero(rc != rc[0])
    changed_hi = np.flatnonzero(rc != rc[-1])
    if changed_lo.size == 0:                       # the output never changes
        act_lo = act_hi = int(xc[0])
    else:
        act_lo = int(xc[max(changed_lo[0] - 1, 0)])
        act_hi = int(xc[min(changed_hi[-1] + 1, xc.size - 1)])
    span = act_hi - act_lo
    if span + 1 <= _DENSE:
        dense = np.arange(act_lo, act_hi + 1, dtype=np.int64)
    else:
        dense = _uniq(np.rint(np.linspace(act_lo, act_hi, _DENSE)).astype(np.int64))
    tails = [xc[(xc < act_lo) | (xc > act_hi)]]
    for lo_end, hi_end, sign in ((v_lo, act_lo, -1), (act_hi, v_hi, 1)):
        length = hi_end - lo_end
        if length > 0:
            steps = _uniq(np.rint(np.geomspace(1, length, 48)).astype(np.int64))
            tails.append(act_lo - steps if sign < 0 else act_hi + steps)
    kv = np.asarray([k + d for k in kinks_v for d in (-1, 0, 1)], np.int64)
    x = _uniq(np.concatenate([dense, *tails, kv, [v_lo, v_hi]]))
    x = x[(x >= v_lo) & (x <= v_hi)]
    return x, (act_lo, act_hi)


def _anchors(tg: _Target, x: np.ndarray, t: np.ndarray):
    """Candidate segment starts: integer v where t crosses an integer code n (start, n,
    |t(start) − n|), found by interpolating between samples and refining to the closest
    integer v."""
    t0, t1 = t[:-1], t[1:]
    lo = np.maximum(np.ceil(np.minimum(t0, t1)), 0)
    hi = np.minimum(np.floor(np.maximum(t0, t1)), 255)
    cnt = np.where((t0 != t1) & (hi >= lo), (hi - lo + 1), 0).astype(np.int64)
    cnt = np.minimum(cnt, 256)
    idx = np.repeat(np.arange(t0.size), cnt)
    if not idx.size:
        return np.zeros(0, np.int64), np.zeros(0), np.zeros(0)
    first = np.repeat(np.cumsum(cnt) - cnt, cnt)
    n = lo[idx] + (np.arange(idx.size) - first)
    frac = (n - t0[idx]) / (t1[idx] - t0[idx])
    vs = x[idx] + frac * (x[idx + 1] - x[idx])
    base = np.rint(vs).astype(np.int64)
    cand = np.stack([base - 1, base, base + 1])
    err = np.abs(tg.t(cand) - n[None, :])
    k = np.argmin(err + 1e-12 * np.abs(cand - vs[None, :]), axis=0)   # ties: nearest the crossing
    pick = cand[k, np.arange(base.size)]
    e = err[k, np.arange(base.size)]
    order = np.lexsort((e, pick))
    pick, n, e = pick[order], n[order], e[order]
    keep = np.concatenate(([True], pick[1:] != pick[:-1]))
    return pick[keep], n[keep], e[keep]


def _extend(x, lo_b, hi_b, S: int, B: float, i0: int, stop: int | None = None):
    """Furthest sample index a line through (S, B) can cover from i0 within the bands, and
    the slope interval there. ``stop`` limits the samples considered."""
    n = x.size if stop is None else stop + 1
    amax, amin = -np.inf, np.inf
    if i0 >= n:
        return n - 1, amax, amin
    i, chunk = i0, 64
    while i < n:
        j = min(n, i + chunk)
        d = (x[i:j] - S).astype(np.float64)
        lo = (lo_b[i:j] - B) / d
        hi = (hi_b[i:j] - B) / d
        cmx = np.maximum.accumulate(np.maximum(lo, amax))
        cmn = np.minimum.accumulate(np.minimum(hi, amin))
        bad = cmx > cmn
        if bad.any():
            k = int(np.argmax(bad))
            if k == 0:
                return i - 1, amax, amin
            return i + k - 1, float(cmx[k - 1]), float(cmn[k - 1])
        amax, amin = float(cmx[-1]), float(cmn[-1])
        i, chunk = j, chunk * 4
    return n - 1, amax, amin


def _greedy(x, t, r, cross, eps: float, max_segments: int):
    """Segments [(start, bias)] covering all samples within tolerance eps, or None.

    Greedy: each segment reaches as far as a line through its anchor can stay in the
    bands; the next anchor is the candidate (an integer crossing of t, or for flat parts
    one of the last samples covered) whose segment reaches furthest."""
    h = 0.5 - _ETA
    lo_b = np.where(r <= 0, -np.inf, np.minimum(t - eps, r - h))
    hi_b = np.where(r >= 255, np.inf, np.maximum(t + eps, r + h))
    cs, cb, ce = cross
    segs = []
    S, B, i0 = ACT_START_MIN, float(r[0]), 0
    while True:
        reach, _, _ = _extend(x, lo_b, hi_b, S, B, i0)
        segs.append((S, B))
        if reach >= x.size - 1:
            return segs, lo_b, hi_b
        if len(segs) >= max_segments:
            return None
        # candidate anchors with S < start <= x[reach]
        a0 = int(np.searchsorted(cs, S, side="right"))
        a1 = int(np.searchsorted(cs, x[reach], side="right"))
        pool = np.arange(a0, a1)
        if pool.size > 24:
            pool = _uniq(np.concatenate([pool[-12:], pool[np.linspace(0, pool.size - 1, 12).astype(np.int64)]]))
        cands = [(int(cs[i]), float(cb[i]), float(ce[i])) for i in pool]
        if eps > _EPS_FLOOR:
            # anchors where t is ±eps off the code: the line may start eps away, like a
            # Chebyshev fit, instead of exactly on the curve
            for c_s, c_b, _ in list(cands):
                j = min(max(int(np.searchsorted(x, c_s)), 1), x.size - 1)
                slope = (t[j] - t[j - 1]) / max(x[j] - x[j - 1], 1)
                if slope != 0:
                    for d in (-eps, eps):
                        s2 = int(round(c_s + d / slope))
                        if S < s2 <= x[reach]:
                            cands.append((s2, c_b, abs(d)))
        lo_i = max(i0, reach - 3)
        cands += [(int(x[i]), float(r[i]), abs(float(t[i] - r[i]))) for i in range(lo_i, reach + 1)
                  if x[i] > S]
        if not cands:
            return None
        best = None
        for c_s, c_b, c_e in cands:
            ci0 = int(np.searchsorted(x, c_s, side="right"))
            rr, _, _ = _extend(x, lo_b, hi_b, c_s, c_b, ci0)
            # tie-breaks: closest to the curve, then an even bias (rhe(p) + B equals
            # rhe(p + B) at exact ties only for even B), then the later start
            key = (rr, -c_e, c_b % 2 == 0, c_s)
            if best is None or key > best[0]:
                best = (key, c_s, c_b, ci0)
        _, S, B, i0 = best


def _quantize_slope(lo: float, hi: float) -> tuple[int, int]:
    """(mul, shift) with mul/2^shift inside [lo, hi] (nearest to the middle), 16-bit mul."""
    if not (np.isfinite(lo) or np.isfinite(hi)):
        return 0, 0
    if lo <= 0 <= hi and (not np.isfinite(lo) or not np.isfinite(hi)):
        return 0, 0
    if not np.isfinite(lo):
        a = hi if hi < 0 else 0.0
    elif not np.isfinite(hi):
        a = lo if lo > 0 else 0.0
    else:
        a = 0.5 * (lo + hi)
    if a == 0:
        return 0, 0
    sh = int(math.floor(math.log2(32767 / abs(a))))
    sh = max(0, min(255, sh))
    m = int(round(a * 2.0 ** sh))
    m = max(-32768, min(32767, m))
    if not lo <= m / 2.0 ** sh <= hi:
        for cand in (math.ceil(lo * 2.0 ** sh), math.floor(hi * 2.0 ** sh)):
            if -32768 <= cand <= 32767 and lo <= cand / 2.0 ** sh <= hi:
                return int(cand), sh
    return m, sh


def fit_activation(activation, s_v: float, out_q, v_lo: int, v_hi: int, *,
                   max_segments: int = ACT_SEGMENTS) -> tuple[ActTable, FitReport]:
    """Fit the 16-segment table mapping BN outputs ``v`` (real value ``s_v · v``, possible
    range ``v_lo..v_hi``) to output codes ``clamp(rhe(f(s_v v) / s_y + z_y), 0, 255)``."""
    out_q = QParams.of(out_q)
    f, kinks, name = activation_function(activation)
    tg = _Target(f, s_v, out_q.scale, out_q.zero_point)
    v_lo, v_hi = int(v_lo), int(v_hi)
    if v_lo >= v_hi:
        v_hi = v_lo + 1
    kinks_v = [int(round(k / s_v)) for k in kinks if v_lo <= k / s_v <= v_hi]
    x, (act_lo, act_hi) = _sample_domain(tg, kinks_v, v_lo, v_hi)
    t = tg.t(x)
    r = tg.codes(t)
    cross = _anchors(tg, x, t)

    # ε below _EPS_FLOOR counts as exact: take the fewest segments at that tolerance
    got = _greedy(x, t, r, cross, _EPS_FLOOR, max_segments)
    eps = _EPS_FLOOR
    if got is None:
        lo_e, hi_e = _EPS_FLOOR, 2 * _EPS_FLOOR
        while True:
            got = _greedy(x, t, r, cross, hi_e, max_segments)
            if got is not None or hi_e > 512:
                break
            lo_e, hi_e = hi_e, hi_e * 2
        if got is None:
            raise KpuError(f"cannot fit {name} with {max_segments} segments")
        for _ in range(7):
            mid = 0.5 * (lo_e + hi_e)
            g = _greedy(x, t, r, cross, mid, max_segments)
            if g is not None:
                hi_e, got = mid, g
            else:
                lo_e = mid
        eps = hi_e
    segs, lo_b, hi_b = got

    start = np.full(ACT_SEGMENTS, ACT_START_MAX, np.int64)
    mul = np.zeros(ACT_SEGMENTS, np.int64)
    shift = np.zeros(ACT_SEGMENTS, np.int64)
    bias = np.zeros(ACT_SEGMENTS, np.int64)
    for i, (S, B) in enumerate(segs):
        i0 = int(np.searchsorted(x, S, side="right"))
        nxt = segs[i + 1][0] if i + 1 < len(segs) else None
        stop = None if nxt is None else int(np.searchsorted(x, nxt, side="right")) - 1
        _, alo, ahi = _extend(x, lo_b, hi_b, S, B, i0, stop)
        m, sh = _quantize_slope(alo, ahi)
        start[i], mul[i], shift[i], bias[i] = S, m, sh, int(B)
    bias[len(segs):] = bias[len(segs) - 1]
    table = ActTable(start=start, mul=mul, shift=shift, bias=bias)

    # exact error in output codes
    if act_hi - act_lo + 1 <= _EVAL_POINTS:
        grid = np.arange(act_lo, act_hi + 1, dtype=np.int64)
    else:
        grid = _uniq(np.rint(np.linspace(act_lo, act_hi, _EVAL_POINTS)).astype(np.int64))
    ev = _uniq(np.concatenate([grid, x]))
    ideal = tg.codes(tg.t(ev)).astype(np.int64)
    got_codes = apply_act_table(ev, table).astype(np.int64)
    err = np.abs(got_codes - ideal)
    report = FitReport(activation=name, max_error=int(err.max()), mean_error=float(err.mean()),
                       mismatch_rate=float((err > 0).mean()), points=int(ev.size), segments=len(segs),
                       epsilon=float(eps), active_range=(act_lo * s_v, act_hi * s_v))
    return table, report
