"""Per-channel PReLU in one KPU layer: each slope gets its own region of the BN output axis.

The activation table is shared by all output channels of a layer, but the BN stage is per
channel: ``v = ((acc · mul_c) >> shift_c) + add_c``. So the channels with slope ``a_j``
get an offset ``V_j`` in ``add_c``: their pre-activation 0 sits at ``v = V_j``, and the
region of the v axis their worst-case values can reach belongs to them alone. The table
then holds, per region (in increasing v):

* below the kink, the line of slope ``a_j · g`` (``g = s_v / s_y`` codes per v unit),
  anchored where it meets a whole output code: 0 for ``a_j > 0``, 255 for ``a_j < 0``
  (so the clamp gives the flat part beyond), or the flat ``z_y`` for ``a_j = 0``;
* from the kink on, the identity line of slope ``g`` anchored at ``V_j`` with bias ``z_y``;
* for ``a_j > 0`` after the first region, a flat 0 segment at the region's start, since
  below the anchor lies the previous region's identity line (at 255 there: regions are
  spaced so every identity line has passed 255 before the next region starts).

Segment 0 starts at the lowest v (a flat clamp under the first region's negative line),
as the hardware's table is meant to. Segments: 3 for the first region, 2 for ``a_j ≤ 0``,
3 otherwise, 16 in all, so a layer takes up to 5 distinct slopes (the lowering splits the
output channels into parts that do). Every segment reproduces the fused PReLU's requantization up to the 16-bit slope
mantissa: results differ from the cpu ``QConv`` only at near-ties of the rounding.
"""
from __future__ import annotations

import math

import numpy as np

from .activation_fit import FitReport, _quantize_slope
from .conv_bn import _V_LIMIT, BnTable, QParams, bn_fields
from .encode import ActTable, apply_act_table
from .spec import ACT_SEGMENTS, ACT_START_MAX, ACT_START_MIN, KpuError

MAX_SLOPES = 5     #: distinct slopes one layer's table always takes (3 + 3 · 4 ≤ 16 segments)
_ADD_LIMIT = (1 << 31) - 1     #: the BN add field is 32-bit signed


def segments_needed(slopes) -> int:
    """Activation segments the distinct values of ``slopes`` need, at most (segment 0 always
    starts at the lowest v, as the hardware's table is meant to: a flat clamp segment)."""
    u = sorted(set(float(a) for a in np.asarray(slopes, np.float64).reshape(-1)), reverse=True)
    return 3 + sum(3 if a > 0 else 2 for a in u[1:])


def _bn_parts(r0: np.ndarray, bias: np.ndarray, s_v: float, max_acc: np.ndarray):
    """mul/shift/add (without region offsets) for ``s_v``, as :func:`.conv_bn.make_bn` builds
    them, and each channel's worst-case v range; None when a field overflows."""
    fields = bn_fields(r0, bias, s_v)
    if fields is None:
        return None
    mul, sh, add = fields
    top = (max_acc * np.abs(mul)) >> sh
    return mul, sh, add, add - top - 1, add + top + 1


def prelu_tables(real_scale, bias, out_q, max_acc, slopes) -> tuple[BnTable, int, float, int, int, ActTable,
                                                                     FitReport]:
    """BN table (with region offsets) and activation table of a layer whose output channel
    c is ``prelu(real_scale_c · acc + bias_c, slopes_c)`` at ``out_q``. Returns ``(bn, e,
    s_v, v_lo, v_hi, act, report)`` like ``make_bn`` + ``fit_activation``."""
    y_q = QParams.of(out_q)
    s_y, zy = float(y_q.scale), int(y_q.zero_point)
    r0 = np.asarray(real_scale, np.float64).reshape(-1)
    b = np.asarray(bias, np.float64).reshape(-1)
    mx = np.asarray(max_acc, np.int64).reshape(-1)
    a_c = np.asarray(slopes, np.float64).reshape(-1)
    if not (r0.size == b.size == mx.size == a_c.size):
        raise KpuError(f"{a_c.size} slopes for {r0.size} output channels")
    order = sorted(set(a_c.tolist()), reverse=True)
    if segments_needed(order) > ACT_SEGMENTS:
        raise KpuError(f"{len(order)} distinct PReLU slopes need {segments_needed(order)} activation segments "
                       f"(the KPU has {ACT_SEGMENTS}); split the output channels")
    for e in range(40, -21, -1):
        got = _place(r0, b, s_y, zy, e, mx, a_c, order)
        if got is not None:
            return got
    raise KpuError("no BN scale keeps the PReLU regions, multipliers and the 36-bit BN output in range")


