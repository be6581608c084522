"""The ``k210`` target: Kendryte K210 (KPU + two RV64GC cores, 2 MB AI SRAM + 6 MB SRAM).

* memory pools: ``kpu`` (the 2 MB AI SRAM: every KPU feature map, in its row layout,
  64-byte aligned so its address fits the layer words' 64-byte units) and ``main`` (the
  6 MB general SRAM: CPU tensors, model inputs and outputs, kernel scratch, and — checked
  after planning — the model's constants: the arena plus the constants must fit);
* quantization: uint8 activations (the KPU's only feature-map type), int8 symmetric
  per-channel weights, i.e. per-channel scales with one shared zero point, which is
  exactly the KPU's uint8 weights with zero point 128; a calibration data set is required;
* lowering: :func:`npuc.targets.k210.lower.lower_k210` after quantization, then the
  generic :func:`npuc.lowering.lower` with the hooks below (pool per value, kernel choice,
  and :meth:`K210Target.finish_program`: the planned AI SRAM addresses written into the
  layer words, the general SRAM budget check, the placement report in the file's META).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from ...errors import MemoryPlanError, OptionError
from ..base import PoolSpec, Target, register_target
from .spec import AI_SRAM_BYTES, MAIN_SRAM_BYTES, ROW_BYTES

KPU_POOL = "kpu"
MAIN_POOL = "main"
_MAP_PRODUCERS = ("KpuConv", "KpuUpload")
#: host kernels may repack constants for speed (e.g. int8 weights as float32 BLAS panels);
#: on the chip the CPU reads them as stored, so a k210 file keeps the raw constants and such
#: ops run on the registry's reference kernel instead (bytes of growth allowed before switching)
_PACK_SLACK = 16 * 1024
#: likewise a host kernel's scratch (im2col panels...) is not what the chip's CPU kernels need
_SCRATCH_LIMIT = 64 * 1024


@dataclass(frozen=True)
class K210Target(Target):
    """The K210: the Target protocol plus the lowering hooks of :func:`npuc.lowering.lower`."""

    def pipeline(self):
        from ...passes.pipelines import pipeline_for

        return pipeline_for(self.name, quantize=True)

    # ---------------------------------------------------------------- lowering hooks
    @staticmethod
    def value_pool(v) -> str:
        """KPU feature maps (outputs of KpuConv / KpuUpload, and Concats of them) live in AI SRAM."""
        p = v.producer
        if p is not None and p.op == "Concat" and p.inputs and all(   # the pair map of a KPU add
                K210Target.value_pool(x) == KPU_POOL for x in p.inputs if x is not None):
            return KPU_POOL
        return KPU_POOL if p is not None and p.op in _MAP_PRODUCERS else MAIN_POOL

    @staticmethod
    def select_kernel(node):
        from ...runtime.kernels.base import REFERENCE, select_kernel

        k = select_kernel(node)
        if node.op.startswith("Kpu") or k is REFERENCE:
            return k
        prep = k.prepare(node)
        if prep.scratch > _SCRATCH_LIMIT:     # e.g. an im2col buffer: the chip's kernels convolve directly
            return REFERENCE
        if not prep.packed:
            return k
        raw = sum(node.inputs[s].nbytes for s in prep.packed if node.inputs[s] is not None)
        packed = sum(a.nbytes for a in prep.packed.values())
        return k if packed <= raw + _PACK_SLACK else REFERENCE

    def finish_program(self, program, graph):
        return finish_program(program, graph)


#: the capacities (2 MB, 6 MB) are checked by :func:`finish_program` with the K210's own report
#: (names of the layers and tensors, constants included), not by the generic planner
K210 = register_target(K210Target(
    "k210", "Kendryte K210: KPU (uint8 conv layers, emulated bit-exactly) + RISC-V CPU fallback",
    (PoolSpec(KPU_POOL, None, ROW_BYTES), PoolSpec(MAIN_POOL, None, 64))))
CAPACITY = {KPU_POOL: AI_SRAM_BYTES, MAIN_POOL: MAIN_SRAM_BYTES}


# ---------------------------------------------------------------- options
def k210_options(opts):
    """k210 compile options: uint8 activations by default; a data set (or a complete
    quantization scheme) is required; the KPU computes uint8 only."""
    qt = opts.quant_type or "uint8"
    if qt != "uint8":
        raise OptionError(f"--quant-type {qt}: the K210's KPU computes uint8 feature maps only; leave it out "
                          "(uint8 is the k210 default) or compile for --target cpu")
    if opts.w_quant_type != "int8":
        raise OptionError("--w-quant-type uint8: the KPU has one weight zero point per layer, so k210 weights are "
                          "quantized symmetric per channel (int8, stored as uint8 with zero point 128); leave the "
                          "option out")
    if not opts.dataset and not opts.quant_scheme:
        raise OptionError("the k210 target quantizes the model to uint8 (the KPU's type) and needs calibration "
                          "data: give --dataset CALIB (an .npz whose keys are the input names, or a folder of "
                          ".npy/.bin/images)")
    return dataclasses.replace(opts, quant_type="uint8")


def quant_config(opts, overrides=None):
    """The k210 :class:`~npuc.quant.quantize.QuantConfig`: uint8 activations, symmetric int8
    weights per output channel (= uint8 with the KPU's single zero point 128)."""
    from ...quant.quantize import QuantConfig

    return QuantConfig(act_type="uint8", act_symmetric=False, weight_type="int8",
                       per_channel=not opts.per_tensor_weights, overrides=dict(overrides or {}))


# ---------------------------------------------------------------- after planning
class MainSramBudgetError(MemoryPlanError):
    """Constants + the general SRAM arena exceed the K210's 6 MB (or the AI SRAM placement its 2 MB)."""


def finish_program(program, graph):
    """Write the planned AI SRAM addresses into the layer words, check the general SRAM
    budget (constants + arena) and store the placement report in the program's META."""
    from ...format.schema import PoolEntry
    from .encode import KpuLayer

    if "k210" not in graph.metadata:
        raise OptionError("a k210 program is built from a quantized graph lowered for the KPU: compile with "
                          "npuc.compile(model, out, target='k210', dataset=...) (the CLI: -t k210 --dataset)")
    t = program.tensors
    for op in program.ops:
        if op.op != "KpuConv":
            continue
        src, dst = t[op.inputs[0]], t[op.outputs[0]]
        new = []
        for lay in op.attrs["layers"]:
            L = KpuLayer.from_words(np.asarray(lay["words"], np.uint64))
            a_in = src.offset + int(lay["in_offset"])
            a_out = dst.offset + int(lay["out_offset"])
            L = L.replace(image_src_addr=a_in // ROW_BYTES, image_dst_addr=a_out // ROW_BYTES)
            new.append({**lay, "words": [int(w) for w in L.to_words()]})
        op.attrs = {**op.attrs, "layers": new}
    names = {p.name for p in program.pools}
    if KPU_POOL not in names:
        program.pools.append(PoolEntry(KPU_POOL, 0, 0, ROW_BYTES, None, "empty"))
    if MAIN_POOL not in names:
        program.pools.append(PoolEntry(MAIN_POOL, 0, 0, 64, None, "empty"))
    for p in program.pools:
        p.capacity = CAPACITY.get(p.name, p.capacity)
    consts = sum(a.nbytes for _, a in program.constants)
    main = next(p for p in program.pools if p.name == MAIN_POOL)
    kpu = next(p for p in program.pools if p.name == KPU_POOL)
    info = dict(graph.metadata.get("k210") or {})
    info["constants_bytes"] = int(consts)
    program.meta["k210"] = info
    if kpu.size > AI_SRAM_BYTES:     # the lower bound fits (checked by the lowering): the placement does not
        raise MainSramBudgetError(
            f"AI SRAM: the placement of the KPU feature maps needs {kpu.size:,} bytes but the K210 has "
            f"{AI_SRAM_BYTES:,} ({kpu.size - AI_SRAM_BYTES:,} bytes over) although {kpu.lower_bound:,} bytes would "
            "be enough at every step; reorder branches of the model or lower the input resolution.")
    if consts + main.size > MAIN_SRAM_BYTES:
        big = [x for x in sorted(((a.nbytes, t[tid].name) for tid, a in program.constants), reverse=True)[:5]
               if x[0] * 100 >= consts]
        names = ", ".join(f"{n!r} {b / 2**20:.2f} MB" for b, n in big)
        over = consts + main.size - MAIN_SRAM_BYTES
        step, live = main_peak(program)
        at = program.ops[min(step, len(program.ops) - 1)] if program.ops else None
        where = (f" The CPU tensors peak at step {step} ({at.op} {at.name!r}), where "
                 + ", ".join(f"{t[i].name!r} {t[i].nbytes:,} B" for i in live[:5])
                 + (" and more" if len(live) > 5 else "") + " are live.") if at is not None and live else ""
        largest = f" Largest constants: {names}." if consts * 10 >= consts + main.size else ""
        raise MainSramBudgetError(
            f"general SRAM: the model needs {consts + main.size:,} bytes ({consts:,} of constants + {main.size:,} "
            f"of CPU tensors and I/O) but the K210 has {MAIN_SRAM_BYTES:,} ({over:,} bytes over).{largest}{where} "
            "Reduce the weights (a smaller model) or the CPU tensors (lower input resolution, uint8 instead of "
            "float input, fewer CPU fallback layers).")
    return program


def main_peak(program) -> tuple[int, list[int]]:
    """The step where the most general SRAM arena bytes are live, and those tensors (ids,
    largest first), from the program's op order (inputs live from step 0, outputs to the end)."""
    t = program.tensors
    first, last = {}, {}
    for i in program.inputs:
        first[i] = last[i] = 0
    for s, op in enumerate(program.ops):
        for i in op.inputs:
            if i >= 0 and t[i].kind == "arena" and t[i].pool == MAIN_POOL:
                first.setdefault(i, s)
                last[i] = s
        for i in list(op.outputs) + ([op.scratch] if op.scratch >= 0 else []):
            first.setdefault(i, s)
            last[i] = max(last.get(i, s), s)
    for i in program.outputs:
        last[i] = len(program.ops)
    best, best_step = -1, 0
    for s in range(len(program.ops)):
        tot = sum(t[i].nbytes for i in first if first[i] <= s <= last[i] and t[i].pool == MAIN_POOL)
        if tot > best:
            best, best_step = tot, s
    live = sorted((i for i in first if first[i] <= best_step <= last[i] and t[i].pool == MAIN_POOL),
                  key=lambda i: -t[i].nbytes)
    return best_step, live
