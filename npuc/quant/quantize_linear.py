"""Quantize-pass handlers of the linear ops (Conv, Gemm, MatMul), and the choice of weight
scales (:func:`weight_qparams`).
"""
from __future__ import annotations

import numpy as np

from ..ir import Node, Value
from .qparams import QParams, QType, choose_qparams, is_clamp_activation, quantize, quantize_bias, \
    quantize_multiplier
from .quantize_values import QuantizerBase, _Fallback, _from_ir, _ir_qp, _scalar


class LinearHandlers(QuantizerBase):
    """``q_Conv``, ``q_Gemm``, ``q_MatMul``: the node as ``QConv``/``QGemm``/``QMatMul``
    (True), or :class:`_Fallback` to leave it in float."""

    def weight_qparams(self, w: np.ndarray, axis: int | None) -> QParams:
        return weight_qparams(w, axis if self.cfg.per_channel else None, QType(self.cfg.weight_type),
                              search=self.cfg.weight_range_search)

    def requant_params(self, real) -> tuple[list[int], list[int]]:
        m, n = quantize_multiplier(np.asarray(real, np.float64))
        return np.atleast_1d(m).astype(np.int64).tolist(), np.atleast_1d(n).astype(np.int64).tolist()

    def negative_params(self, act, real: np.ndarray, channels: int) -> dict:
        """neg_multiplier/neg_shift for a fused PRelu/LeakyRelu (M_neg = α · M)."""
        if not act or act["op"] not in ("PRelu", "LeakyRelu"):
            return {}
        if act["op"] == "LeakyRelu":
            alpha = np.full(channels, float(act.get("alpha", 0.01)))
        else:
            slope = np.asarray(act["slope"], np.float64)
            if slope.size == 1:
                alpha = np.full(channels, float(slope.reshape(-1)[0]))
            else:
                sq = slope.reshape(-1) if slope.ndim <= 1 else slope.reshape(slope.shape[-3] if slope.ndim >= 3
                                                                             else -1, -1)[:, 0]
                if sq.size != channels:
                    raise _Fallback("PRelu slope is not per channel")
                alpha = sq
        m, n = quantize_multiplier(np.abs(alpha) * np.broadcast_to(real, (channels,)))
        m = np.where(alpha < 0, -m, m)
        return {"neg_multiplier": np.atleast_1d(m).astype(np.int64).tolist(),
                "neg_shift": np.atleast_1d(n).astype(np.int64).tolist()}

    # ------------------------------------------------------------------ integer ops
    def q_Conv(self, n: Node) -> bool:
        x, w = n.inputs[0], n.inputs[1]
        b = n.input(2)
        if not w.is_const or (b is not None and not b.is_const) or x.rank != 4:
            raise _Fallback("weights must be constant, 2-D conv")
        prec, qt, qy = self.out_qparams(n)
        xq = self.as_q(x, prec)
        qx = _from_ir(xq)
        sx, zx = _scalar(qx)
        wf = w.const.astype(np.float64)
        qw = self.weight_qparams(wf, 0)
        wq = quantize(wf, qw, narrow=qw.qtype.signed)
        sw = np.broadcast_to(qw.scale.astype(np.float64), (wf.shape[0],))
        zw = np.broadcast_to(qw.zero_point, (wf.shape[0],))
        bias = quantize_bias(b.const if b is not None else np.zeros(wf.shape[0]), sx, sw)
        sy, zy = _scalar(qy)
        mult, shift = self.requant_params(sx * sw / sy)
        lo, hi = self.clamp_bounds(n.attrs.get("activation"), qy)
        attrs = {k: n.attrs[k] for k in ("auto_pad", "dilations", "group", "kernel_shape", "pads", "strides")}
        attrs.update(x_zp=zx, w_zp=zw.tolist() if qw.axis is not None else int(zw[0]), y_zp=zy,
                     multiplier=mult, shift=shift, act_min=lo, act_max=hi, out_dtype=qt.value,
                     **self.negative_params(n.attrs.get("activation"), sx * sw / sy, wf.shape[0]))
        wv = self.g.add_const(f"{w.name}_q", wq)
        wv.quant = _ir_qp(qw)
        bv = self.g.add_const(f"{n.name}_bias_q", bias)
        y = self.add("QConv", [xq, wv, bv], attrs, out_name=n.outputs[0].name, name=n.name)
        self.set_q(n.outputs[0], y, qy)
        return True

    def q_Gemm(self, n: Node) -> bool:
        a, b = n.inputs[0], n.inputs[1]
        c = n.input(2)
        if n.attrs["transA"] or not b.is_const or (c is not None and not c.is_const) or a.rank != 2:
            raise _Fallback("Gemm needs constant B and C, no transA")
        bf = b.const.astype(np.float64)
        if n.attrs["transB"]:
            bf = bf.T
        bf = bf * float(n.attrs["alpha"])
        nout = bf.shape[1]
        bias_f = np.zeros(nout)
        if c is not None:
            cb = np.broadcast_to(c.const.astype(np.float64) * float(n.attrs["beta"]), n.outputs[0].shape)
            if not np.all(cb == cb[:1]):
                raise _Fallback("C varies per row")
            bias_f = cb[0]
        return self._qgemm(n, a, bf, bias_f)

    def _qgemm(self, n: Node, a: Value, bf: np.ndarray, bias_f: np.ndarray) -> bool:
        prec, qt, qy = self.out_qparams(n)
        aq = self.as_q(a, prec)
        sa, za = _scalar(_from_ir(aq))
        qb = self.weight_qparams(bf, 1)
        bq = quantize(bf, qb, narrow=qb.qtype.signed)
        nout = bf.shape[1]
        sb = np.broadcast_to(qb.scale.astype(np.float64), (nout,))
        zb = np.broadcast_to(qb.zero_point, (nout,))
        bias = quantize_bias(bias_f, sa, sb)
        sy, zy = _scalar(qy)
        mult, shift = self.requant_params(sa * sb / sy)
        lo, hi = self.clamp_bounds(n.attrs.get("activation"), qy)
        bv = self.g.add_const(f"{n.name}_B_q", bq)
        bv.quant = _ir_qp(qb)
        cv = self.g.add_const(f"{n.name}_bias_q", bias)
        y = self.add("QGemm", [aq, bv, cv], {"a_zp": za, "b_zp": zb.tolist() if qb.axis is not None else int(zb[0]),
                                             "y_zp": zy, "multiplier": mult, "shift": shift, "act_min": lo,
                                             "act_max": hi, "out_dtype": qt.value,
                                             **self.negative_params(n.attrs.get("activation"), sa * sb / sy, nout)},
                     out_name=n.outputs[0].name, name=n.name)
        self.set_q(n.outputs[0], y, qy)
        return True

    def q_MatMul(self, n: Node) -> bool:
        a, b = n.inputs
        if b.is_const and b.rank == 2 and a.rank == 2:
            return self._qgemm(n, a, b.const.astype(np.float64), np.zeros(b.shape[1]))
        if a.is_const:
            raise _Fallback("constant left operand")
        prec, qt, qy = self.out_qparams(n)
        if n.attrs.get("activation") and not is_clamp_activation(n.attrs["activation"]):
            raise _Fallback("non-clamp activation")
        aq, bq = self.as_q(a, prec), self.as_q(b, prec)
        sa, za = _scalar(_from_ir(aq))
        sb, zb = _scalar(_from_ir(bq))
        sy, zy = _scalar(qy)
        m, s = quantize_multiplier(sa * sb / sy)
        lo, hi = self.clamp_bounds(n.attrs.get("activation"), qy)
        y = self.add("QMatMul", [aq, bq], {"a_zp": za, "b_zp": zb, "y_zp": zy, "multiplier": int(m),
                                            "shift": int(s), "act_min": lo, "act_max": hi, "out_dtype": qt.value},
                     out_name=n.outputs[0].name, name=n.name)
        self.set_q(n.outputs[0], y, qy)
        return True


