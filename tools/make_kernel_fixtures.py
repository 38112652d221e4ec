#!/usr/bin/env python3
"""Generate conv2d / max-pool / linear reference fixtures (forward and gradients) with PyTorch in float64.

    pip install torch numpy
    python3 tools/make_kernel_fixtures.py     # writes tests/fixtures/kernels/kernels.json

The Rust test crates/train/tests/kernels_fixture.rs reads the file and checks stagewise's
convolution, max-pool and linear kernels (forward, and the gradients with respect to input, weight and
bias) against it.

Inputs (x, w, b and the upstream gradient grad_out) are drawn with numpy
`default_rng(seed)` as float32 and written exactly (the float64 value of each float32, so
parsing a number as f64, and casting it to f32, is exact). PyTorch then computes everything in
float64 from those values: `out` is the forward result, and `grad_x`, `grad_w`, `grad_b` are the
gradients of `sum(out * grad_out)` by autograd. Outputs are written as float64 (shortest
round-trip repr), so a float32 kernel can be compared with a relative tolerance and a float64
one almost exactly.

Convolution inputs are standard normal float32 draws rounded to multiples of 2^-8 (still
float32; weights are not scaled by fan-in, so outputs are O(sqrt(C_in*kh*kw))). That keeps every
input an exact decimal of at most ~11 characters and the file under 3 MB (full 24-bit mantissas
made it 3.8 MB, mostly conv2_5x5's 51,200 weights). Side effect: products of two inputs are
exact in float32 and the sums rarely need more than 24 bits, so a float32 kernel often matches
the float64 reference to the last bit; do not rely on that, use a tolerance. Pool inputs keep
full float32 mantissas (so pool_even / pool_odd have no ties), except pool_ties.

Layout: {"generator", "torch", "cases": [{"name", "op": "conv2d" | "max_pool2d" | "linear" | "batch_norm", "stride": [sh, sw],
"padding": [ph, pw], "kernel": [kh, kw], "x_shape", "x", "w_shape", "w", "b", "out_shape", "out",
"grad_out", "grad_x", "grad_w", "grad_b"}]}. Tensors are flat in row-major (NCHW, and
[C_out, C_in, kh, kw] for weights) order; w/w_shape/b/grad_w/grad_b are null where the case has
none (pools, bias-free convs). Convolutions use dilation 1 and groups 1, padding is symmetric
(zeros). Pools are kernel 2, stride 2, no padding, floor mode (a trailing odd row/column is
dropped, see "pool_odd"). Linear cases: x [N, d_in], w in burn's layout [d_in, d_out]
(PyTorch's weight transposed; grad_w in the same layout), y = x w + b. Batch-norm cases
("batch_norm"): training mode, batch statistics with the biased variance, eps 1e-5; w holds
gamma and b beta (grad_w, grad_b their gradients).

Max-pool ties ("pool_ties", values drawn from {0, 1}): PyTorch's CPU max_pool2d keeps the
first maximum in row-major window order (it replaces the running max only on a strictly
greater value, `val > max || isnan(val)`), and the backward routes the whole upstream gradient
of a window to that one element; the other tied elements get 0. So in a 2x2 window
[[a, b], [c, d]] the order is a, b, c, d: an all-equal window sends its gradient to a; with
b == c > a, d it goes to b. This script asserts that rule on every window of every pool case
before writing (see `check_first_max_rule`).
"""
import json
import pathlib

import numpy as np
import torch
import torch.nn.functional as F

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "kernels" / "kernels.json"

# name, N, C_in, C_out, H, W, (kh, kw), stride, padding, bias
CONV_CASES = [
    ("conv1_5x5", 2, 1, 32, 12, 12, (5, 5), 1, 2, True),
    ("conv2_5x5", 2, 32, 64, 7, 7, (5, 5), 1, 2, True),
    ("res_3x3_s1", 2, 16, 16, 9, 9, (3, 3), 1, 1, False),
    ("res_3x3_s2", 2, 16, 32, 9, 9, (3, 3), 2, 1, False),  # odd size on purpose
    ("res_stem_3x3", 3, 1, 16, 8, 8, (3, 3), 1, 1, False),
    ("res_1x1_s2", 2, 16, 32, 9, 9, (1, 1), 2, 0, False),
    ("odd_rect", 1, 3, 5, 7, 6, (3, 3), 2, 1, True),
]

# name, x shape, ties (values from {0, 1})
POOL_CASES = [
    ("pool_even", (2, 4, 8, 8), False),
    ("pool_odd", (1, 3, 7, 5), False),
    ("pool_ties", (1, 2, 4, 4), True),
]


GRID = 2.0 ** -8


def on_grid(a):
    """Rounds float32 draws to multiples of GRID (still float32, with short exact decimals)."""
    return (np.round(a / np.float32(GRID)) * np.float32(GRID)).astype(np.float32)


