"""Recognize decomposed patterns exporters emit and replace each with one op.

* Swish/SiLU:   ``Mul(x, Sigmoid(x))`` → ``Swish(x)`` (alpha 1)
* HardSwish:    ``Mul(x, HardSigmoid(x; 1/6, 1/2))`` and
                ``Div(Mul(x, Clip(Add(x, 3), 0, 6)), 6)`` / ``Mul(Mul(x, Clip(x+3,0,6)), 1/6)``
                / ``Mul(x, Div(Clip(x+3,0,6), 6))`` → ``HardSwish(x)``
* Gelu (erf):   ``Mul(Mul(x, 0.5), Add(Erf(Div(x, √2)), 1))`` in any operand order, also with
                ``Mul(x, 1/√2)`` inside and ``0.5`` applied last → ``Gelu(x)``
* Gelu (tanh):  ``0.5·x·(1 + Tanh(√(2/π)·(x + 0.044715·x³)))`` → ``Gelu(x, approximate=tanh)``
* LayerNorm:    ``(x − mean(x)) / sqrt(mean((x − mean(x))²) + ε) · γ + β`` over the last
                axes → ``LayerNormalization``
* MatMul + Add: ``Add(MatMul(A, B), c)`` with constant 2-D B and c broadcast over the last
                axis, A 2-D → ``Gemm(A, B, c)``

Each matcher checks the constants numerically (to 1e-6 relative) and that every
intermediate value has no reader outside the pattern.
"""
from __future__ import annotations

import math

import numpy as np

from ..ir import Graph, Node, Value
from .manager import graph_pass


def _c(v: Value | None):
    """Scalar value of a constant with one element, else None."""
    if v is None or not v.is_const or v.const.size != 1:
        return None
    return float(v.const.reshape(()))


def _close(a, b, tol=1e-6):
    return a is not None and abs(a - b) <= tol * max(1.0, abs(b))


def _other(n: Node, v: Value) -> Value | None:
    if len(n.inputs) != 2:
        return None
    a, b = n.inputs
    if a is v:
        return b
    if b is v:
        return a
    return None


def _prod(v: Value, op: str) -> Node | None:
    p = v.producer if v is not None else None
    return p if p is not None and p.op == op else None


def _private(graph: Graph, nodes: list[Node], keep: Node) -> bool:
    """Every output of ``nodes`` is read only inside the pattern (ending at ``keep``)."""
    inside = set(map(id, nodes)) | {id(keep)}
    for n in nodes:
        for o in n.outputs:
            if graph.is_output(o) or any(id(u) not in inside for u in o.users):
                return False
    return True


def _replace(graph: Graph, root: Node, dead: list[Node], op: str, inputs, attrs=None) -> bool:
    out = root.outputs[0]
    idx = graph.nodes.index(root)
    new = graph.make_node(op, inputs, attrs=attrs or {}, name=graph.unique_name(f"{root.name}_{op.lower()}"),
                          index=idx)
    if new.outputs[0].shape != out.shape or new.outputs[0].dtype != out.dtype:
        graph.remove_node(new)
        return False
    graph.remove_node(root)
    for n in dead:
        if n in graph.nodes:
            graph.remove_node(n)
    graph.replace_all_uses(out, new.outputs[0])
    return True


def _match_swish(graph, n):
    if n.op != "Mul":
        return None
    for x in n.inputs:
        s = _prod(_other(n, x), "Sigmoid")
        if s is not None and s.inputs[0] is x and _private(graph, [s], n):
            return [s], x, "Swish", {"alpha": 1.0}
    return None


def _clip_relu6_of_x_plus_3(v, x):
    clip = _prod(v, "Clip")
    if clip is None or not (_close(_c(clip.input(1)), 0.0) and _close(_c(clip.input(2)), 6.0)):
        return None
    add = _prod(clip.inputs[0], "Add")
    if add is None or _other(add, x) is None or not _close(_c(_other(add, x)), 3.0):
        return None
    return [clip, add]


