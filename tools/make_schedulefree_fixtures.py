#!/usr/bin/env python3
"""Generate schedule-free SGD / AdamW fixtures with the `schedulefree` reference classes.

Each fixture is a trace-style case (see crates/core/src/trace.rs for the common fields) plus
what `schedulefree.SGDScheduleFreeReference` / `AdamWScheduleFreeReference` produced after
every step, in float64:

    pip install torch schedulefree numpy
    python3 tools/make_schedulefree_fixtures.py   # writes tests/fixtures/schedulefree/*.json

Fields: `algorithm` ("sgd-schedulefree" / "adamw-schedulefree"), `theta0`, `grads` (raw
gradients at y, one vector per step), `schedule` ([{"lr", "momentum"}] per step; momentum is
SGD's beta or AdamW's beta1, set on param_groups before each step as a scheduler would),
`weight_decay`, `warmup_steps`, `r`, `weight_lr_power`, and for AdamW `beta2`, `eps`,
`decay_at_z`. Expected: `params_after` (y, the parameters in train mode), `x_after` and
`z_after` (the optimizer's state) after every step.

The parameters are two tensors (3 and 2 elements) in one param group, so the group's shared
step count and averaging weights are exercised; vectors are the two flattened in order.
crates/core/tests/schedulefree_fixtures.rs replays every case and requires agreement
within 1e-12.
"""
import json
import pathlib

import numpy as np
import schedulefree
import torch
from importlib.metadata import version

OUT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "schedulefree"
SHAPES = [3, 2]


def stages(*parts):
    """[(steps, lr, momentum), ...] -> one schedule entry per step."""
    out = []
    for steps, lr, momentum in parts:
        out.extend([{"lr": lr, "momentum": momentum} for _ in range(steps)])
    return out


def build(case, params):
    first = case["schedule"][0]
    common = dict(lr=first["lr"], weight_decay=case["weight_decay"],
                  warmup_steps=case["warmup_steps"], r=case["r"],
                  weight_lr_power=case["weight_lr_power"])
    if case["algorithm"] == "sgd-schedulefree":
        return schedulefree.SGDScheduleFreeReference(params, momentum=first["momentum"], **common)
    if case["algorithm"] == "adamw-schedulefree":
        return schedulefree.AdamWScheduleFreeReference(
            params, betas=(first["momentum"], case["beta2"]), eps=case["eps"],
            decay_at_z=case.get("decay_at_z", False), **common)
    raise ValueError(case["algorithm"])


def apply_schedule(case, group, s):
    group["lr"] = s["lr"]
    if case["algorithm"] == "sgd-schedulefree":
        group["momentum"] = s["momentum"]
    else:
        group["betas"] = (s["momentum"], case["beta2"])


def flat(tensors):
    return torch.cat([t.detach().reshape(-1) for t in tensors]).tolist()


def run(case, seed):
    rng = np.random.default_rng(seed)
    dim = sum(SHAPES)
    theta0 = rng.normal(size=dim)
    grads = rng.normal(size=(len(case["schedule"]), dim)) * case.get("grad_scale", 1.0)
    splits = np.cumsum(SHAPES)[:-1]
    params = [torch.nn.Parameter(torch.tensor(part, dtype=torch.float64))
              for part in np.split(theta0, splits)]
    opt = build(case, params)
    opt.train()  # AdamWScheduleFreeReference starts in eval mode; gradients are taken at y.
    y_after, x_after, z_after = [], [], []
    for s, g in zip(case["schedule"], grads):
        apply_schedule(case, opt.param_groups[0], s)
        for p, part in zip(params, np.split(g, splits)):
            p.grad = torch.tensor(part, dtype=torch.float64)
        opt.step()
        y_after.append(flat(params))
        x_after.append(flat([opt.state[p]["x"] for p in params]))
        z_after.append(flat([opt.state[p]["z"] for p in params]))
    case = dict(case)
    case["theta0"] = theta0.tolist()
    case["grads"] = grads.tolist()
    case["expected"] = {"params_after": y_after, "x_after": x_after, "z_after": z_after}
    case["generator"] = (f"tools/make_schedulefree_fixtures.py, torch {torch.__version__}, "
                         f"schedulefree {version('schedulefree')}, seed {seed}")
    return case


def sgd(**kw):
    case = {"algorithm": "sgd-schedulefree", "weight_decay": 0.0, "warmup_steps": 0, "r": 0.0,
            "weight_lr_power": 2.0}
    case.update(kw)
    return case


def adamw(**kw):
    case = {"algorithm": "adamw-schedulefree", "weight_decay": 0.0, "warmup_steps": 0, "r": 0.0,
            "weight_lr_power": 2.0, "beta2": 0.999, "eps": 1e-8}
    case.update(kw)
    return case


CASES = [
    ("sgd_sf_constant", "schedule-free SGD, constant lr and beta, no warm-up",
     sgd(schedule=stages((15, 0.5, 0.9)))),
    ("sgd_sf_wd_warmup", "schedule-free SGD with weight decay at y and 5 warm-up steps",
     sgd(weight_decay=0.01, warmup_steps=5, schedule=stages((16, 1.0, 0.9)))),
    ("sgd_sf_r_lr_change", "schedule-free SGD, r = 1, weight_lr_power 1.5, warm-up 3; lr drops "
     "then rises above its old maximum, beta changes",
     sgd(r=1.0, weight_lr_power=1.5, warmup_steps=3, weight_decay=0.005,
         schedule=stages((6, 0.5, 0.9), (6, 0.1, 0.95), (6, 0.8, 0.8)))),
    ("adamw_sf_constant", "schedule-free AdamW, package defaults (lr 0.0025, betas 0.9/0.999)",
     adamw(schedule=stages((15, 0.0025, 0.9)))),
    ("adamw_sf_wd_warmup", "schedule-free AdamW with decoupled weight decay at y, warm-up 6",
     adamw(weight_decay=0.1, warmup_steps=6, schedule=stages((16, 0.01, 0.9)))),
    ("adamw_sf_r_lr_change", "schedule-free AdamW, r = 0.5, beta2 0.99, eps 1e-6, warm-up 4; "
     "lr and beta1 change between steps",
     adamw(r=0.5, warmup_steps=4, beta2=0.99, eps=1e-6, weight_decay=0.02,
           schedule=stages((7, 0.02, 0.9), (7, 0.005, 0.95), (6, 0.03, 0.9)))),
    ("adamw_sf_decay_at_z", "schedule-free AdamW with weight decay taken at z, weight_lr_power 0",
     adamw(weight_decay=0.05, decay_at_z=True, weight_lr_power=0.0, warmup_steps=2,
           schedule=stages((12, 0.01, 0.9)))),
]


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    torch.set_default_dtype(torch.float64)
    for seed, (name, description, case) in enumerate(CASES, start=100):
        fixture = run(dict(case, name=name, description=description), seed)
        (OUT / f"{name}.json").write_text(json.dumps(fixture, indent=1) + "\n")
        print(f"wrote {name}.json ({len(fixture['grads'])} steps)")


if __name__ == "__main__":
    main()
