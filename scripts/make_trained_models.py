#!/usr/bin/env python
"""Train two small real networks (MobileNetV2-like, ResNet-18-like) on scikit-learn's digits
and write them as test cases to tests/data/<name>/.

    pip install torch==2.13.0 scikit-learn onnxruntime      # only for this script
    python scripts/make_trained_models.py [--out tests/data] [--names mobilenetv2_digits resnet_digits]
                                          [--epochs N] [--threads T]

npuc's quantization tests need networks with TRAINED weights: random-weight networks are
chaotic (rounding their weights alone moves the outputs a lot), so they say nothing about
quantization accuracy. torch and scikit-learn are needed by this script only, never by npuc.

Data: sklearn.datasets.load_digits (1797 8x8 grey digits, bundled with the wheel, nothing is
downloaded), split train/test 75/25 (stratified, random_state=0). Each digit is upsampled
bilinearly to 32x32 and coloured: a random background colour in [0, 0.5]^3 and a random
foreground colour in [0.5, 1]^3 per image, image = bg + (fg - bg) * digit, plus Gaussian
noise (sigma 0.03), clipped to [0, 1]; NCHW float32 [1, 3, 32, 32]. Training adds random
affine jitter (rotation +-12 deg, scale 0.85..1.15, shift +-3 px) and fresh colours every
epoch; the held-out images get one fixed colouring (seeded) and no jitter.

For each model the folder gets: model.onnx (torch.onnx.export, dynamo=False, opset 17,
training=PRESERVE on the eval-mode model, so BatchNormalization stays as inference-mode
BatchNormalization nodes instead of being folded into the convs), calib.npz (32 training
images), test.npz (16 held-out images), ref.npz (onnxruntime outputs for test.npz),
manifest.json and README.txt (the same layout as tests/data/digits_dwcnn).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import time
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SEED = 0
N_CALIB = 32
N_TEST = 16
RES = 32


# ----------------------------------------------------------------------------- data


def load_split():
    """(x_train, y_train, x_test, y_test): x as float32 (N, 8, 8) in [0, 1]."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)
    y = d.target.astype(np.int64)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.25, stratify=y, random_state=SEED)
    return xtr, ytr, xte, yte


def upsample(torch, x8):
    """(N, 8, 8) float in [0, 1] -> (N, 1, 32, 32) torch tensor, bilinear (align_corners=False)."""
    import torch.nn.functional as F

    t = torch.from_numpy(np.ascontiguousarray(x8, dtype=np.float32))[:, None]
    return F.interpolate(t, size=(RES, RES), mode="bilinear", align_corners=False).clamp_(0.0, 1.0)


