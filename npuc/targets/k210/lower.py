"""The k210 lowering: a quantized graph → KPU layers + CPU ops + the copies between them.

Runs after :func:`npuc.quant.driver.quantize_model` (uint8 activations, int8 symmetric
per-channel weights, which on the KPU are uint8 weights with the one zero point 128) and
before :func:`npuc.lowering.lower`. It walks the quantized graph in order and rebuilds it:

* every ``QConv`` (and ``QGemm``, as a 1×1 convolution on a padded 4×4 map) the KPU can
  run becomes a ``KpuConv`` op: the convolution with its requantization (the BN stage),
  its clamp / leaky activation (the activation table), a following ``Clip`` and a
  following 2×2/2 or 4×4/4 ``MaxPool`` fused in, a stride 2 done as a stride-1
  convolution plus a "select" pool. Its parameters come from the quantized graph's
  scales (:func:`~.params.make_kpu_layer` with the graph's weights as they are), so the
  KPU computes what the cpu target's ``QConv`` computes, up to the last rounding
  (see docs/k210.md);
* layers beyond the limits are split by output channels into several hardware layers
  writing one output map (> 1024 outputs, or more than 64 weight loads);
* everything else stays a CPU op, with the reason it is not on the KPU;
* a KPU map is a ``uint8`` tensor of ``fmap_bytes(C, Hm, Wm)`` bytes in the AI SRAM row
  layout (memory pool ``kpu``); ``KpuUpload`` / ``KpuDownload`` copy between CPU tensors
  (NCHW, pool ``main``) and maps where a value changes sides.

Map geometry
------------
A map may be larger than the tensor it holds: the tensor is the window
``[y0:y0+H, x0:x0+W]`` of a ``Hm × Wm`` map. Per axis (:class:`Axis`) the lowering
tracks the window and whether the map rows outside it hold the pad value (uploaded
padding) or junk (rows a layer computed from padding). A convolution with kernel k,
stride s and pads (b, e) reads logical rows ``s·i + t − b``; on the KPU it is the
stride-1 "same" convolution of the whole map, whose output row ``r`` reads map rows
``r − c … r + c`` (c = k // 2; row −1 and row Hm are the KPU's own padding). So logical
output i is map output row ``r = y0 − b + c + s·i``, valid when every padding row it reads
is a KPU pad row or an uploaded pad row. Stride 2 then needs r even for rows (the select
pools take rows 0, 2, 4…) and takes the left-top or right-top pixel for columns; a fused
max pool of size p needs r ≡ 0 (mod p). The output window is ``r0 / s`` (or ``/ p``).
"Valid" convolutions therefore run on the KPU unchanged (their output is an inner window);
TensorFlow's asymmetric "SAME" padding of stride-2 layers gets one uploaded pad row on top.
When a map's geometry does not allow a layer (junk where padding should be, a map smaller
than 4×4), the value is uploaded again from its CPU copy with the padding the layer needs.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field

import numpy as np

from ...ir import Graph, Node, Value
from . import cost
# geometry, layer descriptions and memory checks live in their own modules; their names
# stay importable from here.
from .geometry import Axis, KMap, _in_limits, conv_axis, upload_axis
from .layer_specs import (ConvSpec, _scalar_q, activation_name, build_layers, conv_spec,  # noqa: F401
                          gemm_spec, identify_lut, s2d_spec, split_channels)
from .layout import fmap_bytes, row_layout
from .lower_add import try_kpu_add
from .lower_pool import try_kpu_pool
from .lower_tiles import try_tiled
from .memory_checks import KpuMemoryError, check_kpu_memory, check_weights  # noqa: F401
from .spec import MAX_IN_HEIGHT, MAX_IN_WIDTH, MIN_IN_HEIGHT, MIN_IN_WIDTH, KpuError, KpuPool

log = logging.getLogger(__name__)

KPU_OPS = ("KpuConv", "KpuUpload", "KpuDownload")
TILE_ABOVE_BYTES = 2 * 1024 * 1024   #: a layer whose input + output maps exceed this is row-tiled


# ----------------------------------------------------------------------------- CPU reasons
_CPU_REASONS = {
    "QuantizeLinear": "quantizes a float input (the KPU takes uint8 maps)",
    "DequantizeLinear": "dequantizes a result to float",
    "QAdd": "elementwise add (the KPU runs convolution layers only)",
    "QMul": "elementwise multiply (the KPU runs convolution layers only)",
    "QConcat": "concatenation with requantization (a CPU copy)",
    "Concat": "concatenation (a CPU copy)",
    "QMean": "global / reduce mean (the KPU's mean pool works on a layer's own output, 2x2 or 4x4 cells)",
    "QAvgPool": "average pool (not fused: the KPU's mean pool truncates and works on a layer's own output)",
    "QLut": "lookup-table activation on its own (the KPU's activation table belongs to a convolution layer)",
    "QPRelu": "PReLU on its own (per-channel slopes do not fit the KPU's shared activation table)",
    "Requantize": "requantization between precisions",
    "Split": "splits a tensor (a CPU copy; e.g. the input channels of a layer wider than the KPU's 1024, "
             "whose partial sums are added on the CPU)",
    "Reshape": "layout op (a view on the CPU)",
    "Flatten": "layout op (a view on the CPU)",
    "Squeeze": "layout op (a view on the CPU)",
    "Unsqueeze": "layout op (a view on the CPU)",
    "Transpose": "transpose (a CPU copy; the KPU has no layout ops)",
    "Pad": "explicit padding op (a CPU copy)",
    "Softmax": "softmax (float on the CPU)",
}


def _covers(qy, qx) -> bool:
    """Whether uint8 range ``qy`` holds all of uint8 range ``qx`` (to half a step): clamping in
    ``qy`` codes before a mean is then the same as clamping after it."""
    (sy, zy), (sx, zx) = qy, qx
    return (0 - zy) * sy <= (0 - zx) * sx + sy / 2 and (255 - zy) * sy >= (255 - zx) * sx - sy / 2


def _channel_pad_for_add(n: Node, outputs: set) -> bool:
    """A constant ``Pad`` of uint8 NCHW channels at the end with the zero point (real 0),
    read only by a ``QAdd``: the KPU pair-map add can take its source and add nothing for
    the padded channels (lower_add.py)."""
    if n.op != "Pad" or n.attrs.get("mode", "constant") != "constant" or len(n.inputs) < 2:
        return False
    x, y = n.inputs[0], n.outputs[0]
    p, val = n.inputs[1], n.input(2)
    if x.dtype != np.uint8 or x.rank != 4 or p is None or not p.is_const or id(y) in outputs or \
            len(y.users) != 1 or y.users[0].op != "QAdd" or (val is not None and not val.is_const):
        return False
    pads = np.asarray(p.const, np.int64).reshape(-1)
    qx, qy = _scalar_q(x), _scalar_q(y)
    if pads.size != 8 or np.any(np.delete(pads, 5) != 0) or pads[5] <= 0 or qx is None or qx != qy:
        return False
    code = 0 if val is None else int(np.asarray(val.const).reshape(-1)[0])
    return code == qy[1]


def clamp_bounds(spec: ConvSpec, fused: list) -> tuple[int, int]:
    """The layer's clamp in output codes: its own, tightened by a fused ``Clip``."""
    lo, hi = spec.act_min, spec.act_max
    for u in fused:
        if u.op == "Clip":
            bl, bh = u.input(1), u.input(2)
            if bl is not None:
                lo = max(lo, int(np.asarray(bl.const).reshape(-1)[0]))
            if bh is not None:
                hi = min(hi, int(np.asarray(bh.const).reshape(-1)[0]))
    return lo, min(max(hi, lo), 255)


