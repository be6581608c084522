"""Write small .tflite models with the ``tflite`` schema package's flatbuffer builder API,
run them with the TFLite interpreter (ai-edge-litert) and with npuc, and compare.

    b = ModelBuilder()
    x = b.input("x", [1, 8, 8, 3])
    w = b.const("w", np.random.rand(4, 3, 3, 3).astype(np.float32))
    y = b.tensor("y", [1, 8, 8, 4])
    b.op("CONV_2D", [x, w, -1], [y], {"Padding": SAME, "StrideW": 1, "StrideH": 1})
    data = b.build([x], [y])
"""
from __future__ import annotations

import re

import flatbuffers
import numpy as np
import pytest

tflite = pytest.importorskip("tflite")

SAME, VALID = 0, 1
ACT = {"NONE": 0, "RELU": 1, "RELU_N1_TO_1": 2, "RELU6": 3, "TANH": 4}

_DTYPES = {np.dtype(np.float32): "FLOAT32", np.dtype(np.float16): "FLOAT16", np.dtype(np.int32): "INT32",
           np.dtype(np.uint8): "UINT8", np.dtype(np.int64): "INT64", np.dtype(np.bool_): "BOOL",
           np.dtype(np.int16): "INT16", np.dtype(np.int8): "INT8", np.dtype(np.float64): "FLOAT64"}

#: options table of each builtin op (when it is not CamelCase(op) + "Options")
_OPTIONS = {
    "AVERAGE_POOL_2D": "Pool2DOptions", "MAX_POOL_2D": "Pool2DOptions", "L2_POOL_2D": "Pool2DOptions",
    "MEAN": "ReducerOptions", "SUM": "ReducerOptions", "REDUCE_MAX": "ReducerOptions",
    "REDUCE_MIN": "ReducerOptions", "REDUCE_PROD": "ReducerOptions", "MAXIMUM": "MaximumMinimumOptions",
    "MINIMUM": "MaximumMinimumOptions", "LOCAL_RESPONSE_NORMALIZATION": "LocalResponseNormalizationOptions",
    "L2_NORMALIZATION": "L2NormOptions", "RESIZE_NEAREST_NEIGHBOR": "ResizeNearestNeighborOptions",
    "CONV_2D": "Conv2DOptions", "DEPTHWISE_CONV_2D": "DepthwiseConv2DOptions", "PADV2": "PadV2Options",
    "SPLIT_V": "SplitVOptions", "BATCH_MATMUL": "BatchMatMulOptions", "SELECT_V2": "SelectV2Options",
    "ARG_MAX": "ArgMaxOptions", "ARG_MIN": "ArgMinOptions", "TOPK_V2": "TopKV2Options",
}


def options_name(op: str) -> str:
    return _OPTIONS.get(op) or "".join(p.capitalize() for p in op.split("_")) + "Options"


def _camel_ok(name: str) -> bool:
    return hasattr(tflite.BuiltinOptions, name)


