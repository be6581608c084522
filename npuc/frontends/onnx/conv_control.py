"""ONNX control flow (If, Loop, Scan) for static graphs: subgraphs are inlined at import.

npuc compiles a flat, static op list, so a control-flow node becomes the ops of its body:

* **If**: with a constant condition, the chosen branch is inlined. With a run-time condition
  both branches are inlined and each output is ``Where(cond, then, else)``, which needs
  both branches to give outputs of the same shape and type (they have no side effects).
* **Loop**: unrolled. The trip count ``M`` must be a constant and the loop condition must
  fold to a constant in every iteration (a data-dependent early exit cannot be compiled
  statically). Scan outputs are stacked on a new leading axis.
* **Scan**: unrolled over the scan axis (its length is static). Each scan input is sliced
  with ``Gather`` (forward or reverse), scan outputs are stacked along ``scan_output_axes``
  (reversed for reverse ``scan_output_directions``). Opset 8's batched form runs the scan
  once per batch entry.

Body names are resolved against the enclosing scopes; each inlined copy gets fresh value
names. Unrolling grows the graph linearly in the number of iterations.
"""
from __future__ import annotations

import numpy as np

from ...ir import Value
from .context import ConvertContext, converter

MAX_UNROLL = 4096


def _graph_attr(ctx: ConvertContext, name: str):
    v = ctx.attrs.get(name)
    if not (isinstance(v, tuple) and len(v) == 2 and v[0] == "graph"):
        raise ctx.error(f"attribute {name!r} must be a graph")
    return v[1]


def inline_subgraph(ctx: ConvertContext, g, inputs: list[Value]) -> list[Value]:
    """Import the nodes of subgraph ``g`` with its formal inputs bound to ``inputs``;
    returns its outputs. Outer-scope names stay visible; the outer scope is restored."""
    from onnx import numpy_helper

    imp = ctx.importer
    if len(g.input) != len(inputs):
        raise ctx.error(f"subgraph {g.name!r} takes {len(g.input)} inputs, {len(inputs)} were given")
    saved = imp.env
    env = dict(saved)
    imp.env = env
    try:
        for t in g.initializer:
            env[t.name] = imp.graph.add_const(t.name, numpy_helper.to_array(t))
        for vi, v in zip(g.input, inputs):
            env[vi.name] = v
        for node in g.node:
            imp.convert_node(node)
        missing = [o.name for o in g.output if o.name not in env]
        if missing:
            raise ctx.error(f"subgraph {g.name!r} does not produce its outputs {missing}")
        return [env[o.name] for o in g.output]
    finally:
        imp.env = saved


def _op(ctx: ConvertContext, op: str, ins, attrs=None, name: str = "t") -> Value:
    return ctx.emit(op, ins, attrs or {}, outputs=[f"{ctx.name or ctx.op_type}_{name}"], num_outputs=1)[0]


def _stack(ctx: ConvertContext, parts: list[Value], axis: int, name: str) -> Value:
    if not parts:
        raise ctx.error("a scan output of zero iterations would be empty; npuc needs non-empty tensors")
    rank = parts[0].rank + 1
    a = axis + rank if axis < 0 else axis
    ax = ctx.const(np.array([a], np.int64), f"{name}_axis")
    ups = [_op(ctx, "Unsqueeze", [p, ax], name=f"{name}_u") for p in parts]
    if len(ups) == 1:
        return ups[0]
    return _op(ctx, "Concat", ups, {"axis": a}, name=name)


def _bool(v: Value) -> bool:
    return bool(np.asarray(v.const).reshape(-1)[0])


@converter("If")
def if_(ctx: ConvertContext):
    cond = ctx.input(0)
    then_g, else_g = _graph_attr(ctx, "then_branch"), _graph_attr(ctx, "else_branch")
    if cond.is_const:
        return inline_subgraph(ctx, then_g if _bool(cond) else else_g, [])
    if cond.size != 1:
        raise ctx.error(f"cond must hold one value, got shape {list(cond.shape)}")
    t = inline_subgraph(ctx, then_g, [])
    e = inline_subgraph(ctx, else_g, [])
    if len(t) != len(e):
        raise ctx.error(f"the branches give {len(t)} and {len(e)} outputs")
    c = cond if cond.rank == 0 else _op(ctx, "Reshape", [cond, ctx.const(np.zeros(0, np.int64), "scalar")],
                                         name="cond")
    outs = []
    for i, (a, b) in enumerate(zip(t, e)):
        if a.shape != b.shape or a.dtype != b.dtype:
            raise ctx.error(f"the condition is computed at run time and output {i} differs between the branches "
                            f"({a.dtype}{list(a.shape)} vs {b.dtype}{list(b.shape)}); npuc needs static shapes: "
                            f"make the condition a constant")
        name = ctx.output_names[i] if i < len(ctx.output_names) and ctx.output_names[i] else f"out{i}"
        outs.append(ctx.emit("Where", [c, a, b], outputs=[name], num_outputs=1)[0])
    return outs


