#!/usr/bin/env python3
"""The checks behind tools/interop/run (see there). Prints one line per check and a closing 'N passed, N failed'."""
import argparse
import json
import math
import subprocess
import sys

PROMPTS = ["The capital of France is", "def fibonacci(n):", "Once upon a time, in a small village,",
           "The three primary colors are"]
TOKENS = 24
failed = passed = 0


def check(ok, what):
    global failed, passed
    print(("PASS " if ok else "FAIL ") + what)
    passed += ok
    failed += not ok


def anelm_generate(anelm, model, prompt, precision="auto"):
    out = subprocess.run([anelm, "generate", "--model", model, "--prompt", prompt, "--max-tokens", str(TOKENS), "--ignore-eos",
                          "--precision", precision, "--format", "json"], check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def llamacpp(args):
    from llama_cpp import Llama
    for path in args.files:
        llm = Llama(model_path=path, n_ctx=512, verbose=False, n_threads=2, logits_all=False)
        for prompt in PROMPTS:
            ours = anelm_generate(args.anelm, path, prompt)
            ids = llm.tokenize(prompt.encode(), add_bos=True, special=False)
            check(ids == ours["prompt_tokens"], f"llama.cpp tokenizes like anelm: {path.split('/')[-1]}: {prompt!r}")
            theirs = []
            for t in llm.generate(ids, temp=0.0, top_k=1, reset=True):
                theirs.append(t)
                if len(theirs) == TOKENS:
                    break
            same = next((i for i, (a, b) in enumerate(zip(theirs, ours["tokens"])) if a != b), TOKENS)
            check(theirs == ours["tokens"], f"llama.cpp greedy tokens = anelm's: {path.split('/')[-1]}: {prompt!r} (first {same} of {TOKENS} equal)")


def transformers_check(args):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    torch.set_num_threads(2)
    folder = args.files[0]
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, attn_implementation="eager").eval()
    for prompt in PROMPTS:
        ours = anelm_generate(args.anelm, folder, prompt, precision="f32")
        ids = tok(prompt)["input_ids"]
        check(ids == ours["prompt_tokens"], f"transformers tokenizes like anelm: {prompt!r}")
        with torch.no_grad():
            out = model.generate(torch.tensor([ids]), max_new_tokens=TOKENS, do_sample=False, min_new_tokens=TOKENS)
        theirs = out[0, len(ids):].tolist()
        check(theirs == ours["tokens"], f"transformers greedy tokens = anelm's: {prompt!r}")
    # Logits through the perplexity of a text window (every scored position's log-softmax).
    text = " ".join(PROMPTS * 40)
    window = 256
    enc = tok(text)["input_ids"][: 2 * window]
    nll, count = 0.0, 0
    with torch.no_grad():
        for w in range(2):
            chunk = enc[w * window:(w + 1) * window]
            logp = torch.log_softmax(model(torch.tensor([chunk])).logits[0].double(), dim=-1)
            for j in range(window // 2, window - 1):
                nll -= logp[j, chunk[j + 1]].item()
                count += 1
    theirs = math.exp(nll / count)
    path = folder + "/../interop-text.txt"
    open(path, "w").write(text)
    out = subprocess.run([args.anelm, "perplexity", "--model", folder, "--file", path, "--context", str(window), "--chunks", "2",
                          "--precision", "f32", "--format", "json"], check=True, capture_output=True, text=True).stdout
    ours = json.loads(out.strip().splitlines()[-1])["perplexity"]
    check(abs(ours - theirs) <= 1e-4 * theirs, f"perplexity (logits) on the folder: transformers {theirs:.6f}, anelm {ours:.6f}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("which", choices=["llamacpp", "transformers"])
    ap.add_argument("--anelm", required=True)
    ap.add_argument("files", nargs="+")
    args = ap.parse_args()
    (llamacpp if args.which == "llamacpp" else transformers_check)(args)
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
