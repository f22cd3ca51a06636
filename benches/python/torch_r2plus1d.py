"""PyTorch twin of nn::r2plus1d (same layers, widths, strides and parameter count) for
side-by-side throughput with `examples/bench_video.rs`.

Usage: python3 benches/python/torch_r2plus1d.py [--steps N] [--batch B] [--presets small,large]
       [--frames T] [--size S]
Prints train (forward + backward + SGD step) and inference clips/s on 1xTxSxS clips with
torch.set_num_threads(2). Each (2+1)D conv is Conv3d(1,k,k) -> BN -> ReLU -> Conv3d(kt,1,1), the
middle width M = kt d^2 Cin Cout / (d^2 Cin + kt Cout), as in Tran et al. and in cfrun.
"""
import argparse
import time

import os
import sys

if "--passive" in sys.argv:
    # Idle OpenMP threads sleep instead of spinning, so CPU times count work.
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    sys.argv.remove("--passive")

import torch
import torch.nn as nn
import torch.nn.functional as F

PRESETS = {
    "tiny": dict(stem=4, widths=(4, 8, 8, 8), blocks=(1, 1, 1, 1)),
    "small": dict(stem=8, widths=(8, 16, 32, 64), blocks=(1, 1, 1, 1)),
    "large": dict(stem=12, widths=(12, 24, 48, 96), blocks=(2, 2, 2, 2)),
    "gpu": dict(stem=64, widths=(64, 128, 256, 512), blocks=(2, 2, 2, 2)),
}
TEMPORAL_STRIDES = (1, 2, 2, 2)


def mid_width(cin, cout, d=3, kt=3):
    return max(1, kt * d * d * cin * cout // (d * d * cin + kt * cout))


class Conv2Plus1D(nn.Module):
    def __init__(self, cin, cout, stride, t_stride):
        super().__init__()
        mid = mid_width(cin, cout)
        self.spatial = nn.Conv3d(cin, mid, (1, 3, 3), (1, stride, stride), (0, 1, 1), bias=False)
        self.mid_bn = nn.BatchNorm3d(mid)
        self.temporal = nn.Conv3d(mid, cout, (3, 1, 1), (t_stride, 1, 1), (1, 0, 0), bias=False)

    def forward(self, x):
        return self.temporal(F.relu(self.mid_bn(self.spatial(x))))


class Block(nn.Module):
    def __init__(self, cin, cout, stride, t_stride):
        super().__init__()
        self.conv1 = Conv2Plus1D(cin, cout, stride, t_stride)
        self.bn1 = nn.BatchNorm3d(cout)
        self.conv2 = Conv2Plus1D(cout, cout, 1, 1)
        self.bn2 = nn.BatchNorm3d(cout)
        self.shortcut = None
        if stride != 1 or t_stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv3d(cin, cout, 1, (t_stride, stride, stride), bias=False), nn.BatchNorm3d(cout)
            )

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        h = self.bn2(self.conv2(h))
        skip = x if self.shortcut is None else self.shortcut(x)
        return F.relu(h + skip)


class R2Plus1D(nn.Module):
    def __init__(self, stem, widths, blocks, num_classes):
        super().__init__()
        self.conv1 = Conv2Plus1D(1, stem, 2, 1)
        self.bn1 = nn.BatchNorm3d(stem)
        cin = stem
        for s, (w, b) in enumerate(zip(widths, blocks)):
            stage = []
            for i in range(b):
                stride = 2 if s > 0 and i == 0 else 1
                stage.append(Block(cin, w, stride, TEMPORAL_STRIDES[s] if i == 0 else 1))
                cin = w
            setattr(self, f"res{s + 2}", nn.Sequential(*stage))
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        for s in range(2, 6):
            h = getattr(self, f"res{s}")(h)
        return self.fc(h.mean((2, 3, 4)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--size", type=int, default=24)
    ap.add_argument("--presets", default="small,large")
    args = ap.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)
    b = args.batch
    x = torch.randn(b, 1, args.frames, args.size, args.size)
    y = torch.arange(b) % 16
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, batch {b}, "
          f"clips 1x{args.frames}x{args.size}x{args.size}")
    for name in args.presets.split(","):
        p = PRESETS[name]
        model = R2Plus1D(p["stem"], p["widths"], p["blocks"], 16)
        params = sum(t.numel() for t in model.parameters()) + sum(t.numel() for n, t in model.named_buffers() if "running" in n)
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)

        def step():
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            opt.step()

        model.train()
        step()
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(args.steps):
            step()
        train = args.steps * b / (time.perf_counter() - t0)
        train_cpu = args.steps * b * 2 / (time.process_time() - c0)
        model.eval()
        with torch.no_grad():
            model(x)
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(args.steps):
                model(x)
            infer = args.steps * b / (time.perf_counter() - t0)
            infer_cpu = args.steps * b * 2 / (time.process_time() - c0)
        print(f"r2plus1d_{name:6} {params:8} params  train {train:7.1f} clips/s ({train_cpu:7.1f} per 2 CPU-s)  "
              f"inference {infer:8.1f} clips/s ({infer_cpu:8.1f})  ({args.steps} steps)", flush=True)


if __name__ == "__main__":
    main()
