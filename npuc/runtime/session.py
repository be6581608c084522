"""The Session: runs a compiled program inside one preallocated arena per pool.

At load time every tensor becomes a view (into an arena, or into the mapped constants) and
every op a closure bound to those views. ``run`` copies the inputs in, calls the closures
in order and copies the outputs out: in steady state it allocates nothing else (kernels
that still use the reference path are the exception, listed by ``Session.fallback_ops``).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import InputError, KernelError, NpucError
from ..format.reader import const_view, read_program
from ..format.schema import CONST, Program
from .kernels.base import Binding, kernel_by_name
from .kernels.epilogue import make_epilogue
from ..ops.registry import get_op

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TensorSpec:
    """A model input or output: ``name``, ``shape`` (tuple) and ``dtype`` (numpy dtype)."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype

    def __repr__(self) -> str:
        return f"TensorSpec(name={self.name!r}, shape={list(self.shape)}, dtype={self.dtype})"


def _aligned_zeros(nbytes: int, align: int = 64) -> np.ndarray:
    raw = np.zeros(nbytes + align, np.uint8)
    start = (-raw.ctypes.data) % align
    return raw[start:start + nbytes]


def _chain(first, second):
    if first is None:
        raise KernelError("an aliasing op cannot carry a fused activation")

    def run():
        first()
        second()
    return run


