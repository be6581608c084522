"""Reads a .npuc file: validates every offset and size against the file, then maps it.

Constants become read-only numpy views over the memory map: nothing is copied or
rearranged, so loading a 1 GB model costs what loading a 1 MB one does. Table sections
are CRC-checked on every load; the CONSTANTS CRC is checked when ``verify=True``.
"""
from __future__ import annotations

import mmap
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import FormatError
from . import jsonutil
from .schema import (ALIGNMENT, ARENA, CONST, DTYPES, HEADER, MAGIC, REQUIRED_SECTIONS, SEC_CONSTANTS, SEC_IO,
                     SEC_META, SEC_OPS, SEC_PLAN, SEC_TENSORS, SECTION, SECTION_NAMES, SF_CRC_CHECKED_ON_LOAD,
                     VERSION_MAJOR, OpEntry, PoolEntry, Program, TensorEntry)


class _Check:
    def __init__(self, path: str):
        self.path = path

    def __call__(self, cond: bool, msg: str) -> None:
        if not cond:
            raise FormatError(f"{self.path}: {msg}")


def _int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def read_program(path: str | Path, *, verify: bool = False) -> Program:
    path = Path(path)
    try:
        f = open(path, "rb")
    except OSError as e:
        raise FormatError(f"{path}: cannot open the model file: {e.strerror or e}") from e
    with f:
        size = f.seek(0, 2)
        check = _Check(str(path))
        check(size >= HEADER.size, f"file is {size} bytes, too short for a .npuc header "
                                   f"(truncated, or not a .npuc file)")
        if size == 0:
            raise FormatError(f"{path}: empty file")
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    try:
        return _parse(mm, size, check, verify)
    except FormatError:
        mm.close()
        raise
    except (ValueError, KeyError, TypeError, IndexError, OverflowError, UnicodeDecodeError, RecursionError) as e:
        mm.close()
        raise FormatError(f"{path}: corrupted model file ({type(e).__name__}: {e})") from e


