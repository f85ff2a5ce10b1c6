#!/usr/bin/env python3
"""anelm embed --bench vs sentence-transformers (torch, CPU, f32) on the same sentences; see bench/embed-compare."""
import argparse
import json
import os
import platform
import subprocess
import tempfile
import time

SUBJECTS = ["The cat", "A young engineer", "Our small team", "The committee of experts", "My neighbour's dog", "Every student in the class",
            "The old lighthouse keeper", "A startup in Berlin"]
VERBS = ["looked at", "wrote a long report about", "quietly argued over", "could not stop thinking about", "built a prototype of",
         "spent the whole afternoon discussing"]
OBJECTS = ["the weather.", "the new train schedule and its many delays.", "a recipe for bread.",
           "how sentence embeddings make semantic search fast, cheap and surprisingly accurate on small devices.",
           "the meaning of life.", "a map of the city, the river and the three bridges that cross it near the old harbour."]


def sentences():
    out = []
    for i, s in enumerate(SUBJECTS):
        for j, v in enumerate(VERBS):
            out.append(f"{s} {v} {OBJECTS[(i + j) % len(OBJECTS)]}")
    return out  # 48 sentences, about 8 to 30 tokens


def cpu_name():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def anelm_rate(binary, model, path, batch, threads, seconds):
    cmd = [binary, "embed", "--file", path, "--bench", "--batch-size", str(batch), "--threads", str(threads), "--seconds", str(seconds),
           "--format", "json"] + (["--model", model] if model else [])
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])["sentences_per_second"]


def torch_rate(st, texts, batch, seconds):
    batches = [[texts[(k * batch + i) % len(texts)] for i in range(batch)] for k in range(max(1, (len(texts) + batch - 1) // batch))]
    st.encode(batches[0], batch_size=batch)
    done, n, start = 0, 0, time.perf_counter()
    while time.perf_counter() - start < seconds or n < len(batches):
        st.encode(batches[n % len(batches)], batch_size=batch, convert_to_numpy=True)
        done += len(batches[n % len(batches)])
        n += 1
    return done / (time.perf_counter() - start)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--anelm", required=True)
    p.add_argument("--model", help="the embedder folder (default: anelm's default embedder, installed on first use)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batches", default="1,32")
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--markdown", action="store_true")
    args = p.parse_args()

    import torch
    from sentence_transformers import SentenceTransformer
    torch.set_num_threads(args.threads)
    folder = args.model or os.environ.get("ANELM_DEFAULT_EMBEDDER") or os.path.expanduser("~/.cache/anelm/models/all-MiniLM-L6-v2")
    st = SentenceTransformer(folder, device="cpu")
    texts = sentences()
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write("\n".join(texts) + "\n")
        path = f.name
    rows = []
    try:
        for batch in [int(b) for b in args.batches.split(",")]:
            a = anelm_rate(args.anelm, args.model, path, batch, args.threads, args.seconds)
            t = torch_rate(st, texts, batch, args.seconds)
            rows.append((batch, a, t))
            print(f"batch {batch}: anelm {a:.1f} sentences/s, sentence-transformers {t:.1f} sentences/s, ratio {a / t:.2f}", flush=True)
    finally:
        os.unlink(path)
    if args.markdown:
        print(f"\n{cpu_name()}, {args.threads} threads, {os.path.basename(folder)}, {len(texts)} sentences (8–30 tokens), "
              f"torch {torch.__version__}, {args.seconds:g} s per cell\n")
        print("| batch | anelm (sentences/s) | sentence-transformers (sentences/s) | anelm / ST |")
        print("|---:|---:|---:|---:|")
        for batch, a, t in rows:
            print(f"| {batch} | {a:.1f} | {t:.1f} | {a / t:.2f}× |")


if __name__ == "__main__":
    main()
