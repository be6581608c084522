"""Recurrent ops: LSTM, GRU and RNN, with ONNX semantics (opset 14/22 form).

Shapes (``layout=0``; ``layout=1`` swaps the first two axes of X, Y, initial_*, Y_h, Y_c)::

    X            [seq, batch, input]
    W            [dirs, G·hidden, input]      G = 4 (LSTM, gates i o f c), 3 (GRU, z r h), 1 (RNN)
    R            [dirs, G·hidden, hidden]
    B            [dirs, 2·G·hidden]           = [Wb | Rb]; absent: zeros
    sequence_lens [batch] int32 (constant)    absent: every sequence is seq long
    initial_h/c  [dirs, batch, hidden]        absent: zeros
    P            [dirs, 3·hidden]             LSTM peepholes, gates i o f; absent: zeros
    Y            [seq, dirs, batch, hidden]
    Y_h, Y_c     [dirs, batch, hidden]

``dirs`` is 2 for ``direction="bidirectional"`` (direction 0 forward, 1 reverse), else 1.
Equations, with ``clip(v) = min(max(v, −clip), clip)`` applied to every gate's
pre-activation when ``clip`` is set (``⊙`` is the elementwise product)::

    LSTM  i = f(clip(Xt·Wiᵀ + Ht₋₁·Riᵀ + Pi⊙Ct₋₁ + Wbi + Rbi))
          f = f(clip(Xt·Wfᵀ + Ht₋₁·Rfᵀ + Pf⊙Ct₋₁ + Wbf + Rbf))     (1 − i with input_forget=1)
          c = g(clip(Xt·Wcᵀ + Ht₋₁·Rcᵀ + Wbc + Rbc))
          Ct = f⊙Ct₋₁ + i⊙c
          o = f(clip(Xt·Woᵀ + Ht₋₁·Roᵀ + Po⊙Ct + Wbo + Rbo))
          Ht = o⊙h(Ct)                   defaults f=Sigmoid, g=Tanh, h=Tanh
    GRU   z = f(clip(Xt·Wzᵀ + Ht₋₁·Rzᵀ + Wbz + Rbz))
          r = f(clip(Xt·Wrᵀ + Ht₋₁·Rrᵀ + Wbr + Rbr))
          h = g(clip(Xt·Whᵀ + (r⊙Ht₋₁)·Rhᵀ + Rbh + Wbh))           linear_before_reset=0
          h = g(clip(Xt·Whᵀ + r⊙(Ht₋₁·Rhᵀ + Rbh) + Wbh))           linear_before_reset=1
          Ht = (1 − z)⊙h + z⊙Ht₋₁        defaults f=Sigmoid, g=Tanh
    RNN   Ht = f(clip(Xt·Wiᵀ + Ht₋₁·Riᵀ + Wbi + Rbi))              default f=Tanh

The cell value Ct is not clipped before h(), as in onnxruntime.

``activations`` lists the functions per direction (forward first); when a bidirectional op
lists them for one direction only, they serve both. ``activation_alpha``/``activation_beta``
are consumed in that order, one value per function that takes one (Affine, LeakyRelu,
ThresholdedRelu, ScaledTanh, HardSigmoid, Elu take alpha; Affine, ScaledTanh, HardSigmoid
take beta); when the lists run out, the ONNX operator defaults apply (LeakyRelu 0.01,
ThresholdedRelu 1, HardSigmoid 0.2/0.5, Elu 1, Affine 1/0, ScaledTanh 1/1). Names are
matched case-insensitively.

``sequence_lens``: batch entry b runs for its first ``len_b`` steps (the reverse direction
starts at step ``len_b − 1``); Y is zero past ``len_b``, Y_h/Y_c hold the state after the
last step run, and zeros when ``len_b = 0`` (as onnxruntime's LSTM and GRU do).

The kernels compute in float64 and round to X's dtype once; they loop over time steps only
(vectorized over the batch, X·Wᵀ for all steps in one matmul).
"""
from __future__ import annotations

import numpy as np

from .registry import InferContext, register

# ---------------------------------------------------------------- activations

