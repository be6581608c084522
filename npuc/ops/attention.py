"""Transformer ops: Attention (opset 23–25), RotaryEmbedding (23), TensorScatter (24),
SwiGLU, LinearAttention and CausalConvWithState (the recurrent/state-space blocks).

Semantics follow the ONNX operator specification; the kernels compute in float64 (float32
for LinearAttention, whose specification accumulates its state in float32) and round to
the input dtype once per output.

Attention (``Q, K, V, attn_mask?, past_key?, past_value?, nonpad_kv_seqlen?``)::

    3-D inputs (B, S, heads·D) are split into heads: (B, heads, S, D)
    present_key   = concat(past_key, K) on the sequence axis (likewise V)
    bias[q, k]    = attn_mask (bool: 0 where True, −inf where False; padded with −inf /
                    False up to the total key length)
                  + causal: −inf where k > q + offset
                  + window: −inf where q + offset − k > left or k − (q + offset) > right
                  + padding: −inf where k ≥ nonpad_kv_seqlen[b]
        offset = past length (past_key), nonpad_kv_seqlen[b] − S_q (external cache) or 0
    GQA/MQA: each KV head serves q_heads / kv_heads consecutive query heads
    logits = (Q·√scale)(K·√scale)ᵀ,  scale = 1/√D by default
    logits = softcap · tanh(logits / softcap)          when softcap > 0
    P = softmax(logits + bias) over keys; a row whose bias is all −inf gives P = 0
    Y = P · V  (3-D: heads merged back to (B, S_q, heads·D_v))
    qk_matmul_output: mode 0 logits before softcap, 1 after softcap, 2 plus bias, 3 P

RotaryEmbedding rotates pairs ``(x1, x2)`` of the first ``rotary_embedding_dim`` features
of each head by the cached angle: ``(x1·cos − x2·sin, x1·sin + x2·cos)``; the pairs are
the two halves (``interleaved=0``) or even/odd features (``interleaved=1``); the caches
are indexed by ``position_ids`` when given, else they are (B, S, dim/2) already.

LinearAttention keeps a state ``S (B, H_kv, d_k, d_v)`` per head and for each step t:
``S ← S·exp(g_t)`` (gated rules), ``v_t ← β_t·(v_t − Sᵀk_t)`` (delta rules),
``S ← S + k_t ⊗ v_t``, ``o_t = scale · q_tᵀ S`` (GQA: KV heads serve consecutive query
heads).

CausalConvWithState: a depthwise 1-D convolution of ``concat(past_state, input)`` (time
axis, valid padding; kernel (C, 1, k)), optional SiLU; ``present_state`` is the last k−1
time steps of that concatenation.
"""
from __future__ import annotations

import numpy as np

from ..ir.dtypes import ONNX_TO_NUMPY
from .registry import InferContext, register

# ---------------------------------------------------------------- Attention

_ATTN_ATTRS = {"is_causal": 0, "kv_num_heads": None, "q_num_heads": None, "qk_matmul_output_mode": 0,
               "scale": None, "softcap": 0.0, "softmax_precision": None, "left_window_size": -1,
               "right_window_size": -1}


