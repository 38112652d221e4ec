#!/usr/bin/env python3
"""Generate optimizer equivalence fixtures with PyTorch and qhoptim.

Each fixture is a `stagewise optim trace` case (see crates/core/src/trace.rs) plus the
parameters PyTorch/qhoptim produced after every step, in float64:

    pip install torch qhoptim numpy
    python3 tools/make_fixtures.py            # writes tests/fixtures/optim/*.json

The Rust test crates/core/tests/trace_fixtures.rs replays every case and requires agreement
within 1e-12. Gradients are drawn once per case from a seeded generator and given to the
optimizer as raw gradients (weight decay is the optimizer's job).
"""
import json
import pathlib

import numpy as np
import qhoptim.pyt as qh
import torch

OUT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "optim"
DIM = 6


def stages(*parts):
    """[(steps, {lr, momentum, nu}), ...] -> one schedule entry per step."""
    out = []
    for steps, values in parts:
        out.extend([dict(values) for _ in range(steps)])
    return out


def build(algorithm, params, first, case):
    wd = case.get("weight_decay", 0.0)
    if algorithm == "qhm":
        return qh.QHM(params, lr=first["lr"], momentum=first["momentum"], nu=first["nu"],
                      weight_decay=wd, weight_decay_type=case.get("weight_decay_type", "grad"))
    if algorithm == "sgd":
        return torch.optim.SGD(params, lr=first["lr"], momentum=first["momentum"],
                               dampening=case.get("dampening", 0.0), weight_decay=wd,
                               nesterov=case.get("nesterov", False))
    if algorithm in ("adam", "adamw"):
        cls = torch.optim.Adam if algorithm == "adam" else torch.optim.AdamW
        return cls(params, lr=first["lr"], betas=(first["momentum"], case.get("beta2", 0.999)),
                   eps=case.get("eps", 1e-8), weight_decay=wd, foreach=False)
    if algorithm == "rmsprop":
        return torch.optim.RMSprop(params, lr=first["lr"], alpha=case.get("alpha", 0.99),
                                   eps=case.get("eps", 1e-8), momentum=first["momentum"],
                                   weight_decay=wd, centered=case.get("centered", False),
                                   foreach=False)
    if algorithm == "qhadam":
        return qh.QHAdam(params, lr=first["lr"], betas=(first["momentum"], case.get("beta2", 0.999)),
                         nus=(first["nu"], case.get("nu2", 1.0)), eps=case.get("eps", 1e-8),
                         weight_decay=wd,
                         decouple_weight_decay=case.get("weight_decay_type") == "direct")
    raise ValueError(algorithm)


def apply_schedule(algorithm, group, s, case):
    group["lr"] = s["lr"]
    if algorithm in ("qhm", "sgd", "rmsprop"):
        group["momentum"] = s["momentum"]
    if algorithm == "qhm":
        group["nu"] = s["nu"]
    if algorithm in ("adam", "adamw", "qhadam"):
        group["betas"] = (s["momentum"], case.get("beta2", 0.999))
    if algorithm == "qhadam":
        group["nus"] = (s["nu"], case.get("nu2", 1.0))


def run(case, seed):
    rng = np.random.default_rng(seed)
    theta0 = rng.normal(size=DIM)
    grads = rng.normal(size=(len(case["schedule"]), DIM)) * case.get("grad_scale", 1.0)
    p = torch.nn.Parameter(torch.tensor(theta0, dtype=torch.float64))
    algorithm = case["algorithm"]
    opt = build(algorithm, [p], case["schedule"][0], case)
    after = []
    for s, g in zip(case["schedule"], grads):
        apply_schedule(algorithm, opt.param_groups[0], s, case)
        p.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
        after.append(p.detach().clone().tolist())
    case = dict(case)
    case["theta0"] = theta0.tolist()
    case["grads"] = grads.tolist()
    case["expected"] = {"params_after": after}
    case["generator"] = f"tools/make_fixtures.py, torch {torch.__version__}, qhoptim, seed {seed}"
    return case


def qhm(a, b, n):
    return {"lr": a, "momentum": b, "nu": n}


