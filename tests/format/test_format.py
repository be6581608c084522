"""The .npuc format: round trip, validation, and fuzzing of real model files."""
from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

import npuc
from npuc.errors import FormatError, NpucError
from npuc.format import schema
from npuc.format.reader import read_program

DATA = Path(__file__).resolve().parents[1] / "data"


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    d = tmp_path_factory.mktemp("fmt")
    out = {}
    for name in ("digits_dwcnn", "mtcnn_pnet"):
        p = d / f"{name}.npuc"
        npuc.compile(DATA / name / "model.onnx", p)
        out[name] = p
    return out


def test_round_trip_matches_reference(compiled):
    for name, path in compiled.items():
        sess = npuc.load(path)
        test = np.load(DATA / name / "test.npz")
        ref = np.load(DATA / name / "ref.npz")
        feeds = {s.name: test[s.name][0] for s in sess.inputs}
        got = sess.run(feeds)
        for o in sess.outputs:
            np.testing.assert_allclose(got[o.name], ref[o.name][0], rtol=1e-4, atol=1e-4)


def test_header_fields(compiled):
    raw = Path(compiled["digits_dwcnn"]).read_bytes()
    magic, major, minor, flags, align, nsect, size, _ = schema.HEADER.unpack_from(raw, 0)
    assert magic == schema.MAGIC and major == schema.VERSION_MAJOR and align == 64
    assert size == len(raw)
    for i in range(nsect):
        kind, _, off, sz, _, _ = schema.SECTION.unpack_from(raw, schema.HEADER.size + i * schema.SECTION.size)
        assert off % 64 == 0 and off + sz <= len(raw)
    prog = read_program(compiled["digits_dwcnn"], verify=True)
    for t in prog.tensors:
        if t.kind == schema.CONST:
            assert t.offset % 64 == 0


def test_constants_are_zero_copy_views(compiled):
    sess = npuc.load(compiled["mtcnn_pnet"])
    prog = sess.program
    consts = [t for t in prog.tensors if t.kind == schema.CONST]
    assert consts
    for t in consts:
        v = sess._views[t.id]
        assert not v.flags.writeable and not v.flags.owndata
        base = v
        while isinstance(base, np.ndarray) and base.base is not None:
            base = base.base
        assert not isinstance(base, np.ndarray)  # backed by the memory map, not a copy


def test_wrong_version_and_magic(compiled, tmp_path):
    raw = bytearray(Path(compiled["digits_dwcnn"]).read_bytes())
    bad = bytearray(raw)
    struct.pack_into("<H", bad, 8, schema.VERSION_MAJOR + 1)
    p = tmp_path / "v.npuc"
    p.write_bytes(bad)
    with pytest.raises(FormatError, match="version"):
        npuc.load(p)
    bad = bytearray(raw)
    bad[0:4] = b"ONNX"
    p.write_bytes(bad)
    with pytest.raises(FormatError, match="not a .npuc file"):
        npuc.load(p)
    p.write_bytes(b"")
    with pytest.raises(FormatError):
        npuc.load(p)
    with pytest.raises(FormatError, match="cannot open"):
        npuc.load(tmp_path / "missing.npuc")


def _rewrite(path: Path, out: Path, mutate_tensors=None, mutate_ops=None) -> None:
    """Rewrite a model with a damaged table but valid checksums, so that only the reader's
    semantic checks can catch it."""
    from npuc.format.reader import const_view
    from npuc.format.writer import write_program

    prog = read_program(path)
    consts = [(t.id, np.array(const_view(prog, t))) for t in prog.tensors if t.kind == schema.CONST]
    tensors = [schema.TensorEntry(**{**t.__dict__}) for t in prog.tensors]
    ops = [schema.OpEntry(**{**o.__dict__}) for o in prog.ops]
    prog2 = schema.Program(prog.target, tensors, ops, prog.inputs, prog.outputs, prog.pools,
                           {k: v for k, v in prog.meta.items() if k != "target"}, consts)
    if mutate_tensors:
        mutate_tensors(prog2.tensors)
    if mutate_ops:
        mutate_ops(prog2.ops)
    write_program(prog2, out)