def cpu_reason(n: Node) -> str:
    r = _CPU_REASONS.get(n.op)
    if r:
        return r
    if n.op in ("MaxPool", "AveragePool"):
        ks = n.attrs.get("kernel_shape")
        st = n.attrs.get("strides") or [1] * len(ks or [])
        return (f"{n.op} {'x'.join(map(str, ks or []))}/{'x'.join(map(str, st))} not fused (the KPU pools "
                "2x2/2 or 4x4/4 the output of its own convolution when that has no other reader)")
    if any(o.dtype.kind == "f" for o in n.outputs):
        return f"{n.op} in float (not quantized; the KPU computes uint8)"
    return f"{n.op} has no KPU equivalent (the KPU runs convolution layers only)"


# ----------------------------------------------------------------------------- the rewrite
@dataclass
class _Plan:
    """How one conv becomes a KPU op."""

    src_map: KMap | None         # existing map (None: upload)
    upload: tuple | None         # (rows axis, cols axis) of the upload
    rows: Axis
    cols: Axis
    pool: KpuPool
    fused: list = field(default_factory=list)     # nodes fused after the conv (Clip, MaxPool)
    lo: int = 0
    hi: int = 255


#: the quantized ops the lowering may put on the KPU (run() tries each with its lowering)
_LATER_KPU = ("QConv", "QGemm", "QAdd", "MaxPool")
_POOLS = ("MaxPool", "QAvgPool")       #: pools a layer can fuse (max / mean)