def jitter(torch, g, gen):
    """Random affine jitter of grey images (N, 1, H, W): rotation, scale, shift."""
    import torch.nn.functional as F

    n = g.shape[0]
    ang = (torch.rand(n, generator=gen) * 2 - 1) * math.radians(12)
    sc = 0.85 + torch.rand(n, generator=gen) * 0.30
    sh = (torch.rand(n, 2, generator=gen) * 2 - 1) * (3.0 / (RES / 2))
    cos, sin = torch.cos(ang) / sc, torch.sin(ang) / sc
    theta = torch.stack([torch.stack([cos, -sin, sh[:, 0]], 1), torch.stack([sin, cos, sh[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(g.shape), align_corners=False)
    return F.grid_sample(g, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def colourize(torch, g, gen, noise=0.03):
    """Grey (N, 1, H, W) in [0, 1] -> RGB (N, 3, H, W): random bg/fg colour per image + noise."""
    n = g.shape[0]
    bg = torch.rand(n, 3, 1, 1, generator=gen) * 0.5
    fg = 0.5 + torch.rand(n, 3, 1, 1, generator=gen) * 0.5
    x = bg + (fg - bg) * g + noise * torch.randn(n, 3, *g.shape[2:], generator=gen)
    return x.clamp_(0.0, 1.0)


def fixed_images(torch, x8, seed):
    """The deterministic (no jitter) coloured images used for test / calibration."""
    gen = torch.Generator().manual_seed(seed)
    return colourize(torch, upsample(torch, x8), gen).contiguous()


# ----------------------------------------------------------------------------- models


def build_mobilenetv2(torch):
    """MobileNetV2 (torchvision structure) at width x0.5 with fewer repeats, for 32x32 input."""
    from torch import nn

    def cbr(cin, cout, k, s, groups=1, act=True):
        layers = [nn.Conv2d(cin, cout, k, s, (k - 1) // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
        if act:
            layers.append(nn.ReLU6(inplace=True))
        return nn.Sequential(*layers)

    class InvertedResidual(nn.Module):
        def __init__(self, cin, cout, stride, t):
            super().__init__()
            hid = cin * t
            self.use_res = stride == 1 and cin == cout
            layers = [] if t == 1 else [cbr(cin, hid, 1, 1)]
            layers += [cbr(hid, hid, 3, stride, groups=hid), cbr(hid, cout, 1, 1, act=False)]
            self.conv = nn.Sequential(*layers)

        def forward(self, x):
            return x + self.conv(x) if self.use_res else self.conv(x)

    class MobileNetV2(nn.Module):
        # (t, c, n, s): torchvision's table with channels x0.5 (16-8-12-16-32-48-80-160),
        # repeats 1-2-2-2-2-1-1 (11 blocks), stem stride 1 for the 32x32 input
        SETTING = [(1, 8, 1, 1), (6, 12, 2, 2), (6, 16, 2, 2), (6, 32, 2, 2), (6, 48, 2, 1), (6, 80, 1, 2), (6, 160, 1, 1)]

        def __init__(self, num_classes=10, last=320):
            super().__init__()
            feats = [cbr(3, 16, 3, 1)]
            cin = 16
            for t, c, n, s in self.SETTING:
                for i in range(n):
                    feats.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                    cin = c
            feats.append(cbr(cin, last, 1, 1))
            self.features = nn.Sequential(*feats)
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(last, num_classes))
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out")
                elif isinstance(m, nn.BatchNorm2d):
                    nn.init.ones_(m.weight)
                    nn.init.zeros_(m.bias)
                elif isinstance(m, nn.Linear):
                    nn.init.normal_(m.weight, 0, 0.01)
                    nn.init.zeros_(m.bias)

        def forward(self, x):
            return self.classifier(torch.flatten(self.pool(self.features(x)), 1))

    return MobileNetV2()


def build_resnet(torch):
    """ResNet-18 layout (BasicBlocks [2, 2, 2, 2], 4 stages) with widths 16-32-48-80, 32x32 input."""
    from torch import nn

    class BasicBlock(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.relu = nn.ReLU(inplace=True)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.downsample = None
            if stride != 1 or cin != cout:
                self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

        def forward(self, x):
            idt = x if self.downsample is None else self.downsample(x)
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            return self.relu(out + idt)

    class ResNet(nn.Module):
        WIDTHS = (16, 32, 48, 80)
        BLOCKS = (2, 2, 2, 2)

        def __init__(self, num_classes=10):
            super().__init__()
            w0 = self.WIDTHS[0]
            self.stem = nn.Sequential(nn.Conv2d(3, w0, 3, 1, 1, bias=False), nn.BatchNorm2d(w0), nn.ReLU(inplace=True))
            layers, cin = [], w0
            for i, (w, n) in enumerate(zip(self.WIDTHS, self.BLOCKS)):
                for j in range(n):
                    layers.append(BasicBlock(cin, w, 2 if (i > 0 and j == 0) else 1))
                    cin = w
            self.layers = nn.Sequential(*layers)
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(cin, num_classes)
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            for m in self.modules():  # zero-init the last BN of each block (torchvision option)
                if isinstance(m, BasicBlock):
                    nn.init.zeros_(m.bn2.weight)

        def forward(self, x):
            return self.fc(torch.flatten(self.pool(self.layers(self.stem(x))), 1))

    return ResNet()


MODELS = {
    "mobilenetv2_digits": dict(
        build=build_mobilenetv2, epochs=40, lr=0.01,
        task="image classification (10 digits), MobileNetV2 (x0.5 width, 11 inverted residual blocks "
             "with expansion 6, ReLU6, BN, depthwise 3x3, residual adds), 1x1 head to 320, GAP, Linear",
        arch="stem conv3x3 s1 16 -> inverted residual blocks (t,c,n,s) = (1,8,1,1) (6,12,2,2) (6,16,2,2) "
             "(6,32,2,2) (6,48,2,1) (6,80,1,2) (6,160,1,1) -> conv1x1 320 + BN + ReLU6 -> GAP -> "
             "Dropout(0.2) -> Linear(320, 10); maps 32->16->8->4->2",
    ),
    "resnet_digits": dict(
        build=build_resnet, epochs=30, lr=0.01,
        task="image classification (10 digits), ResNet-18 layout (BasicBlocks [2,2,2,2], widths 16-32-48-80, "
             "BN, ReLU, residual adds, 1x1 conv+BN downsample), GAP, Linear",
        arch="stem conv3x3 s1 16 + BN + ReLU -> 4 stages of 2 BasicBlocks (conv3x3-BN-ReLU, conv3x3-BN, "
             "+ identity or conv1x1+BN downsample, ReLU), widths 16/32/48/80, strides 1/2/2/2 -> GAP -> "
             "Linear(80, 10); maps 32->16->8->4",
    ),
}


# ----------------------------------------------------------------------------- training


def train(torch, name, spec, xtr, ytr, xte_img, yte, epochs, log):
    from torch import nn

    torch.manual_seed(SEED)
    model = spec["build"](torch)
    nparams = sum(p.numel() for p in model.parameters())
    gen = torch.Generator().manual_seed(SEED + 1)
    g_tr = upsample(torch, xtr)
    y_tr = torch.from_numpy(ytr)
    bs = 64
    steps = epochs * math.ceil(len(y_tr) / bs)
    opt = torch.optim.SGD(model.parameters(), lr=spec["lr"], momentum=0.9, weight_decay=5e-4, nesterov=True)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=spec["lr"] * 10, total_steps=steps, pct_start=0.2)
    lossf = nn.CrossEntropyLoss(label_smoothing=0.05)
    t0 = time.time()
    log(f"[{name}] {nparams} parameters, {epochs} epochs of {len(y_tr)} images")
    for ep in range(epochs):
        model.train()
        perm = torch.randperm(len(y_tr), generator=gen)
        tot, correct = 0.0, 0
        for i in range(0, len(perm), bs):
            idx = perm[i:i + bs]
            xb = colourize(torch, jitter(torch, g_tr[idx], gen), gen)
            out = model(xb)
            loss = lossf(out, y_tr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            tot += float(loss.detach()) * len(idx)
            correct += int((out.argmax(1) == y_tr[idx]).sum())
        if ep % 5 == 4 or ep == epochs - 1:
            acc = evaluate(torch, model, xte_img, yte)
            log(f"[{name}] epoch {ep + 1}: loss {tot / len(y_tr):.4f} train acc (augmented) "
                f"{correct / len(y_tr):.4f} held-out acc {acc:.4f} ({time.time() - t0:.0f} s)")
    model.eval()
    return model, nparams, time.time() - t0, correct / len(y_tr)


def evaluate(torch, model, x_img, y):
    model.eval()
    with torch.no_grad():
        pred = model(x_img).argmax(1).numpy()
    return float((pred == y).mean())


# ----------------------------------------------------------------------------- export


def export(torch, model, path):
    dummy = torch.zeros(1, 3, RES, RES)
    torch.onnx.export(
        model.eval(), (dummy,), str(path), dynamo=False, opset_version=17,
        input_names=["input"], output_names=["logits"],
        # PRESERVE on an eval-mode model: inference BatchNormalization nodes, not folded
        # (EVAL would run the eval peephole that fuses BN into the convs)
        training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=True,
    )


def write_case(torch, name, spec, model, info, xtr, ytr, xte, yte, outdir, log):
    import onnx
    import onnxruntime as ort
    import sklearn

    d = outdir / name
    d.mkdir(parents=True, exist_ok=True)
    mpath = d / "model.onnx"
    export(torch, model, mpath)
    m = onnx.load(str(mpath))
    onnx.checker.check_model(m, full_check=True)
    ops = Counter(n.op_type for n in m.graph.node)
    assert ops.get("BatchNormalization", 0) > 0, f"{name}: BatchNormalization was folded by the exporter"
    for n in m.graph.node:
        if n.op_type == "BatchNormalization":
            tm = [a.i for a in n.attribute if a.name == "training_mode"]
            assert not any(tm) and len(n.output) == 1, f"{name}: training-mode BatchNormalization exported"

    # held-out accuracy with torch and onnxruntime (whole split, fixed colouring)
    xte_img = fixed_images(torch, xte, SEED + 100)
    with torch.no_grad():
        t_logits = model(xte_img).numpy()
    sess = ort.InferenceSession(str(mpath), providers=["CPUExecutionProvider"])
    o_logits = np.concatenate([sess.run(["logits"], {"input": xte_img[i:i + 1].numpy()})[0]
                               for i in range(len(yte))])
    acc_t = float((t_logits.argmax(1) == yte).mean())
    acc_o = float((o_logits.argmax(1) == yte).mean())
    maxdiff = float(np.abs(t_logits - o_logits).max())
    log(f"[{name}] held-out accuracy torch {acc_t:.4f} onnxruntime {acc_o:.4f}; max |torch - ort| {maxdiff:.2e}")
    assert maxdiff < 1e-4 * max(1.0, float(np.abs(t_logits).max())), maxdiff

    # test: 16 held-out images, calib: 32 training images, both stratified by class (every
    # digit appears); the calibration images get their own colouring seed
    from sklearn.model_selection import train_test_split

    test_idx = np.sort(train_test_split(np.arange(len(yte)), train_size=N_TEST, stratify=yte, random_state=SEED)[0])
    calib_idx = np.sort(train_test_split(np.arange(len(ytr)), train_size=N_CALIB, stratify=ytr, random_state=SEED)[0])
    test = xte_img.numpy()[test_idx][:, None].astype(np.float32)  # (N, 1, 3, 32, 32)
    calib = fixed_images(torch, xtr[calib_idx], SEED + 200).numpy()[:, None].astype(np.float32)
    ref = np.stack([sess.run(["logits"], {"input": t})[0] for t in test]).astype(np.float32)  # (N, 1, 10)
    np.savez(d / "calib.npz", input=calib)
    np.savez(d / "test.npz", input=test)
    np.savez(d / "ref.npz", logits=ref)
    test_agree = int((ref[:, 0].argmax(1) == yte[test_idx]).sum())

    data = mpath.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    ort_ver = ort.__version__
    opsl = ", ".join(f"{k} {v}" for k, v in sorted(ops.items()))
    preprocessing = ("8x8 digit (0..16) /16 -> torch bilinear upsample (align_corners=False) to 32x32 -> "
                     "colour: bg ~ U[0,0.5]^3, fg ~ U[0.5,1]^3 per image, x = bg + (fg-bg)*digit + N(0,0.03^2) "
                     "noise, clipped to [0,1] -> float32 NCHW [1,3,32,32] (no mean/std normalisation)")
    split = "train_test_split(test_size=0.25, stratify=y, random_state=0)"
    data_desc = (f"calib: {N_CALIB} digits from the training split (stratified pick, colouring seed {SEED + 200}); "
                 f"test: {N_TEST} digits from the held-out 25% split (stratified pick, colouring seed {SEED + 100}, "
                 "labels in manifest)")
    notes = [
        f"float accuracy on the held-out split: torch {acc_t:.4f}, onnxruntime {acc_o:.4f} ({len(yte)} digits); "
        f"test.npz: onnxruntime top-1 = label on {test_agree}/{N_TEST}",
        f"trained {info['epochs']} epochs in {info['seconds']:.0f} s wall time on CPU ({torch.get_num_threads()} threads; SGD nesterov, OneCycle max lr "
        f"{spec['lr'] * 10:g}, wd 5e-4, label smoothing 0.05, batch 64, random affine jitter + recolouring); "
        f"{info['params']} parameters; last-epoch train accuracy on augmented images {info['train_acc']:.4f}",
        f"architecture: {spec['arch']}",
        "BatchNorm is NOT folded: exported with training=TrainingMode.PRESERVE on the eval-mode model, so "
        "inference-mode BatchNormalization nodes stay (running mean/var)" + ("; ReLU6 is Clip(0, 6)" if "Clip" in ops else ""),
        f"ops: {opsl}",
    ]
    if "Identity" in ops:
        notes.append("the Identity nodes copy one initializer to another: the exporter merges identical initializers, "
                     "and the bias of a block's last BN and of its downsample BN get the same gradient (both feed the "
                     "residual Add), so from their equal zero init they stay equal through training")
    notes += [
        f"max |torch - onnxruntime| over the held-out split: {maxdiff:.2e}",
    ]
    manifest = {
        "name": name,
        "model_file": "model.onnx",
        "model_bytes": len(data),
        "model_sha256": sha,
        "inputs": [{"name": "input", "shape": [1, 3, RES, RES], "dtype": "tensor(float)"}],
        "outputs": [{"name": "logits", "shape": [1, 10], "dtype": "tensor(float)"}],
        "feed_shapes_used": {"input": [1, 3, RES, RES]},
        "feed_dtypes": {"input": "float32"},
        "reference_runtime": f"onnxruntime {ort_ver} CPUExecutionProvider (default graph optimizations, fp32)",
        "ref_output_shapes": {"logits": [1, 10]},
        "task": spec["task"],
        "source": ("trained here with torch (scripts/make_trained_models.py) on sklearn.datasets.load_digits "
                   "(8x8 upsampled bilinear to 32x32, coloured); exported torch.onnx.export(dynamo=False, "
                   "opset 17, training=PRESERVE)"),
        "package": "scikit-learn (data) + torch",
        "version": f"torch {torch.__version__}, scikit-learn {sklearn.__version__}, onnx {onnx.__version__}",
        "path_in_package": "sklearn/datasets/data/digits.csv.gz",
        "preprocessing": preprocessing,
        "data": data_desc,
        "extra": {
            "float_accuracy_heldout": acc_t,
            "onnxruntime_accuracy_heldout": acc_o,
            "heldout_size": int(len(yte)),
            "test_labels": [int(v) for v in yte[test_idx]],
            "calib_labels": [int(v) for v in ytr[calib_idx]],
            "test_indices_in_heldout_split": [int(v) for v in test_idx],
            "calib_indices_in_train_split": [int(v) for v in calib_idx],
            "split": split,
            "parameters": info["params"],
            "train_seconds": round(info["seconds"], 1),
            "epochs": info["epochs"],
            "op_counts": dict(sorted(ops.items())),
        },
        "notes": notes,
    }
    (d / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    readme = f"""{name}
{'=' * len(name)}

Task:            {spec['task']}
Source:          {manifest['source']}
Package:         scikit-learn (data) + torch {manifest['version']}
Path in package: sklearn/datasets/data/digits.csv.gz
Format:          onnx   ({len(data)} bytes, sha256 {sha[:16]}...)

Inputs:
  input: shape [1, 3, {RES}, {RES}] dtype tensor(float)
  (shapes fed in calib/test: {{'input': [1, 3, {RES}, {RES}]}})
Outputs:
  logits: shape [1, 10] dtype tensor(float)

Preprocessing: {preprocessing}
Data: {data_desc}
Split: {split}
Reference (ref.npz) computed by: {manifest['reference_runtime']}

Files: calib.npz ({N_CALIB} samples), test.npz ({N_TEST} samples), ref.npz (outputs for test.npz).
Each npz key is a graph input/output name; arrays are (N, *tensor_shape): sample i = arr[i].
Remake: python scripts/make_trained_models.py --names {name}

Notes:
""" + "".join(f"  - {n}\n" for n in notes)
    (d / "README.txt").write_text(readme)
    log(f"[{name}] wrote {d} (model {len(data)} bytes; ops {opsl})")
    return manifest


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=ROOT / "tests" / "data", help="folder to write the cases to")
    p.add_argument("--names", nargs="+", choices=sorted(MODELS), default=list(MODELS), metavar="NAME")
    p.add_argument("--epochs", type=int, default=None, help="override the epochs of every model")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    log = lambda s: print(s, flush=True)  # noqa: E731
    xtr, ytr, xte, yte = load_split()
    xte_img = fixed_images(torch, xte, SEED + 100)
    for name in args.names:
        spec = MODELS[name]
        epochs = args.epochs or spec["epochs"]
        model, nparams, secs, tr_acc = train(torch, name, spec, xtr, ytr, xte_img, yte, epochs, log)
        info = {"params": nparams, "seconds": secs, "epochs": epochs, "train_acc": tr_acc}
        write_case(torch, name, spec, model, info, xtr, ytr, xte, yte, args.out, log)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
