"""Writes a :class:`Program` to a .npuc file, atomically (temporary file, then rename)."""
from __future__ import annotations

import os
import tempfile
import zlib
from pathlib import Path

import numpy as np

from ..errors import FormatError
from . import jsonutil
from .schema import (ALIGNMENT, HEADER, HF_LITTLE_ENDIAN, MAGIC, SEC_CONSTANTS, SEC_IO, SEC_META, SEC_OPS,
                     SEC_PLAN, SEC_TENSORS, SECTION, SF_CRC_CHECKED_ON_LOAD, VERSION_MAJOR, VERSION_MINOR,
                     Program)


def _align(n: int, a: int = ALIGNMENT) -> int:
    return (n + a - 1) // a * a


def layout_constants(arrays: list[tuple[int, np.ndarray]]) -> tuple[dict[int, int], int]:
    """Offsets of each constant in the CONSTANTS section (each aligned), and the section size."""
    offsets, pos = {}, 0
    for tid, arr in arrays:
        pos = _align(pos)
        offsets[tid] = pos
        pos += arr.nbytes
    return offsets, pos


def serialize(program: Program) -> list[tuple[int, int, bytes | list]]:
    """The sections of ``program`` as (kind, flags, payload) in file order."""
    tables = [
        (SEC_META, {"target": program.target, **program.meta}),
        (SEC_TENSORS, [t.to_json() for t in program.tensors]),
        (SEC_OPS, [o.to_json() for o in program.ops]),
        (SEC_IO, {"inputs": program.inputs, "outputs": program.outputs}),
        (SEC_PLAN, {"pools": [p.to_json() for p in program.pools]}),
    ]
    out = [(kind, SF_CRC_CHECKED_ON_LOAD, jsonutil.dumps(obj)) for kind, obj in tables]
    out.append((SEC_CONSTANTS, 0, program.constants))
    return out


def write_program(program: Program, path: str | Path) -> int:
    """Write ``program`` to ``path``; returns the file size. ``program.constants`` is a list
    of (tensor id, array) whose tensor entries already carry their CONSTANTS offsets."""
    path = Path(path)
    sections = serialize(program)
    const_arrays: list[tuple[int, np.ndarray]] = program.constants or []
    const_off = {tid: program.tensors[tid].offset for tid, _ in const_arrays}
    const_size = max((const_off[tid] + a.nbytes for tid, a in const_arrays), default=0)

    n = len(sections)
    pos = _align(HEADER.size + n * SECTION.size)
    entries, payload_pos = [], []
    for kind, flags, payload in sections:
        size = const_size if kind == SEC_CONSTANTS else len(payload)
        entries.append([kind, flags, pos, size, 0, 0])
        payload_pos.append(pos)
        pos = _align(pos + size)
    file_size = pos

    # CRCs: table sections directly; constants streamed in file order
    for e, (kind, _, payload) in zip(entries, sections):
        if kind == SEC_CONSTANTS:
            crc, cur = 0, 0
            for tid, arr in sorted(const_arrays, key=lambda t: const_off[t[0]]):
                off = const_off[tid]
                crc = zlib.crc32(bytes(off - cur), crc)
                b = np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
                crc = zlib.crc32(b, crc)
                cur = off + len(b)
            crc = zlib.crc32(bytes(const_size - cur), crc)
            e[4] = crc
        else:
            e[4] = zlib.crc32(payload)
    table = b"".join(SECTION.pack(*e) for e in entries)
    header = HEADER.pack(MAGIC, VERSION_MAJOR, VERSION_MINOR, HF_LITTLE_ENDIAN, ALIGNMENT, n, file_size,
                         zlib.crc32(table))

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=str(path.parent))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(header)
            f.write(table)
            for (kind, _, payload), start in zip(sections, payload_pos):
                f.seek(start)
                if kind == SEC_CONSTANTS:
                    for tid, arr in const_arrays:
                        f.seek(start + const_off[tid])
                        f.write(np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<"), copy=False).tobytes())
                else:
                    f.write(payload)
            f.truncate(file_size)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise FormatError(f"{path}: could not write the model file: {e}") from e
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return file_size
