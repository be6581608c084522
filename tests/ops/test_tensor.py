"""Tensor-manipulation ops: reference kernels + converters vs onnxruntime."""
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from npuc.errors import ModelImportError
from npuc.frontends.onnx import import_onnx
from npuc.ops.registry import get_op, ops_with_flag
from npuc.ops.tensor import normalize_slice, resize_source_coords, slice_output_shape

from .ort_check import check_op, make_model, run_npuc_reference

rng = np.random.default_rng(0)

INT64_MAX = np.iinfo(np.int64).max
INT64_MIN = np.iinfo(np.int64).min


def f32(*shape):
    return rng.standard_normal(shape).astype(np.float32)


def i64(*values):
    return np.array(values, np.int64)


# ---------------------------------------------------------------- registry flags
def test_flags():
    views = ops_with_flag("view")
    for op in ("Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Dropout"):
        assert op in views
    assert {"Shape", "Size"} <= ops_with_flag("shape_only")
    assert get_op("Reshape").const_inputs == (1,)
    assert get_op("Slice").const_inputs == (1, 2, 3, 4)
    assert set(get_op("Resize").const_inputs) >= {2, 3}


# ---------------------------------------------------------------- Concat, Split
@pytest.mark.parametrize("axis", [0, 1, -1])
def test_concat(axis):
    shapes = [[2, 3, 4], [2, 3, 4], [2, 3, 4]]
    for s, n in zip(shapes, (1, 2, 3)):
        s[axis] = n
    check_op("Concat", {f"x{i}": f32(*s) for i, s in enumerate(shapes)}, {"axis": axis}, opset=13)


def test_concat_const_and_int():
    a = rng.integers(0, 9, (2, 3)).astype(np.int64)
    b = rng.integers(0, 9, (1, 3)).astype(np.int64)
    check_op("Concat", {"a": a, "b": b}, {"axis": 0}, const_inputs=("b",))


@pytest.mark.parametrize("opset,attrs,split,n", [
    (11, {"axis": 1}, None, 3),
    (11, {"axis": 1, "split": [1, 4, 1]}, None, 3),
    (11, {"axis": -1}, None, 5),
    (13, {"axis": 1}, None, 2),
    (13, {"axis": 1}, [2, 4], 2),
    (13, {"axis": 0}, [1, 1], 2),
    (18, {"axis": 1, "num_outputs": 4}, None, 4),   # 6 = 2+2+2+0? no: ceil(6/4)=2 → 2,2,2,0
    (18, {"axis": 1, "num_outputs": 3}, None, 3),
    (18, {"axis": 2}, [3, 1, 1], 3),
])
def test_split(opset, attrs, split, n):
    x = f32(2, 6, 5)
    if attrs.get("num_outputs") == 4:
        x = f32(2, 7, 5)   # ceil(7/4) = 2 → 2, 2, 2, 1
    inputs = {"x": x}
    if split is not None:
        inputs["split"] = i64(*split)
    check_op("Split", inputs, attrs, n_outputs=n, opset=opset, const_inputs=("split",))


def test_split_uneven_before_18_fails():
    model = make_model("Split", {"x": f32(5, 2)}, {"axis": 0}, n_outputs=2, opset=13)
    with pytest.raises(ModelImportError, match="evenly"):
        import_onnx("<test>", model=model)


# ---------------------------------------------------------------- Slice
SLICES = [
    # starts, ends, axes, steps
    ([1, 0], [3, 4], [0, 1], None),
    ([-3], [-1], [2], None),
    ([0], [INT64_MAX], [1], None),
    ([-100], [100], [2], None),
    ([3], [0], [1], [-1]),
    ([-1], [INT64_MIN], [2], [-2]),
    ([10], [-10], [2], [-3]),
    ([0, 1], [INT64_MAX, 5], [0, 2], [2, 3]),
    ([2], [1], [1], [1]),            # empty
    ([1], [3], [-1], None),          # negative axis (opset >= 11)
    ([0, 0, 0], [2, 3, 4], None, None),  # axes absent
]


