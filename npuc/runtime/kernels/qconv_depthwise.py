"""Integer depthwise QConv kernels (group = C = M): channels-last for small outputs,
``vpdpbusd`` byte planes on AVX-512 VNNI hosts, and the stride-phase window loop otherwise
(see :mod:`.qconv`)."""
from __future__ import annotations

import numpy as np

from .base import Binding, Prepared, register_kernel
from .qcommon import F32_EXACT, F64_EXACT, carve, carve_bytes, code_amax, ro, ro_inputs
from .qconv_prep import (F32, F64, _as4d, _bias, _centered_weights, _epilogue_params, _geometry, _pack_bias,
                         _qconv_common_ok, _QConvBase)
from .qloops import jit, qwindow_scratch


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


QCONV_DW = QConvDepthwise()