class ModelBuilder:
    """Collects tensors, buffers and operators of one subgraph, then writes the model."""

    def __init__(self):
        self.tensors: list[dict] = []
        self.buffers: list[bytes] = [b""]
        self.opcodes: list[tuple[int, str | None, int]] = []
        self.operators: list[dict] = []
        self.finished: list[tuple[list, list, list, list]] = []  # earlier subgraphs

    def finish_subgraph(self, inputs, outputs) -> int:
        """Close the current subgraph (the first one closed is the main one) and start a new
        one; returns the closed subgraph's index. Buffers and op codes are shared."""
        self.finished.append((self.tensors, self.operators, list(inputs), list(outputs)))
        self.tensors, self.operators = [], []
        return len(self.finished) - 1

    # -- tensors ----------------------------------------------------------------------
    def _tensor(self, name, shape, dtype, buffer=0, quant=None, shape_signature=None) -> int:
        self.tensors.append({"name": name, "shape": [int(d) for d in shape], "dtype": np.dtype(dtype),
                             "buffer": buffer, "quant": quant, "sig": shape_signature})
        return len(self.tensors) - 1

    def input(self, name, shape, dtype=np.float32, quant=None, shape_signature=None) -> int:
        return self._tensor(name, shape, dtype, quant=quant, shape_signature=shape_signature)

    def tensor(self, name, shape, dtype=np.float32, quant=None) -> int:
        return self._tensor(name, shape, dtype, quant=quant)

    def const(self, name, array, dtype=None, quant=None) -> int:
        a = np.array(array, dtype=dtype, order="C")  # (ascontiguousarray would make scalars 1-D)
        self.buffers.append(a.tobytes())
        return self._tensor(name, a.shape, a.dtype, buffer=len(self.buffers) - 1, quant=quant)

    # -- operators --------------------------------------------------------------------
    def op(self, opname: str, inputs, outputs, options: dict | None = None, *, options_type: str | None = None,
           custom_code: str | None = None, custom_options: bytes | None = None, version: int = 1) -> None:
        code = getattr(tflite.BuiltinOperator, opname)
        key = (code, custom_code, version)
        if key not in self.opcodes:
            self.opcodes.append(key)
        if options is not None and options_type is None:
            options_type = options_name(opname)
            if not _camel_ok(options_type):
                raise ValueError(f"no options table {options_type} for {opname}: give options_type")
        self.operators.append({"opcode": self.opcodes.index(key), "inputs": list(inputs), "outputs": list(outputs),
                               "options": options, "options_type": options_type, "custom": custom_options})

    # -- writing ----------------------------------------------------------------------
    def build(self, inputs, outputs, *, description: str = "npuc test model") -> bytes:
        b = flatbuffers.Builder(1024)

        def ivec(values, dtype=np.int32):
            return b.CreateNumpyVector(np.asarray(values, dtype))

        def tables(offsets):
            b.StartVector(4, len(offsets), 4)
            for o in reversed(offsets):
                b.PrependUOffsetTRelative(o)
            return b.EndVector()

        buf_offs = []
        for data in self.buffers:
            vec = None
            if data:
                b.StartVector(1, len(data), 16)  # TFLite wants buffer data 16-byte aligned
                b.head = b.head - len(data)
                b.Bytes[b.head:b.head + len(data)] = data
                vec = b.EndVector()
            tflite.BufferStart(b)
            if vec is not None:
                tflite.BufferAddData(b, vec)
            buf_offs.append(tflite.BufferEnd(b))

        def subgraph(tensors, operators, inputs, outputs):
            tensor_offs = []
            for t in tensors:
                name = b.CreateString(t["name"])
                shape = ivec(t["shape"])
                sig = ivec(t["sig"]) if t["sig"] is not None else None
                q = None
                if t["quant"] is not None:
                    scale, zp = (np.atleast_1d(np.asarray(v)) for v in t["quant"][:2])
                    axis = t["quant"][2] if len(t["quant"]) > 2 else 0
                    sv, zv = ivec(scale, np.float32), ivec(zp, np.int64)
                    tflite.QuantizationParametersStart(b)
                    tflite.QuantizationParametersAddScale(b, sv)
                    tflite.QuantizationParametersAddZeroPoint(b, zv)
                    tflite.QuantizationParametersAddQuantizedDimension(b, axis)
                    q = tflite.QuantizationParametersEnd(b)
                tflite.TensorStart(b)
                tflite.TensorAddShape(b, shape)
                if sig is not None:
                    tflite.TensorAddShapeSignature(b, sig)
                tflite.TensorAddType(b, getattr(tflite.TensorType, _DTYPES[t["dtype"]]))
                tflite.TensorAddBuffer(b, t["buffer"])
                tflite.TensorAddName(b, name)
                if q is not None:
                    tflite.TensorAddQuantization(b, q)
                tensor_offs.append(tflite.TensorEnd(b))

            op_offs = []
            for o in operators:
                opts = self._options(b, o["options_type"], o["options"]) if o["options_type"] else None
                ins, outs = ivec(o["inputs"]), ivec(o["outputs"])
                custom = b.CreateNumpyVector(np.frombuffer(o["custom"], np.uint8)) if o["custom"] else None
                tflite.OperatorStart(b)
                tflite.OperatorAddOpcodeIndex(b, o["opcode"])
                tflite.OperatorAddInputs(b, ins)
                tflite.OperatorAddOutputs(b, outs)
                if opts is not None:
                    tflite.OperatorAddBuiltinOptionsType(b, getattr(tflite.BuiltinOptions,
                                                                    o["options_type"]))
                    tflite.OperatorAddBuiltinOptions(b, opts)
                if custom is not None:
                    tflite.OperatorAddCustomOptions(b, custom)
                op_offs.append(tflite.OperatorEnd(b))

            tv, ov = tables(tensor_offs), tables(op_offs)
            iv, outv = ivec(inputs), ivec(outputs)
            tflite.SubGraphStart(b)
            tflite.SubGraphAddTensors(b, tv)
            tflite.SubGraphAddInputs(b, iv)
            tflite.SubGraphAddOutputs(b, outv)
            tflite.SubGraphAddOperators(b, ov)
            return tflite.SubGraphEnd(b)

        sgs_list = [subgraph(*f) for f in self.finished] + [subgraph(self.tensors, self.operators, inputs,
                                                                     outputs)]

        code_offs = []
        for code, custom, version in self.opcodes:
            cs = b.CreateString(custom) if custom else None
            tflite.OperatorCodeStart(b)
            tflite.OperatorCodeAddDeprecatedBuiltinCode(b, min(code, 127))
            tflite.OperatorCodeAddBuiltinCode(b, code)
            tflite.OperatorCodeAddVersion(b, version)
            if cs is not None:
                tflite.OperatorCodeAddCustomCode(b, cs)
            code_offs.append(tflite.OperatorCodeEnd(b))

        codes, sgs, bufs = tables(code_offs), tables(sgs_list), tables(buf_offs)
        desc = b.CreateString(description)
        tflite.ModelStart(b)
        tflite.ModelAddVersion(b, 3)
        tflite.ModelAddOperatorCodes(b, codes)
        tflite.ModelAddSubgraphs(b, sgs)
        tflite.ModelAddDescription(b, desc)
        tflite.ModelAddBuffers(b, bufs)
        b.Finish(tflite.ModelEnd(b), file_identifier=b"TFL3")
        return bytes(b.Output())

    @staticmethod
    def _options(b, type_name: str, fields: dict):
        import importlib

        mod = importlib.import_module(f"tflite.{type_name}")
        cls = getattr(mod, type_name)
        vecs = {}
        for k, v in fields.items():
            if isinstance(v, (list, tuple, np.ndarray)):
                vecs[k] = b.CreateNumpyVector(np.asarray(v, np.int32))
        getattr(mod, f"{type_name}Start")(b)
        for k, v in fields.items():
            add = getattr(mod, f"{type_name}Add{k}", None)
            if add is None:
                raise ValueError(f"{type_name} has no field {k}; fields: "
                                 f"{[m for m in dir(cls) if re.match('[A-Z]', m)]}")
            add(b, vecs[k] if k in vecs else v)
        return getattr(mod, f"{type_name}End")(b)