# opset 9 Slice has no steps and no negative axes
SLICE_CASES = [(13, c) for c in range(len(SLICES))] + \
    [(9, c) for c, (_, _, axes, steps) in enumerate(SLICES) if steps is None and not (axes and min(axes) < 0)]


@pytest.mark.parametrize("opset,case", SLICE_CASES)
def test_slice(opset, case):
    starts, ends, axes, steps = SLICES[case]
    x = f32(3, 5, 7)
    if opset < 10:
        attrs = {"starts": starts, "ends": ends}
        if axes is not None:
            attrs["axes"] = axes
        check_op("Slice", {"x": x}, attrs, opset=opset)
        return
    inputs = {"x": x, "starts": i64(*starts), "ends": i64(*ends)}
    if axes is not None:
        inputs["axes"] = i64(*axes)
    if steps is not None:
        if axes is None:
            inputs["axes"] = i64(*range(len(starts)))
        inputs["steps"] = i64(*steps)
    check_op("Slice", inputs, opset=opset, const_inputs=("starts", "ends", "axes", "steps"))


def test_normalize_slice():
    p = normalize_slice((5,), [INT64_MAX], [INT64_MIN], [0], [-1])
    assert p == [(4, -1, -1)] and slice_output_shape(p) == (5,)
    assert slice_output_shape(normalize_slice((5, 6), [1], [-1], None, None)) == (3, 6)
    with pytest.raises(ValueError, match="step"):
        normalize_slice((5,), [0], [1], [0], [0])


def test_slice_dynamic_starts_fails():
    model = make_model("Slice", {"x": f32(4, 4), "s": i64(1), "e": i64(3)}, opset=13, const_inputs=("e",))
    with pytest.raises(ModelImportError, match="constant"):
        import_onnx("<test>", model=model)


# ---------------------------------------------------------------- Gather family
@pytest.mark.parametrize("axis,ind", [
    (0, np.array([0, 2, -1], np.int64)),
    (1, np.array([[0, 1], [-2, 3]], np.int64)),
    (-1, np.array(2, np.int64)),
    (2, np.array([[4], [0]], np.int32)),
])
def test_gather(axis, ind):
    check_op("Gather", {"x": f32(3, 4, 5), "i": ind}, {"axis": axis})


def test_gather_const_indices():
    check_op("Gather", {"x": f32(3, 4), "i": i64(1, -1)}, {"axis": 1}, const_inputs=("i",))


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_gather_elements(axis):
    x = f32(3, 4, 5)
    shape = [3, 4, 5]
    shape[axis] = 2
    d = x.shape[axis]
    ind = rng.integers(-d, d, shape).astype(np.int64)
    check_op("GatherElements", {"x": x, "i": ind}, {"axis": axis}, opset=13)


@pytest.mark.parametrize("batch_dims,ishape,k", [(0, (2,), 2), (0, (3, 1), 1), (0, (2, 2, 3), 3),
                                                 (1, (2, 3, 1), 1), (1, (2, 2), 2)])
def test_gather_nd(batch_dims, ishape, k):
    x = f32(2, 3, 4)
    ind = np.stack([rng.integers(0, x.shape[batch_dims + j], ishape[:-1]) for j in range(k)], -1)
    ind = ind.reshape(ishape).astype(np.int64)
    check_op("GatherND", {"x": x, "i": ind}, {"batch_dims": batch_dims}, opset=13)


@pytest.mark.parametrize("reduction,opset", [(None, 13), ("none", 16), ("add", 16), ("mul", 16),
                                             ("max", 18), ("min", 18)])
def test_scatter_nd(reduction, opset):
    x = f32(4, 3, 2)
    if reduction in (None, "none"):
        ind = np.array([[1], [3]], np.int64)
    else:
        ind = np.array([[1, 0], [3, 2], [1, 0]], np.int64)  # duplicates are reduced
    upd = f32(*(ind.shape[:-1] + x.shape[ind.shape[-1]:]))
    attrs = {} if reduction is None else {"reduction": reduction}
    check_op("ScatterND", {"x": x, "i": ind, "u": upd}, attrs, opset=opset)


