"""The literal pass pipelines, one per target."""
from __future__ import annotations

from .cleanup import dead_code_elimination, eliminate_identity
from .fold import fold_constants
from .manager import Fixpoint, Pipeline


def basic_cleanup() -> Fixpoint:
    return Fixpoint("cleanup", (fold_constants, eliminate_identity, dead_code_elimination))


def cpu_pipeline() -> Pipeline:
    """The float graph optimizations for the ``cpu`` target."""
    return Pipeline("cpu", [basic_cleanup()])


def pipeline_for(target: str) -> Pipeline:
    if target == "cpu":
        return cpu_pipeline()
    return cpu_pipeline()