def _attn_dims(q, k, v, q_heads, kv_heads):
    """(B, Hq, Sq, Dq), (B, Hkv, Skv, Dk), Dv of Q, K, V shapes (3-D or 4-D)."""
    if not (len(q) == len(k) == len(v)) or len(q) not in (3, 4):
        raise ValueError(f"Q {list(q)}, K {list(k)}, V {list(v)} must all be 3-D or all 4-D")
    if len(q) == 4:
        if k[1] != v[1] or k[2] != v[2]:
            raise ValueError(f"K {list(k)} and V {list(v)} differ in heads or sequence length")
        return q, k, v[3]
    if not q_heads or not kv_heads:
        raise ValueError("3-D inputs need the q_num_heads and kv_num_heads attributes")
    if q[2] % q_heads or k[2] % kv_heads or v[2] % kv_heads:
        raise ValueError(f"hidden sizes Q {q[2]}, K {k[2]}, V {v[2]} must divide by the head counts "
                         f"({q_heads}, {kv_heads})")
    return ((q[0], q_heads, q[1], q[2] // q_heads), (k[0], kv_heads, k[1], k[2] // kv_heads),
            v[2] // kv_heads)


def _attention_infer(ctx: InferContext):
    a = ctx.attrs
    try:
        q4, k4, dv = _attn_dims(ctx.shape(0), ctx.shape(1), ctx.shape(2), a["q_num_heads"], a["kv_num_heads"])
    except ValueError as e:
        raise ctx.fail(str(e)) from None
    b, hq, sq, dq = q4
    _, hkv, skv, dk = k4
    if dq != dk:
        raise ctx.fail(f"Q and K head sizes differ ({dq} vs {dk})")
    if hq % hkv:
        raise ctx.fail(f"q heads ({hq}) must be a multiple of kv heads ({hkv})")
    past = 0
    if ctx.has(4):
        pk = ctx.shape(4)
        if len(pk) != 4 or pk[0] != b or pk[1] != hkv or pk[3] != dk:
            raise ctx.fail(f"past_key {list(pk)} must be ({b}, {hkv}, past, {dk})")
        past = pk[2]
    total = past + skv
    if int(a["qk_matmul_output_mode"]) not in (0, 1, 2, 3):
        raise ctx.fail(f"qk_matmul_output_mode {a['qk_matmul_output_mode']} is not 0..3")
    dt = ctx.dtype(0)
    y = (b, hq, sq, dv) if len(ctx.shape(0)) == 4 else (b, sq, hq * dv)
    return [(dt, y), (dt, (b, hkv, total, dk)), (dt, (b, hkv, total, dv)), (dt, (b, hq, sq, total))]


def _to4(x, heads):
    x = np.asarray(x)
    if x.ndim == 4:
        return x
    b, s, h = x.shape
    return x.reshape(b, s, heads, h // heads).transpose(0, 2, 1, 3)


def _frontier(sq, skv, offset, keep):
    """(…, Sq, Skv) bool: ``keep(diff)`` with diff = q + offset − k; offset scalar or (B,)."""
    q = np.arange(sq).reshape(sq, 1)
    k = np.arange(skv).reshape(1, skv)
    off = np.asarray(offset)
    if off.ndim:
        return keep(q + off.reshape(-1, 1, 1, 1) - k)
    return keep(q + int(off) - k)


@register("Attention", inputs=(3, 7), attrs=_ATTN_ATTRS, infer=_attention_infer)
def attention(q, k, v, attn_mask=None, past_key=None, past_value=None, nonpad_kv_seqlen=None, *,
              is_causal, kv_num_heads, q_num_heads, qk_matmul_output_mode, scale, softcap,
              softmax_precision, left_window_size, right_window_size):
    """Scaled dot-product attention; see the module docstring."""
    dt = np.asarray(q).dtype
    three_d = np.ndim(q) == 3
    # float16 is computed step by step in float16, as the specification's function body
    # does (rounding once from float64 differs from it by more than 1e-3); wider types in float64
    f = dt if dt == np.float16 else np.dtype(np.float64)
    Q = _to4(q, q_num_heads).astype(f)
    K = _to4(k, kv_num_heads)
    V = _to4(v, kv_num_heads)
    if past_key is not None:
        K = np.concatenate([np.asarray(past_key), K], axis=2)
    if past_value is not None:
        V = np.concatenate([np.asarray(past_value), V], axis=2)
    present_k, present_v = K.astype(dt), V.astype(dt)
    b, hq, sq, d = Q.shape
    hkv, skv = K.shape[1], K.shape[2]
    sc = 1.0 / np.sqrt(d) if scale is None else float(scale)
    # scale Q and K by sqrt(scale) in the input precision, as the specification's function does
    root = dt.type(np.sqrt(sc)) if dt.kind == "f" else np.sqrt(sc)
    Qs = (np.asarray(Q, dt) * root).astype(f)
    Ks = (np.asarray(K, dt) * root).astype(f)
    rep = hq // hkv
    if rep > 1:
        Ks = np.repeat(Ks, rep, axis=1)
        Vf = np.repeat(V.astype(f), rep, axis=1)
    else:
        Vf = V.astype(f)
    raw = Qs @ np.swapaxes(Ks, -1, -2)                              # (B, Hq, Sq, Skv)
    capped = (f.type(softcap) * np.tanh(raw / f.type(softcap))) if softcap and softcap > 0 else raw

    # additive bias
    bias = np.zeros((sq, skv), f)
    if attn_mask is not None:
        m = np.asarray(attn_mask)
        pad = skv - m.shape[-1]
        if m.dtype == bool:
            if pad > 0:
                m = np.concatenate([m, np.zeros(m.shape[:-1] + (pad,), bool)], axis=-1)
            m = np.where(m, 0.0, -np.inf).astype(f)
        else:
            m = m.astype(f)
            if pad > 0:
                m = np.concatenate([m, np.full(m.shape[:-1] + (pad,), -np.inf)], axis=-1)
        bias = bias + m
    if past_key is not None:
        offset = np.asarray(past_key).shape[2]
    elif nonpad_kv_seqlen is not None:
        offset = np.asarray(nonpad_kv_seqlen).astype(np.int64).reshape(-1) - sq
    else:
        offset = 0
    neg = -np.inf
    if is_causal:
        bias = bias + np.where(_frontier(sq, skv, offset, lambda diff: diff >= 0), 0.0, neg).astype(f)
    left, right = int(left_window_size), int(right_window_size)
    if left >= 0 or right >= 0:
        def keep(diff):
            ok = np.ones(diff.shape, bool)
            if left >= 0:
                ok &= diff <= left
            if right >= 0:
                ok &= -diff <= right
            return ok
        bias = bias + np.where(_frontier(sq, skv, offset, keep), 0.0, neg).astype(f)
    if nonpad_kv_seqlen is not None:
        n = np.asarray(nonpad_kv_seqlen).astype(np.int64).reshape(-1, 1, 1, 1)
        bias = bias + np.where(np.arange(skv).reshape(1, 1, 1, skv) < n, 0.0, neg).astype(f)

    logits = capped + bias
    sf = f                                   # softmax precision
    if softmax_precision is not None:
        sp = ONNX_TO_NUMPY.get(int(softmax_precision), f)
        if sp.kind == "f" and not (sp == np.float32 and f == np.float64):
            sf = sp
    logits = logits.astype(sf)
    masked = np.isneginf(np.max(np.broadcast_to(bias, logits.shape), axis=-1, keepdims=True))
    mx = np.max(logits, axis=-1, keepdims=True)
    mx = np.where(np.isneginf(mx), sf.type(0), mx)
    with np.errstate(invalid="ignore", over="ignore"):
        e = np.exp(logits - mx)
        s = e.sum(axis=-1, keepdims=True)
        p = e / np.where(s == 0, sf.type(1), s)
    p = np.where(masked, sf.type(0), p)
    p = p.astype(dt).astype(f)
    y = p @ Vf
    if three_d:
        y = y.transpose(0, 2, 1, 3).reshape(b, sq, -1)
    mode = int(qk_matmul_output_mode)
    qk_out = {0: raw, 1: capped, 2: capped + bias, 3: p}[mode]
    qk_out = np.broadcast_to(qk_out, (b, hq, sq, skv))
    return y.astype(dt), present_k, present_v, np.ascontiguousarray(qk_out).astype(dt)


# ---------------------------------------------------------------- RotaryEmbedding

def _rotary_infer(ctx: InferContext):
    x = ctx.shape(0)
    if len(x) == 3 and not ctx.attrs["num_heads"]:
        raise ctx.fail("3-D input needs the num_heads attribute")
    if len(x) not in (3, 4):
        raise ctx.fail(f"input must be (B, S, H·D) or (B, H, S, D), got {list(x)}")
    return [(ctx.dtype(0), x)]


@register("RotaryEmbedding", inputs=(3, 4), attrs={"interleaved": 0, "num_heads": None, "rotary_embedding_dim": 0},
          infer=_rotary_infer)
def rotary_embedding(x, cos_cache, sin_cache, position_ids=None, *, interleaved, num_heads, rotary_embedding_dim):
    """Rotary position embedding; see the module docstring."""
    x = np.asarray(x)
    shape = x.shape
    if x.ndim == 4:                       # (B, H, S, D) -> (B, S, H, D)
        t = x.transpose(0, 2, 1, 3)
    else:
        t = x.reshape(shape[0], shape[1], num_heads, shape[2] // num_heads)
    t = t.astype(np.float64)
    dim = int(rotary_embedding_dim) or t.shape[-1]
    cos = np.asarray(cos_cache, np.float64)
    sin = np.asarray(sin_cache, np.float64)
    if position_ids is not None:
        pid = np.asarray(position_ids).astype(np.int64)
        cos, sin = cos[pid], sin[pid]
    if cos.shape[-1] != dim // 2:
        raise ValueError(f"cos/sin caches have {cos.shape[-1]} entries per position, expected {dim // 2}")
    cos, sin = cos[:, :, None, :], sin[:, :, None, :]
    rot = t[..., :dim]
    if interleaved:
        x1, x2 = rot[..., 0::2], rot[..., 1::2]
    else:
        x1, x2 = rot[..., :dim // 2], rot[..., dim // 2:]
    re = x1 * cos - x2 * sin
    im = x1 * sin + x2 * cos
    out = t.copy()
    if interleaved:
        out[..., 0:dim:2], out[..., 1:dim:2] = re, im
    else:
        out[..., :dim // 2], out[..., dim // 2:dim] = re, im
    out = out.transpose(0, 2, 1, 3) if x.ndim == 4 else out.reshape(shape)
    return out.astype(x.dtype)


# ---------------------------------------------------------------- TensorScatter

def _tensor_scatter_infer(ctx: InferContext):
    c, u = ctx.shape(0), ctx.shape(1)
    r = len(c)
    a = int(ctx.attrs["axis"])
    a = a + r if a < 0 else a
    if len(u) != r or not 0 < a < r or any(u[i] != c[i] for i in range(r) if i != a) or u[a] > c[a]:
        raise ctx.fail(f"update {list(u)} does not fit past_cache {list(c)} along axis {ctx.attrs['axis']}")
    if ctx.attrs["mode"] not in ("linear", "circular"):
        raise ctx.fail(f"mode {ctx.attrs['mode']!r} is not linear or circular")
    return [(ctx.dtype(0), c)]


@register("TensorScatter", inputs=(2, 3), attrs={"axis": -2, "mode": "linear"}, infer=_tensor_scatter_infer)
def tensor_scatter(past_cache, update, write_indices=None, *, axis, mode):
    """Write ``update`` into a copy of ``past_cache`` along ``axis`` starting at
    ``write_indices[b]`` for each batch b (0 when absent); ``circular`` wraps around."""
    cache = np.array(past_cache)
    update = np.asarray(update)
    a = axis + cache.ndim if axis < 0 else axis
    n, s = cache.shape[a], update.shape[a]
    starts = np.zeros(cache.shape[0], np.int64) if write_indices is None else \
        np.asarray(write_indices).astype(np.int64).reshape(-1)
    cm = np.moveaxis(cache, a, -1)
    um = np.moveaxis(update, a, -1)
    for bi in range(cache.shape[0]):
        pos = starts[bi] + np.arange(s)
        if mode == "circular":
            pos = pos % n
        cm[bi][..., pos] = um[bi]
    return cache


# ---------------------------------------------------------------- SwiGLU

def _swiglu_infer(ctx: InferContext):
    if ctx.shape(0) != ctx.shape(1) or ctx.dtype(0) != ctx.dtype(1):
        raise ctx.fail(f"A {ctx.dtype(0)}{list(ctx.shape(0))} and B {ctx.dtype(1)}{list(ctx.shape(1))} "
                       f"must have the same shape and type")
    return [(ctx.dtype(0), ctx.shape(0))]


@register("SwiGLU", inputs=2, attrs={"alpha": 1.0}, infer=_swiglu_infer, flags=("elementwise",))
def swiglu(a, b, *, alpha):
    """``A · sigmoid(alpha · A) · B``."""
    ad = np.asarray(a, np.float64)
    with np.errstate(over="ignore"):
        y = ad / (1 + np.exp(-alpha * ad)) * np.asarray(b, np.float64)
    return y.astype(np.asarray(a).dtype)


# ---------------------------------------------------------------- LinearAttention

_LA_RULES = ("linear", "gated", "delta", "gated_delta")


def _linear_attention_infer(ctx: InferContext):
    a = ctx.attrs
    hq, hkv = a["q_num_heads"], a["kv_num_heads"]
    q, k, v = ctx.shape(0), ctx.shape(1), ctx.shape(2)
    if not hq or not hkv or hq % hkv:
        raise ctx.fail(f"q_num_heads ({hq}) must be a positive multiple of kv_num_heads ({hkv})")
    if len(q) != 3 or len(k) != 3 or len(v) != 3:
        raise ctx.fail("query, key and value must be (B, T, heads·D)")
    if a["update_rule"] not in _LA_RULES:
        raise ctx.fail(f"update_rule {a['update_rule']!r} is not one of {', '.join(_LA_RULES)}")
    gated, delta = a["update_rule"] in ("gated", "gated_delta"), a["update_rule"] in ("delta", "gated_delta")
    if gated != ctx.has(4) or delta != ctx.has(5):
        raise ctx.fail(f"update_rule {a['update_rule']!r} needs {'decay ' if gated else ''}"
                       f"{'beta' if delta else ''} inputs and no others")
    dk, dv = q[2] // hq, v[2] // hkv
    state_dt = ctx.dtype(3) if ctx.has(3) else ctx.dtype(0)
    return [(ctx.dtype(0), (q[0], q[1], hq * dv)), (state_dt, (q[0], hkv, dk, dv))]


@register("LinearAttention", inputs=(3, 6), attrs={"chunk_size": 64, "kv_num_heads": None, "q_num_heads": None,
                                                   "scale": 0.0, "update_rule": "gated_delta"},
          infer=_linear_attention_infer)
def linear_attention(query, key, value, past_state=None, decay=None, beta=None, *, chunk_size, kv_num_heads,
                     q_num_heads, scale, update_rule):
    """Recurrent linear attention; see the module docstring (``chunk_size`` is a tuning hint)."""
    f = np.float32
    b, t, _ = query.shape
    hq, hkv = int(q_num_heads), int(kv_num_heads)
    q4 = _to4(query, hq).astype(f)
    k4 = _to4(key, hkv).astype(f)
    v4 = _to4(value, hkv).astype(f)
    dk, dv = q4.shape[-1], v4.shape[-1]
    if decay is not None:
        dec = np.asarray(decay)
        g4 = (dec.reshape(b, t, hkv, 1).transpose(0, 2, 1, 3) if dec.shape[-1] == hkv
              else _to4(dec, hkv)).astype(f)
    if beta is not None:
        be = np.asarray(beta)
        b4 = be.reshape(b, t, be.shape[-1], 1).transpose(0, 2, 1, 3).astype(f)
    state = np.zeros((b, hkv, dk, dv), f) if past_state is None else np.asarray(past_state).astype(f)
    sc = f(1.0 / np.sqrt(dk)) if not scale else f(scale)
    rep = hq // hkv
    out = np.zeros((b, hq, t, dv), f)
    for i in range(t):
        kt, vt = k4[:, :, i], v4[:, :, i]
        if decay is not None:
            state = state * np.exp(g4[:, :, i])[..., None]
        if beta is not None:
            vt = b4[:, :, i] * (vt - np.einsum("bhdm,bhd->bhm", state, kt))
        state = state + kt[..., :, None] * vt[..., None, :]
        st = np.repeat(state, rep, axis=1) if rep > 1 else state
        out[:, :, i] = sc * np.einsum("bhd,bhdm->bhm", q4[:, :, i], st)
    y = out.transpose(0, 2, 1, 3).reshape(b, t, hq * dv).astype(query.dtype)
    sdt = query.dtype if past_state is None else np.asarray(past_state).dtype
    return y, state.astype(sdt)


# ---------------------------------------------------------------- CausalConvWithState

def _ccws_infer(ctx: InferContext):
    x, w = ctx.shape(0), ctx.shape(1)
    if len(x) != 3 or len(w) != 3 or w[0] != x[1] or w[1] != 1:
        raise ctx.fail(f"input {list(x)} must be (B, C, L) and weight {list(w)} (C, 1, k)")
    if ctx.attrs["act"] not in ("none", "silu", "swish"):
        raise ctx.fail(f"activation {ctx.attrs['act']!r} is not none, silu or swish")
    k = w[2]
    if ctx.has(3) and tuple(ctx.shape(3)) != (x[0], x[1], k - 1):
        raise ctx.fail(f"past_state {list(ctx.shape(3))} must be {[x[0], x[1], k - 1]}")
    return [(ctx.dtype(0), x), (ctx.dtype(0), (x[0], x[1], k - 1))]


@register("CausalConvWithState", inputs=(2, 4), attrs={"act": "none"}, infer=_ccws_infer)
def causal_conv_with_state(x, w, bias=None, past_state=None, *, act):
    """Depthwise causal 1-D convolution with carried state; the ONNX attribute
    ``activation`` is called ``act`` here (``activation`` names fused epilogues in npuc)."""
    x = np.asarray(x)
    bsz, c, length = x.shape
    k = w.shape[2]
    pad = np.zeros((bsz, c, k - 1), x.dtype) if past_state is None else np.asarray(past_state)
    padded = np.concatenate([pad, x], axis=2)
    pf = padded.astype(np.float64)
    wf = np.asarray(w, np.float64)[:, 0, :]
    y = np.zeros((bsz, c, length))
    for j in range(k):
        y += pf[:, :, j:j + length] * wf[None, :, j:j + 1]
    if bias is not None:
        y += np.asarray(bias, np.float64).reshape(1, c, 1)
    y = y.astype(x.dtype)
    if act in ("silu", "swish"):
        yf = y.astype(np.float64)
        with np.errstate(over="ignore"):
            y = (yf / (1 + np.exp(-yf))).astype(x.dtype)
    return y, padded[:, :, padded.shape[2] - (k - 1):]
