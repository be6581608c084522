"""Calibration data sets: what ``--dataset PATH`` accepts.

* an ``.npz`` file: keys are input names, arrays are (N, *input_shape) (or exactly
  input_shape for one sample); with one model input any single key is accepted;
* a folder of ``.npy`` files, one sample per file (sorted by file name); with several
  inputs, one sub-folder per input name holding the same number of files;
* a folder of ``.bin`` files: raw little-endian data of the input's dtype and shape;
* a folder of images (``.jpg/.jpeg/.png/.bmp``, sorted by file name; needs Pillow):
  decoded as RGB (or grey for one-channel inputs), resized bilinearly to the input's
  spatial size, laid out NCHW or NHWC like the input (the axis of size 3 or 1 next to H, W),
  float values 0..255 unless preprocessing options say otherwise.

Samples are yielded one at a time as ``{input name: array}`` so a large set never sits in
memory; ``limit`` (``--calib-samples``) stops early.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from ..errors import InputError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


class Dataset:
    """An iterable of calibration samples for a model's inputs."""

    def __init__(self, path, specs: Sequence, *, limit: int | None = None, image_loader=None):
        self.path = Path(path)
        self.specs = list(specs)          # objects with name, shape, dtype
        self.limit = limit
        self.image_loader = image_loader
        if not self.path.exists():
            raise InputError(f"--dataset {self.path}: no such file or folder")
        self._count = self._probe()

    def __len__(self) -> int:
        return self._count if self.limit is None else min(self._count, self.limit)

    def _probe(self) -> int:
        p = self.path
        if p.is_file():
            if p.suffix != ".npz":
                raise InputError(f"--dataset {p}: a file must be an .npz whose keys are input names")
            with np.load(p, allow_pickle=False) as z:
                self._npz_keys = list(z.files)
                self._key_of = self._match_npz_keys(self._npz_keys)
                counts = set()
                for s in self.specs:
                    shp = z[self._key_of[s.name]].shape
                    counts.add(self._sample_count(s, shp))
            if len(counts) != 1:
                raise InputError(f"--dataset {p}: inputs have different sample counts {sorted(counts)}")
            return counts.pop()
        self._files = self._folder_files()
        n = {len(v) for v in self._files.values()}
        if len(n) != 1 or 0 in n:
            raise InputError(f"--dataset {p}: needs the same non-zero number of samples per input, found "
                             + ", ".join(f"{k}: {len(v)}" for k, v in self._files.items()))
        return n.pop()

    def _match_npz_keys(self, keys):
        names = [s.name for s in self.specs]
        if all(n in keys for n in names):
            return {n: n for n in names}
        if len(names) == 1 and len(keys) == 1:
            return {names[0]: keys[0]}
        raise InputError(f"--dataset {self.path}: keys {keys} do not name the model inputs {names}")

    def _sample_count(self, spec, shape) -> int:
        shape = tuple(shape)
        if shape == tuple(spec.shape):
            return 1
        if len(shape) == len(spec.shape) + 1 and shape[1:] == tuple(spec.shape):
            return shape[0]
        raise InputError(f"--dataset {self.path}: array for {spec.name!r} has shape {list(shape)}; "
                         f"expected {list(spec.shape)} or [N, {', '.join(map(str, spec.shape))}]")

    def _folder_files(self) -> dict[str, list[Path]]:
        p = self.path
        if len(self.specs) == 1:
            return {self.specs[0].name: self._sample_files(p)}
        out = {}
        for s in self.specs:
            d = p / s.name
            if not d.is_dir():
                raise InputError(f"--dataset {p}: the model has several inputs: put each input's samples in a "
                                 f"sub-folder named after it ({', '.join(x.name for x in self.specs)})")
            out[s.name] = self._sample_files(d)
        return out

    def _sample_files(self, d: Path) -> list[Path]:
        files = sorted(f for f in d.iterdir() if f.is_file() and f.suffix.lower() in (".npy", ".bin") + IMAGE_SUFFIXES)
        kinds = {f.suffix.lower() if f.suffix.lower() not in IMAGE_SUFFIXES else "image" for f in files}
        if len(kinds) > 1:
            raise InputError(f"--dataset {d}: mixes {sorted(kinds)} files; use one kind per folder")
        return files

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        n = len(self)
        if self.path.is_file():
            with np.load(self.path, allow_pickle=False) as z:
                arrays = {s.name: z[self._key_of[s.name]] for s in self.specs}
            for i in range(n):
                yield {s.name: self._cast(s, a if tuple(a.shape) == tuple(s.shape) else a[i])
                       for s, a in zip(self.specs, arrays.values())}
            return
        for i in range(n):
            yield {s.name: self._load(s, self._files[s.name][i]) for s in self.specs}

    def _cast(self, spec, a: np.ndarray) -> np.ndarray:
        a = np.asarray(a)
        if tuple(a.shape) != tuple(spec.shape):
            raise InputError(f"--dataset {self.path}: sample for {spec.name!r} has shape {list(a.shape)}, "
                             f"expected {list(spec.shape)}")
        return a.astype(spec.dtype, copy=False)

    def _load(self, spec, f: Path) -> np.ndarray:
        suf = f.suffix.lower()
        if suf == ".npy":
            return self._cast(spec, np.load(f, allow_pickle=False))
        if suf == ".bin":
            raw = np.fromfile(f, dtype=np.dtype(spec.dtype).newbyteorder("<"))
            if raw.size != int(np.prod(spec.shape)):
                raise InputError(f"{f}: {raw.size} values, input {spec.name!r} needs {int(np.prod(spec.shape))}")
            return raw.reshape(spec.shape).astype(spec.dtype)
        loader = self.image_loader or load_image
        return self._cast(spec, loader(f, spec))


def image_layout(shape: Sequence[int]) -> str:
    """'NCHW' or 'NHWC' for a 4-D image input shape."""
    if len(shape) != 4:
        raise InputError(f"an image input must be 4-D, got {list(shape)}")
    if shape[1] in (1, 3) and shape[3] not in (1, 3):
        return "NCHW"
    if shape[3] in (1, 3):
        return "NHWC"
    return "NCHW"


def load_image(path: Path, spec) -> np.ndarray:
    """Decode, resize to the input's H×W (bilinear), lay out like the input; float 0..255."""
    try:
        from PIL import Image
    except ImportError:
        raise InputError("reading image folders needs Pillow: pip install pillow") from None
    layout = image_layout(spec.shape)
    c = spec.shape[1] if layout == "NCHW" else spec.shape[3]
    h, w = (spec.shape[2], spec.shape[3]) if layout == "NCHW" else (spec.shape[1], spec.shape[2])
    try:
        with Image.open(path) as im:
            im = im.convert("L" if c == 1 else "RGB").resize((w, h), Image.BILINEAR)
            a = np.asarray(im, np.float32)
    except OSError as e:
        raise InputError(f"{path}: cannot decode image: {e}") from e
    if a.ndim == 2:
        a = a[:, :, None]
    a = a[None]
    if layout == "NCHW":
        a = a.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(a)
