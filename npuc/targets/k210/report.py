"""The k210 placement report: where each op runs, why, what moves between the pools, and
the estimated time on the chip (:mod:`.cost`).

Built from a compiled :class:`~npuc.format.schema.Program` alone (its ops, tensors, pools
and the ``k210`` entry the lowering stored in META: the reason of every CPU op and the
quantized nodes each KPU op implements), so ``npuc inspect`` and ``npuc compile`` show
the same figures.
"""
from __future__ import annotations

from . import cost
from .spec import AI_SRAM_BYTES, MAIN_SRAM_BYTES

_MOVES = ("KpuUpload", "KpuDownload")


def placement(program) -> dict:
    """``{"ops": [...], "totals": {...}}`` for a k210 program (see :func:`summary`)."""
    info = program.meta.get("k210") or {}
    reasons = info.get("reasons", {})
    sources = info.get("sources", {})
    fit = info.get("fit_max_error", {})
    t = program.tensors
    ops = []
    tot = {"kpu_ops": 0, "kpu_layers": 0, "cpu_ops": 0, "transfers": 0, "bytes_to_kpu": 0, "bytes_from_kpu": 0,
           "kpu_us": 0.0, "cpu_us": 0.0, "transfer_us": 0.0}
    for op in program.ops:
        cyc = cost.program_op_cycles(program, op)
        e = {"name": op.name, "op": op.op}
        if op.op == "KpuConv":
            e.update(where="kpu", layers=len(op.attrs["layers"]), implements=sources.get(op.name, [op.name]),
                     in_map=op.attrs["in_map"], out_map=op.attrs["out_map"], kernel=op.attrs["kernel"],
                     stride=op.attrs["stride"], depthwise=bool(op.attrs["depthwise"]), pool=op.attrs["pool"],
                     activation=op.attrs["act"])
            if op.name in fit:
                e["activation_fit_max_error"] = fit[op.name]
            tot["kpu_ops"] += 1
            tot["kpu_layers"] += len(op.attrs["layers"])
            tot["kpu_us"] += cost.us(cyc)
        elif op.op in _MOVES:
            cpu_side = t[op.inputs[0]] if op.op == "KpuUpload" else t[op.outputs[0]]
            e.update(where="cpu", transfer="to_kpu" if op.op == "KpuUpload" else "from_kpu",
                     bytes=cpu_side.nbytes, reason=reasons.get(op.name, "copy between AI SRAM and general SRAM"))
            tot["transfers"] += 1
            tot["bytes_to_kpu" if op.op == "KpuUpload" else "bytes_from_kpu"] += cpu_side.nbytes
            tot["transfer_us"] += cost.us(cyc)
        elif op.op == "Concat" and op.kernel == "concat_in_place" and all(
                t[i].pool == "kpu" for i in op.outputs):
            # the pair map of a KPU add: its producers wrote the maps side by side, nothing runs
            cyc = 0
            e.update(where="kpu", in_place=True, reason="two KPU maps side by side in AI SRAM, written there by "
                                                       "their layers (no copy)")
        else:
            e.update(where="cpu", reason=reasons.get(op.name, f"{op.op} has no KPU equivalent"))
            tot["cpu_ops"] += 1
            tot["cpu_us"] += cost.us(cyc)
        e["est_us"] = round(cost.us(cyc), 2)
        ops.append(e)
    tot["bytes_moved"] = tot["bytes_to_kpu"] + tot["bytes_from_kpu"]
    tot["est_ms"] = round((tot["kpu_us"] + tot["cpu_us"] + tot["transfer_us"]) / 1000.0, 3)
    for k in ("kpu_us", "cpu_us", "transfer_us"):
        tot[k] = round(tot[k], 1)
    return {"ops": ops, "totals": tot, "cost_model": "npuc.targets.k210.cost (400 MHz; coarse)"}


def memory(program) -> dict:
    """Usage of both pools: ``kpu`` (AI SRAM) and ``main`` (general SRAM: arena + constants)."""
    consts = sum(x.nbytes for x in program.tensors if x.kind == "const")
    pools = {p.name: p for p in program.pools}
    out = {}
    k = pools.get("kpu")
    out["kpu"] = {"bytes": k.size if k else 0, "capacity": AI_SRAM_BYTES,
                  "lower_bound_bytes": k.lower_bound if k else 0, "strategy": k.strategy if k else "empty"}
    m = pools.get("main")
    arena = m.size if m else 0
    lb = m.lower_bound if m else 0
    out["main"] = {"bytes": arena + consts, "capacity": MAIN_SRAM_BYTES, "lower_bound_bytes": lb + consts,
                   "arena_bytes": arena, "constants_bytes": consts, "strategy": m.strategy if m else "empty"}
    return out


def augment_inspect(info: dict, program) -> dict:
    """Add the k210 placement and pool usage to ``npuc inspect``'s dictionary."""
    info["placement"] = placement(program)
    info.setdefault("memory", {})["pools"] = {**info.get("memory", {}).get("pools", {}), **memory(program)}
    return info


def summary(program, *, top: int = 6) -> str:
    """A short human summary: layers on each side, CPU reasons, moves, memory, time."""
    p = placement(program)
    tot = p["totals"]
    mem = memory(program)
    k, m = mem["kpu"], mem["main"]
    lines = [f"k210: {tot['kpu_ops']} KPU op(s) as {tot['kpu_layers']} KPU layer(s), {tot['cpu_ops']} CPU op(s), "
             f"{tot['transfers']} copies moving {tot['bytes_moved']:,} bytes between AI SRAM and general SRAM",
             f"  AI SRAM: {k['bytes']:,} of {k['capacity']:,} bytes (lower bound {k['lower_bound_bytes']:,}); "
             f"general SRAM: {m['bytes']:,} of {m['capacity']:,} bytes ({m['constants_bytes']:,} constants + "
             f"{m['arena_bytes']:,} tensors)",
             f"  estimated time: {tot['est_ms']:.2f} ms (KPU {tot['kpu_us'] / 1000:.2f}, CPU "
             f"{tot['cpu_us'] / 1000:.2f}, copies {tot['transfer_us'] / 1000:.2f})"]
    cpu = [e for e in p["ops"] if e["where"] == "cpu" and "transfer" not in e]
    if cpu:
        lines.append("  on the CPU:")
        by_reason: dict[str, list] = {}
        for e in cpu:
            by_reason.setdefault(e["reason"], []).append(e)
        for reason, es in sorted(by_reason.items(), key=lambda kv: -sum(x["est_us"] for x in kv[1]))[:top]:
            names = ", ".join(x["name"] for x in es[:3]) + (f" (+{len(es) - 3})" if len(es) > 3 else "")
            lines.append(f"    {len(es)} x {es[0]['op']}: {reason} [{names}]")
        if len(by_reason) > top:
            lines.append(f"    ... {len(by_reason) - top} more reason(s): npuc inspect --json lists every op")
    return "\n".join(lines)