@pytest.mark.parametrize("axis", [0, 1, -1])
@pytest.mark.parametrize("reduction,opset", [(None, 11), ("none", 16), ("add", 16), ("mul", 16),
                                             ("max", 18), ("min", 18)])
def test_scatter_elements(axis, reduction, opset):
    x = f32(3, 4)
    shape = [2, 3]
    d = x.shape[axis]
    if reduction in (None, "none"):   # unique indices along axis per position
        ind = np.stack([rng.permutation(d)[:shape[0]] for _ in range(shape[1])], 1) if axis == 0 else \
            np.stack([rng.permutation(d)[:shape[1]] for _ in range(shape[0])], 0)
        ind = ind - d * (rng.random(ind.shape) < 0.5)  # some negative
    else:
        ind = rng.integers(-d, d, shape)
    attrs = {"axis": axis}
    if reduction is not None:
        attrs["reduction"] = reduction
    check_op("ScatterElements", {"x": x, "i": ind.astype(np.int64), "u": f32(*shape)}, attrs, opset=opset)


def test_scatter_opset9():
    x = f32(3, 4)
    ind = np.array([[1, 0, 2, 1]], np.int64)
    check_op("Scatter", {"x": x, "i": ind, "u": f32(1, 4)}, {"axis": 0}, opset=9)


# ---------------------------------------------------------------- views
@pytest.mark.parametrize("shape,allowzero", [
    ([6, 4], 0), ([-1], 0), ([0, -1], 0), ([2, 0, 2, -1], 0), ([3, 2, 2, 2], 1), ([1, -1, 4], 1),
])
def test_reshape(shape, allowzero):
    attrs = {"allowzero": allowzero} if allowzero else {}
    check_op("Reshape", {"x": f32(2, 3, 4), "s": i64(*shape)}, attrs, opset=14, const_inputs=("s",))


def test_reshape_bad_shape_message():
    model = make_model("Reshape", {"x": f32(2, 3, 4), "s": i64(5, -1)}, const_inputs=("s",))
    with pytest.raises(ModelImportError, match=r"cannot reshape \(2, 3, 4\)"):
        import_onnx("<test>", model=model)


@pytest.mark.parametrize("axis", [0, 1, 2, 3, -1, -3])
def test_flatten(axis):
    check_op("Flatten", {"x": f32(2, 3, 4)}, {"axis": axis}, opset=13)


@pytest.mark.parametrize("opset", [11, 13])
@pytest.mark.parametrize("axes", [None, [0], [0, -2], [3]])
def test_squeeze(opset, axes):
    x = f32(1, 3, 1, 1)
    if opset < 13:
        check_op("Squeeze", {"x": x}, {} if axes is None else {"axes": axes}, opset=opset)
    else:
        inputs = {"x": x} if axes is None else {"x": x, "a": i64(*axes)}
        check_op("Squeeze", inputs, opset=opset, const_inputs=("a",))


@pytest.mark.parametrize("opset", [11, 13])
@pytest.mark.parametrize("axes", [[0], [0, 3], [-1], [1, -1]])
def test_unsqueeze(opset, axes):
    x = f32(3, 4)
    if opset < 13:
        check_op("Unsqueeze", {"x": x}, {"axes": axes}, opset=opset)
    else:
        check_op("Unsqueeze", {"x": x, "a": i64(*axes)}, opset=opset, const_inputs=("a",))


def test_unsqueeze_scalar_const():
    check_op("Unsqueeze", {"x": np.array(3.0, np.float32), "a": i64(0)}, opset=13, const_inputs=("a",))


def test_squeeze_non_one_axis_fails():
    model = make_model("Squeeze", {"x": f32(2, 3), "a": i64(0)}, opset=13, const_inputs=("a",))
    with pytest.raises(ModelImportError, match="size is not 1"):
        import_onnx("<test>", model=model)