def _match_hardswish(graph, n):
    # x * HardSigmoid(x; alpha=1/6, beta=0.5)
    if n.op == "Mul":
        for x in n.inputs:
            hs = _prod(_other(n, x), "HardSigmoid")
            if hs is not None and hs.inputs[0] is x and _close(hs.attrs["alpha"], 1 / 6) \
                    and _close(hs.attrs["beta"], 0.5) and _private(graph, [hs], n):
                return [hs], x, "HardSwish", {}
    # (x * relu6(x+3)) / 6  or  (x * relu6(x+3)) * (1/6)
    if n.op in ("Div", "Mul"):
        a, b = n.inputs
        k = _c(b)
        if k is None or not (_close(k, 6.0) if n.op == "Div" else _close(k, 1 / 6)):
            return None
        inner = _prod(a, "Mul")
        if inner is None:
            return None
        for x in inner.inputs:
            rest = _clip_relu6_of_x_plus_3(_other(inner, x), x)
            if rest and _private(graph, [inner] + rest, n):
                return [inner] + rest, x, "HardSwish", {}
    return None


def _match_hardswish_mul_div(graph, n):
    # x * (relu6(x+3) / 6)
    if n.op != "Mul":
        return None
    for x in n.inputs:
        d = _other(n, x)
        div = _prod(d, "Div") or _prod(d, "Mul")
        if div is None:
            continue
        k = _c(div.inputs[1])
        if k is None or not (_close(k, 6.0) if div.op == "Div" else _close(k, 1 / 6)):
            continue
        rest = _clip_relu6_of_x_plus_3(div.inputs[0], x)
        if rest and _private(graph, [div] + rest, n):
            return [div] + rest, x, "HardSwish", {}
    return None


def _erf_of_scaled_x(v):
    """Erf(x / √2) or Erf(x · 1/√2) → (nodes, x)."""
    erf = _prod(v, "Erf")
    if erf is None:
        return None
    sc = erf.inputs[0].producer
    if sc is None or sc.op not in ("Div", "Mul"):
        return None
    k = _c(sc.inputs[1])
    want = math.sqrt(2) if sc.op == "Div" else 1 / math.sqrt(2)
    if not _close(k, want, 1e-4):
        return None
    return [erf, sc], sc.inputs[0]


def _one_plus_erf(v):
    add = _prod(v, "Add")
    if add is None:
        return None
    for t in add.inputs:
        if _close(_c(_other(add, t)), 1.0):
            r = _erf_of_scaled_x(t)
            if r:
                return [add] + r[0], r[1]
    return None


def _match_gelu(graph, n):
    if n.op != "Mul":
        return None
    # form A: Mul(Mul(x, 0.5), 1 + erf)  / Mul(x, Mul(0.5, 1+erf)) ; form B: Mul(Mul(x, 1+erf), 0.5)
    a, b = n.inputs
    for p, q in ((a, b), (b, a)):
        r = _one_plus_erf(q)
        if r:
            nodes, x = r
            half = _prod(p, "Mul")
            if half is not None and _other(half, x) is not None and _close(_c(_other(half, x)), 0.5) \
                    and _private(graph, nodes + [half], n):
                return nodes + [half], x, "Gelu", {"approximate": "none"}
        if _close(_c(q), 0.5):
            inner = _prod(p, "Mul")
            if inner is not None:
                for x in inner.inputs:
                    r = _one_plus_erf(_other(inner, x))
                    if r and r[1] is x and _private(graph, r[0] + [inner], n):
                        return r[0] + [inner], x, "Gelu", {"approximate": "none"}
    return None


def _match_gelu_tanh(graph, n):
    """0.5·x·(1 + tanh(c·(x + 0.044715·x³))) in the usual exporter order."""
    if n.op != "Mul":
        return None
    a, b = n.inputs
    for p, q in ((a, b), (b, a)):
        add1 = _prod(q, "Add")
        if add1 is None:
            continue
        th = None
        for t in add1.inputs:
            if _close(_c(_other(add1, t)), 1.0):
                th = _prod(t, "Tanh")
        if th is None:
            continue
        mc = _prod(th.inputs[0], "Mul")
        if mc is None:
            continue
        inner = None
        for t in mc.inputs:
            if _close(_c(_other(mc, t)), math.sqrt(2 / math.pi), 1e-4):
                inner = _prod(t, "Add")
        if inner is None:
            continue
        for x in inner.inputs:
            cube_mul = _prod(_other(inner, x), "Mul")
            if cube_mul is None:
                continue
            pw = None
            for t in cube_mul.inputs:
                if _close(_c(_other(cube_mul, t)), 0.044715, 1e-4):
                    pw = _prod(t, "Pow")
            if pw is None or pw.inputs[0] is not x or not _close(_c(pw.inputs[1]), 3.0):
                continue
            half = _prod(p, "Mul")
            if half is None or _other(half, x) is None or not _close(_c(_other(half, x)), 0.5):
                continue
            nodes = [add1, th, mc, inner, cube_mul, pw, half]
            if _private(graph, nodes, n):
                return nodes, x, "Gelu", {"approximate": "tanh"}
    return None


