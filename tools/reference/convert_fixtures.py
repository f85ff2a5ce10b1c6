#!/usr/bin/env python3
"""Writes anelm's quantizer fixtures with gguf-py's reference quantizers (gguf/quants.py).

Usage: python tools/reference/convert_fixtures.py --out Tests/Fixtures/convert

Writes <out>/input.f32 (ROWS rows of 256 little-endian float32: random rows of several scales, then awkward
rows: all zero, one non-zero, a constant, ±max-magnitude ties (which element numpy's argmax picks), exact
rounding ties (k + 0.5 steps), values near f16's limits, tiny values whose scale is subnormal in f16), and per
type <out>/<TYPE>.bin = gguf.quants.quantize(input, TYPE) bytes, for F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1.
"""
import argparse
import os

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf.quants import quantize

TYPES = [T.F16, T.BF16, T.Q8_0, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1]
WIDTH = 256


def rows() -> np.ndarray:
    rng = np.random.default_rng(20261204)
    out = [rng.standard_normal(WIDTH) * s for s in (1.0, 0.02, 30.0, 1e-3)]
    out.append(rng.uniform(-1, 1, WIDTH) ** 3)                       # heavy near zero
    out.append(np.zeros(WIDTH))                                      # all zero
    one = np.zeros(WIDTH); one[5] = 0.75; one[40] = -3.0; out.append(one)
    out.append(np.full(WIDTH, 0.3))                                  # constant (max == min)
    ties = rng.standard_normal(WIDTH); ties[3] = 2.0; ties[9] = -2.0; ties[35] = -2.5; ties[40] = 2.5
    out.append(ties)                                                 # equal magnitudes of both signs
    out.append(np.arange(WIDTH) % 32 * 0.5 - 8.0)                    # exact .5 steps: rounding ties
    out.append(np.linspace(-60000.0, 60000.0, WIDTH))                # near f16's largest
    out.append(rng.standard_normal(WIDTH) * 1e-6)                    # f16 scale subnormal
    out.append(-np.abs(rng.standard_normal(WIDTH)))                  # all negative
    out.append(np.abs(rng.standard_normal(WIDTH)) + 5.0)             # all positive, offset
    return np.stack(out).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    data = rows()
    data.tofile(os.path.join(args.out, "input.f32"))
    for qtype in TYPES:
        quantize(data, qtype).tofile(os.path.join(args.out, f"{qtype.name}.bin"))
    print(f"{data.shape[0]} rows of {WIDTH}; types: {', '.join(t.name for t in TYPES)}")


if __name__ == "__main__":
    main()
