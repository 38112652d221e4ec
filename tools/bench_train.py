#!/usr/bin/env python3
"""Training throughput: stagewise (burn + flex) vs PyTorch CPU on the same models, same run.

    pip install torch qhoptim
    cargo build --release -p stagewise
    python3 tools/bench_train.py [--threads 2] [--batches 128] [--steps 30]
    python3 tools/bench_train.py --models mlp,cnn,resnet --batches 32,128,512 --repeats 3
    python3 tools/bench_train.py --torch-only --profile --models cnn,resnet,mlp

For each model (mlp, cnn, resnet) and batch size this times full training steps (forward,
CrossEntropyLoss, backward, QHM step), first in PyTorch with `torch.set_num_threads(threads)`,
then `stagewise bench train --threads N` in a subprocess (one after the other, so each has the
machine), and prints images/s, ms/step and the ratio stagewise / PyTorch. With `--repeats R` the
two alternate R times per row (PyTorch, stagewise, PyTorch, stagewise, ...) and the table shows
min-max of images/s and of the paired ratio. Timed steps: `--steps` (x10 for mlp), scaled by
128/batch so that each row takes about as long as at batch 128 (at least 5).

Compute floor: forward FLOPs per image are counted analytically for every Conv2d
(2*C_in*kh*kw*C_out*OH*OW) and Linear (2*in*out) layer (elementwise layers, BatchNorm and
pooling are left out); a training step is taken as 3x forward (forward, gradient of the input,
gradient of the weight). The floor rate is the float32 GFLOP/s of a 2048x2048 matmul in torch,
measured in the same run with the same thread count; floor ms/step = step FLOPs / that rate.

`--profile` adds, per model and batch, a torch.profiler table of a few training steps
(record_shapes=True, grouped by op and input shapes): self CPU ms per step of the top rows, with
the model layers whose input/weight shapes match the op's (conv, linear, BatchNorm, pool,
forward and backward), then the same grouped by op name only.

If the stagewise binary (default target/release/stagewise) is missing, the script says so and
prints the PyTorch side only; `--torch-only` asks for that explicitly.
"""
import argparse
import json
import os
import pathlib
import subprocess
import sys
import time
import warnings

os.environ.setdefault("KINETO_LOG_LEVEL", "5")  # quiet torch.profiler's CPU-only start-up lines
import qhoptim.pyt as qh
import torch
from torch import nn
from torch.nn import functional as F

ROOT = pathlib.Path(__file__).resolve().parent.parent
# qhoptim 1.1 calls the deprecated add_(Number, Tensor) overload on every step.
warnings.filterwarnings("ignore", message="This overload of add_ is deprecated")


def mlp():
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512),
                         nn.ReLU(), nn.Linear(512, 10))


def cnn():
    return nn.Sequential(nn.Conv2d(1, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(3136, 256), nn.ReLU(), nn.Linear(256, 10))


class BasicBlock(nn.Module):
    """relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)); 3x3 convs, padding 1, no bias."""

    def __init__(self, c_in, c_out, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = None
        if stride != 1 or c_in != c_out:  # projection: 1x1 conv (no bias) + BatchNorm
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(c_out))

    def forward(self, x):
        residual = x if self.shortcut is None else self.shortcut(x)
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + residual)


class ResNet(nn.Module):
    """ResNet-20 style, as crates/train/src/model/resnet.rs: stem conv3x3 1->16 + BN + ReLU,
    3 stages x 3 BasicBlocks (16/32/64 channels, stride 2 at the start of stages 2 and 3,
    28->14->7), global average pool, Linear 64->10."""

    def __init__(self):
        super().__init__()
        self.stem_conv = nn.Conv2d(1, 16, 3, padding=1, bias=False)
        self.stem_bn = nn.BatchNorm2d(16)
        blocks, c_in = [], 16
        for stage, c_out in enumerate((16, 32, 64)):
            for block in range(3):
                blocks.append(BasicBlock(c_in, c_out, 2 if stage > 0 and block == 0 else 1))
                c_in = c_out
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        x = self.blocks(F.relu(self.stem_bn(self.stem_conv(x))))
        return self.fc(x.mean(dim=(2, 3)))


