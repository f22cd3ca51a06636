"""PyTorch twin of nn::resnet (same layers, names and shapes) for side-by-side throughput.

Usage: python3 benches/python/torch_resnet.py [--steps N] [--presets tiny,cpu,gpu] [--passive]
       [--device cpu|cuda] [--amp] [--compile]
Prints train (forward + backward + SGD step) and inference images/s at batch 128, 1x28x28,
with torch.set_num_threads(2) (--threads N for another count), and in parentheses images per 2
CPU-seconds of the process, as examples/bench_train does (with --passive, OMP_WAIT_POLICY=PASSIVE so that idle OpenMP threads
sleep instead of spinning and CPU time counts work). Run it with OPENBLAS_CORETYPE /
OPENBLAS_L2_SIZE unset.
With --jigsaw: cfrun's Jigsaw pretext network instead (128 puzzles of 9 tiles of 1x13x13 through
the shared trunk, a 100-way head over the 9 concatenated features); rates are puzzles/s.
With --device cuda: the same on the first GPU (timed between torch.cuda.synchronize() calls,
--steps as given for every preset; the CPU-time column is left out, and train and inference
are printed on lines of their own, train first); --amp trains under
torch.autocast(bfloat16) (bf16 convolutions, f32 weights and batch norm, like cfrun's
precision = "bf16"); --compile wraps the model in torch.compile first (its compile time is
spent in warm-up steps, not timed). The input batch stays on the device, as in cfrun's
device-resident pipeline.
"""
import argparse
import os
import sys
import time

if "--passive" in sys.argv:
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"  # before torch loads OpenMP

import torch
import torch.nn as nn
import torch.nn.functional as F

PRESETS = {
    "tiny": dict(stem=4, widths=(4, 8, 8, 8), blocks=(1, 1, 1, 1)),
    "small": dict(stem=8, widths=(8, 16, 32, 64), blocks=(1, 1, 1, 1)),
    "cpu": dict(stem=16, widths=(16, 32, 64, 128), blocks=(1, 1, 1, 1)),
    "gpu": dict(stem=64, widths=(64, 128, 256, 512), blocks=(2, 2, 2, 2)),
}


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential()
            self.shortcut.add_module("conv", nn.Conv2d(cin, cout, 1, stride, 0, bias=False))
            self.shortcut.add_module("bn", nn.BatchNorm2d(cout))

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        h = self.bn2(self.conv2(h))
        skip = x if self.shortcut is None else self.shortcut(x)
        return F.relu(h + skip)


class ResNet(nn.Module):
    def __init__(self, in_channels, stem, widths, blocks, num_classes):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, stem, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        cin = stem
        for s, (w, b) in enumerate(zip(widths, blocks)):
            stage = []
            for i in range(b):
                stage.append(Block(cin, w, 2 if s > 0 and i == 0 else 1))
                cin = w
            setattr(self, f"res{s + 2}", nn.Sequential(*stage))
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        for s in range(2, 6):
            h = getattr(self, f"res{s}")(h)
        return self.fc(h.mean((2, 3)))


class Jigsaw(nn.Module):
    """The trunk on every tile, features concatenated per puzzle, a linear head (nn::jigsaw)."""

    def __init__(self, trunk, dim, perms):
        super().__init__()
        self.trunk = trunk
        self.jigsaw = nn.Linear(9 * dim, perms)

    def forward(self, tiles):
        h = F.relu(self.trunk.bn1(self.trunk.conv1(tiles)))
        for s in range(2, 6):
            h = getattr(self.trunk, f"res{s}")(h)
        return self.jigsaw(h.mean((2, 3)).reshape(-1, 9 * h.shape[1]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--presets", default="tiny,cpu,gpu")
    ap.add_argument("--passive", action="store_true", help="OMP_WAIT_POLICY=PASSIVE, for meaningful CPU times")
    ap.add_argument("--threads", type=int, default=2, help="intra-op threads (CPU)")
    ap.add_argument("--jigsaw", action="store_true")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--amp", action="store_true", help="bf16 autocast (GPU)")
    ap.add_argument("--compile", action="store_true", help="torch.compile the model")
    args = ap.parse_args()
    cuda = args.device == "cuda"
    if cuda and not torch.cuda.is_available():
        sys.exit("--device cuda: torch sees no CUDA GPU")
    dev = torch.device(args.device)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    batch = 128
    x = torch.randn(batch * 9, 1, 13, 13) if args.jigsaw else torch.randn(batch, 1, 28, 28)
    y = torch.arange(batch) % 10
    x, y = x.to(dev), y.to(dev)
    shape = "puzzles of 9 x 1x13x13" if args.jigsaw else "1x28x28"
    where = torch.cuda.get_device_name(0) if cuda else f"threads {torch.get_num_threads()}"
    mode = ("amp-bf16" if args.amp else "fp32") + (", compiled" if args.compile else ", eager")
    if cuda:
        # PyTorch's defaults let cuDNN run fp32 convolutions in TF32 (tensor cores), not matmuls:
        # say so, since an "fp32" ratio against cfrun depends on it.
        mode += (f", tf32 conv {torch.backends.cudnn.allow_tf32}"
                 f" matmul {torch.backends.cuda.matmul.allow_tf32}")
    print(f"torch {torch.__version__}, {where}, batch {batch}, {shape}, {mode}")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    autocast = lambda: torch.autocast(args.device, dtype=torch.bfloat16, enabled=args.amp)  # noqa: E731
    for name in args.presets.split(","):
        p = PRESETS[name]
        model = ResNet(1, p["stem"], p["widths"], p["blocks"], 10)
        if args.jigsaw:
            model = Jigsaw(model, p["widths"][-1], 100)
        model = model.to(dev)
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
        run = torch.compile(model) if args.compile else model
        n = max(2, -(-args.steps // 5)) if name == "gpu" and not cuda else args.steps

        def step():
            opt.zero_grad(set_to_none=True)
            with autocast():
                loss = F.cross_entropy(run(x), y)
            loss.backward()
            opt.step()

        model.train()
        for _ in range(3 if args.compile or cuda else 1):
            step()
        sync()
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(n):
            step()
        sync()
        train = n * batch / (time.perf_counter() - t0)
        train_cpu = n * batch * 2 / (time.process_time() - c0)
        if cuda:
            # Printed before the inference phase: under --compile, eval mode compiles again, and a
            # caller's timeout must not take the measured training rate with it.
            print(f"resnet_{name:5} train {train:8.1f} img/s   ({n} steps)", flush=True)
        model.eval()
        with torch.no_grad(), autocast():
            for _ in range(3 if args.compile or cuda else 1):
                run(x)
            sync()
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(n):
                run(x)
            sync()
            infer = n * batch / (time.perf_counter() - t0)
            infer_cpu = n * batch * 2 / (time.process_time() - c0)
        if cuda:
            print(f"resnet_{name:5} inference {infer:8.1f} img/s   ({n} steps)", flush=True)
        else:
            print(f"resnet_{name:5} train {train:8.1f} img/s ({train_cpu:7.1f} per 2 CPU-s)   "
                  f"inference {infer:8.1f} img/s ({infer_cpu:7.1f})   ({n} steps)", flush=True)


if __name__ == "__main__":
    main()