@pytest.mark.parametrize("perm", [None, [0, 2, 1, 3], [3, 1, 0, 2]])
def test_transpose(perm):
    check_op("Transpose", {"x": f32(2, 3, 4, 5)}, {} if perm is None else {"perm": perm})


def test_identity():
    check_op("Identity", {"x": f32(2, 3)})
    check_op("Identity", {"x": rng.integers(0, 5, (4,)).astype(np.int32)}, opset=19)


@pytest.mark.parametrize("opset,n_out,ratio", [(7, 1, None), (10, 2, None), (12, 1, 0.3), (13, 2, 0.5)])
def test_dropout(opset, n_out, ratio):
    attrs = {"ratio": ratio} if (ratio is not None and opset < 12) else {}
    inputs = {"x": f32(2, 5)}
    if ratio is not None and opset >= 12:
        inputs["r"] = np.array(ratio, np.float32)
    check_op("Dropout", inputs, attrs, n_outputs=n_out, opset=opset, const_inputs=("r",))


# ---------------------------------------------------------------- Expand, Tile
@pytest.mark.parametrize("xshape,shape", [((3, 1), (2, 3, 4)), ((1, 4), (3, 1)), ((2, 3), (3,)),
                                          ((), (2, 2))])
def test_expand(xshape, shape):
    check_op("Expand", {"x": rng.standard_normal(xshape).astype(np.float32), "s": i64(*shape)},
             const_inputs=("s",))


@pytest.mark.parametrize("reps", [(1, 1), (2, 3), (3, 1), (1, 0)])
def test_tile(reps):
    check_op("Tile", {"x": f32(2, 3), "r": i64(*reps)}, const_inputs=("r",))


# ---------------------------------------------------------------- Shape, Size, ConstantOfShape, Range
@pytest.mark.parametrize("attrs", [{}, {"start": 1}, {"end": -1}, {"start": -2, "end": 10}, {"start": 3, "end": 1}])
def test_shape(attrs):
    check_op("Shape", {"x": f32(2, 3, 4, 5)}, attrs, opset=15)


@pytest.mark.parametrize("op", ["Shape", "Size"])
def test_shape_size_fold_to_constants(op):
    model = make_model(op, {"x": f32(2, 3, 4)}, opset=13)
    g = import_onnx("<test>", model=model)
    assert not g.nodes and g.outputs[0].is_const
    check_op(op, {"x": f32(2, 3, 4)}, opset=13)


@pytest.mark.parametrize("value", [None, np.array([2.5], np.float32), np.array([7], np.int64),
                                   np.array([1], np.int32)])
@pytest.mark.parametrize("shape", [(2, 3), (0,), (4,)])
def test_constant_of_shape(value, shape):
    attrs = {} if value is None else {"value": numpy_helper.from_array(value, "value")}
    check_op("ConstantOfShape", {"s": i64(*shape)}, attrs, const_inputs=("s",))


RANGES = [(0, 10, 3), (10, 0, -3), (5, 5, 1), (1, 0, 1), (-2, 7, 2)]
FLOAT_RANGES = [(0.5, 3.0, 0.7), (3.0, -1.0, -0.5)]


@pytest.mark.parametrize("vals,dtype", [(v, d) for v in RANGES for d in (np.int64, np.int32, np.float32)]
                         + [(v, np.float32) for v in FLOAT_RANGES])
def test_range(vals, dtype):
    inputs = {k: np.array(v, dtype) for k, v in zip(("start", "limit", "delta"), vals)}
    check_op("Range", inputs, opset=13, const_inputs=tuple(inputs))


def test_range_runtime_input_fails():
    model = make_model("Range", {"s": np.array(0, np.int64), "l": np.array(5, np.int64),
                                 "d": np.array(1, np.int64)}, opset=13, const_inputs=("s", "d"))
    with pytest.raises(ModelImportError, match="limit"):
        import_onnx("<test>", model=model)


