"""Quantization math: the one place where scales, zero points, fixed-point multipliers and
rounding are defined. Every other module (the quantize pass, integer kernels, importers of
pre-quantized models, the K210 lowering) calls these functions.

Affine quantization
-------------------
``q = clamp(round_half_even(x / s) + z, qmin, qmax)`` and ``x ≈ s · (q − z)``.

* asymmetric (uint8 activations): ``s = (hi − lo) / (qmax − qmin)``,
  ``z = clamp(round(qmin − lo / s))``; the range [lo, hi] is first widened to contain 0 so
  that 0.0 is exactly representable (zero padding, ReLU outputs);
* symmetric (int8/int16): ``s = max(|lo|, |hi|) / qmax``, ``z = 0``, and the most negative
  code is not used for weights (int8 weights live in [−127, 127], so −w is representable
  and products stay within 127·128);
* per-channel (weights): one (s, z) per output channel (axis 0 of a conv weight).

Fixed-point requantization
--------------------------
An int32 accumulator ``acc`` at scale ``s_acc`` becomes an output code at scale ``s_y``
with the real multiplier ``M = s_acc / s_y``, written as ``M ≈ m · 2^(−n)`` with the
integer ``m`` in [2^30, 2^31) (a Q31 mantissa) and ``n`` ≥ 0 the total right shift:

``y = clamp(z_y + ((acc · m + 2^(n−1)) >> n), lo, hi)``

computed in int64, where ``>>`` is the arithmetic (flooring) shift. That is **round half
up** (toward +∞) of ``acc · m / 2^n``, the one rounding rule of every integer kernel in npuc;
:func:`requantize` is its reference implementation and tests pin it down.
(``|acc| < 2^31`` and ``m < 2^31`` keep ``acc · m`` well inside int64.) Multipliers
M ≥ 1 are allowed (n may then be below 31; n < 0 never occurs for M < 2^31).
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np

from ..errors import OptionError


class QType(str, Enum):
    """An integer type for quantized tensors."""

    UINT8 = "uint8"
    INT8 = "int8"
    INT16 = "int16"
    INT32 = "int32"

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.value)

    @property
    def qmin(self) -> int:
        return int(np.iinfo(self.dtype).min)

    @property
    def qmax(self) -> int:
        return int(np.iinfo(self.dtype).max)

    @property
    def signed(self) -> bool:
        return self.qmin < 0

    @property
    def bits(self) -> int:
        return self.dtype.itemsize * 8

    @classmethod
    def parse(cls, s: str | "QType", what: str = "quantization type") -> "QType":
        if isinstance(s, QType):
            return s
        try:
            return cls(str(s).lower())
        except ValueError:
            raise OptionError(f"unknown {what} {s!r}; choose one of: "
                              f"{', '.join(q.value for q in cls if q is not cls.INT32)}") from None


@dataclass(frozen=True)
class QParams:
    """Per-tensor (scalar arrays) or per-channel (1-D arrays along ``axis``) parameters."""

    scale: np.ndarray
    zero_point: np.ndarray
    qtype: QType
    axis: int | None = None

    @property
    def per_channel(self) -> bool:
        return self.axis is not None

    def broadcast_shape(self, rank: int) -> tuple[int, ...]:
        if self.axis is None:
            return ()
        shape = [1] * rank
        shape[self.axis] = self.scale.size
        return tuple(shape)


def choose_qparams(lo, hi, qtype: QType | str, *, symmetric: bool, narrow: bool = False,
                   axis: int | None = None) -> QParams:
    """Scale and zero point covering [lo, hi] (scalars or per-channel arrays).

    ``narrow`` drops the most negative code of a signed symmetric type ([−127, 127]).
    """
    qt = QType.parse(qtype)
    lo = np.minimum(np.asarray(lo, np.float64), 0.0)
    hi = np.maximum(np.asarray(hi, np.float64), 0.0)
    qmin = qt.qmin + (1 if narrow and qt.signed else 0)
    qmax = qt.qmax
    tiny = np.finfo(np.float32).tiny
    if symmetric:
        amax = np.maximum(np.abs(lo), np.abs(hi))
        if qt.signed:
            scale = amax / qmax
            zp = np.zeros_like(scale)
        else:  # symmetric unsigned: zero point in the middle (K210-style weights)
            mid = (qt.qmax + qt.qmin + 1) // 2
            scale = amax / (qmax - mid)
            zp = np.full_like(scale, mid)
    else:
        scale = (hi - lo) / (qmax - qmin)
        safe = np.where(scale > 0, scale, 1.0)
        zp = np.clip(np.round(qmin - lo / safe), qmin, qmax)
    scale = np.where(scale > tiny, scale, 1.0)  # an all-zero tensor: any scale works
    return QParams(scale.astype(np.float32), zp.astype(np.int64), qt, axis)


def _bshape(qp: QParams, x: np.ndarray):
    if qp.axis is None:
        return qp.scale.reshape(()), qp.zero_point.reshape(())
    shape = qp.broadcast_shape(x.ndim)
    return qp.scale.reshape(shape), qp.zero_point.reshape(shape)


def quantize(x: np.ndarray, qp: QParams, *, narrow: bool = False) -> np.ndarray:
    """``clamp(round_half_even(x / s) + z)`` in the float32 arithmetic ONNX QuantizeLinear uses."""
    s, z = _bshape(qp, np.asarray(x))
    qt = qp.qtype
    qmin = qt.qmin + (1 if narrow and qt.signed else 0)
    q = np.rint(np.asarray(x, np.float32) / s.astype(np.float32)) + z
    return np.clip(q, qmin, qt.qmax).astype(qt.dtype)


def dequantize(q: np.ndarray, qp: QParams) -> np.ndarray:
    s, z = _bshape(qp, np.asarray(q))
    return ((np.asarray(q).astype(np.int64) - z) * s.astype(np.float64)).astype(np.float32)


def quantize_multiplier(real) -> tuple[np.ndarray, np.ndarray]:
    """``M ≈ m · 2^(−n)`` with Q31 mantissa ``m`` in [2^30, 2^31) and shift ``n`` (int arrays).

    ``M = 0`` gives ``m = 0, n = 31``. Raises for negative or too large (≥ 2^31) M.
    """
    real = np.asarray(real, np.float64)
    if np.any(real < 0) or np.any(~np.isfinite(real)) or np.any(real >= 2.0 ** 31):
        raise ValueError(f"requantization multiplier out of range: {real}")
    mant, exp = np.frexp(real)               # real = mant · 2^exp, mant in [0.5, 1)
    m = np.round(mant * (1 << 31)).astype(np.int64)
    carry = m == (1 << 31)                   # rounding up to 2^31: renormalize
    m = np.where(carry, 1 << 30, m)
    exp = np.where(carry, exp + 1, exp)
    n = (31 - exp).astype(np.int64)
    zero = real == 0
    m = np.where(zero, 0, m)
    n = np.where(zero, 31, n)
    # a shift beyond 62 means M < 2^-32: every int32 accumulator then rounds to 0
    tiny = n > 62
    m = np.where(tiny, 0, m)
    n = np.where(tiny, 31, n)
    return m, n


def requantize(acc, m, n, zero_point, lo: int, hi: int) -> np.ndarray:
    """Reference requantization: ``clamp(z + ((acc·m + 2^(n−1)) >> n), lo, hi)``, exact.

    ``acc``, ``m``, ``n``, ``zero_point`` broadcast together. Round half up (toward +∞).
    ``acc · m`` can exceed int64 when int16 activations meet long reductions, so the
    product is formed in two halves of ``m`` (``m = mh·2^16 + ml``): for ``n ≥ 16``,
    ``(acc·m + r) >> n = (acc·mh + ((acc·ml + r) >> 16)) >> (n − 16)`` exactly, which is
    safe for ``|acc| < 2^47``.
    """
    acc = np.asarray(acc, np.int64)
    m = np.asarray(m, np.int64)
    n = np.asarray(n, np.int64)
    rnd = np.where(n > 0, np.left_shift(np.int64(1), np.maximum(n - 1, 0)), 0)
    mh = np.right_shift(m, 16)
    ml = m - np.left_shift(mh, 16)
    wide = np.right_shift(acc * mh + np.right_shift(acc * ml + rnd, 16), np.maximum(n - 16, 0))
    narrow = np.right_shift(acc * m + rnd, n)          # n < 16: M ≥ 2^15, accumulators are small
    y = np.where(n >= 16, wide, narrow) + np.asarray(zero_point, np.int64)
    return np.clip(y, lo, hi)


def add_multipliers(ra: float, rb: float, sign: int = 1) -> tuple[int, int, int]:
    """QAdd's ``(a_mult, b_mult, shift)`` for real ratios ``ra = s_a/s_y``, ``rb = s_b/s_y``:
    one shift for both inputs, the larger ratio gets a 30-bit mantissa; ``sign = −1`` for Sub."""
    big = max(ra, rb, 1e-30)
    shift = int(min(62, max(0, 30 - int(np.floor(np.log2(big))) - 1)))
    return int(round(ra * 2.0 ** shift)), int(round(rb * 2.0 ** shift)) * sign, shift


def lut_table(fn, x: QParams, y: QParams) -> np.ndarray:
    """The QLut table of ``y = Q(fn(DQ(x)))`` (per-tensor parameters): 256 entries for 8-bit
    inputs, 513 knots (step 128, the last one extrapolated one step past qmax) for int16.
    A NaN result maps to the output zero point."""
    xt, yt = x.qtype, y.qtype
    if xt.bits == 8:
        codes = np.arange(xt.qmin, xt.qmax + 1, dtype=np.int64)
    elif xt == QType.INT16:
        codes = np.arange(513, dtype=np.int64) * 128 + xt.qmin
    else:
        raise ValueError(f"no lookup table for {xt.value} inputs")
    sx, zx = float(np.asarray(x.scale).reshape(-1)[0]), int(np.asarray(x.zero_point).reshape(-1)[0])
    sy, zy = float(np.asarray(y.scale).reshape(-1)[0]), int(np.asarray(y.zero_point).reshape(-1)[0])
    xs = ((codes - zx) * np.float64(sx)).astype(np.float32)
    with np.errstate(all="ignore"):
        ys = np.asarray(fn(xs), np.float32)
    q = np.rint(ys / np.float32(sy)).astype(np.float64) + zy
    return np.clip(np.nan_to_num(q, nan=zy), yt.qmin, yt.qmax).astype(np.int32)


def quantize_bias(bias, s_x: float, s_w) -> np.ndarray:
    """int32 bias at the accumulator scale ``s_x · s_w`` (per channel), round half to even."""
    s = np.asarray(s_x, np.float64) * np.asarray(s_w, np.float64)
    q = np.rint(np.asarray(bias, np.float64) / np.where(s > 0, s, 1.0))
    return np.clip(q, -(2 ** 31) + 1, 2 ** 31 - 1).astype(np.int32)


def activation_bounds(act: dict | None, qp_out: QParams) -> tuple[int, int]:
    """Integer clamp bounds implementing a fused Relu/Relu6/Clip in the output's code space."""
    qt = qp_out.qtype
    lo, hi = qt.qmin, qt.qmax
    if not act:
        return lo, hi
    s = float(qp_out.scale.reshape(-1)[0])
    z = int(qp_out.zero_point.reshape(-1)[0])
    if act["op"] == "Relu":
        return max(lo, z), hi
    if act["op"] == "Clip":
        # the codes QuantizeLinear gives the bounds (round half to even), as a float model
        # clipped then quantized would produce them
        a, b = act.get("min"), act.get("max")
        if a is not None:
            lo = max(lo, min(hi, z + int(np.rint(np.float32(a) / np.float32(s)))))
        if b is not None:
            hi = min(hi, max(lo, z + int(np.rint(np.float32(b) / np.float32(s)))))
        return lo, hi
    raise ValueError(f"activation {act['op']} is not a clamp")


def is_clamp_activation(act: dict | None) -> bool:
    return act is None or act.get("op") in ("Relu", "Clip")
