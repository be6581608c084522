"""A simple time model of the K210: KPU layers vs the RISC-V cores, and the moves between.

It is coarse on purpose (no public cycle-accurate description of the KPU exists); its job
is to rank choices (run a layer on the KPU, or leave it on the CPU?) and to give a
per-layer and total estimate that ``npuc inspect`` shows. All figures are cycles at
400 MHz (KPU and CPU clocks as the SDK configures them by default).

KPU layer
    ``overhead + compute + weight streaming``:

    * ``KPU_LAYER_OVERHEAD`` cycles per layer (the layer-argument FIFO push, the weight
      load set-up, the completion interrupt);
    * compute: the KPU reads one 64-byte AI SRAM row of one input channel group per cycle
      for every output channel, the k×k window being evaluated in parallel, so a layer
      takes ``M · ceil(C_g / groups) · H · row_len`` cycles (``C_g`` = input channels per
      group: C, or 1 when depthwise; ``groups``/``row_len`` of the input width's row
      layout: narrow maps pack 2 or 4 channels in a row);
    * weights stream from general SRAM at ``KPU_WEIGHT_BYTES_PER_CYCLE`` (64-bit bus).

CPU (one RV64GC core, scalar code as nncase's fallback kernels)
    * integer multiply-accumulate: ``CPU_INT_MAC`` cycles; float: ``CPU_FLOAT_MAC``;
    * elementwise integer ops (requantizing add, LUT, clamp...): ``CPU_INT_ELEMENT``
      cycles per output element; float elementwise ``CPU_FLOAT_ELEMENT``; transcendental
      float (exp, sigmoid, softmax...) ``CPU_TRANSCENDENTAL``;
    * data movement (transpose, concat, pad, slice, AI SRAM upload/download with the row
      layout change): ``CPU_BYTE_MOVE`` cycles per byte; views (reshape, flatten) are free.
"""
from __future__ import annotations

import math

import numpy as np

CLOCK_HZ = 400e6
KPU_LAYER_OVERHEAD = 2000
KPU_WEIGHT_BYTES_PER_CYCLE = 8
CPU_INT_MAC = 4
CPU_FLOAT_MAC = 6
CPU_INT_ELEMENT = 8
CPU_FLOAT_ELEMENT = 16
CPU_TRANSCENDENTAL = 60
CPU_BYTE_MOVE = 2

_VIEWS = frozenset({"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Dropout"})
_MOVES = frozenset({"Transpose", "Concat", "Pad", "Slice", "Split", "Gather", "Tile", "Expand", "Resize",
                    "DepthToSpace", "SpaceToDepth", "KpuUpload", "KpuDownload", "GatherElements"})
_TRANSCENDENTAL = frozenset({"Softmax", "LogSoftmax", "Sigmoid", "Tanh", "Exp", "Log", "Erf", "Gelu", "Swish",
                             "Mish", "Softplus", "Elu", "Selu", "Celu", "HardSwish", "Sqrt", "Pow", "Reciprocal",
                             "LayerNormalization", "InstanceNormalization"})
_INT_MAC_OPS = frozenset({"QConv", "QGemm", "QMatMul", "ConvInteger", "MatMulInteger"})
_FLOAT_MAC_OPS = frozenset({"Conv", "Gemm", "MatMul", "ConvTranspose"})


def us(cycles: float) -> float:
    """Microseconds of ``cycles`` at the 400 MHz clock."""
    return float(cycles) / CLOCK_HZ * 1e6


def kpu_layer_cycles(words) -> int:
    """Cycles of one KPU layer from its register words."""
    from .encode import KpuLayer

    L = KpuLayer.from_words(np.asarray(words, np.uint64))
    c, h, _ = L.in_shape
    m = L.out_channels
    cg = 1 if L.depthwise else c
    groups = L.coef_group
    compute = m * math.ceil(cg / groups) * h * L.row_switch_addr
    if L.depthwise:   # one pass over each channel: channels of a row group run together
        compute = math.ceil(m / groups) * h * L.row_switch_addr
    return int(KPU_LAYER_OVERHEAD + compute + math.ceil(L.weight_bytes / KPU_WEIGHT_BYTES_PER_CYCLE))


def _prod(shape) -> int:
    return int(np.prod(shape, dtype=np.int64)) if shape is not None else 0


def cpu_op_cycles(op: str, attrs: dict, in_shapes: list, in_dtypes: list, out_shapes: list,
                  out_dtypes: list) -> int:
    """Cycles of one op on a RISC-V core (``in_shapes`` may hold None for absent inputs)."""
    out_elems = sum(_prod(s) for s in out_shapes)
    out_bytes = sum(_prod(s) * np.dtype(d).itemsize for s, d in zip(out_shapes, out_dtypes))
    if op in _VIEWS:
        return 0
    if op in ("QConv", "Conv", "ConvInteger"):
        w = in_shapes[1]
        macs = out_elems * _prod(w[1:])
        return macs * (CPU_INT_MAC if op != "Conv" else CPU_FLOAT_MAC)
    if op in ("QGemm", "Gemm", "QMatMul", "MatMul", "MatMulInteger"):
        a = in_shapes[0]
        k = a[-1] if not (op == "Gemm" and attrs.get("transA")) else a[0]
        return out_elems * int(k) * (CPU_FLOAT_MAC if op in _FLOAT_MAC_OPS else CPU_INT_MAC)
    if op in _MOVES:
        return out_bytes * CPU_BYTE_MOVE
    if op in ("MaxPool", "AveragePool", "QAvgPool"):
        k = _prod(attrs.get("kernel_shape") or [1])
        return out_elems * k * 2
    if op in ("QMean", "ReduceMean", "GlobalAveragePool", "GlobalMaxPool", "ReduceMax", "ReduceSum"):
        return sum(_prod(s) for s in in_shapes if s is not None) * 2 + out_elems * CPU_INT_ELEMENT
    floating = any(np.dtype(d).kind == "f" for d in out_dtypes)
    if op in _TRANSCENDENTAL:
        return out_elems * CPU_TRANSCENDENTAL
    if op in ("QuantizeLinear", "DequantizeLinear", "Requantize"):
        return out_elems * 12
    return out_elems * (CPU_FLOAT_ELEMENT if floating else CPU_INT_ELEMENT)


def node_cycles(node) -> int:
    """Cycles of an IR node on the CPU (KPU ops: their layers)."""
    if node.op == "KpuConv":
        return sum(kpu_layer_cycles(lay["words"]) for lay in node.attrs["layers"])
    ins = [None if v is None else v.shape for v in node.inputs]
    dts = [np.uint8 if v is None else v.dtype for v in node.inputs]
    return cpu_op_cycles(node.op, node.attrs, ins, dts, [o.shape for o in node.outputs],
                         [o.dtype for o in node.outputs])


def program_op_cycles(program, op) -> int:
    """Cycles of a :class:`~npuc.format.schema.OpEntry` of a compiled program."""
    if op.op == "KpuConv":
        return sum(kpu_layer_cycles(lay["words"]) for lay in op.attrs["layers"])
    t = program.tensors
    ins = [None if i < 0 else t[i].shape for i in op.inputs]
    dts = [np.uint8 if i < 0 else t[i].dtype for i in op.inputs]
    return cpu_op_cycles(op.op, op.attrs, ins, dts, [t[i].shape for i in op.outputs], [t[i].dtype for i in op.outputs])


def move_cycles(nbytes: int) -> int:
    """Cycles of an upload or download of ``nbytes`` (CPU-side bytes)."""
    return int(nbytes) * CPU_BYTE_MOVE
