"""The intermediate representation: Value, Node, Graph, the verifier and a printer."""
from .graph import Graph, Node, QuantParams, Value
from .printer import format_graph
from .verify import verify

__all__ = ["Graph", "Node", "QuantParams", "Value", "format_graph", "verify"]