def f32_list(a):
    """Exact float64 values of a float32 array, flat row-major."""
    assert a.dtype == np.float32
    return [float(v) for v in a.reshape(-1)]


def f64_list(t):
    return [float(v) for v in t.detach().reshape(-1).tolist()]


def to64(a):
    return torch.from_numpy(a.astype(np.float64))


def conv_case(seed, name, n, c_in, c_out, h, w, kernel, stride, padding, bias):
    rng = np.random.default_rng(seed)
    kh, kw = kernel
    x = on_grid(rng.standard_normal((n, c_in, h, w), dtype=np.float32))
    wt = on_grid(rng.standard_normal((c_out, c_in, kh, kw), dtype=np.float32))
    b = on_grid(rng.standard_normal(c_out, dtype=np.float32)) if bias else None
    xt = to64(x).requires_grad_(True)
    wtt = to64(wt).requires_grad_(True)
    bt = to64(b).requires_grad_(True) if bias else None
    out = F.conv2d(xt, wtt, bt, stride=stride, padding=padding, dilation=1, groups=1)
    g = on_grid(rng.standard_normal(tuple(out.shape), dtype=np.float32))
    out.backward(to64(g))
    return {
        "name": name, "op": "conv2d", "stride": [stride, stride], "padding": [padding, padding],
        "kernel": [kh, kw],
        "x_shape": list(x.shape), "x": f32_list(x),
        "w_shape": list(wt.shape), "w": f32_list(wt),
        "b": f32_list(b) if bias else None,
        "out_shape": list(out.shape), "out": f64_list(out),
        "grad_out": f32_list(g),
        "grad_x": f64_list(xt.grad), "grad_w": f64_list(wtt.grad),
        "grad_b": f64_list(bt.grad) if bias else None,
    }


