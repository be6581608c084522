"""The .npuc file layout and the in-memory :class:`Program`, shared by writer and reader.

See docs/format.md for the byte-level specification. In short::

    header (64 bytes)  magic, version, flags, alignment, section count, file size, CRC
    section table      one 32-byte entry per section: kind, flags, offset, size, CRC-32
    sections           each starts at a multiple of ALIGNMENT

Table sections (META, TENSORS, OPS, IO, PLAN) hold compact UTF-8 JSON; the CONSTANTS
section holds raw little-endian tensor bytes, each tensor at a multiple of ALIGNMENT, in
the layout its kernel consumes, so the reader hands out zero-copy numpy views.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

MAGIC = b"NPUC\x00\r\n\x1a"
VERSION_MAJOR = 1
VERSION_MINOR = 0
ALIGNMENT = 64

HEADER = struct.Struct("<8sHHIIIQI28x")          # magic, major, minor, flags, alignment, nsect, file size, table crc
SECTION = struct.Struct("<IIQQII")               # kind, flags, offset, size, crc32, reserved
assert HEADER.size == 64 and SECTION.size == 32

# section kinds
SEC_META = 1
SEC_TENSORS = 2
SEC_OPS = 3
SEC_IO = 4
SEC_PLAN = 5
SEC_CONSTANTS = 6
SECTION_NAMES = {SEC_META: "META", SEC_TENSORS: "TENSORS", SEC_OPS: "OPS", SEC_IO: "IO",
                 SEC_PLAN: "PLAN", SEC_CONSTANTS: "CONSTANTS"}
REQUIRED_SECTIONS = (SEC_META, SEC_TENSORS, SEC_OPS, SEC_IO, SEC_PLAN, SEC_CONSTANTS)

# section flags
SF_CRC_CHECKED_ON_LOAD = 1   # table sections: CRC verified at every load

# header flags
HF_LITTLE_ENDIAN = 1

# tensor storage kinds
CONST = "const"
ARENA = "arena"

DTYPES = ("float32", "float64", "float16", "int8", "uint8", "int16", "uint16", "int32", "uint32",
          "int64", "uint64", "bool")


@dataclass
class TensorEntry:
    """One tensor: a constant (offset into CONSTANTS) or a buffer in an arena pool."""

    id: int
    name: str
    dtype: str
    shape: list[int]
    kind: str                 # CONST or ARENA
    offset: int               # byte offset in CONSTANTS (const) or in the pool (arena)
    nbytes: int
    pool: str = ""            # arena pool name (arena tensors)
    quant: dict[str, Any] | None = None   # {"scale": [...], "zero_point": [...], "axis": int|None}

    def to_json(self) -> dict:
        d = {"id": self.id, "name": self.name, "dtype": self.dtype, "shape": list(self.shape),
             "kind": self.kind, "offset": self.offset, "nbytes": self.nbytes}
        if self.pool:
            d["pool"] = self.pool
        if self.quant is not None:
            d["quant"] = self.quant
        return d


@dataclass
class OpEntry:
    """One scheduled op: the registry op, the kernel chosen at compile time, its tensors."""

    op: str
    name: str
    kernel: str
    inputs: list[int]          # tensor ids; -1 for an absent optional input
    outputs: list[int]
    attrs: dict[str, Any] = field(default_factory=dict)
    scratch: int = -1          # tensor id of the op's scratch buffer (uint8), or -1

    def to_json(self) -> dict:
        return {"op": self.op, "name": self.name, "kernel": self.kernel, "inputs": self.inputs,
                "outputs": self.outputs, "attrs": self.attrs, "scratch": self.scratch}


@dataclass
class PoolEntry:
    name: str
    size: int
    lower_bound: int
    alignment: int = ALIGNMENT
    capacity: int | None = None
    strategy: str = ""

    def to_json(self) -> dict:
        return {"name": self.name, "size": self.size, "lower_bound": self.lower_bound,
                "alignment": self.alignment, "capacity": self.capacity, "strategy": self.strategy}


@dataclass
class Program:
    """A compiled model: what the writer stores and the reader gives the runtime."""

    target: str
    tensors: list[TensorEntry]
    ops: list[OpEntry]
    inputs: list[int]
    outputs: list[int]
    pools: list[PoolEntry]
    meta: dict[str, Any] = field(default_factory=dict)
    constants: Any = None       # writer: list of (tensor id, ndarray); reader: memoryview/mmap
    file_bytes: int = 0

    def tensor(self, tid: int) -> TensorEntry:
        return self.tensors[tid]
