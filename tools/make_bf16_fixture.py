#!/usr/bin/env python3
"""Generate the bfloat16 rounding fixture with PyTorch.

The parameter server's opt-in bfloat16 wire format (`--grad-wire bf16`, `--param-wire bf16`)
must round exactly as PyTorch's `tensor.to(torch.bfloat16)` (round to nearest, ties to even):

    pip install torch numpy
    python3 tools/make_bf16_fixture.py        # writes tests/fixtures/bf16/rounding.json

crates/ps/tests/bf16_fixture.rs requires the same bits for every value (NaN: any NaN).
"""
import json
import pathlib

import numpy as np
import torch

OUT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "bf16" / "rounding.json"


def main():
    rng = np.random.default_rng(20261201)
    special = [
        0x00000000, 0x80000000,  # ±0
        0x3F800000, 0x3F808000, 0x3F818000, 0x3F808001, 0x3F80FFFF,  # ties and near-ties at 1
        0x7F7FFFFF, 0xFF7FFFFF,  # ±f32::MAX: beyond bfloat16's range
        0x7F7F7FFF, 0x7F7F8000, 0x7F7F8001,  # around the largest finite bfloat16
        0x7F800000, 0xFF800000,  # ±Inf
        0x7FC00000, 0x7F800001, 0xFFC12345,  # NaNs
        0x00000001, 0x00008000, 0x00018000, 0x007FFFFF, 0x00800000,  # subnormals, min normal
    ]
    bits = np.concatenate([
        np.array(special, dtype=np.uint32),
        rng.integers(0, 2**32, size=4000, dtype=np.uint64).astype(np.uint32),
        rng.standard_normal(1000).astype(np.float32).view(np.uint32),
        (rng.standard_normal(1000) * 1e-3).astype(np.float32).view(np.uint32),
    ])
    x = torch.from_numpy(bits.view(np.float32).copy())
    b = x.to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({
        "generator": f"tools/make_bf16_fixture.py, torch {torch.__version__}",
        "f32_bits": [int(v) for v in bits],
        "bf16_bits": [int(v) for v in b],
    }) + "\n")
    print(f"wrote {len(bits)} values to {OUT}")


if __name__ == "__main__":
    main()
