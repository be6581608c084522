"""ONNX converters for tensor ops: bring older opsets into the registry's (latest) forms.

* Split: ``split`` attribute (opset < 13) → input; no split and no ``num_outputs`` → the
  node's output count (opset < 18 also requires an even split).
* Slice opset < 10: ``starts``/``ends``/``axes`` attributes → constant inputs.
* Squeeze/Unsqueeze opset < 13: ``axes`` attribute → constant input.
* Pad opset < 11: ``pads``/``value`` attributes → inputs.
* Resize opset 10 and Upsample (7..9): → Resize with ``asymmetric`` coordinates. Their
  nearest rounding (onnxruntime's "simple" mode) is floor when upsampling and ceil when
  downsampling; an axis mix of both becomes two Resize nodes (nearest is separable).
* Resize ≥ 11: empty ``roi``/``scales`` tensors → absent inputs.
* Dropout: the ``ratio``/``is_test`` attributes of opset < 12 are dropped; a requested mask
  output becomes a constant (see :func:`dropout`).
* Scatter (opset 9..10) → ScatterElements.
"""
from __future__ import annotations

import logging

import numpy as np

from .context import ConvertContext, converter

log = logging.getLogger(__name__)


def _int64(values) -> np.ndarray:
    return np.asarray(values, dtype=np.int64).reshape(-1)


# ---------------------------------------------------------------- Split
@converter("Split")
def split(ctx: ConvertContext):
    x = ctx.input(0)
    axis = int(ctx.attrs.get("axis", 0))
    if ctx.opset < 13:
        sp = ctx.attrs.get("split")
        split_in = ctx.const(_int64(sp), "split") if sp else None
    else:
        split_in = ctx.input(1)
        if split_in is not None and split_in.is_const and split_in.size == 0:
            split_in = None
    num_outputs = ctx.attrs.get("num_outputs")
    if split_in is None and num_outputs is None:
        num_outputs = len(ctx.output_names)
        if ctx.opset < 18:
            r = len(x.shape)
            a = axis + r if axis < 0 else axis
            if 0 <= a < r and x.shape[a] % num_outputs:
                raise ctx.error(f"axis {axis} of length {x.shape[a]} does not split evenly into "
                                f"{num_outputs} outputs (opset < 18 requires an even split)")
    return ctx.emit("Split", [x, split_in], {"axis": axis, "num_outputs": num_outputs})


# ---------------------------------------------------------------- Slice, Squeeze, Unsqueeze
@converter("Slice", until=9)
def slice_v1(ctx: ConvertContext):
    a = ctx.attrs
    if "starts" not in a or "ends" not in a:
        raise ctx.error("Slice needs the starts and ends attributes")
    ins = [ctx.input(0), ctx.const(_int64(a["starts"]), "starts"), ctx.const(_int64(a["ends"]), "ends")]
    if a.get("axes") is not None:
        ins.append(ctx.const(_int64(a["axes"]), "axes"))
    return ctx.emit("Slice", ins)


def _axes_attr_to_input(ctx: ConvertContext):
    axes = ctx.attrs.get("axes")
    if axes is None:
        if ctx.op_type == "Unsqueeze":
            raise ctx.error("Unsqueeze needs the axes attribute")
        return ctx.emit(ctx.op_type, [ctx.input(0)])
    return ctx.emit(ctx.op_type, [ctx.input(0), ctx.const(_int64(axes), "axes")])


converter("Squeeze", until=12)(_axes_attr_to_input)
converter("Unsqueeze", until=12)(_axes_attr_to_input)


# ---------------------------------------------------------------- Pad
@converter("Pad", until=10)
def pad_v2(ctx: ConvertContext):
    a = ctx.attrs
    x = ctx.input(0)
    pads = a.get("pads", a.get("paddings"))
    if pads is None:
        raise ctx.error("Pad needs the pads attribute")
    value = np.array(a.get("value", 0.0)).astype(x.dtype)
    return ctx.emit("Pad", [x, ctx.const(_int64(pads), "pads"), ctx.const(value, "value")],
                    {"mode": a.get("mode", "constant")})