def _parse(mm: mmap.mmap, size: int, check: _Check, verify: bool) -> Program:
    magic, major, minor, flags, align, nsect, file_size, table_crc = HEADER.unpack_from(mm, 0)
    check(magic == MAGIC, "not a .npuc file (bad magic bytes)")
    check(major == VERSION_MAJOR, f"format version {major}.{minor} is not supported by this npuc "
                                  f"(reads version {VERSION_MAJOR}.x); recompile the model with this npuc")
    check(align == ALIGNMENT, f"alignment {align} is not {ALIGNMENT}")
    check(file_size == size, f"header says {file_size} bytes but the file has {size}: truncated or padded")
    check(0 < nsect <= 64, f"bad section count {nsect}")
    table_end = HEADER.size + nsect * SECTION.size
    check(table_end <= size, "section table runs past the end of the file")
    table = bytes(mm[HEADER.size:table_end])
    check(zlib.crc32(table) == table_crc, "section table checksum mismatch (corrupted file)")
    sections: dict[int, tuple[int, int, int, int]] = {}
    spans = []
    for i in range(nsect):
        kind, sflags, off, sz, crc, _ = SECTION.unpack_from(table, i * SECTION.size)
        name = SECTION_NAMES.get(kind, f"#{kind}")
        check(kind in SECTION_NAMES, f"unknown section kind {kind}")
        check(kind not in sections, f"section {name} appears twice")
        check(off % ALIGNMENT == 0, f"section {name} offset {off} is not {ALIGNMENT}-byte aligned")
        check(off >= table_end and off + sz <= size, f"section {name} [{off}, {off + sz}) lies outside the file")
        sections[kind] = (sflags, off, sz, crc)
        spans.append((off, off + sz, name))
    spans.sort()
    for a, b in zip(spans, spans[1:]):
        check(a[1] <= b[0], f"sections {a[2]} and {b[2]} overlap")
    for k in REQUIRED_SECTIONS:
        check(k in sections, f"section {SECTION_NAMES[k]} is missing")

    def table_json(kind: int) -> Any:
        sflags, off, sz, crc = sections[kind]
        data = bytes(mm[off:off + sz])
        if sflags & SF_CRC_CHECKED_ON_LOAD:
            check(zlib.crc32(data) == crc, f"section {SECTION_NAMES[kind]} checksum mismatch (corrupted file)")
        try:
            return jsonutil.loads(data)
        except ValueError as e:
            raise FormatError(f"{check.path}: section {SECTION_NAMES[kind]} is not valid: {e}") from e

    meta = table_json(SEC_META)
    tensors_j = table_json(SEC_TENSORS)
    ops_j = table_json(SEC_OPS)
    io = table_json(SEC_IO)
    plan = table_json(SEC_PLAN)
    check(isinstance(meta, dict) and isinstance(meta.get("target"), str), "META has no target")
    check(isinstance(tensors_j, list) and isinstance(ops_j, list) and isinstance(io, dict)
          and isinstance(plan, dict), "table sections have the wrong structure")

    _, coff, csize, ccrc = sections[SEC_CONSTANTS]
    if verify:
        check(zlib.crc32(mm[coff:coff + csize]) == ccrc, "CONSTANTS checksum mismatch (corrupted weights)")

    pools = []
    check(isinstance(plan.get("pools"), list), "PLAN has no pools")
    for p in plan["pools"]:
        check(isinstance(p, dict) and isinstance(p.get("name"), str) and _int(p.get("size"))
              and 0 <= p["size"] < (1 << 40) and _int(p.get("lower_bound")), f"bad pool entry {p!r:.80}")
        pools.append(PoolEntry(p["name"], p["size"], p["lower_bound"], p.get("alignment", ALIGNMENT),
                               p.get("capacity"), p.get("strategy", "")))
    pool_size = {p.name: p.size for p in pools}

    tensors = []
    for i, t in enumerate(tensors_j):
        check(isinstance(t, dict), f"tensor #{i} is not an object")
        name = t.get("name")
        check(t.get("id") == i and isinstance(name, str), f"tensor #{i} has a bad id or name")
        dtype, shape, kind, off, nb = t.get("dtype"), t.get("shape"), t.get("kind"), t.get("offset"), t.get("nbytes")
        check(dtype in DTYPES, f"tensor {name!r}: bad dtype {dtype!r}")
        check(isinstance(shape, list) and len(shape) <= 16 and all(_int(d) and 0 <= d < (1 << 40) for d in shape),
              f"tensor {name!r}: bad shape {shape!r:.80}")
        check(_int(off) and _int(nb) and off >= 0 and nb >= 0, f"tensor {name!r}: bad offset/size")
        count = int(np.prod(shape, dtype=np.int64)) if shape else 1
        check(count * np.dtype(dtype).itemsize == nb, f"tensor {name!r}: {nb} bytes do not match "
                                                       f"{dtype}{shape}")
        if kind == CONST:
            check(off % ALIGNMENT == 0, f"constant {name!r} is not aligned")
            check(off + nb <= csize, f"constant {name!r} [{off}, {off + nb}) lies outside CONSTANTS ({csize} bytes)")
        elif kind == ARENA:
            pool = t.get("pool")
            check(pool in pool_size, f"tensor {name!r}: unknown pool {pool!r}")
            check(off + nb <= pool_size[pool], f"tensor {name!r} [{off}, {off + nb}) lies outside pool "
                                               f"{pool!r} ({pool_size[pool]} bytes)")
        else:
            check(False, f"tensor {name!r}: unknown storage kind {kind!r}")
        quant = t.get("quant")
        check(quant is None or isinstance(quant, dict), f"tensor {name!r}: bad quant entry")
        tensors.append(TensorEntry(i, name, dtype, shape, kind, off, nb, t.get("pool", ""), quant))

    nt = len(tensors)

    def ids(lst, what, allow_absent=False):
        check(isinstance(lst, list) and all(_int(x) and (0 <= x < nt or (allow_absent and x == -1)) for x in lst),
              f"{what}: tensor ids out of range")
        return lst

    ops = []
    for i, o in enumerate(ops_j):
        check(isinstance(o, dict) and isinstance(o.get("op"), str) and isinstance(o.get("kernel"), str)
              and isinstance(o.get("name"), str), f"op #{i} is malformed")
        attrs = o.get("attrs", {})
        check(isinstance(attrs, dict), f"op {o['name']!r}: attributes are not an object")
        scratch = o.get("scratch", -1)
        check(_int(scratch) and -1 <= scratch < nt, f"op {o['name']!r}: bad scratch id")
        ops.append(OpEntry(o["op"], o["name"], o["kernel"], ids(o.get("inputs"), f"op {o['name']!r}", True),
                           ids(o.get("outputs"), f"op {o['name']!r}"), jsonutil.decode_attr(attrs), scratch))
    inputs = ids(io.get("inputs"), "IO inputs")
    outputs = ids(io.get("outputs"), "IO outputs")
    constants = memoryview(mm)[coff:coff + csize]
    prog = Program(meta["target"], tensors, ops, inputs, outputs, pools, meta, constants, size)
    prog._mmap = mm  # keep the mapping alive as long as the program
    return prog


def const_view(program: Program, t: TensorEntry) -> np.ndarray:
    """A read-only numpy view of constant tensor ``t`` (no copy)."""
    dt = np.dtype(t.dtype).newbyteorder("<")
    arr = np.frombuffer(program.constants, dtype=dt, count=t.nbytes // dt.itemsize if dt.itemsize else 0,
                        offset=t.offset)
    return arr.reshape(t.shape)