#: name (lower case) -> (canonical name, takes alpha, takes beta, default alpha, default beta)
_ACTIVATIONS = {
    "relu": ("Relu", False, False, 0.0, 0.0),
    "tanh": ("Tanh", False, False, 0.0, 0.0),
    "sigmoid": ("Sigmoid", False, False, 0.0, 0.0),
    "affine": ("Affine", True, True, 1.0, 0.0),
    "leakyrelu": ("LeakyRelu", True, False, 0.01, 0.0),
    "thresholdedrelu": ("ThresholdedRelu", True, False, 1.0, 0.0),
    "scaledtanh": ("ScaledTanh", True, True, 1.0, 1.0),
    "hardsigmoid": ("HardSigmoid", True, True, 0.2, 0.5),
    "elu": ("Elu", True, False, 1.0, 0.0),
    "softsign": ("Softsign", False, False, 0.0, 0.0),
    "softplus": ("Softplus", False, False, 0.0, 0.0),
}


def _sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # = 1/(1+e^-x), without overflow


def _apply(name: str, x: np.ndarray, alpha: float, beta: float) -> np.ndarray:
    if name == "Sigmoid":
        return _sigmoid(x)
    if name == "Tanh":
        return np.tanh(x)
    if name == "Relu":
        return np.maximum(x, 0.0)
    if name == "Affine":
        return alpha * x + beta
    if name == "LeakyRelu":
        return np.where(x >= 0, x, alpha * x)
    if name == "ThresholdedRelu":
        return np.where(x > alpha, x, 0.0)
    if name == "ScaledTanh":
        return alpha * np.tanh(beta * x)
    if name == "HardSigmoid":
        return np.clip(alpha * x + beta, 0.0, 1.0)
    if name == "Elu":
        return np.where(x >= 0, x, alpha * np.expm1(np.minimum(x, 0.0)))
    if name == "Softsign":
        return x / (1.0 + np.abs(x))
    if name == "Softplus":
        return np.logaddexp(0.0, x)
    raise ValueError(f"unknown activation {name!r}")


_SPEC = {  # op -> (number of gates G, activations per direction, default activations)
    "LSTM": (4, 3, ("Sigmoid", "Tanh", "Tanh")),
    "GRU": (3, 2, ("Sigmoid", "Tanh")),
    "RNN": (1, 1, ("Tanh",)),
}
_DIRECTIONS = ("forward", "reverse", "bidirectional")


def _resolve_activations(op: str, names, alphas, betas, num_dir: int):
    """[[(name, alpha, beta) per function] per direction]; raises ValueError when invalid."""
    per_dir = _SPEC[op][1]
    names = list(names) if names else list(_SPEC[op][2]) * num_dir
    if len(names) == per_dir and num_dir == 2:
        names = names * 2
    if len(names) != per_dir * num_dir:
        raise ValueError(f"activations lists {len(names)} function(s); {op} with {num_dir} direction(s) "
                         f"needs {per_dir * num_dir}")
    alphas = list(alphas or [])
    betas = list(betas or [])
    out = []
    for n in names:
        key = str(n).lower()
        if key not in _ACTIVATIONS:
            raise ValueError(f"activation {n!r} is not one of "
                             f"{', '.join(v[0] for v in _ACTIVATIONS.values())}")
        canon, takes_a, takes_b, da, db = _ACTIVATIONS[key]
        a = float(alphas.pop(0)) if takes_a and alphas else da
        b = float(betas.pop(0)) if takes_b and betas else db
        out.append((canon, a, b))
    return [out[d * per_dir:(d + 1) * per_dir] for d in range(num_dir)]


# ---------------------------------------------------------------- shape inference

_SLOTS = {"LSTM": ("X", "W", "R", "B", "sequence_lens", "initial_h", "initial_c", "P"),
          "GRU": ("X", "W", "R", "B", "sequence_lens", "initial_h"),
          "RNN": ("X", "W", "R", "B", "sequence_lens", "initial_h")}


