"""Data types of IR values: plain numpy dtypes, with the ONNX element-type mapping."""
from __future__ import annotations

import numpy as np

from ..errors import NpucError

#: dtypes a tensor in the IR may have
SUPPORTED = tuple(
    np.dtype(t)
    for t in (
        "float32", "float64", "float16", "int8", "uint8", "int16", "uint16",
        "int32", "uint32", "int64", "uint64", "bool",
    )
)

# ONNX TensorProto.DataType codes (stable numbers from onnx.proto)
ONNX_TO_NUMPY = {
    1: np.dtype("float32"),
    2: np.dtype("uint8"),
    3: np.dtype("int8"),
    4: np.dtype("uint16"),
    5: np.dtype("int16"),
    6: np.dtype("int32"),
    7: np.dtype("int64"),
    9: np.dtype("bool"),
    10: np.dtype("float16"),
    11: np.dtype("float64"),
    12: np.dtype("uint32"),
    13: np.dtype("uint64"),
}
NUMPY_TO_ONNX = {v: k for k, v in ONNX_TO_NUMPY.items()}


def to_dtype(x) -> np.dtype:
    """Normalize a dtype-like (name, numpy type, dtype) into a supported ``np.dtype``."""
    try:
        dt = np.dtype(x)
    except TypeError as e:
        raise NpucError(f"unknown dtype {x!r}") from e
    if dt not in SUPPORTED:
        raise NpucError(f"dtype {dt} is not supported; supported: {', '.join(map(str, SUPPORTED))}")
    return dt


def from_onnx(code: int) -> np.dtype:
    try:
        return ONNX_TO_NUMPY[code]
    except KeyError:
        raise NpucError(f"ONNX element type {code} is not supported") from None


def is_float(dt: np.dtype) -> bool:
    return np.dtype(dt).kind == "f"


def is_int(dt: np.dtype) -> bool:
    return np.dtype(dt).kind in "iu"
