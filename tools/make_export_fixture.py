#!/usr/bin/env python3
"""Cross-checks stagewise's `model.safetensors` export against PyTorch, both directions.

The torch.nn modules below are the equivalents of stagewise's burn models (crates/train/src/model):
their `state_dict()` names and shapes are those of the export (crates/train/src/export.rs).

  stagewise -> PyTorch:  for each stagewise-written model.safetensors given, load it into the
      module with load_state_dict(strict=True), predict the first 100 Fashion-MNIST test images
      (normalized as stagewise does: (p/255 - 0.2860) / 0.3530) and record the logits.
  PyTorch -> stagewise:  build the mlp with torch.manual_seed(SEED), perturb nothing, write its
      state_dict as a safetensors file (no stagewise metadata: the kind must come from the names)
      and record its logits on the first 10 test images.

Output: tests/fixtures/export/logits.json (and torch_mlp_seed*.safetensors), read by
crates/train/tests/export_torch.rs. The safetensors format is read and written here directly
(8-byte header length, JSON header, little-endian data), so only torch and numpy are needed.

Usage:
  python3 tools/make_export_fixture.py --stagewise NAME=PATH [NAME=PATH ...] [--data-dir DIR]
"""

import argparse
import gzip
import json
import os
import struct
import sys

import numpy as np
import torch
from torch import nn

MEAN, STD = 0.2860, 0.3530
FIXTURE_DIR = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "export")
TORCH_SEED = 20261203


class Mlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(784, 512)
        self.fc2 = nn.Linear(512, 512)
        self.fc3 = nn.Linear(512, 10)

    def forward(self, x):
        x = x.flatten(1)
        return self.fc3(torch.relu(self.fc2(torch.relu(self.fc1(x)))))


class Cnn(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 5, padding=2)
        self.conv2 = nn.Conv2d(32, 64, 5, padding=2)
        self.fc1 = nn.Linear(64 * 7 * 7, 256)
        self.fc2 = nn.Linear(256, 10)

    def forward(self, x):
        x = nn.functional.max_pool2d(torch.relu(self.conv1(x)), 2)
        x = nn.functional.max_pool2d(torch.relu(self.conv2(x)), 2)
        return self.fc2(torch.relu(self.fc1(x.flatten(1))))


class Projection(nn.Module):
    def __init__(self, c_in, c_out, stride):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False)
        self.bn = nn.BatchNorm2d(c_out)

    def forward(self, x):
        return self.bn(self.conv(x))


class BasicBlock(nn.Module):
    def __init__(self, c_in, c_out, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = Projection(c_in, c_out, stride) if stride != 1 or c_in != c_out else None

    def forward(self, x):
        residual = x if self.shortcut is None else self.shortcut(x)
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + residual)


class ResNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem_conv = nn.Conv2d(1, 16, 3, padding=1, bias=False)
        self.stem_bn = nn.BatchNorm2d(16)
        blocks, c_in = [], 16
        for stage, c_out in enumerate([16, 32, 64]):
            for block in range(3):
                blocks.append(BasicBlock(c_in, c_out, 2 if stage > 0 and block == 0 else 1))
                c_in = c_out
        self.blocks = nn.ModuleList(blocks)
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        x = torch.relu(self.stem_bn(self.stem_conv(x)))
        for block in self.blocks:
            x = block(x)
        return self.fc(x.mean(dim=(2, 3)))


MODELS = {"mlp": Mlp, "cnn": Cnn, "resnet": ResNet}

DTYPES = {"F32": torch.float32, "F64": torch.float64, "I64": torch.int64}
DTYPE_NAMES = {v: k for k, v in DTYPES.items()}


def read_safetensors(path):
    """(tensors, metadata) of a safetensors file."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    meta = header.pop("__metadata__", {})
    base = 8 + n
    tensors = {}
    for name, info in header.items():
        begin, end = info["data_offsets"]
        buf = bytearray(raw[base + begin : base + end])
        t = torch.frombuffer(buf, dtype=DTYPES[info["dtype"]]) if buf else torch.zeros(0)
        tensors[name] = t.reshape(info["shape"]).clone()
    return tensors, meta


def write_safetensors(path, tensors, meta=None):
    header, chunks, offset = {}, [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        data = t.numpy().astype(t.numpy().dtype.newbyteorder("<")).tobytes()
        header[name] = {
            "dtype": DTYPE_NAMES[t.dtype],
            "shape": list(t.shape),
            "data_offsets": [offset, offset + len(data)],
        }
        chunks.append(data)
        offset += len(data)
    if meta:
        header["__metadata__"] = meta
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(chunks))


def test_images(data_dir, n):
    path = os.path.join(data_dir, "t10k-images-idx3-ubyte.gz")
    with gzip.open(path, "rb") as f:
        raw = f.read()
    magic, count, rows, cols = struct.unpack(">IIII", raw[:16])
    assert magic == 0x803 and rows == 28 and cols == 28, path
    pixels = np.frombuffer(raw, dtype=np.uint8, offset=16)[: n * 784].astype(np.float32)
    x = (pixels / np.float32(255.0) - np.float32(MEAN)) / np.float32(STD)
    return torch.from_numpy(x.reshape(n, 1, 28, 28))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stagewise", nargs="*", default=[], metavar="NAME=PATH",
                        help="stagewise-written model files to check (NAME labels the fixture)")
    parser.add_argument("--data-dir", default="/usr/share/datasets/fashion-mnist")
    parser.add_argument("--out", default=FIXTURE_DIR)
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.set_num_threads(1)
    images = test_images(args.data_dir, 100)
    fixture = {"images": 100, "stagewise_to_torch": {}, "torch_to_stagewise": {}}

    with torch.no_grad():
        for spec in args.stagewise:
            name, path = spec.split("=", 1)
            tensors, meta = read_safetensors(path)
            kind = meta["stagewise.model"]
            model = MODELS[kind]()
            model.load_state_dict(tensors, strict=True)
            model.eval()
            logits = model(images)
            fixture["stagewise_to_torch"][name] = {
                "kind": kind,
                "file": os.path.basename(path),
                "logits": logits.flatten().tolist(),
            }
            print(f"{name}: {kind} from {path}, {len(tensors)} tensors, strict load ok")

        torch.manual_seed(TORCH_SEED)
        mlp = Mlp().eval()
        file = f"torch_mlp_seed{TORCH_SEED}.safetensors"
        write_safetensors(os.path.join(args.out, file), mlp.state_dict())
        fixture["torch_to_stagewise"]["mlp"] = {
            "kind": "mlp",
            "file": file,
            "seed": TORCH_SEED,
            "logits": mlp(images[:10]).flatten().tolist(),
        }
        print(f"torch mlp (seed {TORCH_SEED}) written to {file}")

    with open(os.path.join(args.out, "logits.json"), "w") as f:
        json.dump(fixture, f, indent=1)
        f.write("\n")
    print(f"wrote {os.path.join(args.out, 'logits.json')} (torch {torch.__version__})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
