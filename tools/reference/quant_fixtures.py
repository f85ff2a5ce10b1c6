#!/usr/bin/env python3
"""Dequantizes GGML blocks with gguf-py (the reference) and writes anelm's quantization fixtures.

Usage: python tools/reference/quant_fixtures.py --out Tests/Fixtures/quants [--gguf PATH]

Writes, per type (Q5_0, Q5_1, Q4_K, Q5_K, Q6_K):
  <out>/<TYPE>.blocks  random blocks (raw GGML bytes), the first few awkward on purpose: all zero,
                       all-max nibbles/bits/scales with scales ±65504, subnormal scales, mixed signs;
  <out>/<TYPE>.f32     gguf.quants.dequantize of those blocks, little-endian float32.
With --gguf (the Gemma 3 270M Q4_K_M file), also <out>/gemma-3-270m-q4_k_m.json: for every tensor of
those types its GGML type, shape and a checksum of the dequantized float32 bit patterns
(Σ bits[i]·(2i + 1) mod 2^64, order-exact and sensitive to every value), plus the first and last 64
bit patterns of two tensors per type.
"""
import argparse
import json
import os

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import GGUFReader
from gguf.constants import GGML_QUANT_SIZES
from gguf.quants import dequantize

TYPES = [T.Q5_0, T.Q5_1, T.Q4_K, T.Q5_K, T.Q6_K]
BLOCKS = {T.Q5_0: 48, T.Q5_1: 48, T.Q4_K: 24, T.Q5_K: 24, T.Q6_K: 24}
# Byte offsets of the f16 scales in a block: d (and dmin) first, except Q6_K's d last.
HALF_OFFSETS = {T.Q5_0: [0], T.Q5_1: [0, 2], T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [208]}

MAX_HALF, NEG_MAX_HALF = 0x7BFF, 0xFBFF       # ±65504
SUBNORMALS = [0x0001, 0x03FF, 0x8001, 0x83FF, 0x0200]


def random_half(rng: np.random.Generator) -> int:
    """A finite f16 bit pattern: mostly weight-like magnitudes, sometimes any finite value."""
    if rng.random() < 0.7:
        return int(np.float16(rng.normal(0, 0.02)).view(np.uint16))
    while True:
        bits = int(rng.integers(0, 1 << 16))
        if (bits >> 10) & 0x1F != 0x1F:        # not inf/NaN
            return bits


def put_half(block: np.ndarray, offset: int, bits: int) -> None:
    block[offset] = bits & 0xFF
    block[offset + 1] = bits >> 8


def make_blocks(qtype: T, rng: np.random.Generator) -> np.ndarray:
    _, size = GGML_QUANT_SIZES[qtype]
    halves = HALF_OFFSETS[qtype]
    blocks = rng.integers(0, 256, size=(BLOCKS[qtype], size), dtype=np.uint8)
    for i, block in enumerate(blocks):
        if i == 0:
            block[:] = 0                                           # all zero
            continue
        if i in (1, 2):
            block[:] = 0xFF                                        # all-max nibbles, bits, 6-bit scales; Q6_K scales −1
        if i == 3:
            block[:] = 0x00
            if qtype == T.Q6_K:
                block[192:208] = 0x80                              # q = −32, scales −128: the largest products
        if i == 4 and qtype == T.Q6_K:
            block[192:208] = 0x7F
        for k, offset in enumerate(halves):
            if i == 1:
                bits = MAX_HALF
            elif i == 2:
                bits = NEG_MAX_HALF
            elif i == 3:
                bits = NEG_MAX_HALF if k == 0 else MAX_HALF
            elif i == 4:
                bits = MAX_HALF
            elif 5 <= i < 5 + len(SUBNORMALS):
                bits = SUBNORMALS[(i - 5 + k) % len(SUBNORMALS)]
            else:
                bits = random_half(rng)
            put_half(block, offset, bits)
    return blocks


def checksum(values: np.ndarray) -> int:
    bits = values.astype(np.float32).reshape(-1).view(np.uint32).astype(np.uint64)
    weights = np.arange(bits.size, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    with np.errstate(over="ignore"):
        return int(np.sum(bits * weights, dtype=np.uint64))


def gguf_fixture(path: str) -> dict:
    reader = GGUFReader(path)
    tensors, sampled = [], {}
    for t in reader.tensors:
        if t.tensor_type not in TYPES:
            continue
        values = dequantize(t.data, t.tensor_type).astype(np.float32).reshape(-1)
        entry = {
            "name": t.name,
            "type": t.tensor_type.name,
            "shape": [int(d) for d in reversed(t.shape)],   # outermost first, as anelm's Tensor
            "checksum": str(checksum(values)),
        }
        if sampled.get(t.tensor_type, 0) < 2:
            sampled[t.tensor_type] = sampled.get(t.tensor_type, 0) + 1
            bits = values.view(np.uint32)
            entry["first"] = [int(b) for b in bits[:64]]
            entry["last"] = [int(b) for b in bits[-64:]]
        tensors.append(entry)
    return {"file": os.path.basename(path), "tensors": tensors}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--gguf")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    rng = np.random.default_rng(20240605)
    for qtype in TYPES:
        blocks = make_blocks(qtype, rng)
        values = dequantize(blocks, qtype).astype("<f4")
        blocks.tofile(os.path.join(args.out, f"{qtype.name}.blocks"))
        values.tofile(os.path.join(args.out, f"{qtype.name}.f32"))
        print(qtype.name, blocks.shape, "finite" if np.isfinite(values).all() else "NOT FINITE")
    if args.gguf:
        fixture = gguf_fixture(args.gguf)
        with open(os.path.join(args.out, "gemma-3-270m-q4_k_m.json"), "w") as f:
            json.dump(fixture, f, indent=1)
            f.write("\n")
        print(len(fixture["tensors"]), "GGUF tensors")


if __name__ == "__main__":
    main()
