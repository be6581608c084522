"""Fold per-channel affine ops into the preceding linear op's weights and bias.

BatchNormalization after Conv (inference form), with σ = sqrt(var + ε), s = γ/σ::

    BN(Conv(x, W, b)) = Conv(x, W', b')   W'[m] = W[m]·s[m],   b' = (b − μ)·s + β

A Mul by a constant c that is per output channel (broadcastable to [1, M, 1, ...]) or a
scalar scales W and b the same way (s = c, μ = 0, β = 0); an Add of such a constant adds
to b. ConvTranspose weights are (C, M/g, k...): output channel m = g·(M/g) + j is scaled
through W[:, j] of group g. Gemm/MatMul with a constant 2-D weight scale its output
columns: Y = A·B (+C) → A·(B·s) (+C·s). The op must be the only reader of its output,
and BN or Mul/Add that cannot fold stays as it is (a standalone BN becomes Mul + Add by
per-channel constants, which the runtime runs as one fused multiply-add).
"""
from __future__ import annotations

import numpy as np

from ..ir import Graph, Node, Value
from .manager import graph_pass

_LINEAR = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def _sole_reader(graph: Graph, v: Value) -> Node | None:
    if len(v.users) != 1 or graph.is_output(v):
        return None
    return v.users[0]


def _channels_out(n: Node) -> int:
    return n.outputs[0].shape[1] if n.op in ("Conv", "ConvTranspose") else n.outputs[0].shape[-1]


def _per_channel(n: Node, c: np.ndarray) -> np.ndarray | None:
    """c as a length-M vector if it broadcasts per output channel of ``n`` (or is a scalar)."""
    out = n.outputs[0]
    m = _channels_out(n)
    if c.size == 1:
        return np.full(m, c.reshape(()), dtype=np.float64)
    if n.op in ("Conv", "ConvTranspose"):
        r = out.rank
        shape = (1,) * (r - c.ndim) + c.shape
        want = [1] * r
        want[1] = m
        if list(shape) == want:
            return c.reshape(m).astype(np.float64)
        return None
    if c.shape[-1] == m and c.size == m and c.ndim <= out.rank:
        return c.reshape(m).astype(np.float64)
    return None


def _weights(n: Node):
    """(weight value, bias value or None) of a foldable linear op, else None."""
    if n.op in ("Conv", "ConvTranspose"):
        w, b = n.inputs[1], n.input(2)
        if not w.is_const or (b is not None and not b.is_const) or n.attrs.get("activation"):
            return None
        return w, b
    if n.op == "Gemm":
        b_ = n.inputs[1]
        c = n.input(2)
        if not b_.is_const or n.attrs.get("activation") or (c is not None and not c.is_const):
            return None
        return b_, c
    if n.op == "MatMul":
        if not n.inputs[1].is_const or n.inputs[1].rank != 2 or n.attrs.get("activation"):
            return None
        return n.inputs[1], None
    return None


def _scale_and_shift(graph: Graph, n: Node, scale: np.ndarray, shift: np.ndarray) -> None:
    """Rewrite ``n`` so that its output becomes out·scale + shift (per output channel)."""
    w, b = _weights(n)
    dt = w.dtype
    W = w.const.astype(np.float64)
    m = _channels_out(n)
    if n.op == "Conv":
        W = W * scale.reshape((m,) + (1,) * (W.ndim - 1))
    elif n.op == "ConvTranspose":
        g = n.attrs["group"]
        mg = W.shape[1]
        s = scale.reshape(g, 1, mg)  # channel m = gi*mg + j
        cg = W.shape[0] // g
        W = (W.reshape((g, cg, mg) + W.shape[2:]) * s.reshape((g, 1, mg) + (1,) * (W.ndim - 2))).reshape(W.shape)
    elif n.op == "Gemm":
        if n.attrs["transB"]:
            W = W * scale[:, None]
        else:
            W = W * scale[None, :]
    else:  # MatMul
        W = W * scale[None, :]
    graph.set_input(n, 1, graph.add_const(f"{w.name}_folded", W.astype(dt)))
    if n.op == "Gemm":
        beta = float(n.attrs["beta"])
        if b is None:
            bias = shift
        else:
            cb = np.broadcast_to(b.const.astype(np.float64) * beta, n.outputs[0].shape)
            bias = cb * scale + shift
            if np.all(bias == bias.reshape(-1, m)[0]):
                bias = bias.reshape(-1, m)[0]
        n.attrs["beta"] = 1.0
        alpha = float(n.attrs["alpha"])
        if alpha != 1.0:
            graph.set_input(n, 1, graph.add_const(f"{w.name}_folded", (W * alpha).astype(dt)))
            n.attrs["alpha"] = 1.0
        while len(n.inputs) < 3:
            n.inputs.append(None)
        graph.set_input(n, 2, graph.add_const(f"{n.name}_bias", np.asarray(bias).astype(dt)))
        return
    old = b.const.astype(np.float64) if b is not None else np.zeros(m)
    bias = old * scale + shift
    if n.op == "MatMul":
        # MatMul has no bias: it becomes a Gemm-like MatMul + Add, left to matmul_add_to_gemm
        raise AssertionError("MatMul shift handled by caller")
    while len(n.inputs) < 3:
        n.inputs.append(None)
    graph.set_input(n, 2, graph.add_const(f"{n.name}_bias", bias.astype(dt)))