def check_first_max_rule(x, g, grad_x):
    """Asserts that each 2x2/stride-2 window's gradient went to its first max (row-major)."""
    n, c, h, w = x.shape
    expect = np.zeros_like(x, dtype=np.float64)
    for i in range(n):
        for j in range(c):
            for oh in range(h // 2):
                for ow in range(w // 2):
                    win = x[i, j, 2 * oh:2 * oh + 2, 2 * ow:2 * ow + 2].reshape(-1)
                    k = int(np.argmax(win))  # numpy argmax: first occurrence
                    expect[i, j, 2 * oh + k // 2, 2 * ow + k % 2] += g[i, j, oh, ow]
    assert np.array_equal(expect, grad_x), "max-pool tie rule is not first-max-in-row-major"


def windows(x):
    """[N, C, H, W] -> [N, C, H//2, W//2, 4]: each 2x2 window in row-major order (a, b, c, d)."""
    n, c, h, w = x.shape
    x = x[:, :, :h // 2 * 2, :w // 2 * 2].reshape(n, c, h // 2, 2, w // 2, 2)
    return x.transpose(0, 1, 2, 4, 3, 5).reshape(n, c, h // 2, w // 2, 4)


def pool_case(seed, name, shape, ties):
    if ties:
        # First seed (from `seed` on) whose draw has both an all-equal window and a window
        # [[0, 1], [1, *]], which tells row-major first-max (-> b) from column-major (-> c).
        while True:
            rng = np.random.default_rng(seed)
            x = rng.integers(0, 2, size=shape).astype(np.float32)
            win = windows(x)
            all_equal = (win.min(axis=-1) == win.max(axis=-1)).any()
            b_c_tie = ((win[..., 0] == 0) & (win[..., 1] == 1) & (win[..., 2] == 1)).any()
            if all_equal and b_c_tie:
                break
            seed += 1
    else:
        rng = np.random.default_rng(seed)
        x = rng.standard_normal(shape, dtype=np.float32)
    xt = to64(x).requires_grad_(True)
    out = F.max_pool2d(xt, kernel_size=2, stride=2, padding=0, ceil_mode=False)
    g = rng.standard_normal(tuple(out.shape), dtype=np.float32)
    out.backward(to64(g))
    check_first_max_rule(x.astype(np.float64), g.astype(np.float64), xt.grad.numpy())
    # The float32 kernel breaks ties the same way.
    x32 = torch.from_numpy(x).requires_grad_(True)
    F.max_pool2d(x32, kernel_size=2, stride=2).backward(torch.from_numpy(g))
    assert np.array_equal(x32.grad.numpy().astype(np.float64), xt.grad.numpy())
    return {
        "name": name, "op": "max_pool2d", "stride": [2, 2], "padding": [0, 0], "kernel": [2, 2],
        "x_shape": list(x.shape), "x": f32_list(x),
        "w_shape": None, "w": None, "b": None,
        "out_shape": list(out.shape), "out": f64_list(out),
        "grad_out": f32_list(g),
        "grad_x": f64_list(xt.grad), "grad_w": None, "grad_b": None,
    }, seed


# name, N, d_in, d_out, bias
LINEAR_CASES = [
    ("linear_bias", 3, 20, 7, True),
    ("linear_nobias", 2, 9, 4, False),
    ("linear_wide", 4, 300, 12, True),
]


def linear_case(seed, name, n, d_in, d_out, bias):
    """y = x W + b with W in burn's layout [d_in, d_out] (PyTorch's weight transposed)."""
    rng = np.random.default_rng(seed)
    x = on_grid(rng.standard_normal((n, d_in), dtype=np.float32))
    wt = on_grid(rng.standard_normal((d_in, d_out), dtype=np.float32))
    b = on_grid(rng.standard_normal(d_out, dtype=np.float32)) if bias else None
    xt = to64(x).requires_grad_(True)
    wtt = to64(wt).requires_grad_(True)
    bt = to64(b).requires_grad_(True) if bias else None
    out = F.linear(xt, wtt.t(), bt)
    g = on_grid(rng.standard_normal(tuple(out.shape), dtype=np.float32))
    out.backward(to64(g))
    return {
        "name": name, "op": "linear", "stride": [1, 1], "padding": [0, 0], "kernel": [1, 1],
        "x_shape": list(x.shape), "x": f32_list(x),
        "w_shape": list(wt.shape), "w": f32_list(wt),
        "b": f32_list(b) if bias else None,
        "out_shape": list(out.shape), "out": f64_list(out),
        "grad_out": f32_list(g),
        "grad_x": f64_list(xt.grad), "grad_w": f64_list(wtt.grad),
        "grad_b": f64_list(bt.grad) if bias else None,
    }


# name, N, C, H, W
NORM_CASES = [
    ("batch_norm", 3, 4, 5, 6),
    ("batch_norm_wide", 8, 16, 7, 7),
]


def norm_case(seed, name, n, c, h, w):
    """Training-mode batch norm (batch statistics, biased variance, eps 1e-5); w = gamma, b = beta."""
    rng = np.random.default_rng(seed)
    x = on_grid(rng.standard_normal((n, c, h, w), dtype=np.float32) * 2 + 0.5)
    gamma = on_grid(rng.standard_normal(c, dtype=np.float32))
    beta = on_grid(rng.standard_normal(c, dtype=np.float32))
    xt, gt, bt = (to64(a).requires_grad_(True) for a in (x, gamma, beta))
    out = F.batch_norm(xt, None, None, gt, bt, training=True, momentum=0.0, eps=1e-5)
    g = on_grid(rng.standard_normal(tuple(out.shape), dtype=np.float32))
    out.backward(to64(g))
    return {
        "name": name, "op": "batch_norm", "stride": [1, 1], "padding": [0, 0], "kernel": [1, 1],
        "x_shape": list(x.shape), "x": f32_list(x),
        "w_shape": [c], "w": f32_list(gamma), "b": f32_list(beta),
        "out_shape": list(out.shape), "out": f64_list(out),
        "grad_out": f32_list(g),
        "grad_x": f64_list(xt.grad), "grad_w": f64_list(gt.grad), "grad_b": f64_list(bt.grad),
    }


def main():
    torch.set_num_threads(1)
    cases = []
    for i, case in enumerate(CONV_CASES):
        cases.append(conv_case(1000 + i, *case))
    for i, case in enumerate(POOL_CASES):
        c, seed = pool_case(2000 + i, *case)
        cases.append(c)
        if c["name"] == "pool_ties":
            print(f"pool_ties: seed {seed}")
    for i, case in enumerate(LINEAR_CASES):
        cases.append(linear_case(3000 + i, *case))
    for i, case in enumerate(NORM_CASES):
        cases.append(norm_case(4000 + i, *case))
    doc = {"generator": "tools/make_kernel_fixtures.py", "torch": torch.__version__,
           "cases": cases}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    # One case per line keeps diffs readable; no spaces keeps the file small.
    lines = [json.dumps(c, separators=(",", ":"), allow_nan=False) for c in cases]
    head = json.dumps({k: v for k, v in doc.items() if k != "cases"}, separators=(",", ":"))
    text = head[:-1] + ',"cases":[\n' + ",\n".join(lines) + "\n]}\n"
    assert json.loads(text) == doc
    OUT.write_text(text)
    print(f"wrote {OUT.relative_to(ROOT)}: {len(cases)} cases, {OUT.stat().st_size} bytes")
    for c in cases:
        print(f"  {c['name']:14} {c['op']:10} x{c['x_shape']} -> out{c['out_shape']}")


if __name__ == "__main__":
    main()
