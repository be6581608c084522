"""uint8 quantization parameters, per-output-channel weight quantization with one shared
zero point, the conv arguments that fold the zero points into the accumulator, and the BN
table mapping the accumulator to the fixed-point pre-activation ``v`` (see :mod:`.params`
for the formulas)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .encode import BnTable
from .spec import KpuError

_V_LIMIT = 1 << 34            # worst-case |v| allowed


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


def bn_fields(r0: np.ndarray, bias: np.ndarray, s_v: float):
    """Per-channel ``(mul, shift, add)`` of the BN stage for ``v = u / s_v`` with
    ``u = r0 · acc + bias`` (23-bit multiplier mantissas, 4-bit shifts, ``add`` rounded with
    the +1/2 that cancels the flooring shift on average), or None when a field overflows."""
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
    return mul, sh, add_f.astype(np.int64)


def _bn_for_exponent(r0: np.ndarray, bias: np.ndarray, s_y: float, e: int, max_acc: np.ndarray):
    """BN table for ``s_v = s_y · 2^−e``, or None when a field or |v| would overflow."""
    s_v = math.ldexp(s_y, -e)
    fields = bn_fields(r0, bias, s_v)
    if fields is None:
        return None
    mul, sh, add = fields
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
