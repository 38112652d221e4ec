#!/usr/bin/env python3
"""PyTorch reference for `stagewise bench optim`: one optimizer step on P f32 parameters, ns/param.

    pip install torch qhoptim
    python3 tools/bench_optim_torch.py [--threads 2] [--sizes 1000000,10000000,50000000]

Times qhoptim QHM and torch.optim.SGD(momentum, foreach and fused) on one flat parameter,
median of repeated steps, so the numbers sit beside `stagewise bench optim` run on the same machine.
"""
import argparse
import time

import qhoptim.pyt as qh
import torch


def median_step_seconds(opt, reps):
    for _ in range(2):
        opt.step()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        opt.step()
        times.append(time.perf_counter() - t)
    times.sort()
    return times[len(times) // 2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sizes", default="1000000,10000000,50000000")
    ap.add_argument("--reps", type=int, default=15)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, median of {args.reps}")
    print(f"{'params':>10}  {'optimizer':<22} {'ns/param':>9}")
    for n in map(int, args.sizes.split(",")):
        p = torch.nn.Parameter(torch.randn(n))
        p.grad = torch.randn(n)
        cases = [
            ("qhoptim QHM", qh.QHM([p], lr=1e-3, momentum=0.9, nu=0.7)),
            ("torch SGD foreach", torch.optim.SGD([p], lr=1e-3, momentum=0.9, foreach=True)),
            ("torch SGD fused", torch.optim.SGD([p], lr=1e-3, momentum=0.9, fused=True)),
        ]
        for name, opt in cases:
            s = median_step_seconds(opt, args.reps)
            print(f"{n:>10}  {name:<22} {s * 1e9 / n:9.3f}")


if __name__ == "__main__":
    main()