class K210Lowering:
    """Rebuilds a quantized graph with KPU ops (see the module docstring)."""

    def __init__(self, graph: Graph, *, use_cost_model: bool = True):
        self.src = graph
        self.g = Graph(graph.name)
        self.g.metadata = {k: v for k, v in graph.metadata.items() if k != "k210"}
        self.cpu: dict[int, Value] = {}
        self.kpu: dict[int, KMap] = {}
        self.consts: dict[int, Value] = {}
        self.fused_nodes: set[int] = set()
        self.deferred: dict[int, Node] = {}      # channel Pads a KPU add may absorb (id of their output)
        self.reasons: dict[str, str] = {}       # final node name -> why it runs on the CPU
        self.sources: dict[str, list[str]] = {}  # KpuConv name -> quantized nodes it implements
        self.fit_errors: dict[str, int] = {}
        self.use_cost = use_cost_model
        self.outputs = {id(v) for v in graph.outputs}

    # ------------------------------------------------------------------ values
    def const(self, v: Value) -> Value:
        c = self.consts.get(id(v))
        if c is None:
            c = self.g.add_const(v.name, v.const)
            c.quant = v.quant
            self.consts[id(v)] = c
        return c

    def _name(self, base: str) -> str:
        return self.g.unique_name(base)

    def cpu_value(self, v: Value) -> Value:
        """The CPU tensor of ``v`` (downloading it from AI SRAM if it lives only there)."""
        if v.is_const:
            return self.const(v)
        got = self.cpu.get(id(v))
        if got is not None:
            return got
        km = self.kpu[id(v)]
        c = km.c
        node = self.g.make_node("KpuDownload", [km.value], name=self._name(f"{v.name}/download"),
                                attrs={"chw": [c, km.rows.n, km.cols.n], "map": [km.rows.size, km.cols.size],
                                       "window": [km.rows.start, km.cols.start], "out_shape": list(v.shape)},
                                outputs=[v.name if v.name not in self.g.values else f"{v.name}@cpu"])
        out = node.outputs[0]
        out.quant = v.quant
        self.cpu[id(v)] = out
        self.reasons[node.name] = "copies a KPU result from AI SRAM to general SRAM for the CPU"
        return out

    def upload(self, v: Value, c: int, h: int, w: int, rows: Axis, cols: Axis, pad: int, s2d=None) -> KMap:
        x = self.cpu_value(v)
        attrs = {"chw": [c, h, w], "map": [rows.size, cols.size], "window": [rows.start, cols.start],
                 "pad_value": int(pad)}
        if s2d is not None:
            attrs["space_to_depth"] = list(s2d[:4])
            attrs["s2d_shifts"] = int(s2d[4]) if len(s2d) > 4 else 1
        node = self.g.make_node("KpuUpload", [x], name=self._name(f"{v.name}/upload"), attrs=attrs,
                                outputs=[f"{v.name}@kpu" if s2d is None else f"{v.name}@kpu_s2d"])
        node.outputs[0].quant = v.quant
        self.reasons[node.name] = ("copies a CPU tensor into AI SRAM for the KPU" if s2d is None else
                                   "copies a CPU tensor into AI SRAM as 2x2 space-to-depth (a k x k stride-2 "
                                   "convolution becomes a 3x3 KPU layer)")
        return KMap(node.outputs[0], c, rows, cols)

    # ------------------------------------------------------------------ fusion
    def _single_user(self, v: Value) -> Node | None:
        if id(v) in self.outputs or len(v.users) != 1:
            return None
        return v.users[0]

    def _fusable_chain(self, n: Node) -> list[Node]:
        """Clip (code bounds) and MaxPool nodes right after ``n`` that the layer can absorb."""
        chain = []
        v = n.outputs[0]
        seen = set()
        while True:
            u = self._single_user(v)
            if u is None or u.op in seen:
                break
            if u.op == "QLut" and not chain and self._lut_ok(n) and identify_lut(u) is not None:
                chain.append(u)
            elif u.op == "Clip" and u.inputs[0] is v and u.outputs[0].dtype == np.uint8 and not chain and all(
                    x is None or x.is_const for x in u.inputs[1:]) and n.attrs.get("neg_multiplier") is None:
                # (a two-slope table has no clamp of its own: a Clip after it stays a CPU op)
                chain.append(u)
            elif u.op == "MaxPool" and u.outputs[0].dtype == np.uint8 and len(u.outputs) == 1 \
                    and self._pool_size(u):
                chain.append(u)
            elif u.op == "QAvgPool" and self._mean_pool_ok(n, chain, u):
                chain.append(u)
            else:
                break
            seen.add(u.op)
            v = u.outputs[0]
        return chain

    @staticmethod
    def _lut_ok(n: Node) -> bool:
        """A table activation can replace the layer's own only when that is the identity."""
        a = n.attrs
        return a.get("neg_multiplier") is None and int(a["act_min"]) == 0 and int(a["act_max"]) == 255

    def _mean_pool_ok(self, n: Node, chain: list, u: Node) -> bool:
        """A ``QAvgPool`` 2x2/2 or 4x4/4 the layer's mean pool can replace: uint8 in and out,
        no clamp of its own, after a clamp (or identity) activation, its output range covering
        its input's (the k210 quantizer gives it the same: ``share_pool_ranges``); the layer's
        table then writes the pool's output scale and the KPU averages those codes (truncating)."""
        a = u.attrs
        return (u.inputs[0].dtype == u.outputs[0].dtype == np.dtype(np.uint8) and len(u.outputs) == 1
                and n.attrs.get("neg_multiplier") is None and not any(x.op == "QLut" for x in chain)
                and int(a["act_min"]) == 0 and int(a["act_max"]) == 255 and _scalar_q(u.outputs[0]) is not None
                and self._pool_size(u) > 0 and _covers(_scalar_q(u.outputs[0]), _scalar_q(u.inputs[0])))

    @staticmethod
    def _pool_size(u: Node) -> int:
        from ...ops.nn import pool_node_geometry

        keys = ("kernel_shape", "strides", "pads", "auto_pad", "ceil_mode", "dilations")
        try:
            geo = pool_node_geometry(u.inputs[0].shape, **{k: u.attrs[k] for k in keys if k in u.attrs})
        except Exception:
            return 0
        k = geo.kernel
        if (len(k) != 2 or k[0] != k[1] or k[0] not in (2, 4) or tuple(geo.strides) != (k[0], k[0])
                or any(geo.pads_begin) or any(geo.pads_end) or any(geo.extra) or any(d != 1 for d in geo.dilations)):
            return 0
        return k[0]

    # ------------------------------------------------------------------ planning one layer
    def plan(self, n: Node, spec: ConvSpec) -> _Plan | str:
        chain = self._fusable_chain(n)
        pool_node = next((u for u in chain if u.op in _POOLS), None)
        x = n.inputs[0]
        km = self.kpu.get(id(x)) if spec.s2d is None else None   # space-to-depth comes from the CPU copy
        pt, pl, pb, pr = spec.pads
        tries = []
        if pool_node is not None and spec.stride == 1:
            tries.append(self._pool_size(pool_node))
        tries.append(1)
        for ps in tries:
            fused = chain if ps > 1 else [u for u in chain[:1] if u.op in ("Clip", "QLut")]
            rows = cols = None
            plan = None
            if km is not None and _in_limits(km.rows, False) and _in_limits(km.cols, True):
                r = conv_axis(km.rows, spec.k, spec.stride, pt, pb, ps, False)
                cc = conv_axis(km.cols, spec.k, spec.stride, pl, pr, ps, True)
                if r is not None and cc is not None and r[1] == 0:
                    rows, cols, off = r[0], cc[0], cc[1]
                    plan = _Plan(km, None, rows, cols, self._kpu_pool(spec.stride, ps, off, pool_node), fused)
            if plan is None:
                r = upload_axis(spec.h, spec.k, spec.stride, pt, pb, ps, False)
                cc = upload_axis(spec.w, spec.k, spec.stride, pl, pr, ps, True)
                if r is None or cc is None or r[2] != 0:
                    continue
                plan = _Plan(None, (r[0], cc[0]), r[1], cc[1], self._kpu_pool(spec.stride, ps, cc[2], pool_node),
                             fused)
            plan.lo, plan.hi = clamp_bounds(spec, fused)
            return plan
        in_h, in_w = (km.hw if km is not None else (spec.h, spec.w))
        return (f"no KPU map geometry for this layer (input {spec.h}x{spec.w}, kernel {spec.k}, stride "
                f"{spec.stride}, pads {list(spec.pads)}; the KPU takes maps of {MIN_IN_HEIGHT}..{MAX_IN_HEIGHT} rows "
                f"and {MIN_IN_WIDTH}..{MAX_IN_WIDTH} columns)" if max(in_h, spec.h) <= MAX_IN_HEIGHT
                and max(in_w, spec.w) <= MAX_IN_WIDTH else
                f"input {spec.h}x{spec.w} exceeds the KPU's {MAX_IN_HEIGHT} rows x {MAX_IN_WIDTH} columns "
                "in one layer")

    @staticmethod
    def _kpu_pool(stride: int, ps: int, off: int, pool_node: Node | None = None) -> KpuPool:
        if stride == 2:
            return KpuPool.RIGHT_TOP_2_S2 if off else KpuPool.LEFT_TOP_2_S2
        mean = pool_node is not None and pool_node.op == "QAvgPool"
        if ps == 2:
            return KpuPool.MEAN_2_S2 if mean else KpuPool.MAX_2_S2
        if ps == 4:
            return KpuPool.MEAN_4_S4 if mean else KpuPool.MAX_4_S4
        return KpuPool.BYPASS

    def _will_be_cpu(self, v: Value) -> bool:
        """Whether some reader of ``v`` surely runs on the CPU (or ``v`` is a graph output)."""
        if id(v) in self.outputs:
            return True
        return any(u.op not in _LATER_KPU for u in v.users)

    @staticmethod
    def _feeds_kpu(v: Value) -> bool:
        """Whether some reader of ``v`` may run on the KPU (a CPU result would be uploaded)."""
        return any(u.op in _LATER_KPU for u in v.users)

    def _cost_check(self, n: Node, spec: ConvSpec, plan: _Plan, out_v: Value) -> str | None:
        if not self.use_cost:
            return None
        cpu = spec.macs * cost.CPU_INT_MAC
        # KPU: compute on the whole map + moves
        hm, wm = (plan.src_map.hw if plan.src_map is not None else (plan.upload[0].size, plan.upload[1].size))
        lay = row_layout(wm)
        cg = 1 if spec.depthwise else spec.c
        comp = (math.ceil(spec.m / lay.groups) if spec.depthwise else spec.m * math.ceil(cg / lay.groups)) \
            * hm * lay.row_len
        kpu = cost.KPU_LAYER_OVERHEAD * len(split_channels(spec)) + comp + spec.w_int8.size // 8
        if plan.src_map is None:
            kpu += cost.move_cycles(spec.c * spec.h * spec.w)
        if self._will_be_cpu(out_v):
            kpu += cost.move_cycles(int(np.prod(out_v.shape)))
        if kpu >= cpu:
            return (f"faster on the CPU: about {cost.us(cpu):.1f} us there vs {cost.us(kpu):.1f} us on the KPU "
                    "with the copies to and from AI SRAM")
        return None

    # ------------------------------------------------------------------ emit
    @staticmethod
    def _with_mean_pool(spec: ConvSpec, fused: list, lo: int, hi: int) -> ConvSpec:
        """A fused mean pool: the layer's clamp in real units, written at the pool's output scale."""
        pool = next((u for u in fused if u.op == "QAvgPool"), None)
        if pool is None:
            return spec
        import dataclasses

        s_y, z_y = spec.y_q
        act = {"op": "Clip", "min": (lo - z_y) * s_y, "max": (hi - z_y) * s_y}
        return dataclasses.replace(spec, act_spec=act, y_q=_scalar_q(pool.outputs[0]))

    def _with_lut(self, spec: ConvSpec, fused: list) -> ConvSpec:
        lut = next((u for u in fused if u.op == "QLut"), None)
        if lut is None:
            return spec
        import dataclasses   # the table's activation, straight to the table's output scale

        return dataclasses.replace(spec, act_spec=identify_lut(lut), y_q=_scalar_q(lut.outputs[0]))

    def try_kpu(self, n: Node) -> str | None:
        spec = conv_spec(n) if n.op == "QConv" else gemm_spec(n)
        if isinstance(spec, str) and n.op == "QConv" and spec.startswith("kernel"):
            spec = s2d_spec(n) or spec
        if isinstance(spec, str):
            return spec
        plan = self.plan(n, spec)
        if isinstance(plan, str):
            if spec.gemm or not plan.startswith("input"):
                return plan
            return self.try_tiled(n, spec, plan)
        in_hw = plan.src_map.hw if plan.src_map is not None else (plan.upload[0].size, plan.upload[1].size)
        maps = fmap_bytes(spec.c, *in_hw) + fmap_bytes(spec.m, plan.rows.size, plan.cols.size)
        if maps > TILE_ABOVE_BYTES and not spec.gemm:
            return self.try_tiled(n, spec, f"input and output maps need more than {TILE_ABOVE_BYTES:,} bytes "
                                           "of AI SRAM")
        out_v = plan.fused[-1].outputs[0] if plan.fused else n.outputs[0]
        spec = self._with_mean_pool(self._with_lut(spec, plan.fused), plan.fused, plan.lo, plan.hi)
        why = self._cost_check(n, spec, plan, out_v)
        if why:
            return why
        if plan.src_map is not None:
            in_map = plan.src_map.hw
        else:
            in_map = (plan.upload[0].size, plan.upload[1].size)
        try:
            layers, wts, bn, act, fits = build_layers(spec, (spec.c, *in_map), plan.pool, plan.lo, plan.hi)
        except KpuError as e:
            return f"KPU parameters out of range: {e}"
        if plan.src_map is not None:
            xin = plan.src_map
        else:
            xin = self.upload(n.inputs[0], spec.c, spec.h, spec.w, plan.upload[0], plan.upload[1], spec.x_q[1],
                              s2d=spec.s2d)
        from .encode import KpuLayer

        out_map = KpuLayer.from_words(np.asarray(layers[0]["words"], np.uint64)).out_shape
        out = self.emit_conv(n.name, xin.value, (layers, wts, bn, act, fits), spec=spec, pool=plan.pool,
                             in_map=(spec.c, *in_map), out_map=(spec.m, out_map[1], out_map[2]),
                             act=activation_name(spec, plan.lo, plan.hi),
                             fused=[n.name] + [u.name for u in plan.fused], out_value=out_v)
        for u in plan.fused:
            self.fused_nodes.add(id(u))
        self.kpu[id(out_v)] = KMap(out, spec.m, plan.rows, plan.cols)
        if any(u.op not in _LATER_KPU for u in out_v.users) or id(out_v) in self.outputs:
            self.cpu_value(out_v)      # download right away: the AI SRAM copy can die early
        return None

    def emit_conv(self, name: str, x: Value, built, *, spec: ConvSpec, pool: KpuPool, in_map, out_map,
                  act: str, fused: list[str], out_value: Value, suffix: str = "", **extra) -> Value:
        """A ``KpuConv`` of the layer programs ``built`` (:func:`~.layer_specs.build_layers`'
        result) reading map ``x``: its weight / BN / activation constants, the op (named
        ``name + suffix``, writing ``out_value``'s quantization) and the report entries.
        Returns the output map value."""
        layers, wts, bn, act_words, fits = built
        consts = [self.g.add_const(f"{name}/kpu_{what}{suffix}", a)
                  for what, a in (("weights", wts), ("bn", bn), ("act", act_words))]
        node = self.g.make_node(
            "KpuConv", [x, *consts], name=self._name(name + suffix),
            attrs={"layers": layers, "in_map": list(in_map), "out_map": list(out_map), "kernel": spec.k,
                   "stride": spec.stride, "depthwise": int(spec.depthwise), "pool": pool.name.lower(),
                   "act": act, "fused": list(fused), **extra},
            outputs=[f"{out_value.name}@kpu{suffix.replace('/', '_')}"])
        node.outputs[0].quant = out_value.quant
        self.sources[node.name] = list(fused)
        self.fit_errors[node.name] = max(f.max_error for f in fits)
        return node.outputs[0]

    def try_tiled(self, n: Node, spec: ConvSpec, why: str) -> str | None:
        """Row / column tiles with halos (:mod:`.lower_tiles`)."""
        return try_tiled(self, n, spec, why)

    def cpu_node(self, n: Node, reason: str) -> None:
        ins = [None if v is None else self.cpu_value(v) for v in n.inputs]
        outs = [o.name if o.name not in self.g.values else self._name(o.name) for o in n.outputs]
        node = self.g.make_node(n.op, ins, attrs=dict(n.attrs), name=self._name(n.name), outputs=outs)
        for o, no in zip(n.outputs, node.outputs):
            no.quant = o.quant
            self.cpu[id(o)] = no
        self.reasons[node.name] = reason

    def run(self) -> Graph:
        for v in self.src.inputs:
            nv = self.g.add_input(v.name, v.dtype, v.shape)
            nv.quant = v.quant
            self.cpu[id(v)] = nv
        for n in self.src.nodes:
            if id(n) in self.fused_nodes:
                continue
            if _channel_pad_for_add(n, self.outputs):
                self.deferred[id(n.outputs[0])] = n
                continue
            reason = None
            if n.op in _LATER_KPU:
                lowering = {"QAdd": try_kpu_add, "MaxPool": try_kpu_pool}.get(n.op, K210Lowering.try_kpu)
                reason = lowering(self, n)
                if reason is None:
                    continue
            for v in n.inputs:          # a deferred channel Pad the add did not absorb: on the CPU after all
                pad = self.deferred.pop(id(v), None) if v is not None else None
                if pad is not None:
                    self.cpu_node(pad, cpu_reason(pad))
            self.cpu_node(n, reason or cpu_reason(n))
        self.g.outputs = [self.cpu_value(v) for v in self.src.outputs]
        for v, o in zip(self.src.outputs, self.g.outputs):
            if o.name != v.name and v.name not in self.g.values:
                self.g.rename(o, v.name)
        self.g.prune_values()
        self.g.metadata["k210"] = {"reasons": dict(self.reasons), "sources": dict(self.sources),
                                   "fit_max_error": dict(self.fit_errors)}
        return self.g


def lower_k210(graph: Graph, *, use_cost_model: bool = True, timings: dict | None = None) -> Graph:
    """The KPU rewrite of a quantized graph (see the module docstring)."""
    t0 = time.perf_counter()
    from .spec import AI_SRAM_BYTES

    g = K210Lowering(graph, use_cost_model=use_cost_model).run()
    check_weights(g)
    check_kpu_memory(g, AI_SRAM_BYTES)
    if timings is not None:
        timings["kpu_lowering"] = time.perf_counter() - t0
    return g
