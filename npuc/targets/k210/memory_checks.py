"""Memory checks of a lowered k210 graph: weights against the 6 MB general SRAM, live KPU
feature maps against the 2 MB AI SRAM; each refusal names the biggest offenders."""
from __future__ import annotations

from ...errors import NpucError
from ...ir import Graph, Value
from .spec import MAIN_SRAM_BYTES


class MainSramError(NpucError):
    """The model's weights (or weights + CPU tensors) do not fit the 6 MB general SRAM."""


def check_weights(graph: Graph, capacity: int = MAIN_SRAM_BYTES) -> None:
    """Refuse a model whose constants alone exceed general SRAM, naming the biggest."""
    consts = list(graph.constants())
    total = sum(v.nbytes for v in consts)
    if total <= capacity:
        return
    big = [v for v in sorted(consts, key=lambda v: -v.nbytes)[:5] if v.nbytes * 100 >= total] or consts[:1]
    names = ", ".join(f"{v.name!r} {v.nbytes / 2**20:.2f} MB" for v in big)
    raise MainSramError(
        f"the model's weights need {total:,} bytes ({total / 2**20:.2f} MB) but the K210's general SRAM holds "
        f"{capacity:,} bytes ({capacity / 2**20:.0f} MB), {total - capacity:,} bytes over, before any CPU tensor or "
        f"the program itself; largest: {names}. Use a smaller model (fewer channels or layers), or prune / "
        "share weights: the K210 has no external RAM.")


def kpu_peak(graph: Graph) -> tuple[int, int, list[tuple[Value, int]]]:
    """The AI SRAM lower bound of a lowered graph: ``(bytes, step, [(map, bytes) live there])``,
    with the lifetimes :func:`npuc.lowering.lower` gives (producer step to last reader;
    graph outputs to the end)."""
    from ...memory import Buffer, peak

    first, last, vals = {}, {}, {}
    steps = len(graph.nodes)
    for i, n in enumerate(graph.nodes):
        for v in n.inputs:
            if v is not None and id(v) in first:
                last[id(v)] = max(last[id(v)], i)
        if n.op in ("KpuConv", "KpuUpload"):
            o = n.outputs[0]
            first[id(o)] = last[id(o)] = i
            vals[id(o)] = o
    for v in graph.outputs:
        if id(v) in last:
            last[id(v)] = steps
    if not vals:
        return 0, 0, []
    bufs = [Buffer(k, v.nbytes, first[k], last[k], "kpu", 64) for k, v in vals.items()]
    lb, step, live = peak(bufs)["kpu"]
    return lb, step, [(vals[k], vals[k].nbytes) for k in live]


class KpuMemoryError(NpucError):
    """The feature maps the KPU needs at one step exceed the 2 MB AI SRAM."""


def check_kpu_memory(graph: Graph, capacity: int) -> None:
    lb, step, live = kpu_peak(graph)
    if lb <= capacity:
        return
    node = graph.nodes[min(step, len(graph.nodes) - 1)]
    items = ", ".join(f"{v.name!r} {b:,} B" for v, b in live[:6])
    raise KpuMemoryError(
        f"AI SRAM: {lb:,} bytes of KPU feature maps are live at once but the K210 has {capacity:,} "
        f"({lb - capacity:,} bytes over), at step {step} ({node.op} {node.name!r}); live there: {items}"
        f"{' and more' if len(live) > 6 else ''}. Lower the input resolution or the channel count of the layers "
        "there, or reorder branches so fewer maps are live together.")