# ---------------------------------------------------------------- running
def litert_interpreter():
    mod = pytest.importorskip("ai_edge_litert.interpreter", reason="the TFLite interpreter (ai-edge-litert) "
                              "is not installed")
    return mod


def run_tflite(data: bytes, feeds: dict[str, np.ndarray], *, delegates: bool = False) -> dict[str, np.ndarray]:
    """Run a model with the TFLite interpreter (reference kernels unless ``delegates``)."""
    mod = litert_interpreter()
    kind = mod.OpResolverType.AUTO if delegates else mod.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    it = mod.Interpreter(model_content=data, experimental_op_resolver_type=kind, num_threads=1)
    it.allocate_tensors()
    for d in it.get_input_details():
        it.set_tensor(d["index"], np.ascontiguousarray(feeds[d["name"]]))
    it.invoke()
    return {d["name"]: it.get_tensor(d["index"]).copy() for d in it.get_output_details()}


def run_npuc(data: bytes, feeds: dict[str, np.ndarray], *, path: str = "test.tflite") -> dict[str, np.ndarray]:
    from npuc.api import compile_graph_to_session
    from npuc.frontends.tflite import import_tflite

    graph = import_tflite(path, data=data)
    assert not graph.metadata.get("tflite_shape_mismatches"), graph.metadata["tflite_shape_mismatches"]
    sess = compile_graph_to_session(graph)
    return sess.run(feeds)


def check_model(data: bytes, feeds: dict[str, np.ndarray], *, rtol=1e-5, atol=1e-5, exact=False):
    """Outputs of npuc and of the TFLite interpreter agree (names, dtypes, shapes, values)."""
    ref = run_tflite(data, feeds)
    got = run_npuc(data, feeds)
    assert set(got) == set(ref), (sorted(got), sorted(ref))
    for k, r in ref.items():
        g = got[k]
        assert g.shape == r.shape, (k, g.shape, r.shape)
        assert g.dtype == r.dtype, (k, g.dtype, r.dtype)
        if exact or r.dtype.kind not in "f":
            np.testing.assert_array_equal(g, r, err_msg=k)
        else:
            np.testing.assert_allclose(g, r, rtol=rtol, atol=atol, err_msg=k)
    return got, ref


def one_op(opname: str, inputs: list, out_shapes, options: dict | None = None, *, out_dtypes=None, **kw) -> bytes:
    """A model with one operator. ``inputs``: a list of ("name", shape[, dtype]) for graph
    inputs, numpy arrays for constants, None for absent optional inputs."""
    b = ModelBuilder()
    idx, graph_inputs = [], []
    for i, spec in enumerate(inputs):
        if spec is None:
            idx.append(-1)
        elif isinstance(spec, np.ndarray):
            idx.append(b.const(f"c{i}", spec))
        else:
            name, shape, *dt = spec
            t = b.input(name, shape, dt[0] if dt else np.float32)
            idx.append(t)
            graph_inputs.append(t)
    if out_shapes is None:
        out_shapes = [[]]  # unknown: the interpreter infers it
    elif not out_shapes or isinstance(out_shapes[0], (int, np.integer)):
        out_shapes = [out_shapes]
    out_dtypes = out_dtypes or [np.float32] * len(out_shapes)
    outs = [b.tensor(f"out{i}" if len(out_shapes) > 1 else "out", s, d)
            for i, (s, d) in enumerate(zip(out_shapes, out_dtypes))]
    b.op(opname, idx, outs, options, **kw)
    return b.build(graph_inputs, outs)


def rand(shape, seed=0, lo=-1.0, hi=1.0, dtype=np.float32) -> np.ndarray:
    return np.random.default_rng(seed).uniform(lo, hi, size=shape).astype(dtype)
