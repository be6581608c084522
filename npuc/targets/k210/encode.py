"""The KPU's register words, bit for bit.

One KPU layer is twelve 64-bit words (``kpu_layer_argument_t`` in the SDK's ``kpu.h``),
pushed in order into the KPU's layer-argument FIFO. :class:`KpuLayer` holds every field
with the value the register holds (so ``i_ch_num`` is channels − 1, addresses of feature
maps are in 64-byte rows); :meth:`KpuLayer.to_words` / :meth:`KpuLayer.from_words` are an
exact round trip. Reserved bits are written as zero and ignored when read.

===  ======================  ==================================================================
 w   register                fields (lsb:width; *s* = two's-complement signed)
===  ======================  ==================================================================
 0   interrupt_enabe         int_en 0:1, ram_flag 1:1, full_add 2:1, depth_wise_layer 3:1
 1   image_addr              image_src_addr 0:15, image_dst_addr 32:15
 2   image_channel_num       i_ch_num 0:10, o_ch_num 32:10, o_ch_num_coef 48:10
 3   image_size              i_row_wid 0:10, i_col_high 10:9, o_row_wid 32:10, o_col_high 42:9
 4   kernel_pool_type_cfg    kernel_type 0:3, pad_type 3:1, pool_type 4:4, first_stride 8:1,
                             bypass_conv 9:1, load_para 10:1, dma_burst_size 16:8,
                             pad_value 24:8, bwsx_base_addr 32:32
 5   kernel_load_cfg         load_coor 0:1, load_time 1:6, para_size 15:17, para_start_addr 32:32
 6   kernel_offset           coef_column_offset 0:4, coef_row_offset 4:12
 7   kernel_calc_type_cfg    channel_switch_addr 0:15, row_switch_addr 16:4, coef_size 20:8,
                             coef_group 28:3, load_act 31:1, active_addr 32:32
 8   write_back_cfg          wb_channel_switch_addr 0:15, wb_row_switch_addr 16:4, wb_group 20:3
 9   conv_value              shr_w 0:4, shr_x 4:4, arg_w 8:24 s, arg_x 32:24 s
10   conv_value2             arg_add 0:40 s
11   dma_parameter           send_data_out 0:1, channel_byte_num 16:16, dma_total_byte 32:32
===  ======================  ==================================================================

The batch-norm table is one word per output channel (``kpu_batchnorm_argument_t``):
``norm_mul`` 0:24 s, ``norm_add`` 24:32 s, ``norm_shift`` 56:4. The activation table
(``kpu_activate_table_t``, 256-byte aligned in memory) is 16 segment words
``shift_number`` 0:8, ``y_mul`` 8:16 s, ``x_start`` 24:36 s, then two words holding the 16
``result_bias`` bytes little-endian (segment i's bias is byte i of the 16). Signedness is
as nncase's simulator reads the fields back (``to_signed<24>(arg_x)``, ...).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from .spec import ACT_SEGMENTS, ACT_TABLE_WORDS, LAYER_WORDS, KpuError, KpuPool

__all__ = ["KpuLayer", "LAYER_FIELDS", "BnTable", "ActTable", "encode_bn", "decode_bn", "encode_act",
           "decode_act", "to_signed", "apply_act_table"]

#: (name, word, lsb, width, signed) for every field of the layer argument.
LAYER_FIELDS: tuple[tuple[str, int, int, int, bool], ...] = (
    ("int_en", 0, 0, 1, False), ("ram_flag", 0, 1, 1, False), ("full_add", 0, 2, 1, False),
    ("depth_wise_layer", 0, 3, 1, False),
    ("image_src_addr", 1, 0, 15, False), ("image_dst_addr", 1, 32, 15, False),
    ("i_ch_num", 2, 0, 10, False), ("o_ch_num", 2, 32, 10, False), ("o_ch_num_coef", 2, 48, 10, False),
    ("i_row_wid", 3, 0, 10, False), ("i_col_high", 3, 10, 9, False), ("o_row_wid", 3, 32, 10, False),
    ("o_col_high", 3, 42, 9, False),
    ("kernel_type", 4, 0, 3, False), ("pad_type", 4, 3, 1, False), ("pool_type", 4, 4, 4, False),
    ("first_stride", 4, 8, 1, False), ("bypass_conv", 4, 9, 1, False), ("load_para", 4, 10, 1, False),
    ("dma_burst_size", 4, 16, 8, False), ("pad_value", 4, 24, 8, False), ("bwsx_base_addr", 4, 32, 32, False),
    ("load_coor", 5, 0, 1, False), ("load_time", 5, 1, 6, False), ("para_size", 5, 15, 17, False),
    ("para_start_addr", 5, 32, 32, False),
    ("coef_column_offset", 6, 0, 4, False), ("coef_row_offset", 6, 4, 12, False),
    ("channel_switch_addr", 7, 0, 15, False), ("row_switch_addr", 7, 16, 4, False),
    ("coef_size", 7, 20, 8, False), ("coef_group", 7, 28, 3, False), ("load_act", 7, 31, 1, False),
    ("active_addr", 7, 32, 32, False),
    ("wb_channel_switch_addr", 8, 0, 15, False), ("wb_row_switch_addr", 8, 16, 4, False),
    ("wb_group", 8, 20, 3, False),
    ("shr_w", 9, 0, 4, False), ("shr_x", 9, 4, 4, False), ("arg_w", 9, 8, 24, True), ("arg_x", 9, 32, 24, True),
    ("arg_add", 10, 0, 40, True),
    ("send_data_out", 11, 0, 1, False), ("channel_byte_num", 11, 16, 16, False),
    ("dma_total_byte", 11, 32, 32, False),
)


def to_signed(value: int, bits: int) -> int:
    """The two's-complement value of the low ``bits`` bits of ``value``."""
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


