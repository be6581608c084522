"""npuc: a neural-network compiler for edge AI accelerators.

Public API::

    npuc.compile("model.onnx", "model.npuc", input_shapes={"input": [1, 3, 224, 224]})
    sess = npuc.load("model.npuc")
    outputs = sess.run({"input": x})
"""
from .api import CompileReport, compile, load
from .errors import NpucError
from .runtime.session import Session, TensorSpec

__version__ = "0.1.0"
__all__ = ["CompileReport", "NpucError", "Session", "TensorSpec", "compile", "load", "__version__"]