CASES = [
    ("qhm_constant", "QHM, constant alpha/beta/nu", {
        "algorithm": "qhm", "schedule": stages((40, qhm(0.5, 0.9, 0.7)))}),
    ("qhm_nu0_plain_sgd", "QHM with nu=0 (plain SGD)", {
        "algorithm": "qhm", "schedule": stages((30, qhm(0.1, 0.9, 0.0)))}),
    ("qhm_nu1_heavy_ball", "QHM with nu=1 (normalized heavy ball)", {
        "algorithm": "qhm", "schedule": stages((30, qhm(0.3, 0.95, 1.0)))}),
    ("qhm_multistage_stagewise", "QHM, paper's stagewise rule: alpha/2, beta/(1-beta)*2 per stage", {
        "algorithm": "qhm", "schedule": stages((10, qhm(1.0, 0.9, 0.7)), (20, qhm(0.5, 18 / 19, 0.7)),
                                              (40, qhm(0.25, 36 / 37, 0.7)))}),
    ("qhm_multistage_nu", "QHM with nu and beta changing between stages", {
        "algorithm": "qhm", "schedule": stages((15, qhm(0.4, 0.8, 0.3)), (15, qhm(0.2, 0.99, 0.9)),
                                              (15, qhm(0.05, 0.5, 0.0)))}),
    ("qhm_wd_grad", "QHM with coupled weight decay", {
        "algorithm": "qhm", "weight_decay": 0.05, "weight_decay_type": "grad",
        "schedule": stages((20, qhm(0.5, 0.9, 0.7)), (20, qhm(0.1, 0.99, 0.7)))}),
    ("qhm_wd_direct", "QHM with direct (decoupled) weight decay", {
        "algorithm": "qhm", "weight_decay": 0.05, "weight_decay_type": "direct",
        "schedule": stages((20, qhm(0.5, 0.9, 0.7)), (20, qhm(0.1, 0.99, 0.7)))}),
    ("sgd_plain", "PyTorch SGD without momentum", {
        "algorithm": "sgd", "schedule": stages((25, qhm(0.1, 0.0, 0.0)))}),
    ("sgd_momentum", "PyTorch SGD momentum 0.9", {
        "algorithm": "sgd", "schedule": stages((40, qhm(0.1, 0.9, 0.0)))}),
    ("sgd_nesterov", "PyTorch SGD Nesterov momentum 0.9", {
        "algorithm": "sgd", "nesterov": True, "schedule": stages((40, qhm(0.1, 0.9, 0.0)))}),
    ("sgd_dampening", "PyTorch SGD momentum 0.9, dampening 0.9 (first step skips dampening)", {
        "algorithm": "sgd", "dampening": 0.9, "schedule": stages((30, qhm(0.5, 0.9, 0.0)))}),
    ("sgd_multistage_wd", "PyTorch SGD momentum with lr and momentum drops and weight decay", {
        "algorithm": "sgd", "weight_decay": 0.01,
        "schedule": stages((10, qhm(0.1, 0.9, 0.0)), (10, qhm(0.01, 0.95, 0.0)),
                           (10, qhm(0.001, 0.99, 0.0)))}),
    ("adam", "PyTorch Adam with coupled weight decay and a beta1 change", {
        "algorithm": "adam", "weight_decay": 0.01,
        "schedule": stages((20, qhm(0.01, 0.9, 0.0)), (20, qhm(0.001, 0.8, 0.0)))}),
    ("adamw", "PyTorch AdamW", {
        "algorithm": "adamw", "weight_decay": 0.1, "schedule": stages((30, qhm(0.01, 0.9, 0.0)))}),
    ("rmsprop_momentum", "PyTorch RMSprop with momentum", {
        "algorithm": "rmsprop", "weight_decay": 0.01, "schedule": stages((30, qhm(0.01, 0.9, 0.0)))}),
    ("rmsprop_centered", "PyTorch RMSprop centered, no momentum", {
        "algorithm": "rmsprop", "centered": True, "schedule": stages((30, qhm(0.01, 0.0, 0.0)))}),
    ("qhadam", "qhoptim QHAdam with a beta1/nu change", {
        "algorithm": "qhadam", "nu2": 0.9,
        "schedule": stages((20, qhm(0.01, 0.995, 0.7)), (20, qhm(0.005, 0.9, 1.0)))}),
    ("qhadam_direct", "qhoptim QHAdam with decoupled weight decay", {
        "algorithm": "qhadam", "weight_decay": 0.1, "weight_decay_type": "direct",
        "schedule": stages((30, qhm(0.01, 0.995, 0.7)))}),
]


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    torch.set_default_dtype(torch.float64)
    for seed, (name, description, case) in enumerate(CASES):
        fixture = run(dict(case, name=name, description=description), seed)
        (OUT / f"{name}.json").write_text(json.dumps(fixture, indent=1) + "\n")
        print(f"wrote {name}.json ({len(fixture['grads'])} steps)")


if __name__ == "__main__":
    main()
