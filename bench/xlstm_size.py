#!/usr/bin/env python3
"""xLSTM at its real size: random bf16 weights written once, anelm bench on them, transformers on torch next to it; see
bench/xlstm-size."""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import torch
from transformers import xLSTMConfig, xLSTMForCausalLM

from embed_compare import cpu_name  # bench/, beside this script

# The xLSTM-7B configuration (NX-AI/xLSTM-7b's config.json), and a smaller one of the same design that torch holds in memory.
SIZES = {
    "7b": dict(hidden_size=4096, num_hidden_layers=32, num_heads=8, vocab_size=50304, qk_dim_factor=0.5, v_dim_factor=1.0,
               ffn_proj_factor=2.667, ffn_round_up_to_multiple_of=64, gate_soft_cap=15.0, output_logit_soft_cap=30.0, chunk_size=64),
    "small": dict(hidden_size=2048, num_hidden_layers=12, num_heads=8, vocab_size=50304, qk_dim_factor=0.5, v_dim_factor=1.0,
                  ffn_proj_factor=2.667, ffn_round_up_to_multiple_of=64, gate_soft_cap=15.0, output_logit_soft_cap=30.0, chunk_size=64),
}
KERNELS = dict(mode="inference", chunkwise_kernel="chunkwise--native_autograd", sequence_kernel="native_sequence__native",
               step_kernel="native", weight_mode="single", tie_word_embeddings=False, use_bias=False)


def random_bf16(rng, count, scale, offset, out):
    """`count` values scale·N(0,1)+offset as bf16 bits, written to `out` in pieces (never the whole tensor in memory)."""
    piece = 1 << 24
    for start in range(0, count, piece):
        n = min(piece, count - start)
        x = rng.standard_normal(n, dtype=np.float32) * np.float32(scale) + np.float32(offset)
        out.write((x.view(np.uint32) >> 16).astype(np.uint16).tobytes())


def write_model(folder, size, tokenizer):
    """config.json (transformers' own), model.safetensors with every tensor the model has, random bf16, and a tokenizer."""
    done = os.path.join(folder, ".complete")
    if os.path.exists(done):
        return
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    config = xLSTMConfig(**SIZES[size], **KERNELS, bos_token_id=0, eos_token_id=0, pad_token_id=0)
    config.save_pretrained(folder)
    with torch.device("meta"):
        shapes = {name: tuple(t.shape) for name, t in xLSTMForCausalLM(config).state_dict().items()}
    header, offset = {}, 0
    for name, shape in shapes.items():
        count = int(np.prod(shape))
        header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [offset, offset + 2 * count]}
        offset += 2 * count
    header["__metadata__"] = {"format": "pt"}
    encoded = json.dumps(header).encode()
    encoded += b" " * (-len(encoded) % 8)
    rng = np.random.default_rng(7)
    path = os.path.join(folder, "model.safetensors")
    written, started = 0, time.time()
    with open(path + ".partial", "wb") as out:
        out.write(len(encoded).to_bytes(8, "little"))
        out.write(encoded)
        for name, shape in shapes.items():
            count = int(np.prod(shape))
            fan_in = shape[-1] if len(shape) > 1 else 1
            if "norm" in name:
                scale, mean = (0.0, 1.0) if name.endswith(".weight") else (0.0, 0.0)
            elif "fgate" in name and name.endswith(".bias"):
                scale, mean = 1.0, 3.0  # forget gates biased towards remembering, as trained models are
            elif name.endswith(".bias"):
                scale, mean = 0.0, 0.0
            elif "embeddings" in name:
                scale, mean = 1.0, 0.0
            else:
                scale, mean = fan_in ** -0.5, 0.0
            random_bf16(rng, count, scale, mean, out)
            written += 2 * count
            print(f"\r  writing {path}: {written / 2**30:6.2f} of {offset / 2**30:.2f} GiB ({time.time() - started:4.0f} s)", end="", file=sys.stderr)
    print(file=sys.stderr)
    os.replace(path + ".partial", path)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(tokenizer, name), folder)
    open(done, "w").close()


def convert(binary, source, output, kind):
    """anelm convert, once: the quantized form of the random model."""
    if os.path.exists(output):
        return
    cmd = [binary, "convert", "--model", source, "--output", output, "--type", kind]
    print("  $ " + " ".join(cmd), file=sys.stderr)
    started = time.time()
    subprocess.run(cmd, check=True)
    print(f"  converted in {time.time() - started:.0f} s", file=sys.stderr)