# ---------------------------------------------------------------- Cast, CastLike
CASTS = [(np.float32, TensorProto.INT32), (np.float32, TensorProto.INT64), (np.float32, TensorProto.FLOAT16),
         (np.float32, TensorProto.DOUBLE), (np.float32, TensorProto.BOOL), (np.int64, TensorProto.FLOAT),
         (np.int32, TensorProto.INT8), (np.bool_, TensorProto.FLOAT), (np.uint8, TensorProto.INT32),
         (np.float16, TensorProto.FLOAT)]


@pytest.mark.parametrize("opset", [9, 13, 19])
@pytest.mark.parametrize("src,to", CASTS)
def test_cast(opset, src, to):
    if np.dtype(src).kind == "f":
        x = (rng.standard_normal((3, 4)) * 20).astype(src)
        x[0, :3] = [0.0, -0.7, 2.9]
    elif src == np.bool_:
        x = rng.integers(0, 2, (3, 4)).astype(bool)
    else:
        x = rng.integers(0, 100, (3, 4)).astype(src)
    check_op("Cast", {"x": x}, {"to": to}, opset=opset)


def test_cast_like():
    x = (f32(3, 4) * 10)
    check_op("CastLike", {"x": x, "t": np.zeros(1, np.int32)}, opset=15)
    check_op("CastLike", {"x": np.arange(5, dtype=np.int64), "t": np.zeros(2, np.float32)}, opset=15)


# ---------------------------------------------------------------- block ops
@pytest.mark.parametrize("opset,mode", [(7, None), (11, "DCR"), (13, "CRD")])
@pytest.mark.parametrize("b", [2, 3])
def test_depth_to_space(opset, mode, b):
    attrs = {"blocksize": b}
    if mode:
        attrs["mode"] = mode
    check_op("DepthToSpace", {"x": f32(2, 2 * b * b, 3, 2)}, attrs, opset=opset)


@pytest.mark.parametrize("b", [1, 2, 3])
def test_space_to_depth(b):
    check_op("SpaceToDepth", {"x": f32(2, 3, 3 * b, 2 * b)}, {"blocksize": b})


@pytest.mark.parametrize("axis", [-1, 0, 1])
@pytest.mark.parametrize("vdtype", [np.float32, np.int64])
def test_onehot(axis, vdtype):
    ind = np.array([[0, 2, -1], [5, 1, -4]], np.int64)  # 5 is out of range: all off
    inputs = {"i": ind, "d": np.array(4, np.int64), "v": np.array([-1, 3], vdtype)}
    check_op("OneHot", inputs, {"axis": axis}, opset=11, const_inputs=("d",))


def test_onehot_float_indices():
    inputs = {"i": np.array([0.0, 2.0, 1.0], np.float32), "d": np.array([3.0], np.float32),
              "v": np.array([0, 1], np.float32)}
    check_op("OneHot", inputs, opset=11, const_inputs=("d", "v"))


@pytest.mark.parametrize("upper", [0, 1])
@pytest.mark.parametrize("k", [None, 0, 2, -1])
def test_trilu(upper, k):
    inputs = {"x": f32(2, 4, 5)}
    if k is not None:
        inputs["k"] = np.array(k, np.int64)
    check_op("Trilu", inputs, {"upper": upper}, opset=14, const_inputs=("k",))


@pytest.mark.parametrize("attrs", [{}, {"k": 1}, {"k": -2, "dtype": TensorProto.INT32}])
def test_eyelike(attrs):
    check_op("EyeLike", {"x": f32(3, 5)}, attrs)


@pytest.mark.parametrize("batch_axis,time_axis", [(0, 1), (1, 0)])
def test_reverse_sequence(batch_axis, time_axis):
    shape = [0, 0, 3]
    shape[batch_axis], shape[time_axis] = 4, 5
    lens = np.array([1, 5, 3, 2], np.int64)
    check_op("ReverseSequence", {"x": f32(*shape), "l": lens},
             {"batch_axis": batch_axis, "time_axis": time_axis})


@pytest.mark.parametrize("axis,cond", [(None, [1, 0, 0, 1, 1]), (0, [0, 1, 1]), (1, [1, 0, 1, 1]),
                                       (-1, [0, 1])])