def _check(name: str, value: int, bits: int, signed: bool) -> int:
    value = int(value)
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    if not lo <= value <= hi:
        raise KpuError(f"KPU field {name} = {value} does not fit its {bits}-bit "
                       f"{'signed' if signed else 'unsigned'} range {lo}..{hi}")
    return value & ((1 << bits) - 1)


@dataclass
class KpuLayer:
    """Every field of ``kpu_layer_argument_t``, holding the register's value."""

    # word 0
    int_en: int = 0
    ram_flag: int = 0
    full_add: int = 0
    depth_wise_layer: int = 0
    # word 1 (64-byte row addresses)
    image_src_addr: int = 0
    image_dst_addr: int = 0
    # word 2 (counts − 1)
    i_ch_num: int = 0
    o_ch_num: int = 0
    o_ch_num_coef: int = 0
    # word 3 (sizes − 1)
    i_row_wid: int = 0
    i_col_high: int = 0
    o_row_wid: int = 0
    o_col_high: int = 0
    # word 4
    kernel_type: int = 0
    pad_type: int = 0
    pool_type: int = 0
    first_stride: int = 0
    bypass_conv: int = 0
    load_para: int = 1
    dma_burst_size: int = 15
    pad_value: int = 0
    bwsx_base_addr: int = 0
    # word 5
    load_coor: int = 1
    load_time: int = 0
    para_size: int = 0
    para_start_addr: int = 0
    # word 6
    coef_column_offset: int = 0
    coef_row_offset: int = 0
    # word 7
    channel_switch_addr: int = 0
    row_switch_addr: int = 0
    coef_size: int = 0
    coef_group: int = 1
    load_act: int = 1
    active_addr: int = 0
    # word 8
    wb_channel_switch_addr: int = 0
    wb_row_switch_addr: int = 0
    wb_group: int = 1
    # word 9
    shr_w: int = 0
    shr_x: int = 0
    arg_w: int = 0
    arg_x: int = 0
    # word 10
    arg_add: int = 0
    # word 11
    send_data_out: int = 0
    channel_byte_num: int = 0
    dma_total_byte: int = 0

    # ------------------------------------------------------------------ words
    def to_words(self) -> np.ndarray:
        """The twelve uint64 register words. Raises :class:`KpuError` naming the first
        field whose value does not fit."""
        words = [0] * LAYER_WORDS
        for name, w, lsb, width, signed in LAYER_FIELDS:
            words[w] |= _check(name, getattr(self, name), width, signed) << lsb
        return np.array(words, dtype=np.uint64)

    @classmethod
    def from_words(cls, words) -> "KpuLayer":
        words = [int(w) for w in np.asarray(words, dtype=np.uint64).reshape(-1)]
        if len(words) != LAYER_WORDS:
            raise KpuError(f"a KPU layer argument is {LAYER_WORDS} words, got {len(words)}")
        kw = {}
        for name, w, lsb, width, signed in LAYER_FIELDS:
            v = (words[w] >> lsb) & ((1 << width) - 1)
            kw[name] = to_signed(v, width) if signed else v
        return cls(**kw)

    def replace(self, **changes) -> "KpuLayer":
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------------ meaning
    @property
    def in_channels(self) -> int:
        return self.i_ch_num + 1

    @property
    def out_channels(self) -> int:
        return self.o_ch_num + 1

    @property
    def in_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the input map."""
        return self.i_ch_num + 1, self.i_col_high + 1, self.i_row_wid + 1

    @property
    def out_shape(self) -> tuple[int, int, int]:
        """(M, H', W') of the output map (after pooling)."""
        return self.o_ch_num + 1, self.o_col_high + 1, self.o_row_wid + 1

    @property
    def kernel(self) -> int:
        if self.kernel_type not in (0, 1):
            raise KpuError(f"kernel_type {self.kernel_type} (0 = 1x1, 1 = 3x3)")
        return 3 if self.kernel_type == 1 else 1

    @property
    def depthwise(self) -> bool:
        return bool(self.depth_wise_layer)

    @property
    def pool(self) -> KpuPool:
        try:
            return KpuPool(self.pool_type)
        except ValueError:
            raise KpuError(f"pool_type {self.pool_type} is not a KPU pool (0..9)") from None

    @property
    def src_addr(self) -> int:
        """Byte address of the input map in AI SRAM."""
        return self.image_src_addr * 64

    @property
    def dst_addr(self) -> int:
        """Byte address of the output map in AI SRAM."""
        return self.image_dst_addr * 64

    @property
    def weight_bytes(self) -> int:
        """Bytes of uint8 weights the layer reads (OIHW, ``M · C/g · k · k``)."""
        c, _, _ = self.in_shape
        per_out = 1 if self.depthwise else c
        return self.out_channels * per_out * self.kernel * self.kernel


# ----------------------------------------------------------------------------- BN table
@dataclass
class BnTable:
    """Per output channel: ``v = ((acc · mul) >> shift) + add``."""

    mul: np.ndarray
    shift: np.ndarray
    add: np.ndarray

    def __post_init__(self):
        self.mul = np.asarray(self.mul, np.int64).reshape(-1)
        self.shift = np.asarray(self.shift, np.int64).reshape(-1)
        self.add = np.asarray(self.add, np.int64).reshape(-1)
        if not self.mul.shape == self.shift.shape == self.add.shape:
            raise KpuError("BN mul/shift/add must have one value per output channel")

    def __len__(self) -> int:
        return self.mul.size


def _check_array(name: str, a: np.ndarray, bits: int, signed: bool) -> np.ndarray:
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    bad = (a < lo) | (a > hi)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise KpuError(f"{name}[{i}] = {int(a[i])} does not fit its {bits}-bit "
                       f"{'signed' if signed else 'unsigned'} range {lo}..{hi}")
    return a.astype(np.int64).view(np.uint64) & np.uint64((1 << bits) - 1)


def encode_bn(bn: BnTable) -> np.ndarray:
    """One uint64 word per channel: norm_mul 0:24 s, norm_add 24:32 s, norm_shift 56:4."""
    mul = _check_array("norm_mul", bn.mul, 24, True)
    add = _check_array("norm_add", bn.add, 32, True)
    sh = _check_array("norm_shift", bn.shift, 4, False)
    return mul | (add << np.uint64(24)) | (sh << np.uint64(56))


def _signed_field(words: np.ndarray, lsb: int, bits: int) -> np.ndarray:
    """Signed field of uint64 words, vectorized: shift it to the top, arithmetic shift down."""
    top = (words << np.uint64(64 - lsb - bits)).view(np.int64)
    return top >> np.int64(64 - bits)


def decode_bn(words) -> BnTable:
    w = np.asarray(words, dtype=np.uint64).reshape(-1)
    return BnTable(mul=_signed_field(w, 0, 24), add=_signed_field(w, 24, 32),
                   shift=((w >> np.uint64(56)) & np.uint64(0xF)).astype(np.int64))


# ----------------------------------------------------------------------------- activation table
@dataclass
class ActTable:
    """16 segments: for the highest ``i`` with ``v > start[i]``,
    ``y = clamp(round_half_even((v − start[i]) · mul[i] / 2^shift[i]) + bias[i], 0, 255)``."""

    start: np.ndarray
    mul: np.ndarray
    shift: np.ndarray
    bias: np.ndarray

    def __post_init__(self):
        for f in ("start", "mul", "shift", "bias"):
            a = np.asarray(getattr(self, f), np.int64).reshape(-1)
            if a.size != ACT_SEGMENTS:
                raise KpuError(f"the activation table has {ACT_SEGMENTS} segments, {f} has {a.size}")
            setattr(self, f, a)


def encode_act(act: ActTable) -> np.ndarray:
    """18 uint64 words: 16 × (shift_number 0:8, y_mul 8:16 s, x_start 24:36 s), then the
    16 bias bytes, little-endian, in two words."""
    sh = _check_array("shift_number", act.shift, 8, False)
    mul = _check_array("y_mul", act.mul, 16, True)
    start = _check_array("x_start", act.start, 36, True)
    bias = _check_array("result_bias", act.bias, 8, False)
    out = np.zeros(ACT_TABLE_WORDS, np.uint64)
    out[:16] = sh | (mul << np.uint64(8)) | (start << np.uint64(24))
    b = bias.astype(np.uint8)
    out[16:] = np.frombuffer(b.tobytes(), dtype="<u8")
    return out


def decode_act(words) -> ActTable:
    w = np.asarray(words, dtype=np.uint64).reshape(-1)
    if w.size != ACT_TABLE_WORDS:
        raise KpuError(f"the activation table is {ACT_TABLE_WORDS} words, got {w.size}")
    seg = w[:16]
    bias = np.frombuffer(w[16:].astype("<u8").tobytes(), dtype=np.uint8).astype(np.int64)
    return ActTable(start=_signed_field(seg, 24, 36), mul=_signed_field(seg, 8, 16),
                    shift=(seg & np.uint64(0xFF)).astype(np.int64), bias=bias)


def apply_act_table(v: np.ndarray, act: ActTable) -> np.ndarray:
    """The activation stage on int64 BN outputs ``v`` (numpy; used by the fitter to
    measure its error — the emulator has its own compiled loop)."""
    v = np.asarray(v, np.int64)
    idx = np.zeros(v.shape, np.int64)
    for i in range(ACT_SEGMENTS):
        idx[v > act.start[i]] = i
    p = (v - act.start[idx]) * act.mul[idx]
    s = act.shift[idx]
    out = p.copy()
    pos = s > 0
    if pos.any():
        sp = np.minimum(s[pos], 62)
        pp = p[pos]
        q = pp >> sp
        r = pp - (q << sp)
        half = np.int64(1) << (sp - 1)
        q = q + ((r > half) | ((r == half) & ((q & 1) == 1)))
        q[s[pos] > 62] = 0
        out[pos] = q
    return np.clip(out + act.bias[idx], 0, 255).astype(np.uint8)
