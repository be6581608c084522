"""What the integer QConv / QGemm / QMatMul kernels share at prepare and build time: the
window geometry, requantization and node checks, per-channel epilogue parameters, bias
packing, centered weights and the float32/float64 precision choice of the BLAS trick
(see :mod:`.qconv` for the strategies)."""
from __future__ import annotations

import numpy as np

from ...ops.spatial import window_geometry
from .base import Binding, Kernel
from .qcommon import (F32_EXACT, F64_EXACT, I64, channel_count_ok, greedy_chunks, is_int_code, ro, rq_arrays,
                      shift_ok)

F32 = np.dtype(np.float32)
F64 = np.dtype(np.float64)
#: more float32 chunks than this: use float64 (measured: dgemm ≈ 2× sgemm)
MAX_F32_CHUNKS = 2
_OUT_DTYPES = ("uint8", "int8", "int16", "int32")


def _geometry(x_shape, w_shape, attrs) -> tuple[list[int], tuple[int, int]]:
    """``[kh, kw, sh, sw, dh, dw, pad top, pad left]`` and ``(OH, OW)`` (1-D convs as H = 1)."""
    geo = window_geometry(x_shape[2:], attrs.get("kernel_shape") or w_shape[2:], attrs.get("strides"),
                          attrs.get("dilations"), attrs.get("pads"), attrs.get("auto_pad") or "NOTSET")
    if len(geo.in_shape) == 1:
        return [1, geo.kernel[0], 1, geo.strides[0], 1, geo.dilations[0], 0, geo.pads_begin[0]], (1, geo.out_shape[0])
    return ([geo.kernel[0], geo.kernel[1], geo.strides[0], geo.strides[1], geo.dilations[0], geo.dilations[1],
             geo.pads_begin[0], geo.pads_begin[1]], tuple(geo.out_shape))


def _as4d(a: np.ndarray) -> np.ndarray:
    return a.reshape(a.shape[0], a.shape[1], 1, a.shape[2]) if a.ndim == 3 else a


def _requant_ok(a, c: int) -> bool:
    if not (channel_count_ok(a.get("multiplier"), c) and channel_count_ok(a.get("shift"), c)
            and shift_ok(a.get("shift"))):
        return False
    if (a.get("neg_multiplier") is None) != (a.get("neg_shift") is None):
        return False
    if a.get("neg_multiplier") is not None:
        return (channel_count_ok(a["neg_multiplier"], c) and channel_count_ok(a["neg_shift"], c)
                and shift_ok(a["neg_shift"]))
    return True


def _epilogue_params(attrs, c: int):
    """``(m, r, n, neg m, neg r, neg n, has_neg)`` per channel for the numba epilogues."""
    m, r, n = (ro(a) for a in rq_arrays(attrs["multiplier"], attrs["shift"], c))
    if attrs.get("neg_multiplier") is not None:
        nm, nr, nn = (ro(a) for a in rq_arrays(attrs["neg_multiplier"], attrs["neg_shift"], c))
        return m, r, n, nm, nr, nn, True
    return m, r, n, m, r, n, False


def _bias(b: Binding, c: int) -> np.ndarray:
    bias = b.inputs[2] if len(b.inputs) > 2 else None
    if bias is None:
        return ro(np.zeros(c, I64))
    return ro(np.ascontiguousarray(np.asarray(bias).reshape(c), I64))


def _pack_bias(node, c: int) -> dict[int, np.ndarray]:
    bias = node.input(2)
    return {} if bias is None else {2: np.ascontiguousarray(bias.const.reshape(c), I64)}


def _centered_weights(w: np.ndarray, w_zp, axis: int) -> np.ndarray:
    """``w − w_zp`` as int64, ``w_zp`` per channel along ``axis`` or scalar."""
    wz = np.asarray(w_zp, np.int64).reshape(-1)
    wi = w.astype(np.int64)
    if wz.size == 1:
        return wi - wz[0]
    shape = [1] * w.ndim
    shape[axis] = wz.size
    return wi - wz.reshape(shape)


def _choose_precision(absw: np.ndarray, amax: int) -> tuple[np.dtype, list[int]] | None:
    """float32 with the chunk bounds along axis 1 of ``absw``, or float64 in one chunk, or None."""
    chunks = greedy_chunks(absw, amax, F32_EXACT)
    if chunks is not None and len(chunks) - 1 <= MAX_F32_CHUNKS:
        return F32, chunks
    if float(absw.sum(axis=1).max(initial=0)) * amax <= F64_EXACT:
        return F64, [0, absw.shape[1]]
    return None


def _qconv_common_ok(node) -> bool:
    if len(node.inputs) < 2 or node.inputs[1] is None:
        return False
    x, w = node.inputs[0], node.inputs[1]
    bias = node.input(2)
    out = node.outputs[0]
    if not (is_int_code(x.dtype) and w.is_const and w.dtype in (np.dtype(np.int8), np.dtype(np.uint8))
            and x.rank in (3, 4) and w.rank == x.rank and str(out.dtype) in _OUT_DTYPES):
        return False
    if bias is not None and not (bias.is_const and bias.dtype.kind == "i" and bias.size == w.shape[0]):
        return False
    a = node.attrs
    m = w.shape[0]
    if np.asarray(a.get("x_zp", 0)).size != 1 or not channel_count_ok(a.get("w_zp", 0), m):
        return False
    if not _requant_ok(a, m):
        return False
    try:
        _geometry(x.shape, w.shape, a)
    except Exception:
        return False
    return True


class _QConvBase(Kernel):
    op = "QConv"
