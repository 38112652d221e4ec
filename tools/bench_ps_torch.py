#!/usr/bin/env python3
"""PyTorch baselines for `stagewise bench ps`: parameter-server pushes/s and GB/s on one host.

    pip install torch
    python3 tools/bench_ps_torch.py [--seconds 3] [--sizes 1000000,10000000] [--workers 1,2,4]
                                    [--gloo-sizes 10000000] [--json]

Two baselines, each with W worker processes and one server process on 127.0.0.1, gradients
pre-filled (nothing computed), every worker looping push -> pull like `stagewise bench ps`:

- rpc:  torch.distributed.rpc (TensorPipe; on one host it can use shared memory). The server
        applies p -= lr * g under a lock on each push; a pull returns a copy of p taken under
        the lock (a consistent version), as the Rust server does.
- gloo: torch.distributed send/recv (gloo, TCP). Each iteration a worker sends a one-element
        header and its gradient, the server applies p -= lr * g and sends p back.

pushes/s counts pushes applied by the server over the timed window (after a warm-up);
GB/s is push + pull bytes (2 * 4 * P per push), comparable to the "wire GB/s" column of
`stagewise bench ps`. Each process uses one intra-op thread. Run it right after
`stagewise bench ps` on the same machine and compare ratios, not absolute numbers.
"""
import argparse
import json
import os
import socket
import threading
import time
import warnings

import torch
import torch.distributed as dist
import torch.distributed.rpc as rpc
import torch.multiprocessing as mp

LR = 1e-6
WARMUP = 2
# rpc.shutdown() uses a gloo group internally and warns about it; not ours to fix.
warnings.filterwarnings("ignore", message="You are using a Backend")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------- torch.distributed.rpc


class _Server:
    params = None
    lock = threading.Lock()
    pushes = 0


def rpc_pull():
    with _Server.lock:
        return _Server.params.clone()


def rpc_push(grad):
    with _Server.lock:
        _Server.params.sub_(grad, alpha=LR)
        _Server.pushes += 1


def rpc_worker_warmup(p):
    grad = torch.full((p,), 1e-3)
    for _ in range(WARMUP):
        rpc.rpc_sync("ps", rpc_pull)
        rpc.rpc_sync("ps", rpc_push, args=(grad,))
    return True


def rpc_worker_timed(p, stop_at):
    grad = torch.full((p,), 1e-3)
    n = 0
    while time.time() < stop_at:
        rpc.rpc_sync("ps", rpc_pull)
        rpc.rpc_sync("ps", rpc_push, args=(grad,))
        n += 1
    return n


def rpc_main(rank, world, port, p, seconds, out):
    torch.set_num_threads(1)
    opts = rpc.TensorPipeRpcBackendOptions(
        init_method=f"tcp://127.0.0.1:{port}", num_worker_threads=max(4, 2 * world)
    )
    name = "ps" if rank == 0 else f"w{rank}"
    if rank == 0:
        _Server.params = torch.zeros(p)
    rpc.init_rpc(name, rank=rank, world_size=world, rpc_backend_options=opts)
    if rank == 0:
        workers = [f"w{r}" for r in range(1, world)]
        for f in [rpc.rpc_async(w, rpc_worker_warmup, args=(p,)) for w in workers]:
            f.wait()
        before = _Server.pushes
        start = time.time()
        stop_at = start + seconds
        futs = [rpc.rpc_async(w, rpc_worker_timed, args=(p, stop_at)) for w in workers]
        for f in futs:
            f.wait()
        elapsed = time.time() - start
        out.put((_Server.pushes - before, elapsed))
    rpc.shutdown()


# ---------------------------------------------------------------- gloo send/recv


def gloo_main(rank, world, port, p, seconds, out):
    torch.set_num_threads(1)
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    hdr = torch.zeros(1, dtype=torch.int64)  # 1: a push follows; 0: this worker is done
    params = torch.zeros(p)
    if rank == 0:
        grad = torch.empty(p)

        def serve_one():
            src = dist.recv(hdr)
            if int(hdr.item()) == 0:
                return False
            dist.recv(grad, src=src)
            params.sub_(grad, alpha=LR)
            dist.send(params, dst=src)
            return True

        for _ in range(WARMUP * (world - 1)):
            serve_one()
        dist.barrier()
        running, pushes, start = world - 1, 0, time.time()
        while running > 0:
            if serve_one():
                pushes += 1
            else:
                running -= 1
        out.put((pushes, time.time() - start))
    else:
        grad = torch.full((p,), 1e-3)

        def push_pull():
            hdr.fill_(1)
            dist.send(hdr, dst=0)
            dist.send(grad, dst=0)
            dist.recv(params, src=0)

        for _ in range(WARMUP):
            push_pull()
        dist.barrier()
        stop_at = time.time() + seconds
        while time.time() < stop_at:
            push_pull()
        hdr.fill_(0)
        dist.send(hdr, dst=0)
    dist.destroy_process_group()


# ---------------------------------------------------------------- driver


def measure(kind, p, w, seconds):
    ctx = mp.get_context("spawn")
    out = ctx.SimpleQueue()
    fn = rpc_main if kind == "rpc" else gloo_main
    mp.spawn(fn, args=(w + 1, free_port(), p, seconds, out), nprocs=w + 1, join=True)
    pushes, elapsed = out.get()
    rate = pushes / elapsed
    return {
        "mode": f"torch-{kind}",
        "params": p,
        "workers": w,
        "pushes": pushes,
        "seconds": elapsed,
        "pushes_per_s": rate,
        "wire_bytes_per_s": rate * 2 * 4 * p,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--sizes", default="1000000,10000000", help="P for the rpc baseline")
    ap.add_argument("--gloo-sizes", default="10000000", help="P for the gloo baseline")
    ap.add_argument("--workers", default="1,2,4")
    ap.add_argument("--no-rpc", action="store_true")
    ap.add_argument("--no-gloo", action="store_true")
    ap.add_argument("--json", action="store_true", help="one JSON object per line only")
    args = ap.parse_args()
    workers = [int(x) for x in args.workers.split(",")]
    plan = []
    if not args.no_rpc:
        plan += [("rpc", int(p), w) for p in args.sizes.split(",") for w in workers]
    if not args.no_gloo:
        plan += [("gloo", int(p), w) for p in args.gloo_sizes.split(",") for w in workers]
    rows = []
    if not args.json:
        print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, {args.seconds} s per cell")
        print("| baseline | P | W | pushes/s | wire GB/s (push + pull) |")
        print("|---|---|---|---|---|")
    for kind, p, w in plan:
        r = measure(kind, p, w, args.seconds)
        rows.append(r)
        if args.json:
            print(json.dumps(r), flush=True)
        else:
            print(
                f"| {r['mode']} | {p} | {w} | {r['pushes_per_s']:.1f} | "
                f"{r['wire_bytes_per_s'] / 1e9:.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
