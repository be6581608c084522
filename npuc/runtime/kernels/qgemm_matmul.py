"""Integer QGemm and QMatMul kernels: centered activations, chunked exact float BLAS and a
numba requantization epilogue (see :mod:`.qconv`)."""
from __future__ import annotations

import numpy as np

from .base import Binding, Kernel, Prepared, register_kernel
from .qcommon import (F32_EXACT, F64_EXACT, carve, carve_bytes, channel_count_ok, code_amax, is_int_code, ro,
                      ro_inputs, scalar_rq, shift_ok)
from .qconv_prep import (F32, F64, MAX_F32_CHUNKS, _OUT_DTYPES, _bias, _centered_weights, _choose_precision,
                         _epilogue_params, _pack_bias, _requant_ok)
from .qloops import jit


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
