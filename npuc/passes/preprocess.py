"""Preprocessing folded into the model (as nncase users expect).

For every 4-D image input ``X`` of the model (NCHW, float32), :func:`add_preprocessing`
replaces it by a raw input ``R`` and inserts, in this order:

1. **type**: ``R`` has ``input_type`` (uint8, int8 or float32); integer data is mapped
   linearly onto ``input_range`` = [lo, hi]: ``x = lo + (r − qmin) · (hi − lo) / (qmax − qmin)``
   (for uint8 and the default range [0, 255] that is a plain cast);
2. **layout**: ``R`` is NHWC when ``input_layout`` is NHWC (transposed to NCHW);
3. **swap_rb**: the channel order is reversed (RGB ↔ BGR);
4. **letterbox**: when ``image_size`` (H', W') differs from the model's H×W, the image is
   resized (bilinear, half-pixel) by one factor s = min(H/H', W/W') and padded to H×W with
   ``letterbox_value``, centred;
5. **normalize**: ``(x − mean[c]) / std[c]``.

All of it is ordinary graph ops (Cast, Mul, Add, Transpose, Gather, Resize, Pad), so it is
optimized, quantized and run like the rest of the model.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..errors import OptionError
from ..ir import Graph, Value


@dataclass(frozen=True)
class Preprocess:
    input_type: str = "float32"
    input_layout: str = "NCHW"
    swap_rb: bool = False
    input_range: tuple[float, float] | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    letterbox_value: float = 0.0
    image_size: tuple[int, int] | None = None

    @property
    def active(self) -> bool:
        return (self.input_type != "float32" or self.input_layout != "NCHW" or self.swap_rb
                or self.input_range is not None or self.mean is not None or self.std is not None
                or self.image_size is not None)

    def validate(self) -> None:
        if self.input_type not in ("uint8", "int8", "float32"):
            raise OptionError(f"--input-type {self.input_type!r}: choose uint8, int8 or float32")
        if self.input_layout not in ("NCHW", "NHWC"):
            raise OptionError(f"--input-layout {self.input_layout!r}: choose NCHW or NHWC")
        if self.input_range is not None:
            lo, hi = self.input_range
            if not lo < hi:
                raise OptionError(f"--input-range {lo},{hi}: MIN must be below MAX")
        if self.std is not None and any(s == 0 for s in self.std):
            raise OptionError("--std values must be non-zero")
        if self.image_size is not None and any(d <= 0 for d in self.image_size):
            raise OptionError("--image-size must be positive")


def _per_channel(vals: Sequence[float] | None, c: int, what: str) -> np.ndarray | None:
    if vals is None:
        return None
    v = np.asarray(vals, np.float32).reshape(-1)
    if v.size == 1:
        v = np.repeat(v, c)
    if v.size != c:
        raise OptionError(f"{what} has {v.size} values, the input has {c} channels")
    return v.reshape(1, c, 1, 1)


def add_preprocessing(graph: Graph, pp: Preprocess) -> list[str]:
    """Rewrite every 4-D float input; returns the names of the inputs changed."""
    pp.validate()
    if not pp.active:
        return []
    changed = []
    for idx, x in enumerate(list(graph.inputs)):
        if x.rank != 4 or x.dtype != np.float32:
            continue
        n, c, h, w = x.shape
        ih, iw = pp.image_size or (h, w)
        raw_shape = (n, c, ih, iw) if pp.input_layout == "NCHW" else (n, ih, iw, c)
        raw = Value(x.name, pp.input_type, raw_shape)
        graph.rename(x, graph.unique_name(f"{x.name}_model"))
        graph.values[raw.name] = raw
        graph.inputs[idx] = raw
        pos = 0

        def add(op, ins, attrs=None, _name=x.name):
            nonlocal pos
            node = graph.make_node(op, ins, attrs=attrs or {}, name=graph.unique_name(f"preprocess/{op}"),
                                   index=pos)
            pos += 1
            return node.outputs[0]

        def const(a):
            return graph.add_const("preprocess_c", np.asarray(a))

        v = raw
        if pp.input_type != "float32":
            v = add("Cast", [v], {"to": 1})
            info = np.iinfo(np.dtype(pp.input_type))
            # default range: the integer codes themselves (a plain cast)
            lo, hi = pp.input_range or (float(info.min), float(info.max))
            scale = (hi - lo) / (info.max - info.min)
            offset = lo - info.min * scale
            if scale != 1.0:
                v = add("Mul", [v, const(np.float32(scale))])
            if offset != 0.0:
                v = add("Add", [v, const(np.float32(offset))])
        elif pp.input_range is not None:
            raise OptionError("--input-range applies to integer --input-type (uint8/int8)")
        if pp.input_layout == "NHWC":
            v = add("Transpose", [v], {"perm": [0, 3, 1, 2]})
        if pp.swap_rb:
            if c != 3:
                raise OptionError(f"--swap-rb needs 3 channels, input {x.name!r} has {c}")
            v = add("Gather", [v, const(np.array([2, 1, 0], np.int64))], {"axis": 1})
        if (ih, iw) != (h, w):
            s = min(h / ih, w / iw)
            rh, rw = max(1, int(round(ih * s))), max(1, int(round(iw * s)))
            v = add("Resize", [v, None, None, const(np.array([n, c, rh, rw], np.int64))],
                    {"mode": "linear", "coordinate_transformation_mode": "half_pixel"})
            top, left = (h - rh) // 2, (w - rw) // 2
            pads = np.array([0, 0, top, left, 0, 0, h - rh - top, w - rw - left], np.int64)
            if np.any(pads):
                v = add("Pad", [v, const(pads), const(np.float32(pp.letterbox_value))], {"mode": "constant"})
        m = _per_channel(pp.mean, c, "--mean")
        sd = _per_channel(pp.std, c, "--std")
        if m is not None:
            v = add("Sub", [v, const(m)])
        if sd is not None:
            v = add("Mul", [v, const((1.0 / sd).astype(np.float32))])
        graph.replace_all_uses(x, v)
        changed.append(raw.name)
    graph.metadata["preprocess"] = str(pp)
    return changed
