"""Calibration: run the optimized float graph on the calibration set with the fast runtime
and feed every intermediate tensor to an observer; then read each tensor's clipping range.

The float graph is compiled as it is (no further passes) into a Session whose
``run_observed`` hands each op's output to the observers right after the op ran, so a
calibration pass costs about one float inference per sample plus the observers' work.
"""
from __future__ import annotations

import contextlib
import logging
import tempfile
from pathlib import Path
from typing import Callable, Iterable, Mapping

import numpy as np

from ..ir import Graph
from .observers import make_observer
from .qparams import QType

log = logging.getLogger(__name__)


@contextlib.contextmanager
def single_blas_thread():
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl is a dependency
        yield
        return
    with threadpool_limits(1, user_api="blas"):
        yield


def float_session(graph: Graph, target: str = "cpu"):
    """A Session running ``graph`` exactly as given (no passes)."""
    from ..format.writer import write_program
    from ..lowering import lower
    from ..runtime.session import load
    from ..targets import get_target

    with tempfile.TemporaryDirectory(prefix="npuc-calib-") as d:
        path = Path(d) / "float.npuc"
        write_program(lower(graph, get_target(target)), path)
        return load(path)


class Calibrator:
    """Observers for every float tensor of a graph, fed one sample at a time."""

    def __init__(self, graph: Graph, method: str = "minmax", **observer_options):
        self.graph = graph
        self.method = method
        self.options = observer_options
        self.session = float_session(graph)
        self.observers: dict[str, object] = {}
        self.wanted = {v.name for v in graph.inputs if v.dtype.kind == "f"}
        for n in graph.nodes:
            for o in n.outputs:
                if o.dtype.kind == "f":
                    self.wanted.add(o.name)
        self.samples = 0

    def _observe(self, name: str, view: np.ndarray) -> None:
        if name not in self.wanted:
            return
        obs = self.observers.get(name)
        if obs is None:
            obs = self.observers[name] = make_observer(self.method, **self.options)
        obs.update(view)

    def update(self, sample: Mapping[str, np.ndarray]) -> None:
        self.session.run_observed(dict(sample), self._observe)
        self.samples += 1

    def run(self, samples: Iterable[Mapping[str, np.ndarray]], progress: Callable[[int], None] | None = None):
        # one BLAS thread: multi-threaded GEMMs sum in a thread-count-dependent order, which
        # moved calibrated ranges in the 7th digit and made compiles differ between machines
        # with different core counts
        with single_blas_thread():
            for i, s in enumerate(samples):
                self.update(s)
                if progress:
                    progress(i + 1)
        return self

    def ranges(self, precision_of: Callable[[str], str], *, int8_symmetric: bool = False
               ) -> dict[str, tuple[float, float]]:
        """Clipping range per tensor for the precision it will be quantized to."""
        out = {}
        graph_outputs = {v.name for v in self.graph.outputs}
        for name, obs in self.observers.items():
            if name in graph_outputs:
                # never clip what the user reads: a graph output keeps its full range
                out[name] = (min(float(obs.min), 0.0), max(float(obs.max), 0.0))
                continue
            prec = precision_of(name)
            if prec == "float":
                qt, sym = QType.INT16, True  # not quantized: any range (kept for reports)
            else:
                qt = QType(prec)
                sym = qt == QType.INT16 or (qt == QType.INT8 and int8_symmetric)
            lo, hi = obs.range(signed=qt.signed, bits=qt.bits, symmetric=sym)
            out[name] = (float(lo), float(hi))
        return out