def weight_qparams(w: np.ndarray, axis: int | None, qt: QType, *, search: bool = True) -> QParams:
    """Weight scales: the clipping range per channel (or tensor) that minimizes the squared
    rounding + clipping error of the weights, searched over [0.5, 1] × the absolute range
    (1 = min/max, always a candidate; a clipped range wins only when it is better)."""
    sym = qt.signed
    if axis is None:
        lo, hi = np.array(float(w.min())), np.array(float(w.max()))
        wc = w.reshape(1, -1)
    else:
        red = tuple(i for i in range(w.ndim) if i != axis)
        lo, hi = w.min(axis=red), w.max(axis=red)
        wc = np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)
    best = choose_qparams(lo, hi, qt, symmetric=sym, narrow=sym, axis=axis)
    if not search:
        return best
    lo_v, hi_v = np.atleast_1d(lo).astype(np.float64), np.atleast_1d(hi).astype(np.float64)

    def err(qp):
        s = np.atleast_1d(qp.scale).astype(np.float64)[:, None]
        z = np.atleast_1d(qp.zero_point).astype(np.float64)[:, None]
        qmin = qt.qmin + (1 if sym else 0)
        q = np.clip(np.rint(wc / s) + z, qmin, qt.qmax)
        return ((q - z) * s - wc) ** 2

    best_err = err(best).sum(axis=1)
    best_scale = np.atleast_1d(best.scale).copy()
    best_zp = np.atleast_1d(best.zero_point).copy()
    for r in np.linspace(0.5, 0.99, 50):
        qp = choose_qparams(lo_v * r, hi_v * r, qt, symmetric=sym, narrow=sym, axis=0)
        e = err(qp).sum(axis=1)
        better = e < best_err
        if np.any(better):
            best_err = np.where(better, e, best_err)
            best_scale = np.where(better, np.atleast_1d(qp.scale), best_scale)
            best_zp = np.where(better, np.atleast_1d(qp.zero_point), best_zp)
    if axis is None:
        return QParams(best_scale.reshape(()).astype(np.float32), best_zp.reshape(()), qt, None)
    return QParams(best_scale.astype(np.float32), best_zp.astype(np.int64), qt, axis)
