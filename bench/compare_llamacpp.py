"""anelm vs llama.cpp on one machine: speed (prefill/decode t/s), peak memory, and greedy fidelity
against the committed transformers fixtures. Run through bench/compare-llamacpp."""
import argparse, json, os, subprocess, sys, time

def peak_rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0

def prompt_ids(n, vocab):
    """The same deterministic prompt `anelm bench` uses (SplitMix64, seed 1, ids from the middle of the vocabulary)."""
    state, mask, out = 1, (1 << 64) - 1, []
    for _ in range(n):
        state = (state + 0x9E3779B97F4A7C15) & mask
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        z ^= z >> 31
        out.append(vocab // 8 + z % (vocab // 2))
    return out

def last_logits(llm):
    """Logits of the last evaluated token (llama-cpp-python fills `scores` only with logits_all)."""
    import numpy as np
    return np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(llm.n_vocab(),))

def llama_worker(args):
    """One llama.cpp measurement in this (fresh) process; prints one JSON line."""
    import llama_cpp
    base = peak_rss_mb()
    t0 = time.perf_counter()
    llm = llama_cpp.Llama(model_path=args.model, n_threads=args.threads, n_threads_batch=args.threads,
                          n_ctx=max(2048, args.prompt + args.gen + 8), n_batch=512, n_ubatch=512, verbose=False)
    load = time.perf_counter() - t0
    vocab = llm.n_vocab()
    ids = prompt_ids(args.prompt, vocab)
    llm.eval(ids[:8]); llm.reset()           # warm-up, as anelm bench does
    pre, dec = [], []
    for _ in range(args.repetitions):
        llm.reset()
        t = time.perf_counter(); llm.eval(ids); pre.append(args.prompt / (time.perf_counter() - t))
        token = int(last_logits(llm).argmax())
        t = time.perf_counter()
        for _ in range(args.gen - 1):     # as anelm: gen tokens = gen - 1 decode steps after the prompt's logits
            llm.eval([token])
            token = int(last_logits(llm).argmax())
        dec.append((args.gen - 1) / (time.perf_counter() - t))
    med = lambda xs: sorted(xs)[len(xs) // 2]
    print(json.dumps({"prefill_tps": med(pre), "decode_tps": med(dec), "load_s": load,
                      "peak_rss_mb": peak_rss_mb(), "python_baseline_mb": base}))

def llama_greedy_worker(args):
    """Greedy continuations of the fixture prompts with llama.cpp; prints one JSON line."""
    import llama_cpp
    llm = llama_cpp.Llama(model_path=args.model, n_threads=args.threads, n_ctx=512, verbose=False)
    fixture = json.load(open(args.fixture))
    out = []
    for case in fixture["cases"]:
        llm.reset()
        llm.eval(case["prompt_ids"])
        toks = []
        for _ in range(case["greedy"]["max_new_tokens"]):
            t = int(last_logits(llm).argmax())
            toks.append(t)
            llm.eval([t])
        out.append(toks)
    print(json.dumps(out))

def run_json(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{r.stderr}")
    return json.loads(r.stdout.strip().splitlines()[-1])

def agreement(tokens, reference):
    n = 0
    for a, b in zip(tokens, reference):
        if a != b: break
        n += 1
    return n

def main():
    p = argparse.ArgumentParser()
    p.add_argument("--anelm", required=True); p.add_argument("--root", required=True)
    p.add_argument("--models", default="q4_1"); p.add_argument("--threads", default="2")
    p.add_argument("--prompts", default="128"); p.add_argument("--gen", type=int, default=64)
    p.add_argument("--repetitions", type=int, default=3); p.add_argument("--fidelity", action="store_true")
    p.add_argument("--markdown", action="store_true")
    p.add_argument("--gguf", help="compare on this GGUF instead of the default model and its variants")
    p.add_argument("--reference", help="fixture JSON for --fidelity (default: the default model's)")
    p.add_argument("--worker", choices=["speed", "greedy"]); p.add_argument("--model"); p.add_argument("--fixture")
    p.add_argument("--prompt", type=int); p.add_argument("--threads-one", type=int, dest="threads_one")
    args = p.parse_args()
    if args.worker:
        args.threads = args.threads_one
        return llama_worker(args) if args.worker == "speed" else llama_greedy_worker(args)

    default = args.gguf or run_json([args.anelm, "info", "--format", "json"])["path"]
    variants = {"q4_1": default}
    if args.gguf:
        args.models = "q4_1"
    cache = os.path.join(os.path.dirname(default), "variants")
    for name in args.models.split(","):
        if name in variants: continue
        path = os.path.join(cache, os.path.basename(default).replace("Q4_1", name.upper()))
        if not os.path.exists(path):
            os.makedirs(cache, exist_ok=True)
            print(f"making the {name.upper()} variant with llama.cpp's quantizer (from the Q4_1 weights)…", file=sys.stderr)
            import llama_cpp
            params = llama_cpp.llama_model_quantize_default_params()
            params.ftype = {"q8_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0, "f16": llama_cpp.LLAMA_FTYPE_MOSTLY_F16, "q4_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_0}[name]
            params.allow_requantize = True
            if llama_cpp.llama_model_quantize(default.encode(), path.encode(), params) != 0:
                sys.exit(f"quantizing to {name} failed")
        variants[name] = path

    rows = []
    me = [sys.executable, os.path.abspath(__file__), "--anelm", args.anelm, "--root", args.root]
    for name in args.models.split(","):
        for threads in [int(t) for t in args.threads.split(",")]:
            for prompt in [int(n) for n in args.prompts.split(",")]:
                common = ["--prompt-tokens", str(prompt), "--gen-tokens", str(args.gen), "--repetitions", str(args.repetitions)]
                # Alternate the two engines, each in a fresh process.
                l = run_json(me + ["--worker", "speed", "--model", variants[name], "--threads-one", str(threads), "--prompt", str(prompt), "--gen", str(args.gen), "--repetitions", str(args.repetitions)])
                a = run_json([args.anelm, "bench", "--model", variants[name], "--threads", str(threads), "--format", "json"] + common)
                rows.append((os.path.basename(args.gguf) if args.gguf else name, threads, prompt, a, l))
                print(f"{name:5} t={threads} p={prompt}: prefill {a['prefill_tps']:.1f} vs {l['prefill_tps']:.1f} t/s ({a['prefill_tps']/l['prefill_tps']:.2f}x), "
                      f"decode {a['decode_tps']:.1f} vs {l['decode_tps']:.1f} t/s ({a['decode_tps']/l['decode_tps']:.2f}x), "
                      f"peak RSS {a['peak_rss_mb']:.0f} vs {l['peak_rss_mb']:.0f} MB", file=sys.stderr)

    print("| model | threads | prompt | anelm prefill t/s | llama.cpp prefill t/s | ratio | anelm decode t/s | llama.cpp decode t/s | ratio | anelm peak MB | llama.cpp peak MB | ratio |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, threads, prompt, a, l in rows:
        label = name if "." in name else name.upper()
        print(f"| {label} | {threads} | {prompt} | {a['prefill_tps']:.1f} | {l['prefill_tps']:.1f} | {a['prefill_tps']/l['prefill_tps']:.2f} "
              f"| {a['decode_tps']:.1f} | {l['decode_tps']:.1f} | {a['decode_tps']/l['decode_tps']:.2f} "
              f"| {a['peak_rss_mb']:.0f} | {l['peak_rss_mb']:.0f} | {a['peak_rss_mb']/l['peak_rss_mb']:.2f} |")

    if args.fidelity:
        fixture = args.reference or os.path.join(args.root, "Tests/Fixtures/models/smollm2-135m-instruct.json")
        cases = json.load(open(fixture))["cases"]
        llama_tokens = run_json(me + ["--worker", "greedy", "--model", default, "--fixture", fixture, "--threads-one", "2"])
        total = sum(len(c["greedy"]["ids"]) for c in cases)
        la = sum(agreement(t, c["greedy"]["ids"]) for t, c in zip(llama_tokens, cases))
        aa = 0
        for c in cases:
            r = run_json([args.anelm, "generate", "--model", default, "--prompt", c["text"], "--max-tokens", str(c["greedy"]["max_new_tokens"]), "--ignore-eos", "--format", "json"]
                         + ([] if c["add_special_tokens"] else ["--no-special-tokens"]))
            assert r["prompt_tokens"] == c["prompt_ids"], f"tokenization differs on {c['name']}"
            aa += agreement(r["tokens"], c["greedy"]["ids"])
        print(f"\nfidelity (greedy tokens equal to transformers f32 before the first divergence, {len(cases)} fixture prompts, {os.path.basename(default)}):")
        print(f"| engine | agreement |\n|---|---|\n| anelm (default path) | {aa}/{total} = {aa/total:.3f} |\n| llama.cpp | {la}/{total} = {la/total:.3f} |")

if __name__ == "__main__":
    main()