def _fold_into(graph: Graph, lin: Node, follower: Node, scale, shift) -> bool:
    if lin.op == "MatMul" and np.any(shift):
        return False
    if not graph.can_replace(follower.outputs[0], lin.outputs[0]):
        return False
    if lin.op == "MatMul":
        w, _ = _weights(lin)
        graph.set_input(lin, 1, graph.add_const(f"{w.name}_folded",
                                                (w.const.astype(np.float64) * scale[None, :]).astype(w.dtype)))
    else:
        _scale_and_shift(graph, lin, scale, shift)
    out = follower.outputs[0]
    graph.remove_node(follower)
    graph.replace_all_uses(out, lin.outputs[0])
    return True


@graph_pass("fold_batchnorm")
def fold_batchnorm(graph: Graph) -> bool:
    changed = False
    for bn in list(graph.nodes):
        if bn not in graph.nodes or bn.op != "BatchNormalization" or bn.attrs.get("activation"):
            continue
        x, gamma, beta, mean, var = bn.inputs[:5]
        if not all(v.is_const for v in (gamma, beta, mean, var)):
            continue
        s = gamma.const.astype(np.float64) / np.sqrt(var.const.astype(np.float64) + float(bn.attrs["epsilon"]))
        shift = beta.const.astype(np.float64) - mean.const.astype(np.float64) * s
        lin = x.producer
        if lin is not None and lin.op in _LINEAR and _weights(lin) is not None and _sole_reader(graph, x) is bn \
                and _channels_out(lin) == s.size and lin.op in ("Conv", "ConvTranspose"):
            if _fold_into(graph, lin, bn, s, shift):
                changed = True
                continue
        # standalone: y = x·s + shift with per-channel constants (axis 1)
        shape = (1, s.size) + (1,) * max(x.rank - 2, 0)
        if x.rank < 2:
            continue
        dt = x.dtype
        sc = graph.add_const(f"{bn.name}_scale", s.reshape(shape).astype(dt))
        sh = graph.add_const(f"{bn.name}_shift", shift.reshape(shape).astype(dt))
        idx = graph.nodes.index(bn)
        mul = graph.make_node("Mul", [x, sc], name=graph.unique_name(f"{bn.name}_mul"), index=idx)
        add = graph.make_node("Add", [mul.outputs[0], sh], name=graph.unique_name(f"{bn.name}_add"), index=idx + 1)
        out = bn.outputs[0]
        graph.remove_node(bn)
        if graph.can_replace(out, add.outputs[0]):
            graph.replace_all_uses(out, add.outputs[0])
        changed = True
    if changed:
        graph.prune_values()
    return changed


@graph_pass("fold_mul_add_into_linear")
def fold_mul_add_into_linear(graph: Graph) -> bool:
    changed = False
    for n in list(graph.nodes):
        if n not in graph.nodes or n.op not in ("Mul", "Add") or n.attrs.get("activation"):
            continue
        a, b = n.inputs
        if b.is_const and not a.is_const:
            x, c = a, b
        elif a.is_const and not b.is_const:
            x, c = b, a
        else:
            continue
        lin = x.producer
        if lin is None or lin.op not in _LINEAR or _weights(lin) is None or _sole_reader(graph, x) is not n:
            continue
        if n.outputs[0].shape != x.shape or n.outputs[0].dtype != x.dtype:
            continue
        vec = _per_channel(lin, c.const)
        if vec is None:
            continue
        m = vec.size
        if n.op == "Mul":
            ok = _fold_into(graph, lin, n, vec, np.zeros(m))
        else:
            ok = _fold_into(graph, lin, n, np.ones(m), vec)
        changed |= ok
    if changed:
        graph.prune_values()
    return changed
