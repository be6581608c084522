"""Kendryte K210 hardware constants: memory pools, KPU layer limits, pool types, the
AI SRAM row layout rules and the bit widths of the KPU's arithmetic.

Sources (see ``docs/k210.md``): the SDK's ``kpu.h`` (kendryte-standalone-sdk,
``lib/drivers/include/kpu.h``) for the register layout, and nncase 1.x
(``modules/k210``) for the layer limits, pool types, row layout and the emulation
semantics.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from ...errors import NpucError

# ----------------------------------------------------------------------------- memory
AI_SRAM_BYTES = 2 * 1024 * 1024          #: the KPU's feature-map memory ("kpu" pool)
MAIN_SRAM_BYTES = 6 * 1024 * 1024        #: general SRAM: weights, tables, CPU tensors, program
ROW_BYTES = 64                           #: one AI SRAM row; addresses count in rows
ADDR_BITS = 15                           #: image_src_addr / image_dst_addr width (2 MB / 64)
ACT_TABLE_ALIGN = 256                    #: the activation table must be 256-byte aligned
ACT_TABLE_WORDS = 18                     #: 16 segment words + 2 words of 8 bias bytes
ACT_SEGMENTS = 16
LAYER_WORDS = 12                         #: 64-bit words of one kpu_layer_argument_t

# ----------------------------------------------------------------------------- limits
MAX_IN_CHANNELS = 1024
MAX_OUT_CHANNELS = 1024
MIN_IN_HEIGHT, MAX_IN_HEIGHT = 4, 256
MIN_IN_WIDTH, MAX_IN_WIDTH = 4, 512
KERNEL_SIZES = (1, 3)
#: nncase 1.x streams the weights of a non-depthwise layer in loads of at most 30 KiB
#: (``size_limit = 30`` in its codegen); depthwise layers load all weights at once.
WEIGHTS_LOAD_LIMIT = 30 * 1024
MAX_LOADS = 64                           #: load_time is a 6-bit field (loads − 1)

# ----------------------------------------------------------------------------- arithmetic widths
ACC_BITS = 36          #: the convolution result and the BN output are 36-bit signed
ARG_XW_BITS = 24       #: arg_x / arg_w, signed
ARG_SHIFT_BITS = 4     #: shr_x / shr_w
ARG_ADD_BITS = 40      #: arg_add, signed
BN_MUL_BITS = 24       #: norm_mul, signed
BN_ADD_BITS = 32       #: norm_add, signed
BN_SHIFT_BITS = 4      #: norm_shift
ACT_START_BITS = 36    #: x_start, signed
ACT_MUL_BITS = 16      #: y_mul, signed
ACT_SHIFT_BITS = 8     #: shift_number
ACT_BIAS_BITS = 8      #: result_bias, unsigned
ACT_START_MIN = -(1 << (ACT_START_BITS - 1))      #: start of segment 0: every legal v is above it
ACT_START_MAX = (1 << (ACT_START_BITS - 1)) - 1   #: start of an unused segment: never selected


class KpuError(NpucError):
    """A KPU layer cannot be built, encoded or emulated (a field out of range, a layer
    beyond the hardware limits, inconsistent words)."""


class KpuPool(IntEnum):
    """The ``pool_type`` field (values as in nncase's ``kpu_pool_type_t``)."""

    BYPASS = 0
    MAX_2_S2 = 1
    MEAN_2_S2 = 2
    MAX_4_S4 = 3
    MEAN_4_S4 = 4
    LEFT_TOP_2_S2 = 5
    RIGHT_TOP_2_S2 = 6
    LEFT_TOP_4_S4 = 7
    MEAN_2_S1 = 8
    MAX_2_S1 = 9

    @property
    def kind(self) -> str:
        """``"bypass"``, ``"max"``, ``"mean"`` or ``"select"``."""
        return _POOL_INFO[self][0]

    @property
    def size(self) -> int:
        return _POOL_INFO[self][1]

    @property
    def stride(self) -> int:
        return _POOL_INFO[self][2]

    @property
    def select_offset(self) -> tuple[int, int]:
        """(row, column) of the pixel a select pool takes inside its cell."""
        return _POOL_INFO[self][3]

    def out_size(self, n: int) -> int:
        """Output height/width for an input height/width ``n`` (``n // stride``)."""
        return n // self.stride


_POOL_INFO = {
    KpuPool.BYPASS: ("bypass", 1, 1, (0, 0)),
    KpuPool.MAX_2_S2: ("max", 2, 2, (0, 0)),
    KpuPool.MEAN_2_S2: ("mean", 2, 2, (0, 0)),
    KpuPool.MAX_4_S4: ("max", 4, 4, (0, 0)),
    KpuPool.MEAN_4_S4: ("mean", 4, 4, (0, 0)),
    KpuPool.LEFT_TOP_2_S2: ("select", 2, 2, (0, 0)),
    KpuPool.RIGHT_TOP_2_S2: ("select", 2, 2, (0, 1)),
    KpuPool.LEFT_TOP_4_S4: ("select", 4, 4, (0, 0)),
    KpuPool.MEAN_2_S1: ("mean", 2, 1, (0, 0)),
    KpuPool.MAX_2_S1: ("max", 2, 1, (0, 0)),
}

_POOL_NAMES = {
    "none": KpuPool.BYPASS, "bypass": KpuPool.BYPASS,
    "max2x2s2": KpuPool.MAX_2_S2, "mean2x2s2": KpuPool.MEAN_2_S2,
    "max4x4s4": KpuPool.MAX_4_S4, "mean4x4s4": KpuPool.MEAN_4_S4,
    "select_lt2x2": KpuPool.LEFT_TOP_2_S2, "select_rt2x2": KpuPool.RIGHT_TOP_2_S2,
    "select_lt4x4": KpuPool.LEFT_TOP_4_S4,
    "mean2x2s1": KpuPool.MEAN_2_S1, "max2x2s1": KpuPool.MAX_2_S1,
}
POOL_NAMES: tuple[str, ...] = tuple(_POOL_NAMES)


def parse_pool(pool: "str | int | KpuPool | None") -> KpuPool:
    """A pool type from its name (``"none"``, ``"max2x2s2"``, ``"select_rt2x2"`` ...), its
    register value or a :class:`KpuPool`."""
    if pool is None:
        return KpuPool.BYPASS
    if isinstance(pool, KpuPool):
        return pool
    if isinstance(pool, int):
        try:
            return KpuPool(pool)
        except ValueError:
            raise KpuError(f"unknown KPU pool type {pool}; valid values are 0..9") from None
    key = str(pool).lower().replace("-", "").replace(" ", "")
    try:
        return _POOL_NAMES[key]
    except KeyError:
        raise KpuError(f"unknown KPU pool {pool!r}; choose one of: {', '.join(POOL_NAMES)}") from None


# ----------------------------------------------------------------------------- row layout
@dataclass(frozen=True)
class RowLayout:
    """How one C×H×W map sits in AI SRAM rows.

    ``groups`` channels share a 64-byte row (each at ``row_pitch`` bytes from the previous
    one); an image row takes ``row_len`` 64-byte rows; a channel group takes
    ``row_len · H`` rows (the ``channel_switch_addr``).
    """

    groups: int
    row_len: int
    row_pitch: int


def row_layout(width: int) -> RowLayout:
    """W ≤ 16: 4 channels per row (pitch 16); W ≤ 32: 2 (pitch 32); else 1 channel and
    ceil(W/64) rows per image row."""
    if width <= 0:
        raise KpuError(f"feature-map width must be positive, got {width}")
    if width <= 16:
        return RowLayout(4, 1, 16)
    if width <= 32:
        return RowLayout(2, 1, 32)
    return RowLayout(1, (width + 63) // 64, 64)


def layer_limit_violations(in_channels: int, height: int, width: int, out_channels: int,
                           kernel: int, depthwise: bool = False) -> list[str]:
    """Why a convolution cannot run as one KPU layer (empty when it can), in the limits
    nncase 1.x enforces: channels ≤ 1024, input height 4..256 and width 4..512, kernel
    1×1 or 3×3, depthwise only with as many outputs as inputs, and the weights streamed
    in at most 64 loads of ≤ 30 KiB (so a 3×3 layer with 512 inputs takes ≤ 384 outputs)."""
    why = []
    if not 1 <= in_channels <= MAX_IN_CHANNELS:
        why.append(f"{in_channels} input channels (the KPU takes 1..{MAX_IN_CHANNELS})")
    if not 1 <= out_channels <= MAX_OUT_CHANNELS:
        why.append(f"{out_channels} output channels (the KPU takes 1..{MAX_OUT_CHANNELS})")
    if not MIN_IN_HEIGHT <= height <= MAX_IN_HEIGHT:
        why.append(f"input height {height} (the KPU takes {MIN_IN_HEIGHT}..{MAX_IN_HEIGHT})")
    if not MIN_IN_WIDTH <= width <= MAX_IN_WIDTH:
        why.append(f"input width {width} (the KPU takes {MIN_IN_WIDTH}..{MAX_IN_WIDTH})")
    if kernel not in KERNEL_SIZES:
        why.append(f"{kernel}x{kernel} kernel (the KPU has 1x1 and 3x3)")
    if depthwise and in_channels != out_channels:
        why.append(f"depthwise with {in_channels} inputs and {out_channels} outputs (must be equal)")
    if not depthwise and kernel in KERNEL_SIZES and 1 <= in_channels and 1 <= out_channels:
        per_out = kernel * kernel * in_channels
        if per_out > WEIGHTS_LOAD_LIMIT:
            why.append(f"{per_out} weight bytes per output channel (more than one {WEIGHTS_LOAD_LIMIT}-byte load)")
        else:
            loads = -(-out_channels // (WEIGHTS_LOAD_LIMIT // per_out))
            if loads > MAX_LOADS:
                why.append(f"{loads} weight loads of {WEIGHTS_LOAD_LIMIT // per_out} output channels "
                           f"(the 6-bit load_time allows {MAX_LOADS})")
    return why


#: The memory pools of the chip, for the lowering and the memory planner.
POOLS = {"kpu": AI_SRAM_BYTES, "main": MAIN_SRAM_BYTES}
