"""Signal-processing ops: DFT, STFT, the Hann/Hamming/Blackman windows and
MelWeightMatrix (ONNX opset 17/20 semantics).

Complex tensors are real tensors with a trailing axis of 2 (real, imaginary); a trailing
axis of 1 is a real signal.

* ``DFT(input, dft_length?, axis?)`` (opset 20; opset 17's ``axis`` attribute becomes the
  input): ``X[k] = Σ_n x[n]·e^(∓2πikn/L)`` along ``axis`` (default −2), the signal cropped or
  zero-padded to ``L = dft_length``; ``inverse`` uses ``e^(+…)`` and divides by L;
  ``onesided`` keeps bins ``0 .. L/2`` (forward) or takes them as input and returns the real
  signal of length L (inverse, default L = 2·(bins − 1)).
* ``STFT(signal (B, T, 1|2), frame_step, window?, frame_length?)``: frames
  ``f = 0 .. 1 + (T − L)/step − 1`` of length L = frame_length (or the window length),
  each multiplied by the window and transformed: (B, frames, L or L/2+1, 2).
* Windows of ``size`` N: with ``periodic`` the denominator is N, else N − 1;
  Hann ``sin²(πn/D)``, Hamming ``α − (1−α)·cos(2πn/D)`` with α = 25/46,
  Blackman ``0.42 − 0.5·cos(2πn/D) + 0.08·cos(4πn/D)``.
* MelWeightMatrix: triangular filters between mel-spaced bin edges, ``(dft_length/2 + 1,
  num_mel_bins)``, as the ONNX specification defines them (edges floored to DFT bins).

Transforms run in the input's precision (single for float32 and float16, double for
float64); the windows and filter banks in float64, rounded once to the output type.
"""
from __future__ import annotations

import numpy as np

from .registry import InferContext, register
from .tensor import onnx_dtype


def _scalar(v) -> int:
    return int(np.asarray(v).reshape(-1)[0])


# ---------------------------------------------------------------- DFT

def _dft_params(shape, dft_length, axis, inverse, onesided):
    rank = len(shape)
    a = -2 if axis is None else _scalar(axis)
    a = a + rank if a < 0 else a
    if not 0 <= a < rank - 1:
        raise ValueError(f"axis {a} must be a signal axis (not the last, complex axis) of rank {rank}")
    if dft_length is not None:
        n = _scalar(dft_length)
    elif inverse and onesided:
        n = 2 * (shape[a] - 1)
    else:
        n = shape[a]
    if n < 1:
        raise ValueError(f"dft_length {n} must be positive")
    return a, n


