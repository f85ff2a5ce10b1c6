#!/usr/bin/env python3
"""Converts one f16 GGUF to each quantization with anelm and with llama-quantize (--pure: every weight in the
type, llama.cpp's fallbacks for rows that are not whole blocks), then
  1. per tensor, the relative RMS error of each file's weights against the f16 source (gguf-py dequantizes),
     and how many tensors the two converters wrote byte for byte alike;
  2. the perplexity of a public-domain text (Genesis, King James Bible, from Debian's bible-kjv) on every file,
     by anelm perplexity and by llama-perplexity (same windows: -c 512, the same --chunks).
Prints Markdown tables; keeps its files in tools/perplexity/.work.
"""
import argparse
import json
import os
import re
import subprocess
import sys

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize

LLAMA_FTYPE = {"q8_0": "Q8_0", "q4_0": "Q4_0", "q4_1": "Q4_1", "q5_0": "Q5_0", "q5_1": "Q5_1",
               "q4_k": "Q4_K_S", "q5_k": "Q5_K_S", "q6_k": "Q6_K", "bf16": "BF16"}


def run(cmd, **kw):
    print("+", " ".join(cmd), file=sys.stderr)
    return subprocess.run(cmd, check=True, text=True, capture_output=True, **kw)


def genesis(path):
    if not os.path.exists(path):
        out = run(["bible", "-f", "Gen1:1-50:26"]).stdout
        # Verse references ("Ge1:1 ") off; the prose stays as the package prints it.
        text = "\n".join(re.sub(r"^Ge\d+:\d+ ", "", line) for line in out.splitlines())
        with open(path, "w") as f:
            f.write(text + "\n")
    return path


def tensors(path):
    r = GGUFReader(path)
    return {t.name: t for t in r.tensors}


def weights_error(source, a, b):
    """Per tensor that either file quantized: relative RMS error vs the source, for a and b; byte-identical count."""
    src, ta, tb = tensors(source), tensors(a), tensors(b)
    rows, same = [], 0
    for name, t in src.items():
        x = dequantize(t.data, t.tensor_type).astype(np.float64).ravel()
        ea = dequantize(ta[name].data, ta[name].tensor_type).astype(np.float64).ravel()
        eb = dequantize(tb[name].data, tb[name].tensor_type).astype(np.float64).ravel()
        if ta[name].tensor_type == t.tensor_type and tb[name].tensor_type == t.tensor_type:
            continue  # kept as in the source by both
        norm = np.sqrt(np.mean(x * x)) or 1.0
        rows.append((name, ta[name].tensor_type.name, tb[name].tensor_type.name,
                     np.sqrt(np.mean((ea - x) ** 2)) / norm, np.sqrt(np.mean((eb - x) ** 2)) / norm))
        same += ta[name].tensor_type == tb[name].tensor_type and bytes(ta[name].data) == bytes(tb[name].data)
    return rows, same


def anelm_ppl(anelm, model, text, chunks, threads, extra=()):
    out = run([anelm, "perplexity", "--model", model, "--file", text, "--context", "512", "--chunks", str(chunks),
               "--threads", str(threads), "--format", "json", *extra]).stdout
    r = json.loads(out.strip().splitlines()[-1])
    return r["perplexity"], r["uncertainty"]


def llama_ppl(binary, model, text, chunks, threads):
    p = run([binary, "-m", model, "-f", text, "-c", "512", "--chunks", str(chunks), "-t", str(threads), "-b", "512"])
    m = re.search(r"Final estimate: PPL = ([0-9.]+) \+/- ([0-9.]+)", p.stdout + p.stderr)
    if not m:
        raise SystemExit("llama-perplexity printed no final estimate:\n" + p.stderr[-2000:])
    return float(m.group(1)), float(m.group(2))