def test_compress(axis, cond):
    attrs = {} if axis is None else {"axis": axis}
    check_op("Compress", {"x": f32(3, 4), "c": np.array(cond, bool)}, attrs, opset=11, const_inputs=("c",))


# ---------------------------------------------------------------- Pad
PADS = [
    ([0, 1, 1, 0, 2, 1], "constant"),
    ([1, 0, 2, 1, 2, 0], "reflect"),
    ([1, 1, 0, 0, 1, 3], "edge"),
    ([0, -1, 1, 0, 1, -2], "constant"),
    ([0, 1, -1, 0, -1, 1], "reflect"),
    ([0, -1, 2, 0, 0, -1], "edge"),
]


@pytest.mark.parametrize("opset", [7, 11, 13, 18])
@pytest.mark.parametrize("case", range(len(PADS)))
def test_pad(opset, case):
    pads, mode = PADS[case]
    x = f32(2, 3, 4)
    if opset < 11:
        check_op("Pad", {"x": x}, {"pads": pads, "mode": mode, "value": 1.5}, opset=opset)
        return
    inputs = {"x": x, "p": i64(*pads)}
    if mode == "constant":
        inputs["v"] = np.array(1.5, np.float32)
    check_op("Pad", inputs, {"mode": mode}, opset=opset, const_inputs=("p",))


@pytest.mark.parametrize("mode", ["constant", "reflect", "edge", "wrap"])
@pytest.mark.parametrize("axes", [[1], [-1, 0]])
def test_pad_axes(mode, axes):
    pads = {1: [2, 1], 2: [1, -1, 2, 1]}[len(axes)]
    inputs = {"x": f32(3, 4), "p": i64(*pads), "v": None, "a": i64(*axes)}
    check_op("Pad", inputs, {"mode": mode}, opset=19, const_inputs=("p", "a"))


def test_pad_int_constant_value():
    x = rng.integers(0, 9, (2, 3)).astype(np.int32)
    check_op("Pad", {"x": x, "p": i64(1, 0, 0, 2), "v": np.array(-3, np.int32)}, opset=13, const_inputs=("p",))


# ---------------------------------------------------------------- Resize, Upsample
def _resize(x, opset, attrs, scales=None, sizes=None, roi=None, axes=None, **kw):
    inputs = {"x": x, "roi": None, "scales": None, "sizes": None}
    if roi is not None:
        inputs["roi"] = np.array(roi, np.float32)
    elif opset < 13:
        inputs["roi"] = np.array([], np.float32)
    if scales is not None:
        inputs["scales"] = np.array(scales, np.float32)
    elif opset < 13:
        inputs["scales"] = np.array([], np.float32)
    if sizes is not None:
        inputs["sizes"] = np.array(sizes, np.int64)
    else:
        inputs.pop("sizes")
        if scales is None:
            inputs.pop("scales")
    if axes is not None:
        attrs = dict(attrs, axes=axes)
    check_op("Resize", inputs, attrs, opset=opset, const_inputs=("roi", "scales", "sizes"), **kw)


COORD = ["half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric"]
NEAREST = ["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"]
SCALES = [[1, 1, 2, 3], [1, 1, 0.5, 0.6], [1, 1, 1.7, 0.8]]


@pytest.mark.parametrize("opset", [11, 13, 19])
@pytest.mark.parametrize("coord", COORD)
@pytest.mark.parametrize("nearest", NEAREST)
@pytest.mark.parametrize("scales", range(len(SCALES)))
def test_resize_nearest(opset, coord, nearest, scales):
    x = f32(1, 2, 5, 6)
    _resize(x, opset, {"mode": "nearest", "coordinate_transformation_mode": coord, "nearest_mode": nearest},
            scales=SCALES[scales])


def _opset_coord(opsets):
    """(opset, coordinate mode) pairs; half_pixel_symmetric is new in opset 19."""
    return [(o, c) for o in opsets for c in COORD] + [(19, "half_pixel_symmetric")]


