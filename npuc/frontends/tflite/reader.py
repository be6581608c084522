"""Read a .tflite flatbuffer into plain Python objects, with the generated schema code of
the ``tflite`` package (never by hand-computed offsets).

Everything the importer needs is read here, eagerly, inside one ``try``: a truncated or
corrupt file fails in this module with a :class:`~npuc.errors.ModelImportError` naming the
file, instead of deep inside a converter. Tensor data stays where it is: each constant is
a read-only numpy view over the memory-mapped file (copied only when its offset is not
aligned for its element type).
"""
from __future__ import annotations

import inspect
import mmap
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...errors import ModelImportError

#: TensorType code → numpy dtype (None: a type npuc cannot hold in a tensor)
_TYPES: dict[str, np.dtype | None] = {
    "FLOAT32": np.dtype(np.float32), "FLOAT16": np.dtype(np.float16), "FLOAT64": np.dtype(np.float64),
    "INT8": np.dtype(np.int8), "UINT8": np.dtype(np.uint8), "INT16": np.dtype(np.int16),
    "UINT16": np.dtype(np.uint16), "INT32": np.dtype(np.int32), "UINT32": np.dtype(np.uint32),
    "INT64": np.dtype(np.int64), "UINT64": np.dtype(np.uint64), "BOOL": np.dtype(np.bool_),
    "INT4": np.dtype(np.int8),  # unpacked from nibbles on read
    "STRING": None, "COMPLEX64": None, "COMPLEX128": None, "RESOURCE": None, "VARIANT": None,
    "BFLOAT16": None,
}


def _schema():
    try:
        import tflite  # the generated schema code (package ``tflite`` on PyPI)
    except ImportError as e:  # pragma: no cover - depends on the installation
        raise ModelImportError("importing .tflite models needs the 'tflite' schema package: "
                               "pip install tflite") from e
    return tflite


def _enum_names(cls) -> dict[int, str]:
    return {v: k for k, v in vars(cls).items() if not k.startswith("_") and isinstance(v, int)}


@dataclass
class QuantInfo:
    """A tensor's affine quantization: real = scale · (q − zero_point), per channel along
    ``axis`` when ``scale`` has more than one entry."""

    scale: np.ndarray
    zero_point: np.ndarray
    axis: int = 0

    @property
    def per_channel(self) -> bool:
        return self.scale.size > 1


@dataclass
class TensorInfo:
    index: int
    name: str
    type_name: str
    dtype: np.dtype | None
    shape: tuple[int, ...]
    shape_signature: tuple[int, ...] | None
    data: np.ndarray | None          # constant contents (read-only view), None if none
    quant: QuantInfo | None
    is_variable: bool = False
    sparse: bool = False

    @property
    def is_const(self) -> bool:
        return self.data is not None

    @property
    def dynamic_dims(self) -> list[int]:
        sig = self.shape_signature
        return [] if sig is None else [i for i, d in enumerate(sig) if d < 0]


@dataclass
class OperatorInfo:
    index: int
    opcode: str                      # builtin op name (e.g. "CONV_2D"), or "CUSTOM"
    custom_code: str | None
    version: int
    inputs: list[int]                # tensor indices, -1 for an absent optional input
    outputs: list[int]
    options_type: str | None         # e.g. "Conv2DOptions"
    options: dict[str, Any]          # every field of the options table, by schema name
    custom_options: bytes | None

    @property
    def label(self) -> str:
        return f"CUSTOM({self.custom_code})" if self.opcode == "CUSTOM" else self.opcode

    def opt(self, name: str, default: Any = None) -> Any:
        return self.options.get(name, default)


@dataclass
class SubGraphInfo:
    index: int
    name: str
    tensors: list[TensorInfo]
    inputs: list[int]
    outputs: list[int]
    operators: list[OperatorInfo]


@dataclass
class ModelInfo:
    path: str
    version: int
    description: str
    subgraphs: list[SubGraphInfo]
    signatures: list[dict[str, Any]] = field(default_factory=list)
    metadata: list[str] = field(default_factory=list)


def _numpy(x) -> np.ndarray:
    """A generated ``...AsNumpy()`` result (0 when the vector is absent) as an array."""
    return np.zeros(0, np.int32) if isinstance(x, int) else x


def _str(b) -> str:
    return "" if b is None else (b.decode("utf-8", "replace") if isinstance(b, bytes) else str(b))


_SKIP_SUFFIXES = ("IsNone", "Length", "AsNumpy", "BufferHasIdentifier")


_FIELDS: dict[type, list[tuple[str, bool]]] = {}


def _fields(cls) -> list[tuple[str, bool]]:
    """The readable fields of a generated table class: (accessor name, is a vector)."""
    if cls not in _FIELDS:
        out = []
        for name, fn in vars(cls).items():
            if name.startswith(("_", "GetRootAs", "Init")) or name.endswith(_SKIP_SUFFIXES) or not callable(fn):
                continue
            if hasattr(cls, name + "AsNumpy"):
                out.append((name, True))
            elif len(inspect.signature(fn).parameters) == 1:
                out.append((name, False))  # (vectors of tables, in StableHLO options, are skipped)
        _FIELDS[cls] = out
    return _FIELDS[cls]


