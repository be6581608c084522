"""Parameter math of the QDQ fold (:mod:`npuc.quant.qdq`), shared with the QOperator
converters (:mod:`npuc.frontends.onnx.conv_qoperator`): :class:`QP`, the parameters of one
Q/DQ node, and the attributes of the integer ops built from them.

Multipliers are computed in float32 the way onnxruntime computes its requantization scale,
``M = float32(float32(s_x·s_w)/s_y)``, then written as the Q31 fixed-point multiplier and
shift of :func:`npuc.quant.qparams.quantize_multiplier` (exact: a float32 has 24 mantissa
bits). npuc then rounds ``acc·M`` half up in exact integer arithmetic; onnxruntime rounds the
float32 product ``fl(acc·M)`` half to even. The two agree except when ``acc·M`` lies within
float32 rounding error of a half-integer, i.e. on a tiny fraction of elements, and then by
exactly one step.

"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..ir import QuantParams
from .qparams import QParams, QType, add_multipliers, quantize_multiplier
from .qparams import lut_table as _lut_table

#: integer types npuc's integer kernels take for activations and outputs
ACT_DTYPES = (np.dtype("uint8"), np.dtype("int8"), np.dtype("int16"))
_INT32 = np.iinfo(np.int32)


# ---------------------------------------------------------------------------------- params
@dataclass(frozen=True)
class QP:
    """Quantization parameters read from a Q/DQ node (or a QLinear op's inputs)."""

    scale: np.ndarray          # float32, () or (C,)
    zero_point: np.ndarray     # int64, same shape
    dtype: np.dtype            # the integer type
    axis: int | None = None    # per-channel axis, None when per-tensor

    @property
    def per_tensor(self) -> bool:
        return self.axis is None

    @property
    def s(self) -> float:
        return float(self.scale.reshape(-1)[0])

    @property
    def z(self) -> int:
        return int(self.zero_point.reshape(-1)[0])

    @property
    def qmin(self) -> int:
        return int(np.iinfo(self.dtype).min)

    @property
    def qmax(self) -> int:
        return int(np.iinfo(self.dtype).max)

    def same(self, other: "QP") -> bool:
        return (self.dtype == other.dtype and self.axis == other.axis
                and self.scale.shape == other.scale.shape and np.array_equal(self.scale, other.scale)
                and np.array_equal(self.zero_point, other.zero_point))

    def ir(self) -> QuantParams:
        return QuantParams(self.scale.copy(), self.zero_point.copy(), self.axis)

    def qparams(self) -> QParams:
        return QParams(self.scale, self.zero_point, QType(str(self.dtype)), self.axis)


def make_qp(scale, zero_point, dtype, axis: int | None = None, rank: int | None = None) -> QP:
    """QP from ONNX-style inputs: a scale/zero point of one element is per-tensor."""
    s = np.asarray(scale, np.float32)
    z = np.zeros(s.shape, np.int64) if zero_point is None else np.asarray(zero_point).astype(np.int64)
    if s.size == 1:
        return QP(s.reshape(()), z.reshape(-1)[:1].reshape(()), np.dtype(dtype), None)
    if rank is not None and axis is not None:
        axis = axis % rank
    return QP(s.reshape(-1), np.broadcast_to(z.reshape(-1), (s.size,)).copy(), np.dtype(dtype), axis)


def real_multiplier(s_in, s_w, s_out) -> np.ndarray:
    """``float32(float32(s_in·s_w)/s_out)``: onnxruntime's requantization scale, per channel."""
    with np.errstate(all="ignore"):
        return (np.float32(s_in) * np.asarray(s_w, np.float32)) / np.float32(s_out)


def multiplier_attrs(real, per_channel: bool) -> tuple:
    """(multiplier, shift) attribute values for :func:`~npuc.quant.qparams.requantize`."""
    m, n = quantize_multiplier(np.asarray(real, np.float64))
    if per_channel:
        return np.atleast_1d(m).astype(np.int64).tolist(), np.atleast_1d(n).astype(np.int64).tolist()
    return int(np.asarray(m).reshape(-1)[0]), int(np.asarray(n).reshape(-1)[0])


def identity_multiplier() -> tuple[int, int]:
    """``M = 1`` exactly: ``m = 2^30, n = 30`` (``(acc·2^30 + 2^29) >> 30 == acc``)."""
    m, n = quantize_multiplier(1.0)
    return int(m), int(n)


def qadd_attrs(a: QP, b: QP, y: QP, sign: int = 1) -> dict:
    """QAdd attributes; the ratios in float32, as onnxruntime computes them."""
    ra = float(np.float32(a.s) / np.float32(y.s))
    rb = float(np.float32(b.s) / np.float32(y.s))
    am, bm, shift = add_multipliers(ra, rb, sign)
    return {"a_zp": a.z, "b_zp": b.z, "y_zp": y.z, "a_mult": am, "b_mult": bm, "shift": shift}


def lut_table(fn: Callable[[np.ndarray], np.ndarray], x: QP, y: QP) -> np.ndarray:
    """:func:`npuc.quant.qparams.lut_table` for Q/DQ parameters."""
    return _lut_table(fn, x.qparams(), y.qparams())


def bias_at_scale(bias_int, bias_qp: QP | None, acc_scale: np.ndarray, channels: int,
                  beta: float = 1.0) -> np.ndarray:
    """The int32 bias at the accumulator scale ``acc_scale`` (per channel).

    An integer bias already at that scale (float32-equal) is taken as is; otherwise it is
    dequantized (or taken as float when ``bias_qp`` is None) and rounded half to even."""
    acc_scale = np.broadcast_to(np.asarray(acc_scale, np.float32), (channels,))
    b = np.broadcast_to(np.asarray(bias_int).reshape(-1), (channels,)) if np.size(bias_int) in (1, channels) \
        else np.asarray(bias_int).reshape(-1)
    if bias_qp is not None:
        z = np.broadcast_to(bias_qp.zero_point.reshape(-1), (channels,)) if bias_qp.zero_point.size > 1 \
            else bias_qp.zero_point.reshape(())
        s = np.broadcast_to(bias_qp.scale.reshape(-1), (channels,)) if bias_qp.scale.size > 1 \
            else bias_qp.scale.reshape(())
        if beta == 1.0 and np.all(np.broadcast_to(s, (channels,)) == acc_scale):
            return np.clip(b.astype(np.int64) - z, _INT32.min, _INT32.max).astype(np.int32)
        bf = (b.astype(np.int64) - z).astype(np.float64) * s.astype(np.float64)
    else:
        bf = b.astype(np.float64)
    bf = bf * beta
    safe = np.where(acc_scale > 0, acc_scale.astype(np.float64), 1.0)
    return np.clip(np.rint(bf / safe), _INT32.min + 1, _INT32.max).astype(np.int32)
