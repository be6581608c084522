"""Lowering: optimized IR graph → scheduled, memory-planned :class:`Program`.

1. choose a kernel per node (``select_kernel``); the kernel packs its constant inputs;
2. buffers: every non-constant value is an arena buffer; view ops (reshape family) alias
   their input; an in-place-capable kernel's output shares its input's buffer when that
   input dies at this op; the producers of a Concat along an axis whose leading dims are 1
   write straight into their slice of its output (no copy); each kernel's scratch is a
   buffer live for its op only;
3. plan the buffers with :func:`npuc.memory.plan_memory` (one arena per pool);
4. emit the tensor table, op list and constants for the writer.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import GraphError
from .format.schema import ALIGNMENT, ARENA, CONST, OpEntry, PoolEntry, Program, TensorEntry
from .format.writer import layout_constants
from .ir import Graph, Value
from .memory import Buffer, plan_memory
from .runtime.kernels.base import select_kernel
from .runtime.kernels.basic import CONCAT_IN_PLACE
from .targets.base import Target


class _Groups:
    """Union-find over values that share one buffer, each at a byte offset in it.

    Views and in-place outputs sit at offset 0 of their source's buffer; the inputs of a
    copy-free Concat sit at their slice's offset inside the Concat output's buffer."""

    def __init__(self):
        self.parent: dict[int, int] = {}
        self.off: dict[int, int] = {}      # byte offset of k inside its parent's buffer

    def find(self, k: int) -> int:
        return self._find(k)[0]

    def offset(self, k: int) -> int:
        return self._find(k)[1]

    def _find(self, k: int) -> tuple[int, int]:
        path = []
        while self.parent.setdefault(k, k) != k:
            path.append(k)
            k = self.parent[k]
        root, total = k, 0
        for node in reversed(path):  # compress, accumulating offsets from the root down
            total += self.off.get(node, 0)
            self.parent[node] = root
            self.off[node] = total
        return root, (self.off.get(path[0], 0) if path else 0)

    def union(self, child: int, root: int, offset: int = 0) -> None:
        """Put ``child``'s whole group at ``offset`` inside ``root``'s buffer."""
        c, c_off = self._find(child)
        r, r_off = self._find(root)
        self.parent[c] = r
        self.off[c] = r_off + offset - c_off


@dataclass
class LoweredOp:
    node: object
    kernel: object
    prepared: object


def _quant_json(v: Value):
    q = v.quant
    if q is None:
        return None
    return {"scale": np.asarray(q.scale, np.float64).tolist(), "zero_point": np.asarray(q.zero_point).tolist(),
            "axis": q.axis}


def lower(graph: Graph, target: Target, *, planner_time_limit: float | None = None) -> Program:
    nodes = list(graph.nodes)
    lowered = []
    choose = getattr(target, "select_kernel", None) or select_kernel   # a target may prefer other kernels
    for n in nodes:
        k = choose(n)
        lowered.append(LoweredOp(n, k, k.prepare(n)))

    steps = len(nodes)
    graph_inputs = {id(v) for v in graph.inputs}
    graph_outputs = {id(v) for v in graph.outputs}
    # the step at which each value is produced and last read
    first: dict[int, int] = {id(v): 0 for v in graph.inputs}
    last: dict[int, int] = {id(v): 0 for v in graph.inputs}
    values: dict[int, Value] = {id(v): v for v in graph.inputs}
    for i, n in enumerate(nodes):
        for v in n.inputs:
            if v is not None and not v.is_const:
                last[id(v)] = max(last.get(id(v), i), i)
        for o in n.outputs:
            first[id(o)] = i
            last.setdefault(id(o), i)
            last[id(o)] = max(last[id(o)], i)
            values[id(o)] = o
    for v in graph.outputs:
        if not v.is_const:
            last[id(v)] = steps  # live until the outputs are copied out

    def build_plan(allow_concat: bool):
        concat_ops: set[int] = set()
        groups = _Groups()
        members: dict[int, list[int]] = {}

        def group_last(root: int) -> int:
            return max(last[m] for m in members.get(root, [root]))

        def join(out_v: Value, in_v: Value):
            r = groups.find(id(in_v))
            groups.union(id(out_v), id(in_v))  # at in_v's own offset (it may sit in a Concat)
            members.setdefault(r, [r]).append(id(out_v))

        public = graph_inputs | graph_outputs

        def concat_in_place(n) -> bool:
            """Let each input of a Concat be written straight into its slice of the output."""
            out = n.outputs[0]
            axis = int(n.attrs.get("axis", 0)) % max(out.rank, 1)
            if any(d != 1 for d in out.shape[:axis]) or id(out) in graph_inputs:
                return False
            ins = n.inputs
            if len({id(v) for v in ins}) != len(ins):
                return False
            # two views of one tensor (one buffer group) cannot sit in two slices
            if len({groups.find(id(v)) for v in ins if v is not None}) != len(ins):
                return False
            for v in ins:
                # an input may have other readers: its bytes sit in its slice all the same
                # (the whole group then lives as long as any member is read)
                if v is None or v.is_const or v.producer is None:
                    return False
                r = groups.find(id(v))
                mem = members.get(r, [r])
                # v must be its whole buffer: a value already in a slice of another Concat (its
                # root is that Concat's bigger output) stays there, and this Concat copies it
                if any(m in public for m in mem) or values[r].nbytes != v.nbytes:
                    return False
            offset = 0
            for v in ins:
                r = groups.find(id(v))
                groups.union(r, id(out), offset)
                members.setdefault(id(out), [id(out)]).extend(members.pop(r, [r]))
                offset += v.nbytes
            return True

        for i, lo in enumerate(lowered):
            n, k = lo.node, lo.kernel
            x = n.inputs[0] if n.inputs else None
            if x is None or x.is_const:
                continue
            out = n.outputs[0]
            if allow_concat and n.op == "Concat" and len(n.inputs) > 1 and concat_in_place(n):
                concat_ops.add(i)
                continue
            if k.alias:
                if out.nbytes == x.nbytes:
                    join(out, x)
                continue
            if k.inplace_input is not None:
                src = n.inputs[k.inplace_input]
                if (src is not None and not src.is_const and src.nbytes == out.nbytes
                        and src.dtype == out.dtype and src.shape == out.shape
                        and group_last(groups.find(id(src))) == i
                        and not any(id(src) == id(o) or groups.find(id(o)) == groups.find(id(src))
                                    for o in graph.outputs)
                        and sum(1 for v in n.inputs if v is src) == 1):
                    join(out, src)

        # buffers: one per group root
        roots: dict[int, list[int]] = {}
        for vid in values:
            roots.setdefault(groups.find(vid), []).append(vid)
        buffers = []
        # a target may place values in other pools (e.g. k210: KPU feature maps in "kpu")
        value_pool = getattr(target, "value_pool", None) or (lambda v: "main")
        pool_of: dict[int, str] = {}
        for root, vids in roots.items():
            size = max(groups.offset(v) + values[v].nbytes for v in vids)
            pool_of[root] = value_pool(values[root])
            buffers.append(Buffer(id=f"v{root}", size=size, first=min(first[v] for v in vids),
                                  last=max(last[v] for v in vids), pool=pool_of[root], alignment=ALIGNMENT))
        for i, lo in enumerate(lowered):
            if lo.prepared.scratch:
                buffers.append(Buffer(id=f"s{i}", size=int(lo.prepared.scratch), first=i, last=i, pool="main",
                                      alignment=ALIGNMENT))
        capacities = {p.name: p.capacity for p in target.pools if p.capacity is not None}
        plan = plan_memory(buffers, capacities=capacities or None, time_limit=planner_time_limit)
        plan.check(buffers)
        return groups, plan, pool_of, concat_ops

    # copy-free Concat makes the concat's buffer live from its first input on: keep it only
    # when the arena is not bigger than with copies (ties keep it: fewer copies)
    with_concat = build_plan(True)
    chosen = with_concat
    if with_concat[3]:
        without = build_plan(False)
        if sum(p.size for p in without[1].pools.values()) < sum(p.size for p in with_concat[1].pools.values()):
            chosen = without
    groups, plan, pool_of, concat_ops = chosen
    for i in concat_ops:
        lowered[i].kernel = CONCAT_IN_PLACE
        lowered[i].prepared = CONCAT_IN_PLACE.prepare(lowered[i].node)

    # tensor table
    tensors: list[TensorEntry] = []
    tid_of: dict[int, int] = {}
    constants: list[tuple[int, np.ndarray]] = []

    def arena_tensor(v: Value) -> int:
        if id(v) in tid_of:
            return tid_of[id(v)]
        root = groups.find(id(v))
        off = plan.offsets[f"v{root}"] + groups.offset(id(v))
        t = TensorEntry(len(tensors), v.name, str(v.dtype), list(v.shape), ARENA, int(off), v.nbytes,
                        pool_of[root], _quant_json(v))
        tensors.append(t)
        tid_of[id(v)] = t.id
        return t.id

    const_key: dict[int, int] = {}

    def const_tensor(v: Value, arr: np.ndarray) -> int:
        key = id(arr)
        if key in const_key:
            return const_key[key]
        arr = np.require(arr, requirements="C")
        t = TensorEntry(len(tensors), v.name, str(arr.dtype), list(arr.shape), CONST, 0, arr.nbytes, "",
                        _quant_json(v))
        tensors.append(t)
        constants.append((t.id, arr))
        const_key[key] = t.id
        return t.id

    for v in graph.inputs:
        arena_tensor(v)
    ops = []
    for i, lo in enumerate(lowered):
        n = lo.node
        ins = []
        for slot, v in enumerate(n.inputs):
            if v is None:
                ins.append(-1)
            elif slot in lo.prepared.packed:
                ins.append(const_tensor(v, lo.prepared.packed[slot]))
            elif v.is_const:
                ins.append(const_tensor(v, v.const))
            else:
                ins.append(arena_tensor(v))
        outs = [arena_tensor(o) for o in n.outputs]
        scratch = -1
        if lo.prepared.scratch:
            s = TensorEntry(len(tensors), f"{n.name}:scratch", "uint8", [int(lo.prepared.scratch)], ARENA,
                            int(plan.offsets[f"s{i}"]), int(lo.prepared.scratch), "main")
            tensors.append(s)
            scratch = s.id
        ops.append(OpEntry(n.op, n.name, lo.kernel.name, ins, outs, {**n.attrs, **lo.prepared.attrs}, scratch))
    outputs = []
    for v in graph.outputs:
        if v.is_const:
            outputs.append(const_tensor(v, v.const))
        elif id(v) in tid_of:
            outputs.append(tid_of[id(v)])
        else:
            raise GraphError(f"graph output {v.name!r} is not produced")
    offsets, _ = layout_constants(constants)
    for tid, _arr in constants:
        tensors[tid].offset = offsets[tid]
    pools = [PoolEntry(name, p.size, p.lower_bound, ALIGNMENT,
                       next((s.capacity for s in target.pools if s.name == name), None), p.strategy)
             for name, p in plan.pools.items()]
    if not pools:
        pools = [PoolEntry("main", 0, 0)]
    program = Program(target.name, tensors, ops, [tid_of[id(v)] for v in graph.inputs], outputs, pools,
                      {"graph": graph.name, **{k: v for k, v in graph.metadata.items() if isinstance(v, (str, int, dict))}},
                      constants)
    finish = getattr(target, "finish_program", None)   # target hook: relocation, budgets, reports
    return finish(program, graph) if finish is not None else program
