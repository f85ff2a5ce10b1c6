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
    out = subprocess.run([anelm, "generate", "--model", model, "--prompt", prompt, "--max-tokens", str(TOKENS), "--ignore-eos", "--temperature", "0",
                          "--precision", precision, "--format", "json"], check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def llamacpp(args):
    from llama_cpp import Llama
    for path in args.files:
        llm = Llama(model_path=path, n_ctx=512, verbose=False, n_threads=2, logits_all=False)
        name = path.split('/')[-1]
        quantized = any(f"{q}." in name for q in ("q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "q4_k", "q5_k", "q6_k"))
        for prompt in PROMPTS:
            ggml = anelm_generate(args.anelm, path, prompt, precision="ggml")
            ids = llm.tokenize(prompt.encode(), add_bos=True, special=False)
            check(ids == ggml["prompt_tokens"], f"llama.cpp tokenizes like anelm: {name}: {prompt!r}")
            theirs = []
            for t in llm.generate(ids, temp=0.0, top_k=1, reset=True):
                theirs.append(t)
                if len(theirs) == TOKENS:
                    break
            # --precision ggml multiplies as llama.cpp does (8-bit activation blocks, f16-rounded ones for f16
            # weights); the default path (16-bit activations) must agree too where no 8-bit rounding is involved.
            runs = [("ggml", ggml)] + ([] if quantized else [("auto", anelm_generate(args.anelm, path, prompt))])
            for precision, ours in runs:
                same = next((i for i, (a, b) in enumerate(zip(theirs, ours["tokens"])) if a != b), TOKENS)
                check(theirs == ours["tokens"], f"llama.cpp greedy tokens = anelm's --precision {precision}: {name}: {prompt!r} (first {same} of {TOKENS} equal)")
            if quantized:  # what the default path gives on the same file, for the record
                ours = anelm_generate(args.anelm, path, prompt)
                same = next((i for i, (a, b) in enumerate(zip(theirs, ours["tokens"])) if a != b), TOKENS)
                print(f"INFO --precision auto on {name}: {prompt!r}: first {same} of {TOKENS} tokens equal llama.cpp's")


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
            if enc[0] == tok.bos_token_id:  # llama-perplexity (and anelm) start each window with BOS when the tokenizer adds it
                chunk = [tok.bos_token_id] + chunk[1:]
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


def gguf_names(args):
    """Every metadata key and tensor name of anelm's GGUFs is one gguf-py (llama.cpp's constants) defines for the
    file's architecture, with the value type llama.cpp's converter writes for it."""
    import gguf
    from gguf.constants import Keys
    keys = {v for cls in (Keys.General, Keys.LLM, Keys.Attention, Keys.Rope, Keys.Tokenizer) for v in vars(cls).values() if isinstance(v, str)}
    float_keys = {Keys.LLM.FINAL_LOGIT_SOFTCAPPING, Keys.Attention.LAYERNORM_RMS_EPS, Keys.Attention.SCALE, Keys.Rope.FREQ_BASE,
                  Keys.Rope.FREQ_BASE_SWA, Keys.Rope.SCALING_FACTOR}
    for path in args.files:
        reader = gguf.GGUFReader(path)
        arch = bytes(reader.fields["general.architecture"].parts[-1]).decode()
        model_arch = next(a for a, name in gguf.MODEL_ARCH_NAMES.items() if name == arch)
        known = {k.replace("{arch}", arch) for k in keys}
        unknown = [f.name for f in reader.fields.values() if not f.name.startswith("GGUF.") and f.name not in known]
        check(not unknown, f"gguf-py knows every key of {path.split('/')[-1]} ({arch}): unknown {unknown}")
        floats = [k.replace("{arch}", arch) for k in float_keys if k.replace("{arch}", arch) in reader.fields]
        wrong = [k for k in floats if reader.fields[k].types[0] != gguf.GGUFValueType.FLOAT32]
        check(not wrong, f"{path.split('/')[-1]}: float keys {sorted(floats)} are FLOAT32 (wrong: {wrong})")
        tensors = {gguf.TENSOR_NAMES[t] for t in gguf.MODEL_TENSORS[model_arch]}
        names = {t.name.rsplit(".", 1)[0] for t in reader.tensors}
        stray = sorted(n for n in names if n.split(".", 2)[-1] not in {t.split(".", 2)[-1] for t in tensors})
        check(not stray, f"{path.split('/')[-1]}: every tensor is one llama.cpp's {arch} has (stray: {stray})")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("which", choices=["llamacpp", "transformers", "gguf-names"])
    ap.add_argument("--anelm", required=True)
    ap.add_argument("files", nargs="+")
    args = ap.parse_args()
    {"llamacpp": llamacpp, "transformers": transformers_check, "gguf-names": gguf_names}[args.which](args)
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