class Session:
    """Runs a compiled model. Create with :func:`npuc.load`."""

    def __init__(self, program: Program, *, threads: int | None = None, path: str | None = None):
        self.program = program
        self.path = path
        self.threads = threads
        self._arenas = {p.name: _aligned_zeros(max(p.size, 1), p.alignment) for p in program.pools}
        self._views: list[np.ndarray] = [self._view(t) for t in program.tensors]
        self.inputs = [self._spec(i) for i in program.inputs]
        self.outputs = [self._spec(i) for i in program.outputs]
        self._in_views = [self._views[i] for i in program.inputs]
        self._out_views = [self._views[i] for i in program.outputs]
        self._steps: list[tuple[str, Callable[[], None]]] = []
        self._op_fns: list[Callable[[], None] | None] = []   # one per program op (None: alias)
        self.fallback_ops: list[str] = []
        for op in program.ops:
            kernel = kernel_by_name(op.kernel)
            b = Binding(op.name, op.op, op.attrs,
                        [None if i < 0 else self._views[i] for i in op.inputs],
                        [self._views[i] for i in op.outputs],
                        None if op.scratch < 0 else self._views[op.scratch], threads or 1)
            try:
                fn = kernel.build(b)
            except NpucError:
                raise
            except Exception as e:
                raise KernelError(f"op {op.name!r} ({op.op}, kernel {op.kernel}): cannot bind: {e}") from e
            if op.kernel == "reference":
                self.fallback_ops.append(op.name)
            act = op.attrs.get("activation") if "epilogue" in get_op(op.op).flags else None
            if act and not kernel.handles_activation:
                fn = _chain(fn, make_epilogue(act, b.outputs[0]))
            if fn is not None:
                self._steps.append((op.name, fn))
            self._op_fns.append(fn)

    def _spec(self, tid: int) -> TensorSpec:
        t = self.program.tensors[tid]
        return TensorSpec(t.name, tuple(t.shape), np.dtype(t.dtype))

    def _view(self, t) -> np.ndarray:
        if t.kind == CONST:
            return const_view(self.program, t)
        arena = self._arenas[t.pool]
        dt = np.dtype(t.dtype)
        return arena[t.offset:t.offset + t.nbytes].view(dt).reshape(t.shape)

    # ------------------------------------------------------------------ running
    def _check_feeds(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        if not isinstance(feeds, dict):
            raise InputError("Session.run takes a dict {input name: array}")
        names = [s.name for s in self.inputs]
        expected = ", ".join(f"{s.name}: {s.dtype}{list(s.shape)}" for s in self.inputs)
        unknown = [k for k in feeds if k not in names]
        missing = [n for n in names if n not in feeds]
        if unknown or missing:
            parts = []
            if missing:
                parts.append(f"missing input(s) {missing}")
            if unknown:
                parts.append(f"unknown input(s) {unknown}")
            raise InputError(f"{'; '.join(parts)}; the model expects {expected}")
        arrays = []
        for s in self.inputs:
            a = feeds[s.name]
            if not isinstance(a, np.ndarray):
                a = np.asarray(a)
            if tuple(a.shape) != s.shape:
                raise InputError(f"input {s.name!r} has shape {list(a.shape)}, the model expects "
                                 f"{list(s.shape)} ({expected})")
            if a.dtype != s.dtype:
                # accepted: lossless casts, and float64 → float32 (numpy's default float);
                # never a narrowing integer cast, which could wrap silently
                lossless = np.can_cast(a.dtype, s.dtype, casting="safe")
                if not (lossless or (a.dtype.kind == "f" and s.dtype.kind == "f")):
                    raise InputError(f"input {s.name!r} has dtype {a.dtype}, the model expects {s.dtype} "
                                     f"({expected})")
            arrays.append(a)
        return arrays

    def run(self, feeds: dict[str, np.ndarray], outputs: list[str] | None = None) -> dict[str, np.ndarray]:
        """Run the model on ``feeds`` ({input name: array}); returns {output name: array}."""
        arrays = self._check_feeds(feeds)
        for v, a in zip(self._in_views, arrays):
            np.copyto(v, a, casting="same_kind")
        self._run_steps()
        if outputs is None:
            return {s.name: v.copy() for s, v in zip(self.outputs, self._out_views)}
        byname = {s.name: v for s, v in zip(self.outputs, self._out_views)}
        missing = [o for o in outputs if o not in byname]
        if missing:
            raise InputError(f"unknown output(s) {missing}; the model has {list(byname)}")
        return {o: byname[o].copy() for o in outputs}

    def _run_steps(self) -> None:
        for name, fn in self._steps:
            try:
                fn()
            except NpucError:
                raise
            except Exception as e:  # a kernel bug must name the op
                raise KernelError(f"op {name!r} failed: {type(e).__name__}: {e}") from e

    def run_observed(self, feeds: dict[str, np.ndarray], observe: Callable[[str, np.ndarray], None]) -> None:
        """Run once, calling ``observe(tensor name, view)`` for each op output right after the
        op ran (views into the arena: read them inside the callback, they are reused later).
        Used by calibration and per-layer error reports."""
        arrays = self._check_feeds(feeds)
        for v, a in zip(self._in_views, arrays):
            np.copyto(v, a, casting="same_kind")
        for t in self.program.inputs:
            observe(self.program.tensors[t].name, self._views[t])
        for op, fn in zip(self.program.ops, self._op_fns):
            if fn is not None:
                fn()
            for t in op.outputs:
                observe(self.program.tensors[t].name, self._views[t])

    def profile(self, feeds: dict[str, np.ndarray], runs: int = 1) -> list[tuple[str, float]]:
        """Per-op time in seconds (mean over ``runs``), in schedule order."""
        arrays = self._check_feeds(feeds)
        for v, a in zip(self._in_views, arrays):
            np.copyto(v, a, casting="same_kind")
        acc = {name: 0.0 for name, _ in self._steps}
        for _ in range(runs):
            for name, fn in self._steps:
                t0 = time.perf_counter()
                fn()
                acc[name] += time.perf_counter() - t0
        return [(n, t / runs) for n, t in acc.items()]

    @property
    def arena_bytes(self) -> int:
        return sum(p.size for p in self.program.pools)

    def __repr__(self) -> str:
        return f"<npuc.Session {self.path or ''} inputs={self.inputs} outputs={self.outputs}>"


def load(path: str | Path, *, threads: int | None = None, verify: bool = False) -> Session:
    """Map a .npuc file and return a :class:`Session` ready to run."""
    program = read_program(path, verify=verify)
    return Session(program, threads=threads, path=str(path))