def anelm_bench(binary, folder, threads, prompt, gen, repetitions=1):
    cmd = [binary, "bench", "--model", folder, "--threads", str(threads), "--prompt-tokens", str(prompt), "--gen-tokens", str(gen),
           "--repetitions", str(repetitions), "--format", "json"]
    print("  $ " + " ".join(cmd), file=sys.stderr)
    result = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def torch_bench(folder, threads, prompt, gen):
    torch.set_num_threads(threads)
    started = time.time()
    model = xLSTMForCausalLM.from_pretrained(folder, dtype=torch.bfloat16).eval()
    load = time.time() - started
    rng = np.random.default_rng(1)
    ids = torch.tensor([rng.integers(100, 40000, prompt).tolist()])
    with torch.no_grad():
        model(input_ids=ids[:, :8], use_cache=True)  # warm-up
        started = time.time()
        out = model(input_ids=ids, use_cache=True)
        prefill = prompt / (time.time() - started)
        cache = out.cache
        token = out.logits[:, -1].argmax(-1, keepdim=True)
        started = time.time()
        for _ in range(gen):
            out = model(input_ids=token, cache=cache, use_cache=True)
            cache = out.cache
            token = out.logits[:, -1].argmax(-1, keepdim=True)
        decode = gen / (time.time() - started)
    state_bytes = sum(t.numel() * t.element_size() for layer in cache.rnn_state.values() for t in layer)
    return {"load_s": load, "prefill_tps": prefill, "decode_tps": decode, "state_bytes": state_bytes}


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--anelm", required=True)
    parser.add_argument("--tokenizer", required=True, help="a folder whose tokenizer.json the random models borrow")
    parser.add_argument("--folder", default=os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "anelm", "bench"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--gen-tokens", type=int, default=16)
    parser.add_argument("--skip-7b", action="store_true")
    parser.add_argument("--quantized", default="q8_0", help="the quantized form of the 7B model (anelm convert --type; empty: none)")
    parser.add_argument("--long-tokens", type=int, default=10_000, help="the prompt after which the state is measured again (0: skip)")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    rows = []
    print(f"{cpu_name()}, {args.threads} threads, torch {torch.__version__}", file=sys.stderr)
    if not args.skip_7b:
        folder = os.path.join(args.folder, "xlstm-7b-random-bf16")
        write_model(folder, "7b", args.tokenizer)
        r = anelm_bench(args.anelm, folder, args.threads, 100, args.gen_tokens)
        rows.append(("xLSTM-7B config, bf16", "anelm", r))
        print(f"  7b anelm: {r}", file=sys.stderr)
        if args.quantized:
            quantized = os.path.join(args.folder, f"xlstm-7b-random-{args.quantized}.gguf")
            convert(args.anelm, folder, quantized, args.quantized)
            r = anelm_bench(args.anelm, quantized, args.threads, 100, args.gen_tokens)
            rows.append((f"xLSTM-7B config, {args.quantized.upper()} GGUF", "anelm", r))
            print(f"  7b anelm {args.quantized}: {r}", file=sys.stderr)
    folder = os.path.join(args.folder, "xlstm-small-random-bf16")
    write_model(folder, "small", args.tokenizer)
    r = anelm_bench(args.anelm, folder, args.threads, 100, args.gen_tokens, repetitions=3)
    if args.long_tokens:
        long = anelm_bench(args.anelm, folder, args.threads, args.long_tokens, 8)
        r["state_bytes_long"] = long["state_bytes"]
        r["state_tokens_long"] = long["state_tokens"]
        r["prefill_tps_long"] = long["prefill_tps"]
    rows.append(("small config, bf16", "anelm", r))
    print(f"  small anelm: {r}", file=sys.stderr)
    t = torch_bench(folder, args.threads, 100, args.gen_tokens)
    rows.append(("small config, bf16", "transformers (torch)", t))
    print(f"  small torch: {t}", file=sys.stderr)
    if args.markdown:
        print("| model | runtime | load s | prefill t/s (100) | decode t/s | peak RSS MiB | state bytes (after tokens) |")
        print("|---|---|---:|---:|---:|---:|---|")
        for model, runtime, r in rows:
            rss = f"{r['peak_rss_mb']:.0f}" if "peak_rss_mb" in r else ""
            state = f"{r['state_bytes']:,}" + (f" ({r['state_tokens']})" if "state_tokens" in r else "")
            if "state_bytes_long" in r:
                state += f", {r['state_bytes_long']:,} ({r['state_tokens_long']:,})"
            print(f"| {model} | {runtime} | {r['load_s']:.2f} | {r['prefill_tps']:.1f} | {r['decode_tps']:.2f} | {rss} | {state} |")
        small = [r for m, _, r in rows if m.startswith("small")]
        print(f"\nsmall config decode, anelm / transformers: {small[0]['decode_tps'] / small[1]['decode_tps']:.2f}×")
    else:
        print(json.dumps([{"model": m, "runtime": rt, **r} for m, rt, r in rows]))


if __name__ == "__main__":
    main()
