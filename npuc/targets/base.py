"""The Target protocol: what a target contributes to compilation."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import OptionError


@dataclass(frozen=True)
class PoolSpec:
    name: str
    capacity: int | None = None    # bytes; None = unbounded (host memory)
    alignment: int = 64


@dataclass(frozen=True)
class Target:
    name: str
    description: str
    pools: tuple[PoolSpec, ...] = field(default_factory=lambda: (PoolSpec("main"),))

    def pipeline(self):
        from ..passes.pipelines import pipeline_for

        return pipeline_for(self.name)


_TARGETS: dict[str, Target] = {}


def register_target(t: Target) -> Target:
    _TARGETS[t.name] = t
    return t


def get_target(name: str) -> Target:
    from . import cpu  # noqa: F401  (registers the built-in targets)

    try:
        return _TARGETS[name]
    except KeyError:
        raise OptionError(f"unknown target {name!r}; choose one of: {', '.join(sorted(_TARGETS))}") from None


def target_names() -> list[str]:
    from . import cpu  # noqa: F401

    return sorted(_TARGETS)
from .k210 import target as _k210_target  # noqa: E402,F401  (registers the k210 target)