@pytest.mark.parametrize("mutation,match", [
    (lambda t: setattr(t[0], "offset", 10**9), "outside"),
    (lambda t: setattr(t[-1], "nbytes", t[-1].nbytes + 4), "do not match"),
    (lambda t: setattr(t[0], "dtype", "complex64"), "dtype"),
    (lambda t: setattr(t[0], "kind", "heap"), "storage kind"),
    (lambda t: setattr(t[0], "shape", [-1]), "shape"),
])
def test_semantic_validation_of_tensor_table(compiled, tmp_path, mutation, match):
    p = tmp_path / "bad.npuc"
    _rewrite(compiled["digits_dwcnn"], p, mutate_tensors=mutation)
    with pytest.raises(FormatError, match=match):
        npuc.load(p)


def test_bad_op_tensor_ids(compiled, tmp_path):
    p = tmp_path / "bad.npuc"
    _rewrite(compiled["digits_dwcnn"], p, mutate_ops=lambda ops: setattr(ops[0], "inputs", [99999]))
    with pytest.raises(FormatError, match="out of range"):
        npuc.load(p)


def _try_load_and_run(path: Path) -> None:
    try:
        sess = npuc.load(path)
        feeds = {s.name: np.zeros(s.shape, s.dtype) for s in sess.inputs}
        sess.run(feeds)
    except NpucError:
        pass  # the only acceptable failure


def test_fuzz_truncation(compiled, tmp_path):
    raw = Path(compiled["mtcnn_pnet"]).read_bytes()
    rng = np.random.default_rng(1)
    cuts = sorted(set([0, 1, 8, 63, 64, 65, 200, len(raw) - 1]) | set(rng.integers(0, len(raw), 40).tolist()))
    p = tmp_path / "t.npuc"
    for c in cuts:
        p.write_bytes(raw[:c])
        with pytest.raises(FormatError):
            npuc.load(p)


@pytest.mark.parametrize("name", ["digits_dwcnn", "mtcnn_pnet"])
def test_fuzz_byte_flips(compiled, tmp_path, name):
    raw = Path(compiled[name]).read_bytes()
    rng = np.random.default_rng(2)
    p = tmp_path / "f.npuc"
    # bias the flips toward the header, table and table sections, where structure lives
    prog = read_program(compiled[name])
    first_const = min((t.offset for t in prog.tensors if t.kind == "const"), default=0)
    limit = len(raw) - prog.constants.nbytes + first_const
    for i in range(150):
        bad = bytearray(raw)
        hi = limit if i % 3 else len(raw)
        for _ in range(int(rng.integers(1, 4))):
            pos = int(rng.integers(0, hi))
            bad[pos] ^= 1 << int(rng.integers(0, 8))
        p.write_bytes(bytes(bad))
        _try_load_and_run(p)


def test_written_atomically(tmp_path, compiled):
    # a failing write leaves no partial file behind and keeps the old one intact
    from npuc.format.writer import write_program

    target = tmp_path / "m.npuc"
    target.write_bytes(b"old")
    prog = read_program(compiled["digits_dwcnn"])
    prog.constants = [(0, object())]  # not an array: the write fails midway
    with pytest.raises(Exception):
        write_program(prog, target)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["m.npuc"]


def test_verify_detects_weight_corruption(compiled, tmp_path):
    raw = bytearray(Path(compiled["digits_dwcnn"]).read_bytes())
    prog = read_program(compiled["digits_dwcnn"])
    t = next(t for t in prog.tensors if t.kind == "const")
    csec = len(raw) - prog.constants.nbytes
    # constants are the last section; flip a byte inside the first constant
    hdr = schema.HEADER.unpack_from(raw, 0)
    for i in range(hdr[5]):
        kind, _, off, sz, _, _ = schema.SECTION.unpack_from(raw, schema.HEADER.size + i * schema.SECTION.size)
        if kind == schema.SEC_CONSTANTS:
            raw[off + t.offset] ^= 0xFF
    p = tmp_path / "w.npuc"
    p.write_bytes(bytes(raw))
    npuc.load(p)  # structure is intact: loads
    with pytest.raises(FormatError, match="CONSTANTS checksum"):
        npuc.load(p, verify=True)
    assert csec > 0
