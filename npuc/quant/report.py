"""Accuracy reports: the quantized model against the float model, per layer and per output.

Both models run on the same samples with :meth:`Session.run_observed`; a quantized tensor
is matched to the float tensor of the same name (the quantize pass keeps names) and
dequantized with its own scale and zero point. Per tensor the report accumulates over all
samples: cosine similarity, relative error ‖f − q‖ / ‖f‖ and max absolute error.
"""
from __future__ import annotations

import csv
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np

log = logging.getLogger(__name__)


@dataclass
class LayerError:
    name: str
    op: str
    dtype: str
    cosine: float
    rel_error: float
    max_abs_error: float
    order: int

    def as_row(self) -> dict:
        return {"order": self.order, "tensor": self.name, "op": self.op, "dtype": self.dtype,
                "cosine": f"{self.cosine:.6f}", "relative_error": f"{self.rel_error:.6g}",
                "max_abs_error": f"{self.max_abs_error:.6g}"}


class _Acc:
    __slots__ = ("dot", "ff", "qq", "dd", "maxabs")

    def __init__(self):
        self.dot = self.ff = self.qq = self.dd = 0.0
        self.maxabs = 0.0

    def add(self, f: np.ndarray, q: np.ndarray):
        f = f.astype(np.float64).ravel()
        q = q.astype(np.float64).ravel()
        self.dot += float(f @ q)
        self.ff += float(f @ f)
        self.qq += float(q @ q)
        d = f - q
        self.dd += float(d @ d)
        self.maxabs = max(self.maxabs, float(np.abs(d).max(initial=0.0)))

    def cosine(self) -> float:
        den = np.sqrt(self.ff * self.qq)
        if den == 0:
            return 1.0 if self.dd == 0 else 0.0
        return float(self.dot / den)

    def rel(self) -> float:
        return float(np.sqrt(self.dd / self.ff)) if self.ff > 0 else float(np.sqrt(self.dd))


def _dequant(view: np.ndarray, quant: dict) -> np.ndarray:
    s = np.asarray(quant["scale"], np.float64)
    z = np.asarray(quant["zero_point"], np.float64)
    axis = quant.get("axis")
    if axis is not None and s.size > 1:
        shape = [1] * view.ndim
        shape[axis] = s.size
        s, z = s.reshape(shape), z.reshape(shape)
    return (view.astype(np.float64) - z) * s


def layer_errors(float_session, quant_session, samples: Iterable[Mapping[str, np.ndarray]]) -> list[LayerError]:
    """Per-tensor errors of ``quant_session`` against ``float_session`` over ``samples``."""
    qprog = quant_session.program
    qinfo = {t.name: t for t in qprog.tensors if t.quant is not None or np.dtype(t.dtype).kind == "f"}
    op_of = {}
    for i, op in enumerate(qprog.ops):
        for t in op.outputs:
            op_of[qprog.tensors[t].name] = (i, op.op)
    accs: dict[str, _Acc] = {}
    for sample in samples:
        fvals: dict[str, np.ndarray] = {}

        def keep_float(name, view):
            if name in op_of and view.dtype.kind == "f":
                fvals[name] = view.copy()

        float_session.run_observed(dict(sample), keep_float)

        def compare(name, view):
            f = fvals.get(name)
            t = qinfo.get(name)
            if f is None or t is None or name not in op_of:
                return
            q = _dequant(view, t.quant) if t.quant is not None else view
            if q.shape != f.shape:
                return
            accs.setdefault(name, _Acc()).add(f, q)

        quant_session.run_observed({k: np.asarray(v) for k, v in sample.items()}, compare)
    rows = []
    for name, acc in accs.items():
        i, op = op_of[name]
        rows.append(LayerError(name, op, qinfo[name].dtype, acc.cosine(), acc.rel(), acc.maxabs, i))
    rows.sort(key=lambda r: r.order)
    return rows


def write_csv(rows: list[LayerError], path) -> None:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", dir=str(p.parent))
    with os.fdopen(fd, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(LayerError("", "", "", 0, 0, 0, 0).as_row()))
        w.writeheader()
        for r in rows:
            w.writerow(r.as_row())
    os.replace(tmp, p)


def write_plot(rows: list[LayerError], path) -> bool:
    """A PNG of per-layer cosine and relative error; False when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.info("matplotlib is not installed: no plot (pip install 'npuc[plot]')")
        return False
    fig, ax1 = plt.subplots(figsize=(max(6, len(rows) * 0.18), 4))
    x = np.arange(len(rows))
    ax1.plot(x, [r.cosine for r in rows], "o-", ms=3, label="cosine")
    ax1.set_ylabel("cosine vs float")
    ax1.set_xlabel("layer (schedule order)")
    ax2 = ax1.twinx()
    ax2.plot(x, [r.rel_error for r in rows], "s-", ms=3, color="tab:red", label="relative error")
    ax2.set_ylabel("relative error")
    ax1.set_title("per-layer quantization error")
    fig.tight_layout()
    p = Path(path)
    fig.savefig(p.with_suffix(".tmp.png"))
    plt.close(fig)
    os.replace(p.with_suffix(".tmp.png"), p)
    return True


def output_cosines(float_session, quant_session, samples) -> dict[str, float]:
    """Cosine per graph output over all samples (outputs compared after dequantization)."""
    accs: dict[str, _Acc] = {}
    for s in samples:
        f = float_session.run(dict(s))
        q = quant_session.run(dict(s))
        for k, v in f.items():
            accs.setdefault(k, _Acc()).add(v, q[k])
    return {k: a.cosine() for k, a in accs.items()}
