"""The ONNX backend test cases that ship inside the ``onnx`` package, run through npuc.

Four suites:

* ``node``: about 1,900 one-node models (plus ``*_expanded`` function bodies), generated in
  memory by ``onnx.backend.test.loader.load_model_tests(kind="node")`` (the onnx wheel
  generates them from ``onnx/backend/test/case/node/*.py``; older wheels stored them on
  disk under ``onnx/backend/test/data/node``, which is read instead when it exists);
* ``pytorch-converted``, ``pytorch-operator``, ``simple``: small models stored under
  ``onnx/backend/test/data/<suite>/<case>/model.onnx`` with
  ``test_data_set_*/input_*.pb, output_*.pb``.

Each case goes through npuc's real path: ``import_onnx`` → ``compile_graph_to_session``
(optimize, lower, plan, write a .npuc file, map it back, bind the arena Session) →
``Session.run``; outputs are compared as onnx's own backend runner does
(``onnx/backend/test/runner/__init__.py``): same count, same shape, same dtype, then
``np.testing.assert_allclose(out, ref, rtol, atol)`` with the case's tolerances
(rtol=1e-3, atol=1e-7 unless the case's ``data.json`` says otherwise).

npuc compiles static graphs, while the backend cases feed every operand as a graph input.
Inputs that npuc needs at compile time are bound to the data set's values (they become
initializers) before importing: those in the slots the op registry declares
``const_inputs`` (Reshape's shape, Reduce axes, Resize scales/sizes, TopK's K, Pad's pads,
Range's bounds, ...), and, when the import still reports "input ... must be a constant,
but 'v' is computed at run time" (converters such as Upsample or Loop), the graph inputs
``v`` is computed from. :func:`run_case` returns the names it bound; tensor data inputs are
never bound. Sequence and optional values are not tensors and fail with
:class:`NotATensor`.
"""
from __future__ import annotations

import glob
import json
import logging
import os
import re
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

SUITES = ("node", "pytorch-converted", "pytorch-operator", "simple")
DEFAULT_RTOL, DEFAULT_ATOL = 1e-3, 1e-7


@dataclass
class BackendCase:
    suite: str
    name: str
    rtol: float = DEFAULT_RTOL
    atol: float = DEFAULT_ATOL
    model: Any = None                 # onnx.ModelProto (node cases) or None (loaded from model_dir)
    data_sets: list | None = None     # [(inputs, outputs)] for in-memory cases
    model_dir: str | None = None

    @property
    def id(self) -> str:
        return self.name


def _data_dir() -> Path:
    import onnx

    return Path(onnx.__file__).parent / "backend" / "test" / "data"


def _load_disk_suite(suite: str) -> list[BackendCase]:
    d = _data_dir() / suite
    cases = []
    if not d.is_dir():
        return cases
    for case_dir in sorted(d.iterdir()):
        if not (case_dir / "model.onnx").exists():
            continue
        rtol, atol = DEFAULT_RTOL, DEFAULT_ATOL
        if (case_dir / "data.json").exists():
            data = json.loads((case_dir / "data.json").read_text())
            rtol, atol = data.get("rtol", rtol), data.get("atol", atol)
        cases.append(BackendCase(suite, case_dir.name, rtol, atol, model_dir=str(case_dir)))
    return cases


@lru_cache(maxsize=None)
def load_suite(suite: str) -> tuple[BackendCase, ...]:
    if suite not in SUITES:
        raise ValueError(f"unknown suite {suite!r}; one of {SUITES}")
    if suite == "node" and not (_data_dir() / "node").is_dir():
        from onnx.backend.test.loader import load_model_tests

        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            tests = load_model_tests(kind="node")
        return tuple(BackendCase("node", t.name, t.rtol, t.atol, model=t.model, data_sets=t.data_sets)
                     for t in sorted(tests, key=lambda t: t.name))
    return tuple(_load_disk_suite(suite))


# ---------------------------------------------------------------------- data
def _read_proto(path: str, type_proto):
    import onnx
    from onnx import numpy_helper

    raw = Path(path).read_bytes()
    if type_proto is not None and type_proto.HasField("sequence_type"):
        seq = onnx.SequenceProto()
        seq.ParseFromString(raw)
        return numpy_helper.to_list(seq)
    if type_proto is not None and type_proto.HasField("optional_type"):
        opt = onnx.OptionalProto()
        opt.ParseFromString(raw)
        return numpy_helper.to_optional(opt)
    t = onnx.TensorProto()
    t.ParseFromString(raw)
    return numpy_helper.to_array(t)