def random_peft_adapter(gguf_path, folder, rank=8, alpha=16, seed=5):
    """A PEFT LoRA adapter with random A and B for every linear layer of a Llama-family GGUF (shapes from its metadata):
    enough to move the perplexity, so that side path and merged weights can be compared on real text."""
    from safetensors.numpy import save_file
    reader = GGUFReader(gguf_path)
    arch = bytes(reader.fields["general.architecture"].parts[-1]).decode()
    meta = lambda key: int(reader.fields[f"{arch}.{key}"].parts[-1][0])  # noqa: E731
    hidden, layers, ffn = meta("embedding_length"), meta("block_count"), meta("feed_forward_length")
    heads, kv_heads = meta("attention.head_count"), meta("attention.head_count_kv")
    head_dim = hidden // heads
    shapes = {"self_attn.q_proj": (heads * head_dim, hidden), "self_attn.k_proj": (kv_heads * head_dim, hidden),
              "self_attn.v_proj": (kv_heads * head_dim, hidden), "self_attn.o_proj": (hidden, heads * head_dim),
              "mlp.gate_proj": (ffn, hidden), "mlp.up_proj": (ffn, hidden), "mlp.down_proj": (hidden, ffn)}
    rng = np.random.default_rng(seed)
    tensors = {}
    for i in range(layers):
        for module, (out_features, in_features) in shapes.items():
            name = f"base_model.model.model.layers.{i}.{module}"
            tensors[f"{name}.lora_A.weight"] = (rng.standard_normal((rank, in_features)) / np.sqrt(in_features)).astype(np.float32)
            tensors[f"{name}.lora_B.weight"] = (rng.standard_normal((out_features, rank)) * 0.01).astype(np.float32)
    os.makedirs(folder, exist_ok=True)
    save_file(tensors, os.path.join(folder, "adapter_model.safetensors"))
    json.dump({"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": rank, "lora_alpha": alpha, "use_rslora": False, "fan_in_fan_out": False,
               "bias": "none", "target_modules": sorted({m.split(".")[1] for m in shapes})}, open(os.path.join(folder, "adapter_config.json"), "w"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", required=True)
    ap.add_argument("--llamacpp", required=True)
    ap.add_argument("--model", default=os.path.expanduser("~/.cache/anelm/models/SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--types", default="q8_0,q4_0,q4_1,q5_0,q5_1,q4_k,q5_k,q6_k")
    ap.add_argument("--chunks", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    anelm = os.path.join(a.root, ".build/release/anelm")
    work = os.path.join(a.root, "tools/perplexity/.work")
    os.makedirs(work, exist_ok=True)
    text = genesis(os.path.join(work, "genesis.txt"))
    types = a.types.split(",")
    f16 = os.path.join(work, "f16.gguf")
    if not os.path.exists(f16):
        run([anelm, "convert", "--model", a.model, "--output", f16, "--type", "f16"])
    # Results of earlier runs with the same --chunks are kept (a long run can be resumed).
    cache_path = os.path.join(work, f"results-{a.chunks}.json")
    cache = json.load(open(cache_path)) if os.path.exists(cache_path) else {}

    def remember(key, compute):
        if key not in cache:
            cache[key] = compute()
            json.dump(cache, open(cache_path, "w"), indent=1)
        return cache[key]

    # 1. Both converters, and the weights' error against the source.
    files = {}
    print("| type | tensors quantized | stored as (anelm / llama-quantize) | byte-identical tensors | mean rel. RMS error, anelm | "
          "llama-quantize | tensors where anelm's error is larger |")
    print("|---|---|---|---|---|---|---|", flush=True)
    for t in types:
        ours, theirs = os.path.join(work, f"anelm-{t}.gguf"), os.path.join(work, f"llamacpp-{t}.gguf")
        if not os.path.exists(ours):
            run([anelm, "convert", "--model", f16, "--output", ours, "--type", t])
        if not os.path.exists(theirs):
            run([os.path.join(a.llamacpp, "llama-quantize"), "--pure", f16, theirs, LLAMA_FTYPE[t], str(a.threads)])
        files[t] = (ours, theirs)
        rows, same = weights_error(f16, ours, theirs)
        kinds = sorted({f"{r[1]}/{r[2]}" for r in rows})
        worse = sum(r[3] > r[4] * (1 + 1e-6) for r in rows)
        print(f"| {t} | {len(rows)} | {', '.join(kinds)} | {same} | {np.mean([r[3] for r in rows]):.6f} | "
              f"{np.mean([r[4] for r in rows]):.6f} | {worse} |", flush=True)

    # 2. Perplexity of every file by both programs.
    ppl = os.path.join(a.llamacpp, "llama-perplexity")
    fmt = lambda p: f"{p[0]:.4f} ± {p[1]:.4f}"
    print()
    print("| file | anelm perplexity | llama-perplexity |")
    print("|---|---|---|", flush=True)
    for label, path in [("f16 (source)", f16)] + [(f"{t}, {who}", files[t][i]) for t in types for i, who in enumerate(["anelm convert", "llama-quantize --pure"])]:
        ours = remember(f"anelm:{path}", lambda: anelm_ppl(anelm, path, text, a.chunks, a.threads))
        theirs = remember(f"llama:{path}", lambda: llama_ppl(ppl, path, text, a.chunks, a.threads))
        print(f"| {label} | {fmt(ours)} | {fmt(theirs)} |", flush=True)

    # 3. A LoRA adapter as a side path and merged into the weights at load, on the f16 file and two quantized ones.
    adapter = os.path.join(work, "random-lora")
    if not os.path.exists(os.path.join(adapter, "adapter_config.json")):
        random_peft_adapter(f16, adapter)
    print()
    print("| base file | without the adapter | adapter as a side path | adapter merged at load (--lora-merge) | merged / side path |")
    print("|---|---|---|---|---|", flush=True)
    for label, path in [("f16", f16)] + [(f"{t}, anelm convert", files[t][0]) for t in types if t in ("q8_0", "q4_k")]:
        base = remember(f"anelm:{path}", lambda: anelm_ppl(anelm, path, text, a.chunks, a.threads))
        side = remember(f"anelm-lora:{path}", lambda: anelm_ppl(anelm, path, text, a.chunks, a.threads, ["--lora", adapter]))
        merged = remember(f"anelm-lora-merged:{path}",
                          lambda: anelm_ppl(anelm, path, text, a.chunks, a.threads, ["--lora", adapter, "--lora-merge"]))
        print(f"| {label} | {fmt(base)} | {fmt(side)} | {fmt(merged)} | {merged[0] / side[0]:.5f} |", flush=True)


if __name__ == "__main__":
    main()
