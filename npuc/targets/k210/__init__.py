"""The Kendryte K210 target: the KPU's arithmetic, register words, AI SRAM layout and a
bit-exact emulator of one KPU layer.

* :mod:`.spec` — memory pools, layer limits, pool types, the row-layout rule;
* :mod:`.layout` — the 64-byte-row layout of feature maps in AI SRAM (upload/download);
* :mod:`.params` — float/quantized layer → uint8 weights, conv arguments, BN table,
  16-segment activation table fitted to the fused activation (with its error report);
* :mod:`.encode` — the twelve 64-bit layer-argument words, BN words, activation words;
* :mod:`.emulator` — runs a layer from its words on a 2 MB AI SRAM image, in integer
  arithmetic, bit-exact with the formulas of :mod:`.params`.

Typical use (what the lowering does for each KPU layer)::

    prog = make_kpu_layer((s_x, z_x), w, b, in_shape=(C, H, W), out_q=(s_y, z_y),
                          activation={"op": "Relu"}, pool="max2x2s2", src_addr=0, dst_addr=A)
    sram = new_sram(); upload(sram, 0, prog.quantize_input(x))
    y_q = emulate_layer(sram, prog)          # also written to AI SRAM at dst_addr
"""
from .emulator import emulate_layer, pool_map, run_layer
from .encode import (LAYER_FIELDS, ActTable, BnTable, KpuLayer, apply_act_table, decode_act, decode_bn,
                     encode_act, encode_bn)
from .layout import (byte_offset, channel_offset, download, fmap_bytes, fmap_rows, from_rows, new_sram, to_rows,
                     upload)
from .params import (ConvArgs, FitReport, KpuLayerProgram, QParams, activation_function, conv_args,
                     fit_activation, float_layer, make_bn, make_kpu_layer, quantize_weights)
from .spec import (AI_SRAM_BYTES, MAIN_SRAM_BYTES, POOL_NAMES, POOLS, KpuError, KpuPool, RowLayout,
                   layer_limit_violations, parse_pool, row_layout)

__all__ = [
    "emulate_layer", "run_layer", "pool_map",
    "KpuLayer", "LAYER_FIELDS", "BnTable", "ActTable", "encode_bn", "decode_bn", "encode_act", "decode_act",
    "apply_act_table",
    "fmap_bytes", "fmap_rows", "channel_offset", "byte_offset", "upload", "download", "to_rows", "from_rows",
    "new_sram",
    "QParams", "ConvArgs", "FitReport", "KpuLayerProgram", "make_kpu_layer", "quantize_weights", "conv_args",
    "make_bn", "activation_function", "fit_activation", "float_layer",
    "AI_SRAM_BYTES", "MAIN_SRAM_BYTES", "POOLS", "POOL_NAMES", "KpuError", "KpuPool", "RowLayout", "row_layout",
    "parse_pool", "layer_limit_violations",
]