def resnet():
    return ResNet()


MODELS = {"mlp": mlp, "cnn": cnn, "resnet": resnet}
STEP_MULT = {"mlp": 10, "cnn": 1, "resnet": 1}


def steps_for(name, batch, steps):
    return max(5, round(steps * STEP_MULT[name] * 128 / batch))


def setup(build, batch):
    torch.manual_seed(0)
    model = build()
    opt = qh.QHM(model.parameters(), lr=0.1, momentum=0.9, nu=0.7)
    loss_fn = nn.CrossEntropyLoss()
    x = torch.randn(batch, 1, 28, 28)
    y = torch.randint(0, 10, (batch,))

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()

    return model, step


def torch_images_per_second(build, batch, steps, warmup=5):
    _, step = setup(build, batch)
    for i in range(warmup + steps):
        if i == warmup:
            start = time.perf_counter()
        step()
    return steps * batch / (time.perf_counter() - start)


_THREADS_FLAG = [True]  # cleared once if the binary predates `bench train --threads`


def stagewise_bench(binary, model, batch, steps, threads):
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
    base = [binary, "bench", "train", "--model", model, "--batch", str(batch),
            "--steps", str(steps), "--json"]
    while True:
        cmd = base + (["--threads", str(threads)] if _THREADS_FLAG[0] else [])
        p = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if p.returncode == 0:
            return json.loads(p.stdout.strip().splitlines()[-1])
        if _THREADS_FLAG[0] and "--threads" in p.stderr:
            _THREADS_FLAG[0] = False
            print("  (this stagewise has no `bench train --threads`; using RAYON_NUM_THREADS only)")
            continue
        sys.stderr.write(p.stderr)
        raise SystemExit(f"{' '.join(cmd)} exited with {p.returncode}")


def matmul_gflops(n=2048, reps=5):
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(2):
        a @ b
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best / 1e9


