"""Integer QConv / QGemm / QMatMul kernels, bit-exact with :mod:`npuc.ops.quant`.

``qconv_gemm`` (every non-depthwise QConv, groups included) has three exact strategies,
chosen at compile time in this order:

1. ``quads`` (when the host has AVX-512 VNNI, 8-bit activations, ``w − w_zp`` within int8):
   integer GEMM on ``vpdpbusd`` (64 uint8×int8 multiply-adds per instruction). The input is
   repacked with 4 channels per int32 (int8 codes + 128 become uint8 codes), the patch
   matrix is built from it with the reduction index ordered (kernel row, kernel column,
   channel) so each of its rows is a shifted int32 copy of one 4-channel plane (padding: the
   zero point), and since ``Σ (x − x_zp)·w' = Σ x·w' − x_zp·Σ w'`` the second term is folded
   into the bias at compile time. Weights are packed ``(G, M/G ↑ MR, KH·KW·⌈C/4⌉)`` int32.
2. ``pairs`` (exact when ``max|x − x_zp| · Σ|w'| < 2^31``): the same micro-kernel structure
   on int16 pairs ``x − x_zp`` / ``w − w_zp`` (``vpdpwssd`` with VNNI, ``pmaddwd`` on any
   x86 SIMD), patch matrix interleaved two rows per int32.
3. ``blas``, the exact-integers-through-float-BLAS trick: products of integer codes are exact
   in float32, and so is every sum whose partial values stay integers of magnitude ≤ 2^24.
   With activation codes bounded by ``A = max|x − x_zp|`` (255 for 8-bit, 65535 for int16 at
   worst) and ``w' = w − w_zp`` known at compile time, any partial sum of
   ``Σ_k (x_k − x_zp)·w'_k`` over a set of ``k`` is at most ``A · Σ_k |w'_k|`` — whatever order
   BLAS adds in, with or without FMA. ``prepare`` splits the reduction axis into contiguous
   chunks with ``A · Σ_chunk |w'| ≤ 2^24`` for every output channel (usually one chunk),
   GEMMs each chunk into its own float32 result (``np.matmul(W'[g, chunk], col[g, chunk],
   out=acc[chunk, g])`` on ``col = im2col(x − x_zp)``), and the numba epilogue adds the
   chunk results in int64. When that needs many chunks (int16 activations), float64 (exact
   to 2^53) is used instead, in one chunk.

The integer strategies run the micro-kernel of :func:`~.qloops.qgemm_quads` /
:func:`~.qloops.qgemm_pairs` (MR = 6 weight rows × 64 pixels of int32 accumulators in
registers) over L2-sized pixel tiles and requantize each tile as soon as it is done: ``acc +
bias`` → requantize with the channel's ``m``/``n`` (``neg_multiplier``/``neg_shift`` for
negative accumulators of a fused PRelu) → clamp ``[act_min, act_max]`` → store into the
output view. A 1×1/stride 1/unpadded conv skips the patch matrix (its input, repacked, is it).

* depthwise (group = C = M): ``qconv_depthwise_cl`` on small outputs (≤ 64 pixels):
  channels-last, vectorized across channels; ``qconv_depthwise_vnni`` (AVX-512 VNNI, 8-bit,
  equal strides 1/2/4, no dilation): per channel a byte plane of uint8 codes padded with the
  zero point, each kernel row's taps read as one unaligned int32 per output and multiplied by
  the row's int8 weight quad with ``vpdpbusd`` (strides become lane phases, interleaved back
  in registers); otherwise ``qconv_depthwise``: the stride-phase window loop of the float
  depthwise conv on ``x − x_zp`` in float32/float64 (exact by the bound above). Each channel
  is requantized as soon as it is finished.
* ``qgemm``: ``A (M, K)`` activations centered into scratch, ``B' = B − b_zp`` packed per
  chunk, the BLAS trick.
* ``qmatmul``: two activations; chunks of ``⌊2^24 / (A_a·A_b)⌋`` along K, or float64.

All precomputation (packing, chunking, per-channel multipliers and rounding constants)
happens in ``prepare``/``build``; a run only calls numba/BLAS on preallocated views.
"""
from __future__ import annotations

import numpy as np

from ...ops.spatial import window_geometry
from .base import Binding, Kernel, Prepared, register_kernel
from .qcommon import (F32_EXACT, F64_EXACT, I64, carve, carve_bytes, channel_count_ok, code_amax, greedy_chunks,
                      is_int_code, ro, ro_inputs, rq_arrays, scalar_rq, shift_ok)
