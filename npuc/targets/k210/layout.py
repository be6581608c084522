"""The AI SRAM layout of KPU feature maps: 64-byte rows, several narrow channels per row.

For a C×H×W uint8 map stored at byte address ``base`` (a multiple of 64), with the
:func:`~.spec.row_layout` of its width (``groups`` g, ``row_len`` r, ``row_pitch`` p):

``byte(c, y, x) = base + (c // g) · r · H · 64 + (c % g) · p + y · r · 64 + x``

so a channel group occupies ``r · H`` rows (the layer argument's ``channel_switch_addr``),
an image row ``r`` rows (``row_switch_addr``) and the map
``fmap_bytes = r · H · ceil(C / g) · 64`` bytes. Bytes of a row past the last valid pixel
(x ≥ W within a slot, slots of missing channels in the last group) belong to the map but
carry no data; :func:`upload` leaves them untouched. A batch of N maps is N consecutive
maps, ``fmap_bytes`` apart (as nncase lays out batches).

Uploading a CPU tensor into this layout and downloading it back are explicit copies; the
functions here are vectorized (strided views, no per-row Python loop).
"""
from __future__ import annotations

import numpy as np

from .spec import AI_SRAM_BYTES, ROW_BYTES, KpuError, RowLayout, row_layout

__all__ = ["RowLayout", "row_layout", "fmap_rows", "fmap_bytes", "channel_offset", "byte_offset",
           "map_view", "upload", "download", "to_rows", "from_rows"]


def fmap_rows(channels: int, height: int, width: int) -> int:
    """64-byte rows of a C×H×W map."""
    lay = row_layout(width)
    return lay.row_len * height * (-(-channels // lay.groups))


def fmap_bytes(channels: int, height: int, width: int) -> int:
    """Bytes of a C×H×W map in AI SRAM (always a multiple of 64)."""
    return fmap_rows(channels, height, width) * ROW_BYTES


def channel_offset(c: int, height: int, width: int) -> int:
    """Byte offset of row 0 of channel ``c`` from the start of its map."""
    lay = row_layout(width)
    return (c // lay.groups) * lay.row_len * height * ROW_BYTES + (c % lay.groups) * lay.row_pitch


def byte_offset(c: int, y: int, x: int, height: int, width: int) -> int:
    """Byte offset of pixel (c, y, x) from the start of its map."""
    return channel_offset(c, height, width) + y * row_layout(width).row_len * ROW_BYTES + x


def _as_u8(mem) -> np.ndarray:
    if isinstance(mem, np.ndarray):
        if mem.dtype != np.uint8 or mem.ndim != 1:
            raise KpuError(f"AI SRAM must be a 1-D uint8 array, got {mem.dtype} {mem.shape}")
        return mem
    return np.frombuffer(mem, dtype=np.uint8)


def map_view(mem: np.ndarray, addr: int, channels: int, height: int, width: int, *,
             groups: int | None = None, row_len: int | None = None,
             channel_rows: int | None = None) -> list[np.ndarray]:
    """Strided views of a map in ``mem``: one ``(ceil((C − j) / g), H, W)`` view per slot
    ``j < g`` of the row group, holding channels ``j, j + g, j + 2g, ...``.

    ``groups``/``row_len``/``channel_rows`` default to the layout of ``width``; the
    emulator passes the values of the layer words instead (coef_group, row_switch_addr,
    channel_switch_addr). Raises :class:`KpuError` when the map does not fit in ``mem``.
    """
    lay = row_layout(width)
    g = lay.groups if groups is None else groups
    r = lay.row_len if row_len is None else row_len
    cs = (r * height if channel_rows is None else channel_rows) * ROW_BYTES
    if g not in (1, 2, 4):
        raise KpuError(f"row group of {g} channels (the KPU packs 1, 2 or 4)")
    pitch = ROW_BYTES // g
    if width > (pitch if g > 1 else r * ROW_BYTES):
        raise KpuError(f"width {width} does not fit a row slot of {pitch if g > 1 else r * ROW_BYTES} bytes")
    if addr % ROW_BYTES:
        raise KpuError(f"feature-map address {addr:#x} is not a multiple of {ROW_BYTES}")
    n_groups = -(-channels // g)
    last = addr + (n_groups - 1) * cs + (min(g, channels) - 1) * pitch + (height - 1) * r * ROW_BYTES + width
    if addr < 0 or last > mem.size:
        raise KpuError(f"a {channels}x{height}x{width} map at {addr:#x} ends at {last:#x}, "
                       f"past the end of the {mem.size:#x}-byte memory")
    views = []
    for j in range(min(g, channels)):
        n = (channels - j + g - 1) // g
        views.append(np.lib.stride_tricks.as_strided(
            mem[addr + j * pitch:], shape=(n, height, width), strides=(cs, r * ROW_BYTES, 1),
            writeable=mem.flags.writeable))
    return views


def upload(mem, addr: int, x: np.ndarray) -> None:
    """Write a ``(C, H, W)`` or ``(N, C, H, W)`` uint8 tensor into ``mem`` (AI SRAM, a
    2 MB uint8 array or any uint8 buffer) at byte address ``addr``."""
    mem = _as_u8(mem)
    x = np.asarray(x)
    if x.dtype != np.uint8:
        raise KpuError(f"only uint8 maps go to AI SRAM, got {x.dtype}")
    if x.ndim == 4:
        step = fmap_bytes(*x.shape[1:])
        for n in range(x.shape[0]):
            upload(mem, addr + n * step, x[n])
        return
    if x.ndim != 3:
        raise KpuError(f"expected a (C, H, W) or (N, C, H, W) map, got shape {x.shape}")
    c, h, w = x.shape
    g = row_layout(w).groups
    for j, v in enumerate(map_view(mem, addr, c, h, w)):
        v[...] = x[j::g]


def download(mem, addr: int, shape) -> np.ndarray:
    """Read a ``(C, H, W)`` or ``(N, C, H, W)`` map at byte address ``addr`` back into a
    new contiguous uint8 array."""
    mem = _as_u8(mem)
    shape = tuple(int(s) for s in shape)
    if len(shape) == 4:
        step = fmap_bytes(*shape[1:])
        return np.stack([download(mem, addr + n * step, shape[1:]) for n in range(shape[0])])
    if len(shape) != 3:
        raise KpuError(f"expected a (C, H, W) or (N, C, H, W) shape, got {shape}")
    c, h, w = shape
    g = row_layout(w).groups
    out = np.empty(shape, np.uint8)
    for j, v in enumerate(map_view(mem, addr, c, h, w)):
        out[j::g] = v
    return out


def to_rows(x: np.ndarray) -> np.ndarray:
    """The ``fmap_bytes`` bytes (zero where no pixel lives) of a ``(C, H, W)`` map."""
    c, h, w = x.shape
    buf = np.zeros(fmap_bytes(c, h, w), np.uint8)
    upload(buf, 0, x)
    return buf


def from_rows(buf: np.ndarray, shape) -> np.ndarray:
    """Inverse of :func:`to_rows`."""
    return download(np.asarray(buf, np.uint8).reshape(-1), 0, shape)


def new_sram() -> np.ndarray:
    """A zeroed 2 MB AI SRAM image."""
    return np.zeros(AI_SRAM_BYTES, np.uint8)