@pytest.mark.parametrize("opset,coord", [(11, "tf_half_pixel_for_nn"), (19, "half_pixel_symmetric")])
@pytest.mark.parametrize("nearest", NEAREST)
@pytest.mark.parametrize("scales", range(len(SCALES)))
def test_resize_nearest_more_coords(opset, coord, nearest, scales):
    x = f32(1, 2, 5, 6)
    _resize(x, opset, {"mode": "nearest", "coordinate_transformation_mode": coord, "nearest_mode": nearest},
            scales=SCALES[scales])


@pytest.mark.parametrize("mode,shape,scales", [
    ("nearest", (2, 3, 4, 5, 3), [1, 2, 0.5, 1.5, 2]),
    ("nearest", (4, 5, 6), [0.5, 1.4, 2]),
    ("linear", (1, 1, 3, 4, 5), [1, 1, 2, 0.5, 1.5]),   # trilinear
])
def test_resize_rank(mode, shape, scales):
    _resize(f32(*shape), 13, {"mode": mode}, scales=scales)


@pytest.mark.parametrize("opset,coord", _opset_coord([11, 13, 18, 19]))
@pytest.mark.parametrize("target", [("scales", [1, 1, 2, 1.5]), ("scales", [1, 1, 0.5, 0.7]),
                                    ("sizes", [1, 2, 7, 3]), ("sizes", [1, 2, 1, 9])])
def test_resize_linear(opset, coord, target):
    x = f32(1, 2, 5, 6)
    _resize(x, opset, {"mode": "linear", "coordinate_transformation_mode": coord}, **{target[0]: target[1]})