def forward_flops_per_image(build):
    """Multiply-adds x2 of every Conv2d and Linear layer for one 1x28x28 image."""
    model = build()
    total = [0]

    def hook(m, inp, out):
        if isinstance(m, nn.Conv2d):
            kh, kw = m.kernel_size
            total[0] += 2 * m.in_channels // m.groups * kh * kw * out[0].numel()
        elif isinstance(m, nn.Linear):
            total[0] += 2 * m.in_features * m.out_features

    hs = [m.register_forward_hook(hook) for m in model.modules()
          if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        model(torch.zeros(1, 1, 28, 28))
    for h in hs:
        h.remove()
    return total[0]


def fmt_range(values, fmt):
    lo, hi = min(values), max(values)
    return format(lo, fmt) if len(values) == 1 or lo == hi else f"{lo:{fmt}}-{hi:{fmt}}"


# ---------------------------------------------------------------------------------------------
# --profile

def layer_signatures(model, batch):
    """[(name, kind, input shape, weight shape, output shape)] of the conv, linear, BatchNorm and
    pool layers, from one forward pass at this batch size."""
    sigs = []

    def hook(name, kind):
        def f(m, inp, out):
            w = getattr(m, "weight", None)
            sigs.append((name, kind, list(inp[0].shape), list(w.shape) if w is not None else None,
                         list(out.shape)))
        return f

    kinds = ((nn.Conv2d, "conv"), (nn.Linear, "linear"), (nn.BatchNorm2d, "bn"),
             (nn.MaxPool2d, "pool"))
    hs = []
    for name, m in model.named_modules():
        for cls, kind in kinds:
            if isinstance(m, cls):
                if name.isdigit():  # nn.Sequential child: "Conv2d.0"
                    name = f"{type(m).__name__}.{name}"
                hs.append(m.register_forward_hook(hook(name, kind)))
    with torch.no_grad():
        model(torch.zeros(batch, 1, 28, 28))
    for h in hs:
        h.remove()
    return sigs


def matches(key, shapes, kind, x, w, out):
    """Whether profiler row (op name `key`, input shapes) can belong to this layer."""
    has = lambda sh: sh in shapes  # noqa: E731
    if kind == "conv":  # convolution [x, w, b], convolution_backward [grad, x, w]
        return "conv" in key and has(x) and has(w)
    if kind == "bn":  # native_batch_norm [x, w, ...], native_batch_norm_backward [grad, x, w, ...]
        return "batch_norm" in key and has(x) and has(w)
    if kind == "pool":  # max_pool2d_with_indices [x], ..._backward [grad, x, indices]
        return "max_pool" in key and has(x)
    if kind == "linear" and any(k in key for k in ("linear", "addmm", "mm", "matmul")):
        return ((has(x) and (has(w) or has(w[::-1])))  # forward: addmm [b, x, w^T]
                or (has(out) and has(w))  # grad of the input: mm [grad, w]
                or (has(out[::-1]) and has(x)))  # grad of the weight: mm [grad^T, x]
    return False


def layers_of(key, shapes, sigs):
    names = [sig[0] for sig in sigs if matches(key, shapes, *sig[1:])]
    if len(names) > 3:
        return ",".join(names[:2]) + f" +{len(names) - 2} more"
    return ",".join(names)


def fmt_shapes(shapes, width=60):
    s = ",".join("[" + ",".join(map(str, sh)) + "]" for sh in shapes if sh)
    return s if len(s) <= width else s[:width - 3] + "..."


def profile_model(name, build, batch, steps, top, warmup=3):
    from torch.profiler import ProfilerActivity, profile

    model, step = setup(build, batch)
    sigs = layer_signatures(model, batch)
    for _ in range(warmup):
        step()
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        t = time.perf_counter()
        for _ in range(steps):
            step()
        wall = (time.perf_counter() - t) / steps * 1e3
    by_shape = prof.key_averages(group_by_input_shape=True)
    total_self = sum(e.self_cpu_time_total for e in by_shape) / steps / 1e3
    print(f"\n--- profile {name} batch {batch}: {steps} steps, {wall:.2f} ms/step wall under the "
          f"profiler; self CPU of all ops {total_self:.2f} ms/step\n    (self CPU: time in the op "
          "itself on the calling thread, intra-op worker threads not added; per step)")
    print(f"{'self ms':>8} {'total ms':>9} {'self%':>6} {'calls':>6}  {'op':38} "
          f"{'input shapes':60}  layers")
    rows = sorted(by_shape, key=lambda e: e.self_cpu_time_total, reverse=True)[:top]
    for e in rows:
        self_ms = e.self_cpu_time_total / steps / 1e3
        print(f"{self_ms:8.2f} {e.cpu_time_total / steps / 1e3:9.2f} "
              f"{100 * self_ms / total_self:5.1f}% {e.count / steps:6.1f}  {e.key[:38]:38} "
              f"{fmt_shapes(e.input_shapes):60}  {layers_of(e.key, e.input_shapes, sigs)}")
    by_op = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    print("  by op: " + ", ".join(f"{e.key} {e.self_cpu_time_total / steps / 1e3:.2f}"
                                  for e in by_op[:8]) + "  (self ms/step)")


# ---------------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batches", default=None,
                    help="comma-separated batch sizes (default 128)")
    ap.add_argument("--batch", type=int, default=None, help="one batch size (same as --batches B)")
    ap.add_argument("--models", default="mlp,cnn", help="comma-separated: mlp, cnn, resnet")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=1,
                    help="alternate PyTorch and stagewise this many times per row")
    ap.add_argument("--binary", default=str(ROOT / "target" / "release" / "stagewise"))
    ap.add_argument("--torch-only", action="store_true", help="skip stagewise")
    ap.add_argument("--profile", action="store_true",
                    help="per-operator torch.profiler table for each model and batch")
    ap.add_argument("--profile-steps", type=int, default=5)
    ap.add_argument("--top", type=int, default=15, help="rows per profile table")
    args = ap.parse_args()

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    for m in models:
        if m not in MODELS:
            ap.error(f"unknown model {m!r}: expected one of {', '.join(MODELS)}")
    if args.batches is not None:
        batches = [int(b) for b in args.batches.split(",") if b.strip()]
    else:
        batches = [args.batch or 128]
    if args.repeats < 1 or args.steps < 1 or not batches or min(batches) < 1:
        ap.error("--repeats, --steps and batch sizes must be at least 1")
    torch_only = args.torch_only
    if not torch_only and not os.path.exists(args.binary):
        print(f"stagewise binary {args.binary} not found (cargo build --release -p stagewise); "
              "PyTorch side only")
        torch_only = True

    torch.set_num_threads(args.threads)
    gflops = matmul_gflops()
    print(f"torch {torch.__version__}, {args.threads} threads, batches {batches}, "
          f"steps {args.steps} (x10 mlp, x128/batch), repeats {args.repeats}; "
          f"2048x2048 f32 matmul {gflops:.1f} GFLOP/s")
    print(f"{'model':6} {'batch':>5} {'pytorch img/s':>14} {'stagewise img/s':>16} {'ratio':>10}"
          f" {'pt ms/step':>13} {'sw ms/step':>13}   stagewise ms/step (last repeat): "
          "batch forward backward bridge optimizer")
    results = []
    for name in models:
        for batch in batches:
            steps = steps_for(name, batch, args.steps)
            pts, sws = [], []
            for _ in range(args.repeats):
                pts.append(torch_images_per_second(MODELS[name], batch, steps))
                if not torch_only:
                    sws.append(stagewise_bench(args.binary, name, batch, steps, args.threads))
            pt_ms = [1e3 * batch / p for p in pts]
            line = f"{name:6} {batch:5} {fmt_range(pts, '.0f'):>14} "
            if sws:
                ips = [s["images_per_second"] for s in sws]
                ratios = [s / p for s, p in zip(ips, pts)]
                sw_ms = [1e3 * batch / s for s in ips]
                last = sws[-1]
                line += (f"{fmt_range(ips, '.0f'):>16} {fmt_range(ratios, '.2f'):>10} "
                         f"{fmt_range(pt_ms, '.2f'):>13} {fmt_range(sw_ms, '.2f'):>13}   "
                         f"{last['ms_batch']:.2f} {last['ms_forward']:.2f} "
                         f"{last['ms_backward']:.2f} {last['ms_bridge']:.2f} "
                         f"{last['ms_optimizer']:.2f}")
            else:
                line += f"{'-':>16} {'-':>10} {fmt_range(pt_ms, '.2f'):>13} {'-':>13}"
                sw_ms = None
            print(line)
            results.append((name, batch, pt_ms, sw_ms))

    print(f"\ncompute floor at {gflops:.1f} GFLOP/s (measured matmul rate; step = 3 x forward "
          "FLOPs of conv + linear layers; measured ms/step: best of the repeats):")
    print(f"{'model':6} {'batch':>5} {'fwd MFLOP/img':>14} {'step GFLOP':>11} {'floor ms':>9} "
          f"{'pt ms/step':>11} {'pt/floor':>9} {'sw ms/step':>11} {'sw/floor':>9}")
    fwd = {name: forward_flops_per_image(MODELS[name]) for name in models}
    for name, batch, pt_ms, sw_ms in results:
        step_flops = 3 * fwd[name] * batch
        floor = step_flops / (gflops * 1e9) * 1e3
        sw = (f"{min(sw_ms):11.2f} {min(sw_ms) / floor:9.1f}" if sw_ms
              else f"{'-':>11} {'-':>9}")
        print(f"{name:6} {batch:5} {fwd[name] / 1e6:14.2f} {step_flops / 1e9:11.2f} "
              f"{floor:9.2f} {min(pt_ms):11.2f} {min(pt_ms) / floor:9.1f} {sw}")

    if args.profile:
        for name in models:
            for batch in batches:
                profile_model(name, MODELS[name], batch, args.profile_steps, args.top)


if __name__ == "__main__":
    main()