def _place(r0, b, s_y, zy, e, mx, a_c, order):
    s_v = math.ldexp(s_y, -e)
    parts = _bn_parts(r0, b, s_v, mx)
    if parts is None:
        return None
    mul, sh, add, lo_c, hi_c = parts
    up = (255 - zy) * 2.0 ** e + 2          # centred v where the identity line has passed 255
    regions = []
    for j, a in enumerate(order):
        ch = a_c == a
        lo, hi = int(lo_c[ch].min()), int(hi_c[ch].max())
        hi = max(hi, int(math.ceil(up)))
        if a > 0:
            anchor = -zy * 2.0 ** e / a          # the negative line meets code 0
        elif a < 0:
            anchor = -(255 - zy) * 2.0 ** e / -a  # ... code 255
        else:
            anchor = None
        if anchor is not None:
            if not np.isfinite(anchor) or abs(anchor) > _V_LIMIT:
                return None
            anchor = int(math.floor(anchor))
            lo = min(lo, anchor - 1)
        regions.append([a, ch, lo - 2, hi, anchor])
    total = sum(hi - lo + 1 for _, _, lo, hi, _ in regions)
    pos = -(total // 2)
    offs = np.zeros(a_c.size, np.int64)
    segs: list[tuple[int, int, int, int]] = []       # (start, mul, shift, bias), in increasing start
    g_m, g_s = _quantize_slope(2.0 ** -e, 2.0 ** -e)
    for j, (a, ch, lo, hi, anchor) in enumerate(regions):
        v_off = pos - lo                         # centred v → v
        offs[ch] = v_off
        if j > 0 and a > 0:                      # flat 0 under this region's negative line
            segs.append((pos, 0, 0, 0))
        if anchor is None:                       # slope 0: flat at the zero point
            segs.append((pos if j > 0 else ACT_START_MIN, 0, 0, zy))
        elif a > 0 and zy == 0 or a < 0 and zy == 255:
            if j == 0:                           # nothing below the kink but the clamp value
                segs.append((ACT_START_MIN, 0, 0, zy))
        else:
            clamp = 0 if a > 0 else 255
            if j == 0:                           # segment 0 from the lowest v: the clamp below the line
                segs.append((ACT_START_MIN, 0, 0, clamp))
            m, s = _quantize_slope(a * 2.0 ** -e, a * 2.0 ** -e)
            segs.append((anchor + v_off, m, s, clamp))
        segs.append((v_off, g_m, g_s, zy))       # the kink: identity line from z_y
        pos += hi - lo + 1
    add2 = add + offs
    if np.any(np.abs(add2) > _ADD_LIMIT):
        return None
    v_lo, v_hi = int((lo_c + offs).min()), int((hi_c + offs).max())
    starts = [x[0] for x in segs]
    if max(abs(v_lo), abs(v_hi)) + 2 > _V_LIMIT or len(segs) > ACT_SEGMENTS:
        return None
    if any(not ACT_START_MIN <= s_ <= ACT_START_MAX for s_ in starts) or any(
            x >= y for x, y in zip(starts, starts[1:])):
        return None
    n = len(segs)
    segs += [(ACT_START_MAX, 0, 0, segs[-1][3])] * (ACT_SEGMENTS - n)     # never selected
    start, mul_, shift, bias = (np.array(col, np.int64) for col in zip(*segs))
    act = ActTable(start=start, mul=mul_, shift=shift, bias=bias)
    report = _measure(act, regions, offs, lo_c, hi_c, s_v, s_y, zy, n)
    return BnTable(mul=mul, shift=sh, add=add2), e, s_v, v_lo, v_hi, act, report


def _measure(act, regions, offs, lo_c, hi_c, s_v, s_y, zy, n) -> FitReport:
    """Table codes vs the ideal ``clamp(rhe(prelu(s_v·v)/s_y + z_y))`` over each region's
    codes-changing range (where the output is not clamped)."""
    errs, pts = [], 0
    for a, ch, *_ in regions:
        off = int(offs[ch][0])
        lo = max(int(lo_c[ch].min()), int(-(255 / max(abs(a), 1e-9)) * s_y / s_v) - 2)
        hi = min(int(hi_c[ch].max()), int(255 * s_y / s_v) + 2)
        if hi <= lo:
            continue
        v = np.unique(np.rint(np.linspace(lo, hi, 1 << 14)).astype(np.int64))
        u = v * s_v
        ideal = np.clip(np.rint(np.where(u >= 0, u, a * u) / s_y) + zy, 0, 255)
        got = apply_act_table(v + off, act).astype(np.float64)
        errs.append(np.abs(got - ideal))
        pts += v.size
    err = np.concatenate(errs) if errs else np.zeros(1)
    return FitReport(activation="PRelu", max_error=int(err.max()), mean_error=float(err.mean()),
                     mismatch_rate=float((err > 0).mean()), points=int(pts), segments=n, epsilon=0.0,
                     active_range=(float(lo_c.min() * s_v), float(hi_c.max() * s_v)))