def _normalize(x):
    import onnx
    from onnx import numpy_helper

    if isinstance(x, onnx.TensorProto):
        return numpy_helper.to_array(x)
    if isinstance(x, np.generic):
        return np.asarray(x)
    return x


def case_model_and_data(case: BackendCase):
    """(ModelProto, [(inputs, ref_outputs)]) of a case."""
    import onnx

    if case.model is not None:
        data = [([_normalize(i) for i in ins], [_normalize(o) for o in outs]) for ins, outs in case.data_sets]
        return case.model, data
    model = onnx.load(os.path.join(case.model_dir, "model.onnx"))
    inits = {t.name for t in model.graph.initializer}
    real_inputs = [i for i in model.graph.input if i.name not in inits]
    data = []
    for ds in sorted(glob.glob(os.path.join(case.model_dir, "test_data_set*"))):
        n_in = len(glob.glob(os.path.join(ds, "input_*.pb")))
        n_out = len(glob.glob(os.path.join(ds, "output_*.pb")))
        ins = [_read_proto(os.path.join(ds, f"input_{i}.pb"),
                           real_inputs[i].type if i < len(real_inputs) else None) for i in range(n_in)]
        outs = [_read_proto(os.path.join(ds, f"output_{i}.pb"),
                            model.graph.output[i].type if i < len(model.graph.output) else None)
                for i in range(n_out)]
        data.append((ins, outs))
    return model, data


# ---------------------------------------------------------------------- running
class NotATensor(Exception):
    """A case whose inputs or outputs are sequences/optionals (npuc handles tensors only)."""


def _is_tensor(x) -> bool:
    return isinstance(x, (np.ndarray, np.generic))


def _check_tensor_types(model, data) -> None:
    g = model.graph
    for vi in list(g.input) + list(g.output):
        if vi.type.WhichOneof("value") not in (None, "tensor_type"):
            raise NotATensor(f"{vi.name!r} has {vi.type.WhichOneof('value')} type; npuc supports tensors only")
    for ins, outs in data:
        for x in list(ins) + list(outs):
            if not _is_tensor(x):
                raise NotATensor(f"a value of type {type(x).__name__}; npuc supports tensors only")


def assert_similar_outputs(ref_outputs, outputs, rtol: float, atol: float) -> None:
    """onnx's runner comparison: count, shape, dtype, then assert_allclose(rtol, atol)."""
    np.testing.assert_equal(len(outputs), len(ref_outputs))
    for i, (out, ref) in enumerate(zip(outputs, ref_outputs)):
        np.testing.assert_array_equal(out.shape, ref.shape, err_msg=f"Output {i} has incorrect shape")
        if ref.dtype == object:
            np.testing.assert_array_equal(out, ref)
            continue
        np.testing.assert_equal(out.dtype, ref.dtype)
        np.testing.assert_allclose(out, ref, rtol=rtol, atol=atol, err_msg=f"Output {i}")


_CONST_RE = re.compile(r"must be a constant.*?'([^']+)' is computed at run time")


def _const_slots(op_type: str) -> tuple[int, ...]:
    """The input slots of ``op_type`` that the op registry declares compile-time constants."""
    from npuc.ops.registry import get_op, has_op

    return tuple(get_op(op_type).const_inputs) if has_op(op_type) else ()


def _cone_inputs(model, value: str) -> set[str]:
    """The graph inputs ``value`` is computed from (through the nodes of every (sub)graph)."""
    def walk(g):
        for n in g.node:
            yield n
            for a in n.attribute:
                for sub in ([a.g] if a.HasField("g") else []) + list(a.graphs):
                    yield from walk(sub)

    producers = {o: n for n in walk(model.graph) for o in n.output}
    inputs = {i.name for i in model.graph.input}
    seen, stack, found = set(), [value], set()
    while stack:
        v = stack.pop()
        if v in seen or not v:
            continue
        seen.add(v)
        if v in inputs:
            found.add(v)
        elif v in producers:
            stack.extend(producers[v].input)
    return found