def _rnn_infer(ctx: InferContext):
    op = ctx.op
    gates, _, _ = _SPEC[op]
    a = ctx.attrs
    if a["direction"] not in _DIRECTIONS:
        raise ctx.fail(f"direction {a['direction']!r} is not one of {', '.join(_DIRECTIONS)}")
    if a["layout"] not in (0, 1):
        raise ctx.fail(f"layout must be 0 or 1, got {a['layout']}")
    num_dir = 2 if a["direction"] == "bidirectional" else 1
    try:
        _resolve_activations(op, a["activations"], a["activation_alpha"], a["activation_beta"], num_dir)
    except ValueError as e:
        raise ctx.fail(str(e)) from None

    xs = ctx.shape(0)
    if len(xs) != 3:
        raise ctx.fail(f"X must have rank 3, got shape {list(xs)}")
    if ctx.dtype(0).kind != "f":
        raise ctx.fail(f"X must be a float tensor, got {ctx.dtype(0)}")
    seq, batch, inp = (xs[1], xs[0], xs[2]) if a["layout"] else xs
    rs = ctx.shape(2)
    if len(rs) != 3:
        raise ctx.fail(f"R must have rank 3, got shape {list(rs)}")
    hidden = rs[2] if a["hidden_size"] is None else int(a["hidden_size"])

    def expect(i, want):
        if ctx.has(i) and tuple(ctx.shape(i)) != tuple(want):
            raise ctx.fail(f"input {_SLOTS[op][i]} must have shape {list(want)}, got {list(ctx.shape(i))}")

    state = (batch, num_dir, hidden) if a["layout"] else (num_dir, batch, hidden)
    expect(1, (num_dir, gates * hidden, inp))
    expect(2, (num_dir, gates * hidden, hidden))
    expect(3, (num_dir, 2 * gates * hidden))
    expect(5, state)
    if op == "LSTM":
        expect(6, state)
        expect(7, (num_dir, 3 * hidden))
    if ctx.has(4):
        lens = ctx.require_const(4, "sequence_lens")
        if lens.shape != (batch,) or lens.dtype.kind not in "iu":
            raise ctx.fail(f"sequence_lens must be an int32 tensor of shape [{batch}], "
                           f"got {lens.dtype} {list(lens.shape)}")
        if lens.size and (lens.min() < 0 or lens.max() > seq):
            raise ctx.fail(f"sequence_lens values must be in 0..{seq}, got {lens.tolist()}")
    dt = ctx.dtype(0)
    y = (batch, seq, num_dir, hidden) if a["layout"] else (seq, num_dir, batch, hidden)
    outs = [(dt, y), (dt, state)]
    if op == "LSTM":
        outs.append((dt, state))
    return outs


# ---------------------------------------------------------------- reference kernels

def _clipper(clip):
    if clip is None:
        return lambda v: v
    c = float(clip)
    return lambda v: np.clip(v, -c, c)