@pytest.mark.parametrize("opset,coord", _opset_coord([11, 13, 19]))
@pytest.mark.parametrize("a,exclude", [(-0.75, 0), (-0.5, 1), (-0.6, 0)])
@pytest.mark.parametrize("scales", [[1, 1, 2, 1.5], [1, 1, 0.6, 0.8]])
def test_resize_cubic(opset, coord, a, exclude, scales):
    x = f32(1, 2, 5, 6)
    _resize(x, opset, {"mode": "cubic", "coordinate_transformation_mode": coord, "cubic_coeff_a": a,
                       "exclude_outside": exclude}, scales=scales, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("mode", ["nearest", "linear", "cubic"])
@pytest.mark.parametrize("roi,extrap", [([0, 0, 0.2, 0.1, 1, 1, 0.9, 0.7], 0.0),
                                        ([0, 0, -0.3, 0.4, 1, 1, 1.2, 1.1], -5.0)])
def test_resize_tf_crop_and_resize(mode, roi, extrap):
    x = f32(1, 2, 5, 6)
    _resize(x, 13, {"mode": mode, "coordinate_transformation_mode": "tf_crop_and_resize",
                    "extrapolation_value": extrap}, sizes=[1, 2, 4, 7], roi=roi, rtol=1e-4)


@pytest.mark.parametrize("mode", ["nearest", "linear"])
@pytest.mark.parametrize("policy", ["stretch", "not_larger", "not_smaller"])
def test_resize_axes_and_aspect_policy(mode, policy):
    x = f32(1, 2, 5, 6)
    _resize(x, 18, {"mode": mode, "keep_aspect_ratio_policy": policy}, sizes=[8, 7], axes=[2, 3])
    _resize(x, 18, {"mode": mode}, scales=[2.0, 0.5], axes=[-1, 2])


@pytest.mark.parametrize("mode", ["linear", "cubic"])
@pytest.mark.parametrize("exclude", [0, 1])
@pytest.mark.parametrize("scales", [[1, 1, 0.5, 0.4], [1, 1, 0.3, 1.5], [1, 1, 2, 2]])
def test_resize_antialias(mode, exclude, scales):
    x = f32(1, 2, 10, 12)
    _resize(x, 18, {"mode": mode, "antialias": 1, "exclude_outside": exclude}, scales=scales,
            rtol=1e-4, atol=1e-5)


def test_resize_2d_and_int():
    _resize(f32(5, 6), 13, {"mode": "linear"}, scales=[1.5, 0.5])
    xi = rng.integers(0, 255, (1, 3, 4, 5)).astype(np.uint8)
    _resize(xi, 13, {"mode": "nearest"}, scales=[1, 1, 2.5, 0.6])


def test_resize_coords():
    c = resize_source_coords("half_pixel", 4, 2, 2.0)
    np.testing.assert_allclose(c, [-0.25, 0.25, 0.75, 1.25])
    c = resize_source_coords("align_corners", 3, 5, 0.6)
    np.testing.assert_allclose(c, [0, 2, 4])


@pytest.mark.parametrize("mode", ["nearest", "linear"])
@pytest.mark.parametrize("scales", [[1, 1, 2, 3], [1, 1, 0.5, 0.6], [1, 1, 2, 0.5]])
def test_resize_opset10(mode, scales):
    x = f32(1, 2, 4, 6)
    check_op("Resize", {"x": x, "s": np.array(scales, np.float32)}, {"mode": mode}, opset=10,
             const_inputs=("s",))


@pytest.mark.parametrize("opset", [7, 9])
@pytest.mark.parametrize("mode", ["nearest", "linear"])
@pytest.mark.parametrize("scales", [[1, 1, 2, 2], [1, 1, 1.5, 3]])
def test_upsample(opset, mode, scales):
    x = f32(1, 2, 3, 4)
    if opset < 9:
        check_op("Upsample", {"x": x}, {"mode": mode, "scales": [float(s) for s in scales]}, opset=opset)
    else:
        check_op("Upsample", {"x": x, "s": np.array(scales, np.float32)}, {"mode": mode}, opset=opset,
                 const_inputs=("s",))


def test_resize_scales_and_sizes_fails():
    model = make_model("Resize", {"x": f32(1, 1, 2, 2), "roi": None, "s": np.ones(4, np.float32),
                                  "z": i64(1, 1, 4, 4)}, opset=13, const_inputs=("s", "z"))
    with pytest.raises(ModelImportError, match="exactly one of scales and sizes"):
        import_onnx("<test>", model=model)


# ---------------------------------------------------------------- constant folding on import
@pytest.mark.parametrize("opset,scalar", [(11, False), (13, False),
                                          (11, True),
                                          (13, True)])
def test_pytorch_flatten_chain_folds(opset, scalar):
    """Shape → Gather → Unsqueeze → Concat → Reshape (torch.flatten(x, 1) as exported; with
    ``scalar`` False the Gather index is [0] and the Unsqueeze is left out)."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 4, 5])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    inits = [numpy_helper.from_array(np.array(0 if scalar else [0], np.int64), "zero"),
             numpy_helper.from_array(i64(-1), "minus1")]
    nodes = [helper.make_node("Shape", ["x"], ["shape"], name="shape"),
             helper.make_node("Gather", ["shape", "zero"], ["batch" if scalar else "batch1"], name="gather",
                              axis=0)]
    if not scalar:
        pass
    elif opset < 13:
        nodes.append(helper.make_node("Unsqueeze", ["batch"], ["batch1"], name="unsq", axes=[0]))
    else:
        inits.append(numpy_helper.from_array(i64(0), "axes0"))
        nodes.append(helper.make_node("Unsqueeze", ["batch", "axes0"], ["batch1"], name="unsq"))
    nodes += [helper.make_node("Concat", ["batch1", "minus1"], ["newshape"], name="concat", axis=0),
              helper.make_node("Reshape", ["x", "newshape"], ["y"], name="reshape")]
    graph = helper.make_graph(nodes, "flatten", [x], [y], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    g = import_onnx("<test>", model=model)
    assert [n.op for n in g.nodes] == ["Reshape"]
    assert g.outputs[0].shape == (2, 60)
    feed = f32(2, 3, 4, 5)
    np.testing.assert_array_equal(run_npuc_reference(model, {"x": feed})[0], feed.reshape(2, 60))
