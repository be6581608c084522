"""The KPU's own arithmetic: from a float (or quantized) convolution layer to the real
hardware parameters of one KPU layer.

What one KPU layer computes
---------------------------
For output channel ``c`` and pixel ``p`` (uint8 inputs ``x``, pad positions holding
``pad_value``; uint8 weights ``w``; sums over the k×k window and the ``n`` input channels
of the group, ``n = C`` for a normal and ``n = 1`` for a depthwise layer):

1. ``acc = Σ x·w + ((arg_x · Σx) >> shr_x) + ((arg_w · Σw) >> shr_w) + arg_add · n``
   (36-bit signed; ``>>`` is the flooring arithmetic shift). ``arg_add`` is multiplied by
   the number of *channels* ``n``, not of taps: nncase's simulator adds
   ``arg_add * g_ic`` and its compiler sets ``arg_add = k² · z_x · z_w``.
2. batch-norm: ``v = ((acc · mul_c) >> shift_c) + add_c`` (mul 24-bit signed, shift
   0..15, add 32-bit signed; v is 36 bits).
3. activation, one 16-segment table shared by all channels: the highest segment ``s``
   with ``v > start_s`` gives ``y = clamp(rhe((v − start_s) · mul_s / 2^shift_s) +
   bias_s, 0, 255)``, ``rhe`` = round half to even (start 36-bit signed, mul 16-bit
   signed, shift 0..255, bias 0..255).
4. pooling of the uint8 map (bypass, max/mean 2×2 s2, 2×2 s1, 4×4 s4, select).

How the parameters are chosen here
----------------------------------
*Inputs* carry one uint8 ``(s_x, z_x)``; the pad value is ``z_x`` so padding is a real 0.

*Weights* are uint8 per output channel with **one zero point** ``z_w`` for the whole
layer (the hardware has one ``arg_x``, which multiplies Σx by the weights' zero point):
``w_q = clamp(rhe(w / s_w[c]) + z_w, 0, 255)``; ``z_w`` is 128 (symmetric, as nncase) or,
by default, the code that minimizes the geometric mean of the per-channel scales
``s_w[c] = max(hi_c / (255 − z_w), −lo_c / z_w)``.

*Zero points fold into the conv arguments* so that the accumulator is exactly
``Σ (x − z_x)(w − z_w) = Σxw − z_w Σx − z_x Σw + n k² z_x z_w``:
``arg_x = −z_w``, ``arg_w = −z_x``, ``shr_x = shr_w = 0``, ``arg_add = k² · z_x · z_w``.

*BN* maps the accumulator to a fixed-point value ``v`` of the pre-activation
``u = γ_c · (s_x s_w[c] · acc) + b_c`` (``γ_c`` an optional per-channel scale, e.g. a real
batch-norm's γ/σ, ``b_c`` the bias) at one scale ``s_v = s_y · 2^−e`` shared by all
channels (the activation table is shared): ``mul_c / 2^shift_c ≈ r_c = γ_c s_x s_w[c] / s_v``
(shift_c the largest ≤ 15 with |mul_c| < 2^23) and ``add_c = round(b_c / s_v + ½)`` (the
½ undoes the mean −½ of the flooring shift, so ``u ≈ s_v · v``). The exponent ``e`` is
the largest in −20..40 keeping every ``mul_c`` in 24 bits, every ``add_c`` in 32 bits and
the worst-case ``|v|`` (from ``max |acc_c| = max(z_x, 255 − z_x) · Σ|w_q − z_w|``) below
2^34, inside the 36-bit ALU.

*The activation table* maps ``v`` to output codes through the fused activation ``f``:
the ideal is ``y*(v) = clamp(rhe(t(v)), 0, 255)`` with ``t(v) = f(s_v · v) / s_y + z_y``.
:func:`fit_activation` samples ``t`` (densely where ``y*`` changes, sparsely out to the
worst-case v range, always at the kinks of piecewise-linear activations), then places
≤ 16 anchored segments greedily, minimizing by bisection the tolerance ε of the band
each sample must fall in: ``line ∈ [min(t − ε, r − ½ + η), max(t + ε, r + ½ − η)]``
(``r = y*``, one-sided where r is 0 or 255 because the output clamps; η = 0.02 guards the
slope's 16-bit rounding), i.e. a line either rounds to the right code or stays within ε
of the true value. Each segment is anchored at an integer ``start`` where ``t`` crosses
an integer ``bias`` (or where ``t`` is flat), since ``bias`` must be an integer code.
Piecewise-linear activations (identity, ReLU, ReLU6/Clip, leaky ReLU, hard sigmoid) fit
with ε ≈ 0; smooth ones (sigmoid, tanh, swish, h-swish's curved part, GELU, ...) with
the smallest ε 16 segments allow. The report gives the exact error of the table in output
codes against ``y*``, over every integer v of the active range (or a 2^18-point grid of it).

The float → code mapping of the whole layer (for tests): ``x_q = quantize(x)``, the
emulator's output ``y_q``, ``y ≈ s_y (y_q − z_y)`` ≈ pool(f(γ ⊙ conv(x, w) + b)).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .encode import ActTable, BnTable, KpuLayer, apply_act_table, encode_act, encode_bn
from .layout import fmap_bytes
from .spec import (ACT_SEGMENTS, ACT_START_MAX, ACT_START_MIN, ACT_TABLE_ALIGN, AI_SRAM_BYTES, ROW_BYTES,
                   WEIGHTS_LOAD_LIMIT, KpuError, KpuPool, layer_limit_violations, parse_pool, row_layout)

__all__ = ["QParams", "ConvArgs", "FitReport", "KpuLayerProgram", "quantize_weights", "conv_args", "make_bn",
           "activation_function", "fit_activation", "make_kpu_layer", "float_layer"]

_ETA = 0.02                   # safety margin (codes) inside the rounding interval
_DENSE = 4096                 # samples over the active range
_EVAL_POINTS = 1 << 18        # points of the exact error measurement
_V_LIMIT = 1 << 34            # worst-case |v| allowed
_EPS_FLOOR = 1.0 / 1024       # fit tolerance (codes) treated as exact


@dataclass(frozen=True)
class QParams:
    """uint8 affine quantization: ``x ≈ scale · (q − zero_point)``."""

    scale: float
    zero_point: int

    @classmethod
    def of(cls, q: Any) -> "QParams":
        if isinstance(q, QParams):
            return q
        if hasattr(q, "scale") and hasattr(q, "zero_point"):
            s, z = q.scale, q.zero_point
        else:
            s, z = q
        s = float(np.asarray(s).reshape(-1)[0])
        z = int(np.asarray(z).reshape(-1)[0])
        if not (s > 0 and math.isfinite(s)):
            raise KpuError(f"quantization scale must be positive and finite, got {s}")
        if not 0 <= z <= 255:
            raise KpuError(f"uint8 zero point must be in 0..255, got {z}")
        return cls(s, z)

    def quantize(self, x) -> np.ndarray:
        return np.clip(np.rint(np.asarray(x, np.float64) / self.scale) + self.zero_point, 0, 255).astype(np.uint8)

    def dequantize(self, q) -> np.ndarray:
        return (np.asarray(q, np.float64) - self.zero_point) * self.scale


@dataclass(frozen=True)
class ConvArgs:
    """The conv_value / conv_value2 registers."""

    arg_x: int
    shift_x: int
    arg_w: int
    shift_w: int
    arg_add: int


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


# ----------------------------------------------------------------------------- weights & conv args
def quantize_weights(weights: np.ndarray, zero_point: int | None = None
                     ) -> tuple[np.ndarray, np.ndarray, int]:
    """Per-output-channel uint8 weights sharing one zero point.

    Returns ``(w_q uint8 same shape, scales float64 (M,), z_w)``. ``zero_point=None``
    picks the z_w minimizing the geometric mean of the channel scales; pass 128 for
    nncase's symmetric scheme.
    """
    w = np.asarray(weights, np.float64)
    if not np.all(np.isfinite(w)):
        raise KpuError("weights contain NaN or infinity")
    m = w.shape[0]
    flat = w.reshape(m, -1)
    lo = np.minimum(flat.min(axis=1), 0.0)
    hi = np.maximum(flat.max(axis=1), 0.0)
    zs = np.arange(1, 255) if zero_point is None else np.array([int(zero_point)])
    if not np.all((zs >= 1) & (zs <= 254)):
        raise KpuError(f"weight zero point must be in 1..254, got {zero_point}")
    # scale of every channel for every candidate zero point: (Z, M)
    s = np.maximum(hi[None, :] / (255 - zs[:, None]), -lo[None, :] / zs[:, None])
    live = (hi - lo) > 0
    if zero_point is None and live.any():
        cost = np.log(s[:, live]).sum(axis=1)
        zi = int(np.argmin(cost))
    else:
        zi = 0
    z = int(zs[zi])
    scales = np.where(live, s[zi], 1.0)
    q = np.clip(np.rint(flat / scales[:, None]) + z, 0, 255).astype(np.uint8).reshape(w.shape)
    return q, scales, z


def conv_args(x_zero_point: int, w_zero_point: int, kernel: int) -> ConvArgs:
    """``acc = Σ (x − z_x)(w − z_w)``: ``arg_x = −z_w``, ``arg_w = −z_x``, ``arg_add = k² z_x z_w``."""
    return ConvArgs(arg_x=-int(w_zero_point), shift_x=0, arg_w=-int(x_zero_point), shift_w=0,
                    arg_add=kernel * kernel * int(x_zero_point) * int(w_zero_point))


def _bn_for_exponent(r0: np.ndarray, bias: np.ndarray, s_y: float, e: int, max_acc: np.ndarray):
    """BN table for ``s_v = s_y · 2^−e``, or None when a field or |v| would overflow."""
    s_v = math.ldexp(s_y, -e)
    r = r0 / s_v
    a = np.abs(r)
    if np.any(a >= (1 << 23) - 0.5):
        return None
    with np.errstate(divide="ignore"):
        sh = np.floor(np.log2(((1 << 23) - 1) / np.where(a > 0, a, 1.0)))
    sh = np.clip(np.where(a > 0, sh, 15), 0, 15).astype(np.int64)
    mul = np.rint(a * np.exp2(sh)).astype(np.int64)
    over = mul > (1 << 23) - 1
    sh = np.where(over, sh - 1, sh)
    mul = np.where(over, np.rint(a * np.exp2(sh)).astype(np.int64), mul)
    mul = np.where(r < 0, -mul, mul)
    add_f = np.floor(bias / s_v + 0.5 + 0.5)          # round(b / s_v + 1/2)
    if np.any(np.abs(add_f) > (1 << 31) - 1):
        return None
    add = add_f.astype(np.int64)
    top = (max_acc * np.abs(mul)) >> sh
    if np.any(top + np.abs(add) + 2 > _V_LIMIT):
        return None
    v_lo = int(np.min(((-max_acc * np.abs(mul)) >> sh) + add))
    v_hi = int(np.max(top + add))
    return BnTable(mul=mul, shift=sh, add=add), s_v, v_lo, v_hi


def make_bn(real_scale: np.ndarray, bias: np.ndarray, s_y: float, max_acc: np.ndarray,
            exponents=range(40, -21, -1)) -> tuple[BnTable, int, float, int, int]:
    """BN table for ``u_c = real_scale_c · acc + bias_c`` at ``s_v = s_y · 2^−e``, with the
    largest feasible ``e``. Returns ``(bn, e, s_v, v_lo, v_hi)`` (the worst-case v range)."""
    r0 = np.asarray(real_scale, np.float64)
    b = np.asarray(bias, np.float64)
    mx = np.asarray(max_acc, np.int64)
    for e in exponents:
        got = _bn_for_exponent(r0, b, s_y, e, mx)
        if got is not None:
            bn, s_v, v_lo, v_hi = got
            return bn, e, s_v, v_lo, v_hi
    raise KpuError("no BN scale keeps the multipliers, biases and the 36-bit BN output in range "
                   f"(output scale {s_y}, accumulator scales {r0.min()}..{r0.max()}, biases up to "
                   f"{np.abs(b).max() if b.size else 0}); the output scale is far from the layer's range")


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


# ----------------------------------------------------------------------------- the layer
@dataclass
class KpuLayerProgram:
    """Everything the KPU needs for one layer, plus the numbers behind it.

    ``words`` (12 uint64), ``bn_words`` (uint64 per output channel), ``act_words``
    (18 uint64, to be placed 256-byte aligned) and ``weights`` (uint8 OIHW bytes) are what
    the hardware reads; the rest documents how they were derived.
    """

    layer: KpuLayer
    words: np.ndarray
    bn: BnTable
    bn_words: np.ndarray
    act: ActTable
    act_words: np.ndarray
    weights: np.ndarray                  #: uint8, flattened OIHW (M · C/g · k · k bytes)
    weights_q: np.ndarray                #: the same, shaped (M, C/g, k, k)
    w_scales: np.ndarray                 #: per output channel, float64
    w_zero_point: int
    conv: ConvArgs
    x_q: QParams
    y_q: QParams
    v_exponent: int                      #: s_v = s_y · 2^−v_exponent
    v_scale: float
    v_range: tuple[int, int]             #: worst-case BN output range
    activation: Any
    pool: KpuPool
    in_shape: tuple[int, int, int]
    out_shape: tuple[int, int, int]
    fit: FitReport
    depthwise: bool = False
    kernel: int = 3
    extra: dict = field(default_factory=dict)

    @property
    def in_bytes(self) -> int:
        return fmap_bytes(*self.in_shape)

    @property
    def out_bytes(self) -> int:
        return fmap_bytes(*self.out_shape)

    def quantize_input(self, x) -> np.ndarray:
        return self.x_q.quantize(x)

    def dequantize_output(self, y) -> np.ndarray:
        return self.y_q.dequantize(y)

    def relocate(self, *, src_addr: int | None = None, dst_addr: int | None = None,
                 weights_addr: int | None = None, bn_addr: int | None = None, act_addr: int | None = None,
                 send_data_out: bool | None = None) -> "KpuLayerProgram":
        """A copy with new addresses in the words (the memory planner's job)."""
        ch = {}
        if src_addr is not None:
            ch["image_src_addr"] = _row_addr(src_addr, "src_addr", self.in_bytes)
        if dst_addr is not None:
            ch["image_dst_addr"] = _row_addr(dst_addr, "dst_addr", self.out_bytes)
        if weights_addr is not None:
            ch["para_start_addr"] = int(weights_addr)
        if bn_addr is not None:
            ch["bwsx_base_addr"] = int(bn_addr)
        if act_addr is not None:
            if act_addr % ACT_TABLE_ALIGN:
                raise KpuError(f"the activation table address {act_addr:#x} must be {ACT_TABLE_ALIGN}-byte aligned")
            ch["active_addr"] = int(act_addr)
        if send_data_out is not None:
            ch["send_data_out"] = int(bool(send_data_out))
        layer = self.layer.replace(**ch)
        import dataclasses

        return dataclasses.replace(self, layer=layer, words=layer.to_words())


def _row_addr(addr: int, what: str, size: int) -> int:
    addr = int(addr)
    if addr % ROW_BYTES:
        raise KpuError(f"{what} {addr:#x} is not a multiple of {ROW_BYTES}")
    if addr < 0 or addr + size > AI_SRAM_BYTES:
        raise KpuError(f"{what} {addr:#x} + {size} bytes does not fit in the 2 MB AI SRAM")
    return addr // ROW_BYTES


def make_kpu_layer(x_q, weights, bias=None, *, in_shape, out_q, depthwise: bool = False,
                   activation=None, pool="none", channel_scale=None, src_addr: int = 0,
                   dst_addr: int | None = None, pad_value: int | None = None,
                   weight_zero_point: int | None = None, weights_addr: int = 0, bn_addr: int = 0,
                   act_addr: int = 0, send_data_out: bool = False, weights_quant=None,
                   max_segments: int = ACT_SEGMENTS) -> KpuLayerProgram:
    """Build one KPU layer from a float convolution.

    ``weights`` float ``(M, C, k, k)`` (or ``(C, 1, k, k)`` with ``depthwise``), k = 1 or 3,
    stride 1, "same" padding; ``bias`` float ``(M,)``; ``channel_scale`` an optional float
    ``(M,)`` applied to the convolution before the bias (a real batch-norm's γ/σ);
    ``in_shape`` = (C, H, W); ``x_q`` / ``out_q`` = (scale, zero point) of the uint8 input
    and output; ``activation`` a fused activation spec (``{"op": "Relu"}``,
    ``{"op": "Clip", "min": 0, "max": 6}``, ``{"op": "LeakyRelu", "alpha": 0.1}``,
    ``{"op": "Sigmoid"}``, ``{"op": "HardSwish"}``, ... or None); ``pool`` a
    :class:`~.spec.KpuPool` or its name. Addresses are byte addresses (feature maps in AI
    SRAM, 64-aligned; weights/BN/activation table in main memory); ``dst_addr`` defaults
    to right after the input map. ``pad_value`` defaults to the input zero point.
    ``weights_quant = (w_q uint8, scales (M,), zero_point)`` keeps already-quantized
    weights as they are (``weights`` is then only used for its shape).
    """
    x_q = QParams.of(x_q)
    y_q = QParams.of(out_q)
    w = np.asarray(weights, np.float64)
    if w.ndim != 4 or w.shape[2] != w.shape[3]:
        raise KpuError(f"weights must be (M, C/g, k, k), got shape {w.shape}")
    c, h, wd = (int(v) for v in in_shape)
    m, cg, k, _ = w.shape
    if depthwise and cg != 1:
        raise KpuError(f"depthwise weights must be (C, 1, k, k), got {w.shape}")
    if not depthwise and cg != c:
        raise KpuError(f"weights {w.shape} do not match {c} input channels")
    why = layer_limit_violations(c, h, wd, m, k, depthwise)
    if why:
        raise KpuError("not a KPU layer: " + "; ".join(why))
    pool = parse_pool(pool)
    b = np.zeros(m) if bias is None else np.asarray(bias, np.float64).reshape(-1)
    gamma = np.ones(m) if channel_scale is None else np.asarray(channel_scale, np.float64).reshape(-1)
    if b.size != m or gamma.size != m:
        raise KpuError(f"bias and channel_scale need {m} values")
    pv = x_q.zero_point if pad_value is None else int(pad_value)

    if weights_quant is None:
        wq, w_scales, z_w = quantize_weights(w, weight_zero_point)
    else:
        wq = np.asarray(weights_quant[0])
        w_scales = np.asarray(weights_quant[1], np.float64).reshape(-1)
        z_w = int(weights_quant[2])
        if wq.dtype != np.uint8 or wq.shape != w.shape or w_scales.size != m or not 0 <= z_w <= 255:
            raise KpuError(f"weights_quant must be (uint8 {w.shape}, {m} scales, zero point 0..255)")
    args = conv_args(x_q.zero_point, z_w, k)
    dev = np.abs(wq.reshape(m, -1).astype(np.int64) - z_w).sum(axis=1)
    max_acc = dev * max(x_q.zero_point, 255 - x_q.zero_point, abs(pv - x_q.zero_point))
    bn, e, s_v, v_lo, v_hi = make_bn(gamma * x_q.scale * w_scales, b, y_q.scale, max_acc)
    act, report = fit_activation(activation, s_v, y_q, v_lo, v_hi, max_segments=max_segments)

    ho, wo = pool.out_size(h), pool.out_size(wd)
    if ho < 1 or wo < 1:
        raise KpuError(f"{pool.name} of a {h}x{wd} map leaves nothing")
    in_bytes = fmap_bytes(c, h, wd)
    out_bytes = fmap_bytes(m, ho, wo)
    if dst_addr is None:
        dst_addr = src_addr + in_bytes
    per_out = cg * k * k
    if depthwise:
        oc_one, loads = m, 1
    else:
        oc_one = min(m, WEIGHTS_LOAD_LIMIT // per_out)
        loads = -(-m // oc_one)
    if act_addr % ACT_TABLE_ALIGN:
        raise KpuError(f"the activation table address {act_addr:#x} must be {ACT_TABLE_ALIGN}-byte aligned")
    lin, lout = row_layout(wd), row_layout(wo)
    if send_data_out and wo * ho > 1 << 16:
        raise KpuError(f"a {ho}x{wo} output channel is too big for the DMA's 16-bit channel_byte_num")
    layer = KpuLayer(
        depth_wise_layer=int(bool(depthwise)),
        image_src_addr=_row_addr(src_addr, "src_addr", in_bytes),
        image_dst_addr=_row_addr(dst_addr, "dst_addr", out_bytes),
        i_ch_num=c - 1, o_ch_num=m - 1, o_ch_num_coef=oc_one - 1,
        i_row_wid=wd - 1, i_col_high=h - 1, o_row_wid=wo - 1, o_col_high=ho - 1,
        kernel_type=1 if k == 3 else 0, pad_type=0, pool_type=int(pool), first_stride=0, bypass_conv=0,
        load_para=1, dma_burst_size=15, pad_value=pv, bwsx_base_addr=int(bn_addr),
        load_coor=1, load_time=loads - 1, para_size=oc_one * per_out, para_start_addr=int(weights_addr),
        coef_column_offset=0, coef_row_offset=0,
        channel_switch_addr=lin.row_len * h, row_switch_addr=lin.row_len, coef_size=0, coef_group=lin.groups,
        load_act=1, active_addr=int(act_addr),
        wb_channel_switch_addr=lout.row_len * ho, wb_row_switch_addr=lout.row_len, wb_group=lout.groups,
        shr_w=args.shift_w, shr_x=args.shift_x, arg_w=args.arg_w, arg_x=args.arg_x, arg_add=args.arg_add,
        send_data_out=int(bool(send_data_out)), channel_byte_num=(wo * ho - 1) & 0xFFFF,
        dma_total_byte=wo * ho * m - 1,
    )
    return KpuLayerProgram(
        layer=layer, words=layer.to_words(), bn=bn, bn_words=encode_bn(bn), act=act, act_words=encode_act(act),
        weights=np.ascontiguousarray(wq).reshape(-1), weights_q=wq, w_scales=w_scales, w_zero_point=z_w,
        conv=args, x_q=x_q, y_q=y_q, v_exponent=e, v_scale=s_v, v_range=(v_lo, v_hi), activation=activation,
        pool=pool, in_shape=(c, h, wd), out_shape=(m, ho, wo), fit=report, depthwise=bool(depthwise), kernel=k)


# ----------------------------------------------------------------------------- float semantics
def float_layer(x: np.ndarray, weights: np.ndarray, bias=None, *, depthwise: bool = False, activation=None,
                pool="none", channel_scale=None) -> np.ndarray:
    """The float meaning of a KPU layer on a ``(C, H, W)`` map: same-padded stride-1
    convolution, ``channel_scale`` and ``bias``, the activation, then the pool (max and
    mean over the same windows as the KPU, mean with edge replication at the border of a
    2×2 stride-1 pool; select takes the cell's pixel)."""
    x = np.asarray(x, np.float64)
    w = np.asarray(weights, np.float64)
    c, h, wd = x.shape
    m, cg, k, _ = w.shape
    p = k // 2
    xp = np.pad(x, ((0, 0), (p, p), (p, p)))
    y = np.zeros((m, h, wd))
    for ky in range(k):
        for kx in range(k):
            win = xp[:, ky:ky + h, kx:kx + wd]
            if depthwise:
                y += w[:, 0, ky, kx][:, None, None] * win
            else:
                y += np.tensordot(w[:, :, ky, kx], win, axes=1)
    if channel_scale is not None:
        y *= np.asarray(channel_scale, np.float64)[:, None, None]
    if bias is not None:
        y += np.asarray(bias, np.float64)[:, None, None]
    f, _, _ = activation_function(activation)
    y = f(y)
    pool = parse_pool(pool)
    s = pool.stride
    ho, wo = h // s, wd // s
    if pool.kind == "bypass":
        return y
    if pool.kind == "select":
        oy, ox = pool.select_offset
        return y[:, oy::s, ox::s][:, :ho, :wo]
    fs = pool.size
    if s == fs:
        cells = y[:, :ho * fs, :wo * fs].reshape(m, ho, fs, wo, fs)
        return cells.max(axis=(2, 4)) if pool.kind == "max" else cells.mean(axis=(2, 4))
    q = np.pad(y, ((0, 0), (0, 1), (0, 1)), mode="edge")
    if pool.kind == "max":
        q[:, h, :] = -np.inf
        q[:, :, wd] = -np.inf
        return np.maximum(np.maximum(q[:, :h, :wd], q[:, :h, 1:]), np.maximum(q[:, 1:, :wd], q[:, 1:, 1:]))
    return (q[:, :h, :wd] + q[:, :h, 1:] + q[:, 1:, :wd] + q[:, 1:, 1:]) / 4