def _reduce_axes(n: Node) -> list[int] | None:
    ax = n.input(1)
    if ax is None or not ax.is_const or not n.attrs.get("keepdims", 1):
        return None
    r = n.inputs[0].rank
    return sorted(int(a) % r for a in ax.const.reshape(-1))


def _match_layernorm(graph, n):
    """Add(Mul(Div(Sub(x, m), Sqrt(Add(ReduceMean(Pow(Sub, 2)), eps))), γ), β)."""
    if n.op != "Add":
        return None
    for mulv in n.inputs:
        beta = _other(n, mulv)
        mul = _prod(mulv, "Mul")
        if mul is None or beta is None or not beta.is_const:
            continue
        for divv in mul.inputs:
            gamma = _other(mul, divv)
            div = _prod(divv, "Div")
            if div is None or gamma is None or not gamma.is_const:
                continue
            sub = _prod(div.inputs[0], "Sub")
            sqrt = _prod(div.inputs[1], "Sqrt")
            if sub is None or sqrt is None:
                continue
            x = sub.inputs[0]
            mean = _prod(sub.inputs[1], "ReduceMean")
            if mean is None or mean.inputs[0] is not x:
                continue
            axes = _reduce_axes(mean)
            r = x.rank
            if axes is None or axes != list(range(r - len(axes), r)):
                continue
            add_eps = _prod(sqrt.inputs[0], "Add")
            if add_eps is None:
                continue
            eps = None
            var = None
            for t in add_eps.inputs:
                e = _c(_other(add_eps, t))
                if e is not None:
                    eps, var = e, _prod(t, "ReduceMean")
            if var is None or _reduce_axes(var) != axes:
                continue
            pw = var.inputs[0].producer
            if pw is None or pw.inputs[0] is not sub.outputs[0]:
                continue
            if not ((pw.op == "Pow" and _close(_c(pw.inputs[1]), 2.0))
                    or (pw.op == "Mul" and pw.inputs[1] is sub.outputs[0])):
                continue
            nodes = [mul, div, sub, sqrt, mean, add_eps, var, pw]
            if not _private(graph, nodes, n):
                continue
            norm_shape = x.shape[r - len(axes):]
            try:
                g = np.broadcast_to(gamma.const, norm_shape)
                b = np.broadcast_to(beta.const, norm_shape)
            except ValueError:
                continue
            if gamma.rank > len(axes) or beta.rank > len(axes):
                continue
            gv = graph.add_const(f"{n.name}_gamma", np.ascontiguousarray(g))
            bv = graph.add_const(f"{n.name}_beta", np.ascontiguousarray(b))
            return nodes, x, "LayerNormalization", {"axis": r - len(axes), "epsilon": float(eps)}, [gv, bv]
    return None


def _match_matmul_add(graph, n):
    if n.op != "Add":
        return None
    for mv in n.inputs:
        c = _other(n, mv)
        mm = _prod(mv, "MatMul")
        if mm is None or c is None or not c.is_const or mm.attrs.get("activation"):
            continue
        a, bw = mm.inputs
        if a.rank != 2 or bw.rank != 2 or not bw.is_const:
            continue
        nout = bw.shape[1]
        if c.const.size not in (1, nout) or c.rank > 2 or (c.rank == 2 and c.shape[0] != 1):
            continue
        if not _private(graph, [mm], n):
            continue
        bias = graph.add_const(f"{n.name}_bias", np.broadcast_to(c.const.reshape(-1), (nout,)).copy())
        return [mm], a, "Gemm", {}, [bw, bias]
    return None


_MATCHERS = (_match_swish, _match_hardswish, _match_hardswish_mul_div, _match_gelu, _match_gelu_tanh,
             _match_layernorm, _match_matmul_add)


@graph_pass("recognize_patterns")
def recognize_patterns(graph: Graph) -> bool:
    changed = False
    for n in list(graph.nodes):
        if n not in graph.nodes:
            continue
        for m in _MATCHERS:
            r = m(graph, n)
            if r is None:
                continue
            dead, x, op, attrs = r[:4]
            extra = r[4] if len(r) > 4 else []
            if _replace(graph, n, dead, op, [x] + list(extra), attrs):
                changed = True
                break
    if changed:
        graph.prune_values()
    return changed