def _run(op: str, X, W, R, B, seq_lens, init_h, init_c, P, a) -> tuple:
    gates = _SPEC[op][0]
    out_dtype = np.asarray(X).dtype
    f64 = np.float64
    X = np.asarray(X, f64)
    layout = int(a["layout"])
    if layout:
        X = X.transpose(1, 0, 2)
        init_h = None if init_h is None else np.asarray(init_h).transpose(1, 0, 2)
        init_c = None if init_c is None else np.asarray(init_c).transpose(1, 0, 2)
    T, N, _ = X.shape
    W = np.asarray(W, f64)
    R = np.asarray(R, f64)
    num_dir = W.shape[0]
    H = R.shape[2]
    acts = _resolve_activations(op, a["activations"], a["activation_alpha"], a["activation_beta"], num_dir)
    clip = _clipper(a["clip"])
    lens = np.full(N, T, np.int64) if seq_lens is None else np.asarray(seq_lens).astype(np.int64).reshape(N)
    steps = np.arange(T)[:, None]                       # [T, 1]
    active = steps < lens[None, :]                      # [T, N]
    batch_idx = np.arange(N)

    Y = np.zeros((T, num_dir, N, H), f64)
    Y_h = np.zeros((num_dir, N, H), f64)
    Y_c = np.zeros((num_dir, N, H), f64)
    for d in range(num_dir):
        reverse = a["direction"] == "reverse" or d == 1
        # time index read/written at step s for batch entry b
        tidx = np.where(active, lens[None, :] - 1 - steps, steps) if reverse else np.broadcast_to(steps, (T, N))
        bias = np.zeros(2 * gates * H) if B is None else np.asarray(B, f64)[d]
        wb, rb = bias[:gates * H], bias[gates * H:]
        xw = X @ W[d].T + wb                            # [T, N, G·H]
        Rd = R[d]
        h = np.zeros((N, H)) if init_h is None else np.asarray(init_h, f64)[d].copy()
        c = np.zeros((N, H)) if init_c is None else np.asarray(init_c, f64)[d].copy()
        fns = acts[d]

        def act(k, v):
            name, al, be = fns[k]
            return _apply(name, v, al, be)

        if op == "LSTM":
            p = np.zeros(3 * H) if P is None else np.asarray(P, f64)[d]
            pi, po, pf = p[:H], p[H:2 * H], p[2 * H:]
        for s in range(T):
            m = active[s]
            if not m.any():
                break
            t = tidx[s]
            g_x = xw[t, batch_idx]                      # [N, G·H]
            if op == "LSTM":
                g = g_x + h @ Rd.T + rb
                i = act(0, clip(g[:, :H] + pi * c))
                if a["input_forget"]:
                    f = 1.0 - i
                else:
                    f = act(0, clip(g[:, 2 * H:3 * H] + pf * c))
                cc = act(1, clip(g[:, 3 * H:]))
                c_new = f * c + i * cc
                o = act(0, clip(g[:, H:2 * H] + po * c_new))
                h_new = o * act(2, c_new)
                c = np.where(m[:, None], c_new, c)
            elif op == "GRU":
                hr = h @ Rd[:2 * H].T + rb[:2 * H]
                z = act(0, clip(g_x[:, :H] + hr[:, :H]))
                r = act(0, clip(g_x[:, H:2 * H] + hr[:, H:]))
                Rh, rbh = Rd[2 * H:], rb[2 * H:]
                if a["linear_before_reset"]:
                    hh = act(1, clip(g_x[:, 2 * H:] + r * (h @ Rh.T + rbh)))
                else:
                    hh = act(1, clip(g_x[:, 2 * H:] + (r * h) @ Rh.T + rbh))
                h_new = (1.0 - z) * hh + z * h
            else:
                h_new = act(0, clip(g_x + h @ Rd.T + rb))
            h = np.where(m[:, None], h_new, h)
            Y[t[m], d, batch_idx[m]] = h_new[m]
        empty = lens == 0
        Y_h[d] = np.where(empty[:, None], 0.0, h)
        Y_c[d] = np.where(empty[:, None], 0.0, c)
    if layout:
        Y = Y.transpose(2, 0, 1, 3)
        Y_h = Y_h.transpose(1, 0, 2)
        Y_c = Y_c.transpose(1, 0, 2)
    outs = (Y, Y_h, Y_c) if op == "LSTM" else (Y, Y_h)
    return tuple(np.ascontiguousarray(o).astype(out_dtype) for o in outs)


_COMMON_ATTRS = {
    "activation_alpha": None,
    "activation_beta": None,
    "activations": None,
    "clip": None,
    "direction": "forward",
    "hidden_size": None,
    "layout": 0,
}


@register("LSTM", inputs=(3, 8), attrs={**_COMMON_ATTRS, "input_forget": 0}, infer=_rnn_infer,
          const_inputs=(4,))
def lstm(X, W, R, B=None, sequence_lens=None, initial_h=None, initial_c=None, P=None, **attrs):
    """One LSTM layer: outputs Y, Y_h, Y_c (see the module docstring)."""
    return _run("LSTM", X, W, R, B, sequence_lens, initial_h, initial_c, P, attrs)


@register("GRU", inputs=(3, 6), attrs={**_COMMON_ATTRS, "linear_before_reset": 0}, infer=_rnn_infer,
          const_inputs=(4,))
def gru(X, W, R, B=None, sequence_lens=None, initial_h=None, **attrs):
    """One GRU layer: outputs Y, Y_h (see the module docstring)."""
    return _run("GRU", X, W, R, B, sequence_lens, initial_h, None, None, attrs)


@register("RNN", inputs=(3, 6), attrs=dict(_COMMON_ATTRS), infer=_rnn_infer, const_inputs=(4,))
def rnn(X, W, R, B=None, sequence_lens=None, initial_h=None, **attrs):
    """One simple RNN layer: outputs Y, Y_h (see the module docstring)."""
    return _run("RNN", X, W, R, B, sequence_lens, initial_h, None, None, attrs)
