#!/usr/bin/env python3
"""Generate reference learning-rate schedules from PyTorch and optax.

Writes, from the repository root (`python3 tools/make_schedule_fixtures.py`):

- tests/fixtures/schedules/pytorch_schedules.json: PyTorch OneCycleLR and
  CosineAnnealingLR, read by crates/core/tests/schedule_pytorch.rs;
- tests/fixtures/schedules/decay_schedules.json: linear decay, warm-up joined to
  another schedule, and warmup-stable-decay, from PyTorch (LinearLR,
  SequentialLR) and optax (linear_schedule, join_schedules,
  warmup_cosine_decay_schedule, a WSD built with join_schedules and jnp), read
  by crates/core/tests/schedule_decay_fixtures.rs.

Each decay case is the lr at steps 0..T-1 of a T-step run and names the recipe
parameters that must reproduce it (lr, T, warm-up, floor, cooldown). Needs
torch and optax (jax with 64-bit floats enabled below).
"""
import json
import math
import os

import torch

import jax

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402

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


# --- decay schedules: PyTorch ---------------------------------------------------------------

LR = 0.5
T = 100


def torch_lrs(make, steps=T, lr=LR):
    """lr at steps 0..steps-1 of an SGD optimizer driven by the scheduler `make(opt)`."""
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=lr)
    sched = make(opt)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def sequential(warmup_start, w, then):
    """SequentialLR([LinearLR(warmup_start -> 1 over w), then(opt)], milestones=[w])."""
    lrs = torch.optim.lr_scheduler

    def make(opt):
        warm = lrs.LinearLR(opt, start_factor=warmup_start, end_factor=1.0, total_iters=w)
        return lrs.SequentialLR(opt, [warm, then(opt)], milestones=[w])

    return make


def torch_cases():
    lrs = torch.optim.lr_scheduler
    cases = []

    def case(name, recipe, params, make):
        cases.append(dict(name=name, source="torch " + torch.__version__, recipe=recipe,
                          params=dict(lr=LR, total_steps=T, **params), lr=torch_lrs(make)))

    case("torch_linear_to_zero", "linear", dict(),
         lambda o: lrs.LinearLR(o, start_factor=1.0, end_factor=0.0, total_iters=T))
    case("torch_linear_to_floor", "linear", dict(final_lr_fraction=0.1),
         lambda o: lrs.LinearLR(o, start_factor=1.0, end_factor=0.1, total_iters=T))
    case("torch_warmup_cosine", "cosine", dict(warmup_steps=10, warmup_start_fraction=0.1),
         sequential(0.1, 10, lambda o: lrs.CosineAnnealingLR(o, T_max=T - 10, eta_min=0.0)))
    case("torch_warmup_epoch_cosine", "cosine",
         dict(warmup_epochs=1, warmup_start_fraction=0.25),
         sequential(0.25, 20, lambda o: lrs.CosineAnnealingLR(o, T_max=T - 20, eta_min=0.0)))
    case("torch_warmup_constant", "constant", dict(warmup_steps=10, warmup_start_fraction=1 / 3),
         sequential(1 / 3, 10, lambda o: lrs.ConstantLR(o, factor=1.0, total_iters=0)))
    case("torch_warmup_linear", "linear",
         dict(warmup_steps=10, warmup_start_fraction=0.1, final_lr_fraction=0.05),
         sequential(0.1, 10, lambda o: lrs.LinearLR(o, start_factor=1.0, end_factor=0.05,
                                                    total_iters=T - 10)))
    return cases


# --- decay schedules: optax -----------------------------------------------------------------


def optax_lrs(schedule, steps=T):
    return [float(schedule(t)) for t in range(steps)]


def cooldown_steps(fraction, steps):
    """The recipe's cooldown length: round(fraction * steps), half away from zero, >= 1."""
    return min(max(int(math.floor(fraction * steps + 0.5)), 1), steps)


def wsd(lr, w, total, fraction, shape, floor):
    """Warm-up (w steps from 0), constant, cooldown over round(fraction * (total - w)) steps."""
    tc = cooldown_steps(fraction, total - w)
    end = floor * lr
    if shape == "linear":
        cool = optax.linear_schedule(lr, end, tc)
    else:
        def cool(count):
            s = jnp.minimum(count, tc) / tc
            return end + (lr - end) * (1.0 - jnp.sqrt(s))
    pieces, bounds = [], []
    if w > 0:
        pieces.append(optax.linear_schedule(0.0, lr, w))
        bounds.append(w)
    pieces += [optax.constant_schedule(lr), cool]
    bounds.append(total - tc)
    return optax.join_schedules(pieces, bounds)


def optax_cases():
    cases = []

    def case(name, recipe, params, schedule):
        cases.append(dict(name=name, source="optax " + optax.__version__, recipe=recipe,
                          params=dict(lr=LR, total_steps=T, **params), lr=optax_lrs(schedule)))

    case("optax_linear_schedule", "linear", dict(), optax.linear_schedule(LR, 0.0, T))
    case("optax_join_warmup_cosine", "cosine", dict(warmup_steps=10),
         optax.join_schedules([optax.linear_schedule(0.0, LR, 10),
                               optax.cosine_decay_schedule(LR, T - 10, alpha=0.0)], [10]))
    case("optax_warmup_cosine_decay", "cosine", dict(warmup_steps=10, final_lr_fraction=0.1),
         optax.warmup_cosine_decay_schedule(0.0, LR, 10, T, end_value=0.1 * LR))
    case("optax_join_warmup_linear", "linear", dict(warmup_steps=25, final_lr_fraction=0.2),
         optax.join_schedules([optax.linear_schedule(0.0, LR, 25),
                               optax.linear_schedule(LR, 0.2 * LR, T - 25)], [25]))
    case("optax_wsd_linear", "wsd",
         dict(warmup_steps=10, cooldown_fraction=0.2, cooldown_shape="linear"),
         wsd(LR, 10, T, 0.2, "linear", 0.0))
    case("optax_wsd_sqrt", "wsd",
         dict(warmup_steps=10, cooldown_fraction=0.2, cooldown_shape="sqrt",
              final_lr_fraction=0.1),
         wsd(LR, 10, T, 0.2, "sqrt", 0.1))
    case("optax_wsd_sqrt_no_warmup", "wsd", dict(cooldown_fraction=0.3, cooldown_shape="sqrt"),
         wsd(LR, 0, T, 0.3, "sqrt", 0.0))
    return cases


def write(name, out):
    path = os.path.join("tests", "fixtures", "schedules", name)
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print("wrote", path)


def main():
    write("pytorch_schedules.json", dict(
        generator="tools/make_schedule_fixtures.py",
        torch_version=torch.__version__,
        onecycle=[onecycle_case(c) for c in ONECYCLE],
        cosine=[cosine_case(c) for c in COSINE],
    ))
    write("decay_schedules.json", dict(
        generator="tools/make_schedule_fixtures.py",
        torch_version=torch.__version__,
        optax_version=optax.__version__,
        jax_version=jax.__version__,
        note=("lr at steps 0..total_steps-1; the recipe and params reproduce it with "
              "lr = 0.5, batch 10, 5 epochs of 200 examples (20 steps per epoch)"),
        cases=torch_cases() + optax_cases(),
    ))


if __name__ == "__main__":
    main()