def _dft_infer(ctx: InferContext):
    s = ctx.shape(0)
    if len(s) < 2 or s[-1] not in (1, 2):
        raise ctx.fail(f"input {list(s)} must end in an axis of 1 (real) or 2 (complex)")
    dl = ctx.require_const(1, "dft_length") if ctx.has(1) else None
    ax = ctx.require_const(2, "axis") if ctx.has(2) else None
    a = ctx.attrs
    try:
        axis, n = _dft_params(s, dl, ax, a["inverse"], a["onesided"])
    except ValueError as e:
        raise ctx.fail(str(e)) from None
    out = list(s)
    if a["inverse"] and a["onesided"]:
        out[axis], out[-1] = n, 1
    else:
        out[axis], out[-1] = (n // 2 + 1 if a["onesided"] else n), 2
    return [(ctx.dtype(0), tuple(out))]


def _complex(x: np.ndarray) -> np.ndarray:
    """The complex signal of (..., 1|2) ``x``, in single precision for float32/float16
    inputs (the transforms run in the input's precision, as float32 runtimes do) and double
    for float64."""
    x = np.asarray(x)
    ft = np.float64 if x.dtype == np.float64 else np.float32
    x = x.astype(ft, copy=False)
    if x.shape[-1] == 1:
        return x[..., 0]
    return (x[..., 0] + np.complex64(1j) * x[..., 1]).astype(np.complex128 if ft == np.float64 else np.complex64)


def _real_pair(z: np.ndarray) -> np.ndarray:
    return np.stack([np.real(z), np.imag(z)], axis=-1)


@register("DFT", inputs=(1, 3), attrs={"inverse": 0, "onesided": 0}, infer=_dft_infer, const_inputs=(1, 2))
def dft(x, dft_length=None, axis=None, *, inverse, onesided):
    """Discrete Fourier transform along one axis; see the module docstring."""
    x = np.asarray(x)
    a, n = _dft_params(x.shape, dft_length, axis, inverse, onesided)
    z = _complex(x)
    if inverse:
        if onesided:
            y = np.fft.irfft(z, n=n, axis=a)[..., None]
        else:
            y = _real_pair(np.fft.ifft(z, n=n, axis=a))
    else:
        y = np.fft.fft(z, n=n, axis=a)
        if onesided:
            y = np.take(y, np.arange(n // 2 + 1), axis=a)
        y = _real_pair(y)
    return y.astype(x.dtype)


# ---------------------------------------------------------------- STFT

def _stft_params(shape, frame_step, window_shape, frame_length):
    step = _scalar(frame_step)
    if frame_length is not None:
        length = _scalar(frame_length)
    elif window_shape is not None:
        length = window_shape[0]
    else:
        length = shape[1]
    if step < 1 or length < 1 or length > shape[1]:
        raise ValueError(f"frame_step {step} / frame_length {length} do not fit a signal of length {shape[1]}")
    return step, length, 1 + (shape[1] - length) // step


def _stft_infer(ctx: InferContext):
    s = ctx.shape(0)
    if len(s) != 3 or s[-1] not in (1, 2):
        raise ctx.fail(f"signal {list(s)} must be (batch, length, 1 or 2)")
    step = ctx.require_const(1, "frame_step")
    fl = ctx.require_const(3, "frame_length") if ctx.has(3) else None
    try:
        _, length, frames = _stft_params(s, step, ctx.shape(2) if ctx.has(2) else None, fl)
    except ValueError as e:
        raise ctx.fail(str(e)) from None
    if ctx.attrs["onesided"] and s[-1] == 2:
        raise ctx.fail("onesided output needs a real signal")
    bins = length // 2 + 1 if ctx.attrs["onesided"] else length
    return [(ctx.dtype(0), (s[0], frames, bins, 2))]


@register("STFT", inputs=(2, 4), attrs={"onesided": 1}, infer=_stft_infer, const_inputs=(1, 3))
def stft(signal, frame_step, window=None, frame_length=None, *, onesided):
    """Short-time Fourier transform; see the module docstring."""
    x = np.asarray(signal)
    step, length, frames = _stft_params(x.shape, frame_step, None if window is None else np.shape(window),
                                        frame_length)
    z = _complex(x)                                                     # (B, T)
    idx = np.arange(frames)[:, None] * step + np.arange(length)[None, :]
    fr = z[:, idx]                                                      # (B, frames, L)
    if window is not None:
        fr = fr * np.asarray(window).astype(fr.real.dtype).reshape(1, 1, -1)
    y = np.fft.fft(fr, n=length, axis=-1)
    if onesided:
        y = y[..., :length // 2 + 1]
    return _real_pair(y).astype(x.dtype)


# ---------------------------------------------------------------- windows

def _window_infer(ctx: InferContext):
    n = _scalar(ctx.require_const(0, "size"))
    if n < 0:
        raise ctx.fail(f"size {n} must not be negative")
    try:
        dt = onnx_dtype(ctx.attrs["output_datatype"])
    except ValueError as e:
        raise ctx.fail(str(e)) from None
    return [(dt, (n,))]


def _window(name: str, fn):
    def ref(size, *, output_datatype, periodic):
        n = _scalar(size)
        d = n if periodic else n - 1
        k = np.arange(n, dtype=np.float64)
        return fn(k, d).astype(onnx_dtype(output_datatype))

    ref.__name__ = name.lower()
    ref.__doc__ = f"{name} of length ``size``; see the module docstring."
    register(name, attrs={"output_datatype": 1, "periodic": 1}, infer=_window_infer, const_inputs=(0,))(ref)


_HAMMING_ALPHA = 25.0 / 46.0
_window("HannWindow", lambda k, d: np.sin(np.pi * k / d) ** 2)
_window("HammingWindow", lambda k, d: _HAMMING_ALPHA - (1 - _HAMMING_ALPHA) * np.cos(2 * np.pi * k / d))
_window("BlackmanWindow", lambda k, d: 0.42 - 0.5 * np.cos(2 * np.pi * k / d) + 0.08 * np.cos(4 * np.pi * k / d))


# ---------------------------------------------------------------- MelWeightMatrix

def _mel_infer(ctx: InferContext):
    bins = _scalar(ctx.require_const(0, "num_mel_bins"))
    dft_length = _scalar(ctx.require_const(1, "dft_length"))
    for i, what in ((2, "sample_rate"), (3, "lower_edge_hertz"), (4, "upper_edge_hertz")):
        ctx.require_const(i, what)
    try:
        dt = onnx_dtype(ctx.attrs["output_datatype"])
    except ValueError as e:
        raise ctx.fail(str(e)) from None
    return [(dt, (dft_length // 2 + 1, bins))]


@register("MelWeightMatrix", inputs=5, attrs={"output_datatype": 1}, infer=_mel_infer,
          const_inputs=(0, 1, 2, 3, 4))
def mel_weight_matrix(num_mel_bins, dft_length, sample_rate, lower_edge_hertz, upper_edge_hertz, *,
                      output_datatype):
    """Mel filter bank; see the module docstring."""
    bins, n = _scalar(num_mel_bins), _scalar(dft_length)
    rate = _scalar(sample_rate)
    lo, hi = float(np.asarray(lower_edge_hertz).reshape(-1)[0]), float(np.asarray(upper_edge_hertz).reshape(-1)[0])
    lo_mel = 2595 * np.log10(1 + lo / 700)
    hi_mel = 2595 * np.log10(1 + hi / 700)
    edges = np.arange(bins + 2)
    step = (hi_mel - lo_mel) / len(edges)
    hz = 700 * (10 ** ((edges * step + lo_mel) / 2595) - 1)
    f = (((n + 1) * hz) // rate).astype(np.int64)
    out = np.zeros((n // 2 + 1, bins))
    for i in range(bins):
        left, center, right = f[i], f[i + 1], f[i + 2]
        if center == left:
            out[center, i] = 1
        else:
            j = np.arange(left, center + 1)
            out[j, i] = (j - left) / (center - left)
        if right > center:
            j = np.arange(center, right)
            out[j, i] = (right - j) / (right - center)
    return out.astype(onnx_dtype(output_datatype))
