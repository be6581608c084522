"""The pass manager.

A pass is a function ``Graph -> bool`` (the graph is rewritten in place; the result says
whether anything changed), wrapped in :class:`Pass` with a name. A :class:`Pipeline` is a
literal list of passes and nested fixpoint groups, written out per target in
:mod:`npuc.passes.pipelines`. The manager can dump the graph after every pass
(``--dump-dir``) and, in tests, verify the IR after every pass.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence, Union

from ..ir import Graph, format_graph, verify

log = logging.getLogger(__name__)

PassFn = Callable[[Graph], bool]


@dataclass(frozen=True)
class Pass:
    name: str
    fn: PassFn

    def __call__(self, graph: Graph) -> bool:
        return bool(self.fn(graph))


@dataclass(frozen=True)
class Fixpoint:
    """Run ``passes`` in order, repeatedly, until a whole round changes nothing."""

    name: str
    passes: tuple[Union[Pass, "Fixpoint"], ...]
    max_rounds: int = 20


Step = Union[Pass, Fixpoint]


def graph_pass(name: str | None = None):
    """Decorator turning ``fn(graph) -> bool`` into a :class:`Pass`."""

    def deco(fn: PassFn) -> Pass:
        return Pass(name or fn.__name__, fn)

    return deco


@dataclass
class PassRecord:
    name: str
    changed: bool
    seconds: float
    op_count: int


@dataclass
class Pipeline:
    name: str
    steps: Sequence[Step]
    records: list[PassRecord] = field(default_factory=list)

    def run(self, graph: Graph, *, dump_dir: str | Path | None = None, verify_each: bool = False) -> Graph:
        self.records = []
        self._dump_dir = Path(dump_dir) if dump_dir else None
        self._counter = 0
        self._verify = verify_each
        if self._dump_dir:
            self._dump_dir.mkdir(parents=True, exist_ok=True)
            self._dump(graph, "input")
        for step in self.steps:
            self._run_step(step, graph)
        return graph

    def _run_step(self, step: Step, graph: Graph) -> bool:
        if isinstance(step, Fixpoint):
            any_change = False
            for _ in range(step.max_rounds):
                changed = False
                for s in step.passes:
                    changed |= self._run_step(s, graph)
                any_change |= changed
                if not changed:
                    break
            else:
                log.warning("pass group %s did not converge in %d rounds", step.name, step.max_rounds)
            return any_change
        t0 = time.perf_counter()
        changed = step(graph)
        dt = time.perf_counter() - t0
        self.records.append(PassRecord(step.name, changed, dt, len(graph.nodes)))
        if self._verify:
            verify(graph)
        if changed and self._dump_dir:
            self._dump(graph, step.name)
        return changed

    def _dump(self, graph: Graph, label: str) -> None:
        path = self._dump_dir / f"{self._counter:03d}_{label}.txt"
        self._counter += 1
        path.write_text(format_graph(graph))