from .qloops import jit, qwindow_scratch

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


#: depthwise convs with at most this many output pixels run channels-last
CL_MAX_PIXELS = 64


def _dw_vnni_layout(x_shape, g, oh: int, ow: int) -> dict:
    """Byte-plane layout of :func:`~.qloops.qdepthwise_vnni` for geometry ``g``."""
    kh, kw, sh, _sw, _dh, _dw, _pt, _pl = g
    s = sh
    ntq = -(-kw // 4)
    gw = 64 // s
    if s == 1:      # one flat stream over the whole plane
        wp = ow + kw - 1
        hp = oh + kh - 1
        nrows, wo = 1, wp
        gpr = -(-(oh * wp) // gw)
        acc = gpr * gw
        last = s * gpr * gw
    else:           # one stream per output row
        wp = s * (ow - 1) + 4 * ntq
        hp = s * (oh - 1) + kh
        gpr = -(-ow // gw)
        nrows, wo = oh, gpr * gw
        acc = oh * wo
        last = (oh - 1) * s * wp + s * gpr * gw
    plane = max(hp * wp, last + (kh - 1) * wp + 4 * ntq) + 128
    return {"s": s, "ntq": ntq, "wp": wp, "hp": hp, "wo": wo, "nrows": nrows, "gpr": gpr, "acc": acc,
            "plane": plane, "stage": max(acc, oh * wo)}


@register_kernel
class QConvDepthwiseVNNI(_QConvBase):
    """Depthwise conv on uint8 codes with ``vpdpbusd`` (hosts with AVX-512 VNNI, 8-bit
    activations, ``w − w_zp`` within int8, equal strides 1/2/4, no dilation): see
    :func:`~.qloops.qdepthwise_vnni`. Weights packed ``(C, KH, ⌈KW/4⌉)`` int32 quads; the
    zero point enters as the bias correction ``−x_zp·Σ w'`` (int8 codes + 128 as uint8)."""

    name = "qconv_depthwise_vnni"
    #: None: when the host has AVX-512 VNNI; True: always (tests); False: never
    enabled = None

    def supports(self, node) -> bool:
        if not QConvDepthwise.supports(QCONV_DW, node):
            return False
        on = self.enabled
        if on is None:
            from .qloops import host_has_vnni

            on = host_has_vnni()
        x = node.inputs[0]
        if not on or x.rank != 4 or x.dtype.itemsize != 1:
            return False
        if int(np.prod(node.outputs[0].shape[2:])) <= CL_MAX_PIXELS:
            return False    # small maps: channels-last is faster (measured)
        g, _ = _geometry(x.shape, node.inputs[1].shape, node.attrs)
        kh, kw, sh, sw, dh, dw = g[:6]
        if sh != sw or sh not in (1, 2, 4) or dh != 1 or dw != 1 or kw > 16:
            return False
        wc = _centered_weights(node.inputs[1].const, node.attrs.get("w_zp", 0), 0)
        return int(wc.min()) >= -128 and int(wc.max()) <= 127

    def prepare(self, node) -> Prepared:
        x, w = node.inputs[0], node.inputs[1]
        g, (oh, ow) = _geometry(x.shape, w.shape, node.attrs)
        kh, kw = g[0], g[1]
        lay = _dw_vnni_layout(x.shape, g, oh, ow)
        c = w.shape[0]
        wc = _centered_weights(w.const, node.attrs.get("w_zp", 0), 0).reshape(c, kh, kw)
        ntq = lay["ntq"]
        wq = np.zeros((c, kh, 4 * ntq), np.int8)
        wq[:, :, :kw] = wc
        zx = int(np.asarray(node.attrs.get("x_zp", 0)).reshape(-1)[0])
        zu = zx if x.dtype == np.uint8 else zx + 128
        out_dt = node.outputs[0].dtype
        scratch = carve_bytes([(np.uint8, (lay["plane"],)), (np.int32, (lay["acc"],)), (out_dt, (lay["stage"],))])
        attrs = {"qconv_geometry": g, "qconv_dw_layout": [lay[k] for k in ("s", "ntq", "wp", "hp", "wo", "nrows", "gpr",
                                                                             "acc", "plane", "stage")],
                 "qconv_dw_zero": [zu, 0 if x.dtype == np.uint8 else -128],
                 "qconv_bias_corr": (-zu * wc.reshape(c, -1).sum(axis=1)).astype(np.int64).tolist()}
        packed = {1: np.ascontiguousarray(wq).view(np.int32).reshape(-1), **_pack_bias(node, c)}
        return Prepared(packed=packed, attrs=attrs, scratch=scratch)

    def build(self, b: Binding):
        kh, kw, sh, sw, dh, dw, pt, pl = (int(v) for v in b.attrs["qconv_geometry"])
        s, ntq, wp, hp, wo, nrows, gpr, nacc, nplane, nstage = (int(v) for v in b.attrs["qconv_dw_layout"])
        zu, zsub = (int(v) for v in b.attrs["qconv_dw_zero"])
        ins = ro_inputs(b)
        x, out, wq = ins[0], b.outputs[0], ins[1]
        n, c, h, wd = x.shape
        oh, ow = out.shape[2:]
        plane, acc, stage = carve(b.scratch, [(np.uint8, (nplane,)), (np.int32, (nacc,)), (out.dtype, (nstage,))])
        bias = ro(_bias(b, c) + np.asarray(b.attrs["qconv_bias_corr"], np.int64))
        m, r, sft, nm, nr, nn, has_neg = _epilogue_params(b.attrs, c)
        zp, lo, hi = int(b.attrs.get("y_zp", 0)), int(b.attrs["act_min"]), int(b.attrs["act_max"])
        xf, of = x.reshape(-1), out.reshape(-1)
        f = jit("qdepthwise_vnni")
        args = (xf, of, plane, acc, stage, wq, zsub, zu, n, c, h, wd, oh, ow, kh, ntq, s, pt, pl, wp, hp, wo, nrows, gpr,
                bias, m, r, sft, nm, nr, nn, has_neg, zp, lo, hi)

        def run():
            f(*args)
        return run




@register_kernel
class QConvDepthwiseCL(_QConvBase):
    """Depthwise conv on small outputs, vectorized across channels (see
    :func:`~.qloops.qdepthwise_cl`); weights packed ``(KH·KW, C)``."""

    name = "qconv_depthwise_cl"

    def supports(self, node) -> bool:
        if not QConvDepthwise.supports(QCONV_DW, node):
            return False
        return int(np.prod(node.outputs[0].shape[2:])) <= CL_MAX_PIXELS

    def prepare(self, node) -> Prepared:
        dt, wc = QCONV_DW._plan(node)
        x = node.inputs[0]
        g, (oh, ow) = _geometry(x.shape, node.inputs[1].shape, node.attrs)
        c = x.shape[1]
        hw = int(np.prod(x.shape[2:]))
        scratch = carve_bytes([(dt, (hw * c,)), (dt, (oh * ow * c,)), (node.outputs[0].dtype, (oh * ow * c,))])
        packed = {1: np.ascontiguousarray(wc.T, dt), **_pack_bias(node, c)}
        return Prepared(packed=packed, attrs={"qconv_geometry": g, "qconv_precision": dt.name}, scratch=scratch)

    def build(self, b: Binding):
        kh, kw, sh, sw, dh, dw, pt, pl = (int(v) for v in b.attrs["qconv_geometry"])
        dt = np.dtype(b.attrs["qconv_precision"])
        ins = ro_inputs(b)
        x, out, w = _as4d(ins[0]), _as4d(b.outputs[0]), ins[1]
        n, c, h, wd = x.shape
        oh, ow = out.shape[2:]
        xt, ot, stage = carve(b.scratch, [(dt, (h * wd * c,)), (dt, (oh * ow * c,)), (out.dtype, (oh * ow * c,))])
        bias = _bias(b, c)
        m, r, sft, nm, nr, nn, has_neg = _epilogue_params(b.attrs, c)
        z = ro(np.array([b.attrs.get("x_zp", 0)], dt))
        zp, lo, hi = int(b.attrs.get("y_zp", 0)), int(b.attrs["act_min"]), int(b.attrs["act_max"])
        wf = w.reshape(-1)
        images = [(x[i].reshape(-1), out[i].reshape(-1)) for i in range(n)]
        f = jit("qdepthwise_cl")

        def run():
            for xi, oi in images:
                f(xi, oi, wf, z, xt, ot, stage, c, h, wd, oh, ow, kh, kw, sh, sw, dh, dw, pt, pl,
                  bias, m, r, sft, nm, nr, nn, has_neg, zp, lo, hi)
        return run


@register_kernel
class QConvDepthwise(_QConvBase):
    name = "qconv_depthwise"

    def supports(self, node) -> bool:
        if not _qconv_common_ok(node):
            return False
        c, m = node.inputs[0].shape[1], node.inputs[1].shape[0]
        return int(node.attrs.get("group", 1)) == c == m and c > 1 and self._plan(node) is not None

    def _plan(self, node):
        w = node.inputs[1].const
        wc = _centered_weights(w, node.attrs.get("w_zp", 0), 0).reshape(w.shape[0], -1)
        amax = code_amax(node.inputs[0].dtype, node.attrs.get("x_zp", 0))
        s = float(np.abs(wc).sum(axis=1).max()) * amax
        if s <= F32_EXACT:
            return F32, wc
        if s <= F64_EXACT:
            return F64, wc
        return None

    def prepare(self, node) -> Prepared:
        dt, wc = self._plan(node)
        g, (oh, ow) = _geometry(node.inputs[0].shape, node.inputs[1].shape, node.attrs)
        nbuf, nacc = qwindow_scratch(oh, ow, *g[:6])
        scratch = carve_bytes([(dt, (nbuf,)), (dt, (nacc,)), (node.outputs[0].dtype, (nacc,))])
        packed = {1: np.ascontiguousarray(wc, dt), **_pack_bias(node, wc.shape[0])}
        return Prepared(packed=packed, attrs={"qconv_geometry": g, "qconv_precision": dt.name}, scratch=scratch)

    def build(self, b: Binding):
        kh, kw, sh, sw, dh, dw, pt, pl = (int(v) for v in b.attrs["qconv_geometry"])
        dt = np.dtype(b.attrs["qconv_precision"])
        ins = ro_inputs(b)
        x, out, w = _as4d(ins[0]), _as4d(b.outputs[0]), ins[1]
        n, c, h, wd = x.shape
        oh, ow = out.shape[2:]
        nbuf, nacc = qwindow_scratch(oh, ow, kh, kw, sh, sw, dh, dw)
        buf, acc, stage = carve(b.scratch, [(dt, (nbuf,)), (dt, (nacc,)), (out.dtype, (nacc,))])
        bias = _bias(b, c)
        m, r, sft, nm, nr, nn, has_neg = _epilogue_params(b.attrs, c)
        z = ro(np.array([b.attrs.get("x_zp", 0)], dt))
        padv = ro(np.zeros(1, dt))
        zp, lo, hi = int(b.attrs.get("y_zp", 0)), int(b.attrs["act_min"]), int(b.attrs["act_max"])
        xf, of = x.reshape(-1), out.reshape(-1)
        f = jit("qwindow")

        def run():
            f(xf, of, w, z, padv, buf, acc, stage, n, c, h, wd, oh, ow, kh, kw, sh, sw, dh, dw, pt, pl, 0,
              bias, m, r, sft, nm, nr, nn, has_neg, zp, lo, hi)
        return run


def _pointwise(geometry, in_hw, out_hw) -> bool:
    """1×1, stride 1, unpadded: the (repacked) input is the patch matrix."""
    kh, kw, sh, sw, _dh, _dw, pt, pl = geometry
    return kh == kw == sh == sw == 1 and pt == pl == 0 and tuple(in_hw) == tuple(out_hw)


def _pair_tile(k2: int, mgp: int, pp: int) -> int:
    """Pixels per tile of the int16-pairs GEMM: a multiple of NRW that keeps the tile of the
    patch matrix (k2 × PT int32) and of the accumulators (Mgp × PT int32) in L2."""
    from .qloops import NRW

    pt = min(192 * 1024 // (4 * k2), 256 * 1024 // (4 * mgp)) // NRW * NRW
    return int(max(NRW, min(pp, pt)))


QCONV_DW = QConvDepthwise()


@register_kernel
class QConvGemm(_QConvBase):
    """Strategy ``pairs`` (default when exact in int32): int16 ``x − x_zp`` / ``w − w_zp``
    GEMM on the int16-pair micro-kernel of :func:`~.qloops.qgemm_pairs` with the
    requantization fused per tile; strategy ``blas``: the float32/float64 BLAS trick."""

    name = "qconv_gemm"
    #: the uint8×int8 quad micro-kernel: None = when the host has AVX-512 VNNI, True = always
    #: (elsewhere LLVM's generic code: correct, slow), False = never
    use_quads = None
    #: use the int16-pair micro-kernel whenever exact (tests switch it off to cover BLAS)
    use_pairs = True

    def supports(self, node) -> bool:
        if not _qconv_common_ok(node):
            return False
        grp = int(node.attrs.get("group", 1))
        c, m = node.inputs[0].shape[1], node.inputs[1].shape[0]
        if grp < 1 or c % grp or m % grp:
            return False
        return self._plan(node) is not None

    def _plan(self, node):
        w = node.inputs[1].const
        grp = int(node.attrs.get("group", 1))
        m = w.shape[0]
        wc = _centered_weights(w, node.attrs.get("w_zp", 0), 0).reshape(grp, m // grp, -1)
        x_zp = int(np.asarray(node.attrs.get("x_zp", 0)).reshape(-1)[0])
        amax = code_amax(node.inputs[0].dtype, x_zp)
        info = np.iinfo(node.inputs[0].dtype)
        absw = np.abs(wc).reshape(m, -1)
        wsum = float(absw.sum(axis=1).max(initial=0))
        quads = self.use_quads
        if quads is None:
            from .qloops import host_has_vnni

            quads = host_has_vnni()
        if (quads and info.bits == 8 and wc.size and int(wc.min()) >= -128 and int(wc.max()) <= 127
                and wsum * 255 < 2 ** 31):
            return "quads", None, None, wc
        if (self.use_pairs and -32768 <= info.min - x_zp and info.max - x_zp <= 32767
                and wsum * amax < 2 ** 31):
            return "pairs", None, None, wc
        res = _choose_precision(absw, amax)
        if res is None:
            return None
        return "blas", res[0], res[1], wc

    def prepare(self, node) -> Prepared:
        strategy, dt, chunks, wc = self._plan(node)
        g, (oh, ow) = _geometry(node.inputs[0].shape, node.inputs[1].shape, node.attrs)
        grp, mg, kg = wc.shape
        p = oh * ow
        attrs = {"qconv_geometry": g, "qconv_strategy": strategy, "qconv_wshape": [grp, mg, kg]}
        if strategy in ("quads", "pairs"):
            from .qloops import MR, NRW

            # reduction index ordered (i, j, channel), channels padded to G (weights 0)
            grp_codes = 4 if strategy == "quads" else 2
            kh_, kw_ = g[0], g[1]
            cg = kg // (kh_ * kw_)
            cq = -(-cg // grp_codes)
            kq = kh_ * kw_ * cq
            mgp = -(-mg // MR) * MR
            pp = -(-p // NRW) * NRW
            pt = _pair_tile(kq, mgp, pp)
            wp = np.zeros((grp, mgp, kh_, kw_, grp_codes * cq), np.int8 if strategy == "quads" else np.int16)
            wp[:, :mg, :, :, :cg] = wc.reshape(grp, mg, cg, kh_, kw_).transpose(0, 1, 3, 4, 2)
            packed_w = np.ascontiguousarray(wp).view(np.int32).reshape(-1)
            xdt = node.inputs[0].dtype
            zx = int(np.asarray(node.attrs.get("x_zp", 0)).reshape(-1)[0])
            if strategy == "quads":
                zu = zx if xdt == np.uint8 else zx + 128          # the zero point as a uint8 code
                attrs["qconv_packed"] = [kq, mgp, pp, pt, cq, 0 if xdt == np.uint8 else -128, zu]
                # Σ (x − zx)·w' = Σ x_u8·w' − zu·Σ w': the second term joins the bias
                attrs["qconv_bias_corr"] = (-zu * wc.reshape(grp * mg, kg).sum(axis=1)).astype(np.int64).tolist()
            else:
                attrs["qconv_packed"] = [kq, mgp, pp, pt, cq, zx, 0]
            x_shape = node.inputs[0].shape
            in_hw = tuple(x_shape[2:]) if len(x_shape) == 4 else (1, x_shape[2])
            hw = 0 if _pointwise(g, in_hw, (oh, ow)) else int(np.prod(in_hw))
            scratch = carve_bytes([(np.int32, (kq, pp)), (np.int32, (mgp, pt)), (np.int32, (cq, hw))])
        else:
            parts = [wc[gi][:, k0:k1].reshape(-1) for gi in range(grp) for k0, k1 in zip(chunks[:-1], chunks[1:])]
            packed_w = np.ascontiguousarray(np.concatenate(parts), dt)
            attrs.update(qconv_precision=dt.name, qconv_chunks=chunks)
            scratch = carve_bytes([(dt, (grp * kg, p)), (dt, (len(chunks) - 1, grp * mg, p))])
        return Prepared(packed={1: packed_w, **_pack_bias(node, grp * mg)}, attrs=attrs, scratch=scratch)

    def build(self, b: Binding):
        strategy = b.attrs.get("qconv_strategy", "blas")
        if strategy in ("pairs", "quads"):
            return self._build_packed(b, strategy)
        return self._build_blas(b)

    def _build_packed(self, b: Binding, strategy: str):
        kh, kw, sh, sw, dh, dw, pt, pl = (int(v) for v in b.attrs["qconv_geometry"])
        grp, mg, kg = (int(v) for v in b.attrs["qconv_wshape"])
        kq, mgp, pp, ptile, cq, zsub, zu = (int(v) for v in b.attrs["qconv_packed"])
        ins = ro_inputs(b)
        x, out, wp = _as4d(ins[0]), _as4d(b.outputs[0]), ins[1]
        n, c, h, wd = x.shape
        m, oh, ow = out.shape[1:]
        p = oh * ow
        hw = h * wd
        cg = c // grp
        bias = _bias(b, m)
        quads = strategy == "quads"
        if quads:
            bias = ro(bias + np.asarray(b.attrs["qconv_bias_corr"], np.int64))
            padv = np.int32(np.uint32(zu * 0x01010101).view(np.int32))
        else:
            padv = np.int32(0)
        pointwise = _pointwise([kh, kw, sh, sw, dh, dw, pt, pl], (h, wd), (oh, ow))
        col, ctile, xq = carve(b.scratch, [(np.int32, (kq, pp)), (np.int32, (mgp, ptile)),
                                           (np.int32, (cq, 0 if pointwise else hw))])
        code = np.uint8 if quads else np.int16
        gemm = jit("qgemm_quads" if quads else "qgemm_pairs")
        pack = jit("center_quads" if quads else "center_pairs")
        if pointwise:   # the repacked input is the patch matrix
            colc = col.reshape(-1).view(code)

            def fill(xg):
                pack(xg, colc, zsub, cg, p, pp)
        else:
            i2c = jit("qim2col_planes")
            xqc, xqr, colf_ = xq.reshape(-1).view(code), ro(xq.reshape(-1)), col.reshape(-1)

            def fill(xg):
                pack(xg, xqc, zsub, cg, hw, hw)
                i2c(xqr, colf_, padv, cq, h, wd, kh, kw, sh, sw, dh, dw, pt, pl, oh, ow, pp)
        colf, ctf = col.reshape(-1), ctile.reshape(-1)
        mu, r, sft, nm, nr, nn, has_neg = _epilogue_params(b.attrs, m)
        zp, lo, hi = int(b.attrs.get("y_zp", 0)), int(b.attrs["act_min"]), int(b.attrs["act_max"])
        work = []
        for i in range(n):
            oi = out[i].reshape(-1)
            for gi in range(grp):
                xg = x[i, gi * cg:(gi + 1) * cg].reshape(-1)
                work.append((xg, (wp, gi * mgp * kq, kq, colf, pp, ptile, ctf, mg, mgp, p, oi, gi * mg * p, gi * mg,
                                  bias, mu, r, sft, nm, nr, nn, has_neg, zp, lo, hi)))

        def run():
            for xg, gargs in work:
                fill(xg)
                gemm(*gargs)
        return run

    def _build_blas(self, b: Binding):
        kh, kw, sh, sw, dh, dw, pt, pl = (int(v) for v in b.attrs["qconv_geometry"])
        dt = np.dtype(b.attrs["qconv_precision"])
        chunks = [int(v) for v in b.attrs["qconv_chunks"]]
        grp, mg, kg = (int(v) for v in b.attrs["qconv_wshape"])
        ins = ro_inputs(b)
        x, out, wflat = _as4d(ins[0]), _as4d(b.outputs[0]), ins[1]
        n, c, h, wd = x.shape
        m, oh, ow = out.shape[1:]
        p = oh * ow
        nchunk = len(chunks) - 1
        col, acc = carve(b.scratch, [(dt, (grp * kg, p)), (dt, (nchunk, m, p))])
        gemms, off = [], 0
        for gi in range(grp):
            for j, (k0, k1) in enumerate(zip(chunks[:-1], chunks[1:])):
                wv = wflat[off:off + mg * (k1 - k0)].reshape(mg, k1 - k0)
                off += mg * (k1 - k0)
                gemms.append((wv, col[gi * kg + k0:gi * kg + k1], acc[j, gi * mg:(gi + 1) * mg]))
        bias = _bias(b, m)
        mu, r, sft, nm, nr, nn, has_neg = _epilogue_params(b.attrs, m)
        z = ro(np.array([b.attrs.get("x_zp", 0)], dt))
        zp, lo, hi = int(b.attrs.get("y_zp", 0)), int(b.attrs["act_min"]), int(b.attrs["act_max"])
        pointwise = kh == kw == sh == sw == 1 and pt == pl == 0 and (h, wd) == (oh, ow)
        images = [(x[i].reshape(-1), out[i].reshape(-1)) for i in range(n)]
        colf, accf = col.reshape(-1), acc.reshape(-1)
        epi = jit("qepi_rows")
        mm = np.matmul
        if pointwise:
            cen = jit("center")

            def fill(xi):
                cen(xi, colf, z)
        else:
            i2c = jit("qim2col")

            def fill(xi):
                i2c(xi, colf, z, c, h, wd, kh, kw, sh, sw, dh, dw, pt, pl, oh, ow)

        def run():
            for xi, oi in images:
                fill(xi)
                for wv, cv, av in gemms:
                    mm(wv, cv, out=av)
                epi(accf, nchunk, m, p, bias, mu, r, sft, nm, nr, nn, has_neg, zp, lo, hi, oi)
        return run


# ---------------------------------------------------------------- QGemm
@register_kernel
class QGemmKernel(Kernel):
    op, name = "QGemm", "qgemm"

    def supports(self, node) -> bool:
        a, bv = node.inputs[0], node.inputs[1]
        bias = node.input(2)
        out = node.outputs[0]
        if not (is_int_code(a.dtype) and a.rank == 2 and bv.is_const and bv.rank == 2
                and bv.dtype in (np.dtype(np.int8), np.dtype(np.uint8)) and str(out.dtype) in _OUT_DTYPES):
            return False
        nout = bv.shape[1]
        if bias is not None and not (bias.is_const and bias.dtype.kind == "i" and bias.size == nout):
            return False
        at = node.attrs
        if np.asarray(at.get("a_zp", 0)).size != 1 or not channel_count_ok(at.get("b_zp", 0), nout):
            return False
        return _requant_ok(at, nout) and self._plan(node) is not None

    def _plan(self, node):
        bc = _centered_weights(node.inputs[1].const, node.attrs.get("b_zp", 0), 1)   # (K, N)
        amax = code_amax(node.inputs[0].dtype, node.attrs.get("a_zp", 0))
        res = _choose_precision(np.abs(bc).T, amax)
        return None if res is None else (res[0], res[1], bc)

    def prepare(self, node) -> Prepared:
        dt, chunks, bc = self._plan(node)
        mrows, k = node.inputs[0].shape
        nout = bc.shape[1]
        packed = np.ascontiguousarray(np.concatenate([bc[k0:k1].reshape(-1) for k0, k1 in zip(chunks[:-1],
                                                                                             chunks[1:])]), dt)
        scratch = carve_bytes([(dt, (mrows, k)), (dt, (len(chunks) - 1, mrows, nout))])
        return Prepared(packed={1: packed, **_pack_bias(node, nout)},
                        attrs={"qgemm_precision": dt.name, "qgemm_chunks": chunks}, scratch=scratch)

    def build(self, b: Binding):
        dt = np.dtype(b.attrs["qgemm_precision"])
        chunks = [int(v) for v in b.attrs["qgemm_chunks"]]
        a, bflat = ro_inputs(b)[:2]
        out = b.outputs[0]
        mrows, k = a.shape
        nout = out.shape[1]
        nchunk = len(chunks) - 1
        ac, acc = carve(b.scratch, [(dt, (mrows, k)), (dt, (nchunk, mrows, nout))])
        gemms, off = [], 0
        for j, (k0, k1) in enumerate(zip(chunks[:-1], chunks[1:])):
            gemms.append((ac[:, k0:k1], bflat[off:off + (k1 - k0) * nout].reshape(k1 - k0, nout), acc[j]))
            off += (k1 - k0) * nout
        bias = _bias(b, nout)
        mu, r, sft, nm, nr, nn, has_neg = _epilogue_params(b.attrs, nout)
        z = ro(np.array([b.attrs.get("a_zp", 0)], dt))
        zp, lo, hi = int(b.attrs.get("y_zp", 0)), int(b.attrs["act_min"]), int(b.attrs["act_max"])
        af, acf, accf, of = a.reshape(-1), ac.reshape(-1), acc.reshape(-1), out.reshape(-1)
        cen, epi = jit("center"), jit("qepi_cols")
        mm = np.matmul

        def run():
            cen(af, acf, z)
            for av, bw, o in gemms:
                mm(av, bw, out=o)
            epi(accf, nchunk, mrows, nout, bias, mu, r, sft, nm, nr, nn, has_neg, zp, lo, hi, of)
        return run


# ---------------------------------------------------------------- QMatMul
def _qmatmul_plan(node):
    a, bv = node.inputs
    k = a.shape[-1]
    amax = code_amax(a.dtype, node.attrs.get("a_zp", 0)) * code_amax(bv.dtype, node.attrs.get("b_zp", 0))
    per = int(F32_EXACT // max(amax, 1))
    if per >= 1:
        nchunk = -(-k // per)
        if nchunk <= MAX_F32_CHUNKS:
            return F32, [min(i * per, k) for i in range(nchunk)] + [k]
    if float(k) * amax <= F64_EXACT:
        return F64, [0, k]
    return None


@register_kernel
class QMatMulKernel(Kernel):
    op, name = "QMatMul", "qmatmul"

    def supports(self, node) -> bool:
        a, bv = node.inputs
        out = node.outputs[0]
        at = node.attrs
        if not (is_int_code(a.dtype) and is_int_code(bv.dtype) and a.rank >= 2 and bv.rank >= 2
                and str(out.dtype) in _OUT_DTYPES and a.size and bv.size):
            return False
        if any(np.asarray(at.get(k, 0)).size != 1 for k in ("a_zp", "b_zp", "y_zp")):
            return False
        return scalar_rq(at["multiplier"], at["shift"]) is not None and shift_ok(at["shift"]) and \
            _qmatmul_plan(node) is not None

    def prepare(self, node) -> Prepared:
        dt, chunks = _qmatmul_plan(node)
        a, bv = node.inputs
        out = node.outputs[0]
        scratch = carve_bytes([(dt, a.shape), (dt, bv.shape), (dt, (len(chunks) - 1,) + tuple(out.shape))])
        return Prepared(attrs={"qmatmul_precision": dt.name, "qmatmul_chunks": chunks}, scratch=scratch)

    def build(self, b: Binding):
        dt = np.dtype(b.attrs["qmatmul_precision"])
        chunks = [int(v) for v in b.attrs["qmatmul_chunks"]]
        a, bv = ro_inputs(b)
        out = b.outputs[0]
        nchunk = len(chunks) - 1
        ac, bc, acc = carve(b.scratch, [(dt, a.shape), (dt, bv.shape), (dt, (nchunk,) + out.shape)])
        if nchunk == 1:
            gemms = [(ac, bc, acc[0])]
        else:
            gemms = [(ac[..., k0:k1], bc[..., k0:k1, :], acc[j])
                     for j, (k0, k1) in enumerate(zip(chunks[:-1], chunks[1:]))]
        at = b.attrs
        m, r, n = scalar_rq(at["multiplier"], at["shift"])
        za, zb = ro(np.array([at.get("a_zp", 0)], dt)), ro(np.array([at.get("b_zp", 0)], dt))
        zp, lo, hi = int(at.get("y_zp", 0)), int(at["act_min"]), int(at["act_max"])
        af, bf, acf, bcf = a.reshape(-1), bv.reshape(-1), ac.reshape(-1), bc.reshape(-1)
        accf, of = acc.reshape(-1), out.reshape(-1)
        size = out.size
        cen, epi = jit("center"), jit("qepi_flat")
        mm = np.matmul

        def run():
            cen(af, acf, za)
            cen(bf, bcf, zb)
            for x, y, o in gemms:
                mm(x, y, out=o)
            epi(accf, nchunk, size, m, r, n, zp, lo, hi, of)
        return run