def _read_table(obj) -> dict[str, Any]:
    """Every scalar/vector field of a generated options table, by schema name."""
    out: dict[str, Any] = {}
    for name, is_vector in _fields(type(obj)):
        if is_vector:
            out[name] = [x.item() for x in _numpy(getattr(obj, name + "AsNumpy")())]
            continue
        v = getattr(obj, name)()
        if isinstance(v, bytes):
            v = _str(v)
        if isinstance(v, (int, float, str, bool)) or v is None:
            out[name] = v
    return out


class _Reader:
    def __init__(self, path: str, buf):
        self.path = path
        self.buf = buf
        self.tfl = _schema()
        self.op_names = _enum_names(self.tfl.BuiltinOperator)
        self.type_names = _enum_names(self.tfl.TensorType)
        self.opt_names = _enum_names(self.tfl.BuiltinOptions)
        self.opt2_names = _enum_names(self.tfl.BuiltinOptions2)

    def fail(self, msg: str) -> ModelImportError:
        return ModelImportError(f"{self.path}: {msg}")

    # -- pieces ---------------------------------------------------------------------
    def buffer_data(self, model, index: int) -> np.ndarray | None:
        if index <= 0:
            return None  # buffer 0 is the empty sentinel
        if index >= model.BuffersLength():
            raise self.fail(f"tensor refers to buffer {index}, the model has {model.BuffersLength()}")
        b = model.Buffers(index)
        off, size = b.Offset(), b.Size()
        if off > 1:  # large models keep buffers after the flatbuffer, addressed by offset
            if off + size > len(self.buf):
                raise self.fail(f"buffer {index} (offset {off}, {size} bytes) lies past the end of the file "
                                f"({len(self.buf)} bytes): the file is truncated")
            return np.frombuffer(self.buf, np.uint8, count=size, offset=off)
        data = _numpy(b.DataAsNumpy())
        return data if data.size else None

    def quant(self, t) -> QuantInfo | None:
        q = t.Quantization()
        if q is None:
            return None
        scale = np.asarray(_numpy(q.ScaleAsNumpy()), np.float32)
        if scale.size == 0:
            return None
        zp = np.asarray(_numpy(q.ZeroPointAsNumpy()), np.int64)
        if zp.size == 0:
            zp = np.zeros(scale.size, np.int64)
        return QuantInfo(scale, zp, int(q.QuantizedDimension()))

    def tensor(self, model, t, index: int) -> TensorInfo:
        name = _str(t.Name()) or f"tensor_{index}"
        tname = self.type_names.get(t.Type(), f"type {t.Type()}")
        dtype = _TYPES.get(tname)
        shape = tuple(int(d) for d in _numpy(t.ShapeAsNumpy()))
        sig = None if t.ShapeSignatureIsNone() else tuple(int(d) for d in _numpy(t.ShapeSignatureAsNumpy()))
        if any(d < 0 for d in shape):
            raise self.fail(f"tensor {name!r} has a negative dimension in its shape {list(shape)}")
        raw = self.buffer_data(model, t.Buffer())
        if raw is not None and t.Sparsity() is not None:
            raise self.fail(f"tensor {name!r} is stored sparse; npuc does not read sparse tensors yet "
                            f"(convert the model without sparsity)")
        data = None
        if raw is not None and dtype is not None:
            data = self.typed(raw, tname, dtype, shape, name)
        return TensorInfo(index, name, tname, dtype, shape, sig, data, self.quant(t), bool(t.IsVariable()),
                          t.Sparsity() is not None)

    def typed(self, raw: np.ndarray, tname: str, dtype: np.dtype, shape, name: str) -> np.ndarray:
        count = int(np.prod(shape, dtype=np.int64))
        if tname == "INT4":
            if raw.size * 2 < count:
                raise self.fail(f"tensor {name!r}: buffer holds {raw.size} bytes, {count} int4 values need "
                                f"{(count + 1) // 2}")
            lo = (raw.astype(np.int8) << 4) >> 4
            hi = raw.astype(np.int8) >> 4
            vals = np.stack([lo, hi], axis=1).reshape(-1)[:count]
            arr = vals.reshape(shape)
        else:
            need = count * dtype.itemsize
            if raw.size != need:
                raise self.fail(f"tensor {name!r} {tname}{list(shape)} needs {need} bytes, its buffer holds "
                                f"{raw.size}")
            arr = raw.view(dtype) if raw.ctypes.data % dtype.itemsize == 0 else raw.copy().view(dtype)
            arr = arr.reshape(shape)
        arr.flags.writeable = False
        return arr

    def options(self, op) -> tuple[str | None, dict[str, Any]]:
        for kind, names, getter in (("BuiltinOptionsType", self.opt_names, "BuiltinOptions"),
                                    ("BuiltinOptions2Type", self.opt2_names, "BuiltinOptions2")):
            code = getattr(op, kind)()
            if code:
                tname = names.get(code)
                table = getattr(op, getter)()
                cls = getattr(self.tfl, tname, None) if tname else None
                if cls is None or table is None:
                    return tname, {}
                obj = cls()
                obj.Init(table.Bytes, table.Pos)
                return tname, _read_table(obj)
        return None, {}

    def operator(self, model, op, index: int, codes, ntensors: int) -> OperatorInfo:
        ci = op.OpcodeIndex()
        if ci >= len(codes):
            raise self.fail(f"operator {index} uses opcode {ci}, the model has {len(codes)}")
        opcode, custom, version = codes[ci]
        ins = [int(i) for i in _numpy(op.InputsAsNumpy())]
        outs = [int(i) for i in _numpy(op.OutputsAsNumpy())]
        for i in ins + outs:
            if not -1 <= i < ntensors:
                raise self.fail(f"operator {index} ({opcode}) refers to tensor {i}, the subgraph has {ntensors}")
        otype, opts = self.options(op)
        custom_opts = None
        if not op.CustomOptionsIsNone():
            custom_opts = _numpy(op.CustomOptionsAsNumpy()).tobytes()
        elif op.LargeCustomOptionsSize():
            off, size = op.LargeCustomOptionsOffset(), op.LargeCustomOptionsSize()
            if off + size > len(self.buf):
                raise self.fail(f"operator {index}: custom options lie past the end of the file")
            custom_opts = bytes(self.buf[off:off + size])
        return OperatorInfo(index, opcode, custom, version, ins, outs, otype, opts, custom_opts)

    def subgraph(self, model, sg, index: int, codes) -> SubGraphInfo:
        tensors = [self.tensor(model, sg.Tensors(i), i) for i in range(sg.TensorsLength())]
        n = len(tensors)
        ins = [int(i) for i in _numpy(sg.InputsAsNumpy())]
        outs = [int(i) for i in _numpy(sg.OutputsAsNumpy())]
        for i in ins + outs:
            if not 0 <= i < n:
                raise self.fail(f"subgraph {index} input/output refers to tensor {i}, it has {n}")
        ops = [self.operator(model, sg.Operators(i), i, codes, n) for i in range(sg.OperatorsLength())]
        return SubGraphInfo(index, _str(sg.Name()), tensors, ins, outs, ops)

    def model(self) -> ModelInfo:
        tfl = self.tfl
        if len(self.buf) < 8:
            raise self.fail(f"not a TFLite model: the file has {len(self.buf)} bytes")
        has_id = tfl.Model.ModelBufferHasIdentifier(self.buf, 0)
        try:
            m = tfl.Model.GetRootAs(self.buf, 0)
            codes = []
            for i in range(m.OperatorCodesLength()):
                oc = m.OperatorCodes(i)
                code = max(int(oc.BuiltinCode()), int(oc.DeprecatedBuiltinCode()))
                name = self.op_names.get(code, f"BUILTIN_{code}")
                codes.append((name, _str(oc.CustomCode()) if name == "CUSTOM" else None, int(oc.Version())))
            subgraphs = [self.subgraph(m, m.Subgraphs(i), i, codes) for i in range(m.SubgraphsLength())]
            sigs = []
            for i in range(m.SignatureDefsLength()):
                s = m.SignatureDefs(i)
                sigs.append({"key": _str(s.SignatureKey()), "subgraph": int(s.SubgraphIndex()),
                             "inputs": {_str(s.Inputs(j).Name()): int(s.Inputs(j).TensorIndex())
                                        for j in range(s.InputsLength())},
                             "outputs": {_str(s.Outputs(j).Name()): int(s.Outputs(j).TensorIndex())
                                         for j in range(s.OutputsLength())}})
            meta = [_str(m.Metadata(i).Name()) for i in range(m.MetadataLength())]
            info = ModelInfo(self.path, int(m.Version()), _str(m.Description()), subgraphs, sigs, meta)
        except ModelImportError:
            raise
        except Exception as e:  # the generated readers fail in many ways on garbage
            what = "" if has_id else " (it lacks the 'TFL3' file identifier)"
            raise self.fail(f"not a readable TFLite flatbuffer{what}: the file is truncated or corrupt "
                            f"({type(e).__name__}: {e})") from e
        if not subgraphs:
            raise self.fail("the model has no subgraph")
        if info.version != 3:
            raise self.fail(f"TFLite schema version {info.version} is not supported (npuc reads version 3)")
        return info


def read_model(path, data: bytes | None = None) -> ModelInfo:
    """Parse a .tflite file (or its bytes ``data``) into a :class:`ModelInfo`."""
    path = str(path)
    if data is None:
        try:
            with open(path, "rb") as f:
                try:
                    buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
                except ValueError:  # empty file: cannot be mapped
                    buf = b""
        except OSError as e:
            raise ModelImportError(f"{path}: cannot read the file ({e.strerror or e})") from e
    else:
        buf = data
    return _Reader(path, buf).model()


__all__ = ["ModelInfo", "SubGraphInfo", "TensorInfo", "OperatorInfo", "QuantInfo", "read_model"]
