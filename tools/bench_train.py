#!/usr/bin/env python3
"""Training throughput: stagewise (burn + flex) vs PyTorch CPU on the same models, same run.

    pip install torch qhoptim
    cargo build --release -p stagewise
    python3 tools/bench_train.py [--threads 2] [--batch 128] [--steps 30]

For each model (mlp, cnn) this times full training steps (forward, loss, backward, QHM step)
at the given batch size, first in PyTorch with `torch.set_num_threads(threads)`, then
`stagewise bench train` in a subprocess (one after the other, so each has the machine), and prints
images/s and the ratio stagewise / PyTorch.
"""
import argparse
import json
import os
import pathlib
import subprocess
import time

import qhoptim.pyt as qh
import torch
from torch import nn

ROOT = pathlib.Path(__file__).resolve().parent.parent


def mlp():
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512),
                         nn.ReLU(), nn.Linear(512, 10))


def cnn():
    return nn.Sequential(nn.Conv2d(1, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(3136, 256), nn.ReLU(), nn.Linear(256, 10))


def torch_images_per_second(build, batch, steps, warmup=5):
    torch.manual_seed(0)
    model = build()
    opt = qh.QHM(model.parameters(), lr=0.1, momentum=0.9, nu=0.7)
    loss_fn = nn.CrossEntropyLoss()
    x = torch.randn(batch, 1, 28, 28)
    y = torch.randint(0, 10, (batch,))
    for step in range(warmup + steps):
        if step == warmup:
            start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
    return steps * batch / (time.perf_counter() - start)


def stagewise_bench(binary, model, batch, steps, threads):
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
    out = subprocess.run([binary, "bench", "train", "--model", model, "--batch", str(batch),
                          "--steps", str(steps), "--json"], check=True, capture_output=True,
                         text=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--binary", default=str(ROOT / "target" / "release" / "stagewise"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, batch {args.batch}, {args.steps} timed steps")
    print(f"{'model':6} {'pytorch img/s':>14} {'stagewise img/s':>16} {'ratio':>6}   stagewise ms/step: "
          "batch forward backward bridge optimizer")
    for name, build in (("mlp", mlp), ("cnn", cnn)):
        steps = args.steps * (10 if name == "mlp" else 1)
        pt = torch_images_per_second(build, args.batch, steps)
        sw = stagewise_bench(args.binary, name, args.batch, steps, args.threads)
        r = sw["images_per_second"] / pt
        print(f"{name:6} {pt:14.0f} {sw['images_per_second']:16.0f} {r:6.2f}   "
              f"{sw['ms_batch']:.2f} {sw['ms_forward']:.2f} {sw['ms_backward']:.2f} "
              f"{sw['ms_bridge']:.2f} {sw['ms_optimizer']:.2f}")


if __name__ == "__main__":
    main()