@converter("Loop")
def loop(ctx: ConvertContext):
    body = _graph_attr(ctx, "body")
    m = ctx.const_value(0, "trip count M")
    cond_v = ctx.input(1)
    if cond_v is not None:
        ctx.const_value(1, "initial loop condition")   # npuc unrolls loops at compile time
    carried = list(ctx.inputs[2:])
    n_carried = len(carried)
    trips = MAX_UNROLL if m is None else int(np.asarray(m).reshape(-1)[0])
    if trips > MAX_UNROLL:
        raise ctx.error(f"trip count {trips} is more than npuc unrolls ({MAX_UNROLL})")
    go = True if cond_v is None else _bool(cond_v)
    scans: list[list[Value]] = []
    i = 0
    while go and i < trips:
        it = ctx.const(np.array(i, np.int64), "iter")
        c = ctx.const(np.array(True), "cond")
        outs = inline_subgraph(ctx, body, [it, c] + carried)
        if not outs[0].is_const:
            raise ctx.error(f"the loop condition is computed at run time in iteration {i}; npuc compiles static "
                            f"graphs and cannot stop a loop on data")
        go = _bool(outs[0])
        carried = outs[1:1 + n_carried]
        scans.append(outs[1 + n_carried:])
        i += 1
    if m is None and go:
        raise ctx.error(f"the loop did not stop within {MAX_UNROLL} iterations")
    n_scan = len(body.output) - 1 - n_carried
    results = list(carried)
    for k in range(n_scan):
        results.append(_stack(ctx, [s[k] for s in scans], 0, f"scan{k}"))
    return results


def _scan_core(ctx: ConvertContext, body, states, xs, in_axes, in_dirs, out_axes, out_dirs, tag=""):
    n_state = len(states)
    n_scan_out = len(body.output) - n_state
    if not xs:
        raise ctx.error("Scan needs at least one scan input")
    axes = [ax + x.rank if ax < 0 else ax for ax, x in zip(in_axes, xs)]
    lengths = {x.shape[ax] for x, ax in zip(xs, axes)}
    if len(lengths) != 1:
        raise ctx.error(f"scan inputs have different lengths {sorted(lengths)} along their scan axes")
    steps = lengths.pop()
    if steps > MAX_UNROLL:
        raise ctx.error(f"{steps} scan steps are more than npuc unrolls ({MAX_UNROLL})")
    parts: list[list[Value]] = [[] for _ in range(n_scan_out)]
    for t in range(steps):
        sl = []
        for j, (x, ax, d) in enumerate(zip(xs, axes, in_dirs)):
            idx = ctx.const(np.array(steps - 1 - t if d else t, np.int64), f"idx{j}")
            sl.append(_op(ctx, "Gather", [x, idx], {"axis": ax}, name=f"{tag}x{j}"))
        outs = inline_subgraph(ctx, body, list(states) + sl)
        states = outs[:n_state]
        for k in range(n_scan_out):
            parts[k].append(outs[n_state + k])
    results = list(states)
    for k in range(n_scan_out):
        seq = parts[k][::-1] if out_dirs[k] else parts[k]
        results.append(_stack(ctx, seq, out_axes[k], f"{tag}scan{k}"))
    return results


@converter("Scan", since=9)
def scan(ctx: ConvertContext):
    body = _graph_attr(ctx, "body")
    a = ctx.attrs
    n_scan_in = int(a["num_scan_inputs"])
    ins = list(ctx.inputs)
    n_state = len(ins) - n_scan_in
    n_scan_out = len(body.output) - n_state
    return _scan_core(ctx, body, ins[:n_state], ins[n_state:],
                      list(a.get("scan_input_axes") or [0] * n_scan_in),
                      list(a.get("scan_input_directions") or [0] * n_scan_in),
                      list(a.get("scan_output_axes") or [0] * n_scan_out),
                      list(a.get("scan_output_directions") or [0] * n_scan_out))


@converter("Scan", since=8, until=8)
def scan_v8(ctx: ConvertContext):
    """Opset 8: every input has a leading batch axis, the scan axis is 1, and an optional
    ``sequence_lens`` comes first (it must be absent or the full length). Each batch entry
    is scanned on its own and the results are stacked on the batch axis."""
    body = _graph_attr(ctx, "body")
    a = ctx.attrs
    n_scan_in = int(a["num_scan_inputs"])
    lens = ctx.input(0)
    ins = list(ctx.inputs[1:])
    n_state = len(ins) - n_scan_in
    n_scan_out = len(body.output) - n_state
    if lens is not None:
        full = ins[n_state].shape[1]
        if not lens.is_const or not np.all(np.asarray(lens.const) == full):
            raise ctx.error("sequence_lens must be absent or a constant equal to the sequence length")
    dirs = list(a.get("directions") or [0] * n_scan_in)
    batch = ins[0].shape[0]
    per_batch = []
    for bi in range(batch):
        idx = ctx.const(np.array(bi, np.int64), "batch")
        sub = [_op(ctx, "Gather", [v, idx], {"axis": 0}, name=f"b{bi}") for v in ins]
        per_batch.append(_scan_core(ctx, body, sub[:n_state], sub[n_state:], [0] * n_scan_in, dirs,
                                    [0] * n_scan_out, [0] * n_scan_out, tag=f"b{bi}_"))
    return [_stack(ctx, [r[k] for r in per_batch], 0, f"out{k}") for k in range(n_state + n_scan_out)]
