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

This module holds ``qconv_gemm``; the depthwise kernels are in :mod:`.qconv_depthwise`,
``qgemm``/``qmatmul`` in :mod:`.qgemm_matmul` and their shared helpers in
:mod:`.qconv_prep`. Importing it registers all of them (and re-exports their names).
"""
from __future__ import annotations

import numpy as np

from .base import Binding, Prepared, register_kernel
from .qcommon import carve, carve_bytes, code_amax, ro, ro_inputs
# the depthwise kernels register before QConvGemm, which would also take depthwise convs
from .qconv_depthwise import (CL_MAX_PIXELS, QCONV_DW, QConvDepthwise, QConvDepthwiseCL,  # noqa: F401
                              QConvDepthwiseVNNI)
from .qconv_prep import (F32, F64, MAX_F32_CHUNKS, _as4d, _bias, _centered_weights,  # noqa: F401
                         _choose_precision, _epilogue_params, _geometry, _pack_bias, _qconv_common_ok, _QConvBase)
from .qgemm_matmul import QGemmKernel, QMatMulKernel  # noqa: F401
from .qloops import jit


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