# ---------------------------------------------------------------- Resize, Upsample
def _asymmetric_resize(ctx: ConvertContext, x, scales: np.ndarray, mode: str):
    """Upsample / Resize-10 semantics: asymmetric coordinates, out = floor(in · scale)."""
    scales = np.asarray(scales, np.float32).reshape(-1)
    if len(scales) != len(x.shape):
        raise ctx.error(f"scales {scales.tolist()} must have one entry per input dimension ({len(x.shape)})")
    if mode == "bilinear":
        mode = "linear"
    if mode not in ("nearest", "linear"):
        raise ctx.error(f"mode {mode!r} is not supported (nearest, linear)")
    attrs = {"mode": mode, "coordinate_transformation_mode": "asymmetric"}
    if mode != "nearest":
        return ctx.emit("Resize", [x, None, ctx.const(scales, "scales")], attrs)
    up, down = scales >= 1, scales < 1
    if up.all() or down.all():
        attrs["nearest_mode"] = "floor" if up.all() else "ceil"
        return ctx.emit("Resize", [x, None, ctx.const(scales, "scales")], attrs)
    # onnxruntime rounds down on upsampled axes and up on downsampled ones: two passes
    first = np.where(up, scales, np.float32(1))
    second = np.where(up, np.float32(1), scales)
    mid = ctx.emit("Resize", [x, None, ctx.const(first, "scales_up")], dict(attrs, nearest_mode="floor"),
                   outputs=[f"{ctx.output_names[0]}_up"], num_outputs=1)[0]
    return ctx.emit("Resize", [mid, None, ctx.const(second, "scales_down")], dict(attrs, nearest_mode="ceil"))


@converter("Upsample", since=7, until=10)
def upsample(ctx: ConvertContext):
    x = ctx.input(0)
    if ctx.opset < 9:
        if "scales" not in ctx.attrs:
            raise ctx.error("Upsample needs the scales attribute")
        scales = np.asarray(ctx.attrs["scales"], np.float32)
    else:
        scales = ctx.const_value(1, "scales")
    return _asymmetric_resize(ctx, x, scales, ctx.attrs.get("mode", "nearest"))


@converter("Resize", since=10, until=10)
def resize_v10(ctx: ConvertContext):
    return _asymmetric_resize(ctx, ctx.input(0), ctx.const_value(1, "scales"), ctx.attrs.get("mode", "nearest"))


@converter("Resize", since=11)
def resize_v11(ctx: ConvertContext):
    ins = list(ctx.inputs) + [None] * (4 - len(ctx.inputs))
    for i in (1, 2, 3):  # empty roi/scales/sizes tensors mean "absent"
        v = ins[i]
        if v is not None and v.is_const and v.size == 0:
            ins[i] = None
    if ctx.attrs.get("coordinate_transformation_mode") != "tf_crop_and_resize":
        ins[1] = None  # roi only matters for tf_crop_and_resize
    return ctx.emit("Resize", ins, ctx.attrs)


# ---------------------------------------------------------------- Dropout, Scatter
@converter("Dropout")
def dropout(ctx: ConvertContext):
    """Inference Dropout: output 0 is the input. The optional mask becomes a constant, as
    onnxruntime computes it: all True from opset 12, all False (or 0 in the input's type
    before opset 10) for the older opsets."""
    x = ctx.input(0)
    attrs = {"seed": ctx.attrs["seed"]} if "seed" in ctx.attrs else {}
    ins = [x] if ctx.opset < 12 else list(ctx.inputs)
    if ctx.opset >= 12 and ctx.input(2) is not None:
        tm = ctx.input(2)
        if not tm.is_const or bool(np.asarray(tm.const).reshape(-1)[0]):
            log.warning("%s: Dropout %r has training_mode set; npuc compiles for inference and "
                        "treats it as identity", ctx.importer.path, ctx.name)
    if len(ctx.output_names) < 2:
        return ctx.emit("Dropout", ins, attrs)
    y = ctx.emit("Dropout", ins, attrs, outputs=[ctx.output_names[0]], num_outputs=1)[0]
    mask_dtype = np.bool_ if ctx.opset >= 10 else x.dtype
    mask = ctx.graph.add_const(ctx.output_names[1], np.full(x.shape, ctx.opset >= 12, mask_dtype))
    return [y, mask]


@converter("Scatter", since=9, until=10)
def scatter(ctx: ConvertContext):
    return ctx.emit("ScatterElements", ctx.inputs, {"axis": ctx.attrs.get("axis", 0)})
