#!/usr/bin/env python3
"""Generate reference values of PyTorch's OneCycleLR and CosineAnnealingLR.

Writes tests/fixtures/schedules/pytorch_schedules.json, read by
crates/core/tests/schedule_pytorch.rs. Run from the repository root:

    python3 tools/make_schedule_fixtures.py
"""
import json
import math
import os

import torch

ONECYCLE = [
    dict(max_lr=0.1, total_steps=100),
    dict(max_lr=1.0, total_steps=37, pct_start=0.25, anneal_strategy="linear"),
    dict(max_lr=0.5, total_steps=50, three_phase=True, div_factor=10.0, final_div_factor=100.0),
    dict(max_lr=2.0, total_steps=23, pct_start=0.4, base_momentum=0.8, max_momentum=0.99),
    dict(max_lr=0.3, total_steps=64, three_phase=True, anneal_strategy="linear", pct_start=0.2),
]

COSINE = [
    dict(base=0.1, eta_min=0.0, t_max=50),
    dict(base=1.0, eta_min=0.01, t_max=17),
]


def onecycle_case(cfg):
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=cfg["max_lr"], momentum=0.9)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, **cfg)
    lr, mom = [], []
    for _ in range(cfg["total_steps"]):
        lr.append(opt.param_groups[0]["lr"])
        mom.append(opt.param_groups[0]["momentum"])
        opt.step()
        sched.step()
    return dict(params=cfg, lr=lr, momentum=mom)


def cosine_case(cfg):
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=cfg["base"])
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg["t_max"], eta_min=cfg["eta_min"])
    lr = []
    for t in range(cfg["t_max"] + 1):
        # The closed form (the recursive update drifts by ~1e-16 per step).
        lr.append(sched._get_closed_form_lr()[0])
        opt.step()
        sched.step()
    return dict(params=cfg, lr=lr)


def main():
    out = dict(
        generator="tools/make_schedule_fixtures.py",
        torch_version=torch.__version__,
        onecycle=[onecycle_case(c) for c in ONECYCLE],
        cosine=[cosine_case(c) for c in COSINE],
    )
    path = os.path.join("tests", "fixtures", "schedules", "pytorch_schedules.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print("wrote", path)


if __name__ == "__main__":
    main()