def _freeze(model, names: set[str], data):
    """A copy of ``model`` whose inputs ``names`` are initializers with the data sets' values
    (which must agree across data sets); and the data sets without those inputs."""
    import onnx
    from onnx import numpy_helper

    inits = {t.name for t in model.graph.initializer}
    real = [i.name for i in model.graph.input if i.name not in inits]
    pos = {n: real.index(n) for n in names}
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for n, i in pos.items():
        vals = [ins[i] for ins, _ in data]
        if any(v.shape != vals[0].shape or not np.array_equal(v, vals[0], equal_nan=v.dtype.kind == "f")
               for v in vals[1:]):
            raise AssertionError(f"input {n!r} differs between data sets; cannot bind it at compile time")
        m.graph.initializer.append(numpy_helper.from_array(np.asarray(vals[0]), n))
    keep = [i for i in m.graph.input if i.name not in names]
    del m.graph.input[:]
    m.graph.input.extend(keep)
    drop = set(pos.values())
    data = [([x for j, x in enumerate(ins) if j not in drop], outs) for ins, outs in data]
    return m, data


def compile_case(model, data, name: str):
    """Import and compile ``model``. Inputs that npuc needs as compile-time constants (the
    slots the op registry declares ``const_inputs``, e.g. Reshape's shape, Reduce axes,
    Resize scales, TopK's K) are bound to the data sets' values first, as a static-shape
    compiler needs; returns ``(session, data, frozen input names)``."""
    from npuc.api import compile_graph_to_session
    from npuc.errors import ModelImportError
    from npuc.frontends.onnx import import_onnx

    graph_inputs = {i.name for i in model.graph.input} - {t.name for t in model.graph.initializer}
    frozen: set[str] = set()
    for n in model.graph.node:
        if n.domain not in ("", "ai.onnx"):
            continue
        for slot in _const_slots(n.op_type):
            if slot < len(n.input) and n.input[slot] in graph_inputs:
                frozen.add(n.input[slot])
    cur_model, cur_data = (_freeze(model, frozen, data) if frozen else (model, data))
    for _ in range(8):
        try:
            graph = import_onnx(name, model=cur_model)
            break
        except ModelImportError as e:
            m = _CONST_RE.search(str(e))
            more = _cone_inputs(model, m.group(1)) & graph_inputs - frozen if m else set()
            if not more:
                raise
            frozen |= more
            cur_model, cur_data = _freeze(model, frozen, data)
    else:  # pragma: no cover
        raise AssertionError("could not bind the compile-time inputs")
    return compile_graph_to_session(graph), cur_data, frozen


def run_case(case: BackendCase) -> set[str]:
    """Import, compile to a .npuc file, load it and run every data set; raise on mismatch.
    Returns the names of the inputs bound at compile time (see :func:`compile_case`)."""
    model, data = case_model_and_data(case)
    _check_tensor_types(model, data)
    sess, data, frozen = compile_case(model, data, f"<{case.suite}/{case.name}>")
    onnx_outputs = [o.name for o in model.graph.output]
    got_outputs = [s.name for s in sess.outputs]
    assert got_outputs == onnx_outputs, f"output names {got_outputs} != model's {onnx_outputs}"
    for ins, refs in data:
        if len(ins) != len(sess.inputs):
            raise AssertionError(f"the data set has {len(ins)} inputs, the compiled model {len(sess.inputs)}")
        feeds = {s.name: np.asarray(x) for s, x in zip(sess.inputs, ins)}
        with np.errstate(all="ignore"):
            res = sess.run(feeds)
        outs = [res[n] for n in got_outputs]
        assert_similar_outputs(refs, outs, case.rtol, case.atol)
    return frozen


# ---------------------------------------------------------------------- expected failures
EXPECTED_FAILURES_FILE = Path(__file__).with_name("expected_failures.txt")


def load_expected_failures(path: Path = EXPECTED_FAILURES_FILE) -> dict[str, str]:
    """``case_name  # reason`` lines (blank lines and ``#`` comment lines ignored)."""
    out: dict[str, str] = {}
    if not path.exists():
        return out
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        name, _, reason = s.partition("#")
        name, reason = name.strip(), reason.strip()
        if not reason:
            raise ValueError(f"{path}:{lineno}: {name!r} has no reason (write `name  # reason`)")
        if name in out:
            raise ValueError(f"{path}:{lineno}: {name!r} is listed twice")
        out[name] = reason
    return out


def quiet_logs() -> None:
    logging.getLogger("npuc").setLevel(logging.ERROR)


__all__ = ["SUITES", "BackendCase", "load_suite", "run_case", "assert_similar_outputs",
           "load_expected_failures", "NotATensor", "case_model_and_data"]
