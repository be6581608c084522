"""Graph passes and the pass manager."""
from .manager import Fixpoint, Pass, Pipeline, graph_pass
from .pipelines import pipeline_for

__all__ = ["Fixpoint", "Pass", "Pipeline", "graph_pass", "pipeline_for"]
