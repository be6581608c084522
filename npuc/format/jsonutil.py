"""JSON encoding of op attributes (numpy scalars and arrays included), exact for floats."""
from __future__ import annotations

import json
from typing import Any

import numpy as np


def encode_attr(x: Any) -> Any:
    if isinstance(x, np.ndarray):
        return {"__ndarray__": x.tolist(), "dtype": str(x.dtype), "shape": list(x.shape)}
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, (list, tuple)):
        return [encode_attr(v) for v in x]
    if isinstance(x, dict):
        return {str(k): encode_attr(v) for k, v in x.items()}
    return x


def decode_attr(x: Any) -> Any:
    if isinstance(x, dict):
        if "__ndarray__" in x:
            return np.array(x["__ndarray__"], dtype=x["dtype"]).reshape(x["shape"])
        return {k: decode_attr(v) for k, v in x.items()}
    if isinstance(x, list):
        return [decode_attr(v) for v in x]
    return x


def dumps(obj: Any) -> bytes:
    return json.dumps(encode_attr(obj), separators=(",", ":"), allow_nan=True).encode("utf-8")


def loads(b: bytes) -> Any:
    return json.loads(b.decode("utf-8"))
