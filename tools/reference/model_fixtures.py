#!/usr/bin/env python3
"""Reference fixtures for anelm's Llama-family engine (SmolLM2, Llama 3.x, Mistral, Qwen2).

Writes, under --out (Tests/Fixtures/models):
  smollm2-135m-instruct.json (+ one .f32 file of full last-position logits)
      SmolLM2-135M-Instruct loaded by transformers from the Q4_1 GGUF (dequantized to f32).
  tiny-<arch>/  small random-weight HF model folders (safetensors + tokenizer.json ...)
  tiny-<arch>.json  reference logits / greedy continuations for each tiny model.
See Tests/Fixtures/models/README.md for the JSON schema.

Everything runs on CPU in float32, one thread, eager attention, fixed seeds: two runs write
the same bytes. Usage:
  HF_HUB_OFFLINE=1 python tools/reference/model_fixtures.py --gguf PATH --out Tests/Fixtures/models
"""
import argparse
import hashlib
import json
import os
import shutil
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
import torch
import transformers
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import (AutoModelForCausalLM, AutoTokenizer, GenerationConfig, LlamaConfig, LlamaForCausalLM,
                          MistralConfig, MistralForCausalLM, PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM)
from transformers.utils import logging as hf_logging

FORMAT = "anelm-model-fixture/1"
LOGIT_ABS_TOLERANCE = 1e-3
SEED = 1234
SMOL_NEW_TOKENS = 40
TINY_NEW_TOKENS = 32
TINY_MIN_MARGIN = 2e-3
TOP_K = 20
SMOL_FIXED_IDS = [0, 1, 2, 3, 17, 100, 1000, 10000, 30000, 49151]
SMOL_FULL_LOGITS_CASE = "short"
ATTN = "eager"

LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
               r"|\s*[\r\n]+|\s+(?!\S)|\s+")

PASSAGE = (
    "The history of computing is a story of abstraction. Early machines were programmed by rewiring "
    "panels and flipping switches, and every instruction had to be expressed in terms of the hardware "
    "itself. Assembly languages replaced raw numbers with short mnemonics, and compilers later translated "
    "whole expressions into sequences of instructions. Each new layer let programmers think less about "
    "registers and more about the problem they wanted to solve. Operating systems hid the details of disks "
    "and memory, networks hid the distance between machines, and libraries packaged common solutions so "
    "that nobody had to write a sorting routine from scratch again. Today a single line of code can start "
    "a server, train a model, or render a three-dimensional scene, yet underneath it all the processor "
    "still fetches, decodes and executes one simple instruction after another, billions of times each "
    "second. Understanding both ends of this ladder, the high-level ideas and the low-level mechanics, is "
    "what makes a programmer effective. When something breaks, the abstraction leaks, and the engineer "
    "who can"
)

SMOL_CASES = [
    {"name": "short", "text": "The capital of France is"},
    {"name": "question", "text": "Question: Why is the sky blue during the day?\nAnswer:"},
    {"name": "code", "text": "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n    if n < 2:\n        return n\n"},
    {"name": "unicode", "text": "Übersetzung: 東京は日本の首都です。 Café, naïve, 😀 — «¿Qué tal?»"},
    {"name": "whitespace", "text": "  Indented   text\twith tabs\n\n\nand blank lines:\n-"},
    {"name": "chat", "chat_messages": [{"role": "user", "content": "What are three good names for a pet turtle?"}]},
    {"name": "passage", "text": PASSAGE},
]

TINY_CORPUS = """\
The quick brown fox jumps over the lazy dog. A journey of a thousand miles begins with a single step.
It was the best of times, it was the worst of times, it was the age of wisdom, it was the age of foolishness.
Once upon a time there was a small model that wanted to predict the next token as well as a large one.
Numbers like 0, 1, 2, 3, 42, 100, 2024 and 3.14159 appear in text; so do dates such as 2025-01-31.
def add(a, b):
    return a + b

for i in range(10):
    print(i * i)

if (x > 0 && y < 10) { return x; } else { return -1; }
User: What is the weather like today?
Assistant: It is sunny and warm, with a light breeze from the west.
Caf\u00e9, na\u00efve, r\u00e9sum\u00e9, \u00fcber, \u00e5ngstr\u00f6m, \u00e7a va? \u00a1Hola! \u00bfQu\u00e9 tal?
\u6771\u4eac\u306f\u65e5\u672c\u306e\u9996\u90fd\u3067\u3059\u3002 \u4f60\u597d\uff0c\u4e16\u754c\u3002 \uc548\ub155\ud558\uc138\uc694.
Emoji: \U0001F600 \U0001F680 \u2764\ufe0f \u2014 dashes, \u201cquotes\u201d and \u2026 ellipses.
She said: "I'll be there at 5 o'clock, don't worry, we're almost done."
Models read tokens, compute attention over the context, and produce logits for every word in the vocabulary.
"""

TINY_PROMPTS = [
    {"name": "short", "text": "The quick brown fox"},
    {"name": "chat", "chat_messages": [{"role": "user", "content": "Tell me a story about a fox."}]},
    {"name": "long", "text": "Once upon a time there was a small model that wanted to predict the next token. "
                             "It read tokens, computed attention over the context, and produced logits for "
                             "every word in the vocabulary. Numbers like 42 and 3.14159 appeared; so did "
                             "Caf\u00e9, \u6771\u4eac and \U0001F600."},
]
TINY_ALL_POSITIONS_CASE = "short"


def f32(x):
    """Python float whose repr is the shortest decimal that round-trips the float32 value."""
    return float(str(np.float32(x)))


def f32list(t):
    return [f32(v) for v in t.detach().to(torch.float32).reshape(-1).tolist()]


def greedy(model, ids, new_tokens, eos_ids):
    """Greedy continuation with EOS ignored; per-step top-1/top-2 logits from transformers' generate."""
    # An explicit all-ones mask: otherwise generate() masks any prompt token equal to pad_token_id (e.g. BOS).
    out = model.generate(
        ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens, min_new_tokens=0, do_sample=False, num_beams=1,
        eos_token_id=None, pad_token_id=0, repetition_penalty=None, temperature=None, top_p=None, top_k=None,
        output_logits=True, return_dict_in_generate=True, use_cache=True,
    )
    gen = out.sequences[0, ids.shape[1]:].tolist()
    if len(gen) != new_tokens or len(out.logits) != new_tokens:
        raise SystemExit(f"generate stopped early ({len(gen)} of {new_tokens} tokens)")
    top1, top2_ids, top2, margins = [], [], [], []
    for step, logits in enumerate(out.logits):
        v, i = torch.topk(logits[0].to(torch.float32), 2)
        if int(i[0]) != gen[step]:
            raise SystemExit("greedy token differs from top-1 logit")
        top1.append(f32(v[0]))
        top2_ids.append(int(i[1]))
        top2.append(f32(v[1]))
        margins.append(f32(v[0] - v[1]))
    first_eos = next((k for k, t in enumerate(gen) if t in eos_ids), None)
    return {"max_new_tokens": new_tokens, "ids": gen, "top1_logits": top1, "top2_ids": top2_ids,
            "top2_logits": top2, "margins": margins, "first_eos_step": first_eos}


def topk_dict(logits, k):
    v, i = torch.topk(logits, k)
    return {"ids": [int(x) for x in i.tolist()], "values": f32list(v)}


def encode_case(tok, case):
    """Prompt text and ids; chat cases are rendered by the tokenizer's chat template."""
    if "chat_messages" in case:
        text = tok.apply_chat_template(case["chat_messages"], tokenize=False, add_generation_prompt=True)
        add_special = False
    else:
        text = case["text"]
        add_special = True
    ids = tok(text, add_special_tokens=add_special)["input_ids"]
    return text, add_special, ids


def reference_meta():
    return {"torch": torch.__version__, "transformers": transformers.__version__, "dtype": "float32",
            "device": "cpu", "attn_implementation": ATTN, "threads": torch.get_num_threads(), "seed": SEED}


def run_cases(model, tok, cases, new_tokens, eos_ids, full_inline, all_positions_case, fixed_ids, file_case, out,
              file_prefix):
    results = []
    for case in cases:
        text, add_special, ids = encode_case(tok, case)
        x = torch.tensor([ids], dtype=torch.long)
        with torch.no_grad():
            logits = model(x).logits[0].to(torch.float32)
        last = logits[-1]
        entry = {
            "name": case["name"], "text": text, "chat_messages": case.get("chat_messages"),
            "add_special_tokens": add_special, "prompt_ids": ids,
            "last_logits_top20": topk_dict(last, TOP_K),
            "last_logits_fixed": None, "last_logits_file": None, "last_logits": None, "all_position_logits": None,
        }
        if fixed_ids is not None:
            entry["last_logits_fixed"] = {"ids": fixed_ids, "values": [f32(last[i]) for i in fixed_ids]}
        if file_case == case["name"]:
            name = f"{file_prefix}.{case['name']}.last-logits.f32"
            blob = last.numpy().astype("<f4").tobytes()
            if len(blob) >= 200 * 1024:
                raise SystemExit("full-logits file would exceed 200 KB")
            with open(os.path.join(out, name), "wb") as fh:
                fh.write(blob)
            entry["last_logits_file"] = name
        if full_inline:
            entry["last_logits"] = f32list(last)
        if all_positions_case == case["name"]:
            entry["all_position_logits"] = [f32list(row) for row in logits]
        with torch.no_grad():
            entry["greedy"] = greedy(model, x, new_tokens, eos_ids)
        entry["greedy"]["text"] = tok.decode(entry["greedy"]["ids"], skip_special_tokens=False)
        step0 = entry["greedy"]["top1_logits"][0]
        if abs(step0 - f32(last.max())) > 1e-3:
            raise SystemExit(f"generate's first step disagrees with the forward pass ({case['name']})")
        results.append(entry)
        print(f"  {case['name']}: {len(ids)} prompt tokens -> {entry['greedy']['text'][:60]!r}", file=sys.stderr)
    return results


def to_json(obj, indent=0):
    """Indented JSON whose lists of scalars (and rows of a matrix) stay on one line, to keep files small."""
    pad, inner = " " * indent, " " * (indent + 1)
    if isinstance(obj, dict):
        if not obj:
            return "{}"
        items = [f"{inner}{json.dumps(k, ensure_ascii=False)}: {to_json(v, indent + 1)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(obj, list) and any(isinstance(v, (dict, list)) for v in obj):
        return "[\n" + ",\n".join(inner + to_json(v, indent + 1) for v in obj) + "\n" + pad + "]"
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def write_json(path, obj):
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(to_json(obj) + "\n")
    json.loads(open(path, encoding="utf-8").read())


def eos_list(value):
    if value is None:
        return []
    return [int(v) for v in (value if isinstance(value, (list, tuple)) else [value])]


# ---------------------------------------------------------------- SmolLM2 from GGUF

def smollm2(gguf_path, out):
    directory, name = os.path.split(os.path.abspath(gguf_path))
    tok = AutoTokenizer.from_pretrained(directory, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(directory, gguf_file=name, dtype=torch.float32,
                                                 attn_implementation=ATTN)
    model.eval()
    eos_ids = sorted(set(eos_list(model.generation_config.eos_token_id) + eos_list(tok.eos_token_id)))
    with open(gguf_path, "rb") as fh:
        sha = hashlib.sha256()
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            sha.update(chunk)
    cfg = model.config
    doc = {
        "format": FORMAT,
        "model": {
            "name": "SmolLM2-135M-Instruct", "source": "gguf", "path": name, "sha256": sha.hexdigest(), "files": None,
            "architecture": type(model).__name__, "vocab_size": cfg.vocab_size,
            "weights_dtype": "gguf (Q4_1 file, dequantized to float32 by transformers/gguf-py)",
            "tie_word_embeddings": bool(cfg.tie_word_embeddings), "init_seed": None,
        },
        "reference": reference_meta(),
        "tolerance": {"logit_abs": LOGIT_ABS_TOLERANCE},
        "eos_token_ids": eos_ids,
        "cases": run_cases(model, tok, SMOL_CASES, SMOL_NEW_TOKENS, eos_ids, full_inline=False,
                           all_positions_case=None, fixed_ids=SMOL_FIXED_IDS, file_case=SMOL_FULL_LOGITS_CASE,
                           out=out, file_prefix="smollm2-135m-instruct"),
    }
    margins = [m for c in doc["cases"] for m in c["greedy"]["margins"]]
    if min(margins) < TINY_MIN_MARGIN:
        print(f"  warning: a SmolLM2 greedy step has margin {min(margins)} (near-tie)", file=sys.stderr)
    write_json(os.path.join(out, "smollm2-135m-instruct.json"), doc)


# ---------------------------------------------------------------- tiny random models

TINY_SPECS = [
    {
        "name": "tiny-llama", "cls": LlamaForCausalLM, "style": "llama3", "vocab": 512, "save_dtype": torch.float32,
        "shard": None,
        "config": lambda v, t: LlamaConfig(
            vocab_size=v, hidden_size=64, intermediate_size=160, num_hidden_layers=3, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=512, rms_norm_eps=1e-5, initializer_range=0.2,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0}, tie_word_embeddings=False,
            attention_bias=False, mlp_bias=False, **t),
    },
    {
        "name": "tiny-llama3-rope", "cls": LlamaForCausalLM, "style": "llama3", "vocab": 515,
        "save_dtype": torch.float16, "shard": None,
        "config": lambda v, t: LlamaConfig(
            vocab_size=v, hidden_size=64, intermediate_size=150, num_hidden_layers=2, num_attention_heads=8,
            num_key_value_heads=2, max_position_embeddings=512, rms_norm_eps=1e-5, initializer_range=0.2,
            rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
                             "high_freq_factor": 4.0, "original_max_position_embeddings": 32},
            tie_word_embeddings=True, attention_bias=False, mlp_bias=False, **t),
    },
    {
        "name": "tiny-qwen2", "cls": Qwen2ForCausalLM, "style": "qwen2", "vocab": 509, "save_dtype": torch.float32,
        "shard": "250KB",
        "config": lambda v, t: Qwen2Config(
            vocab_size=v, hidden_size=64, intermediate_size=136, num_hidden_layers=3, num_attention_heads=4,
            num_key_value_heads=1, max_position_embeddings=512, rms_norm_eps=1e-6, initializer_range=0.2,
            rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}, tie_word_embeddings=True,
            use_sliding_window=False, sliding_window=None, max_window_layers=3, **t),
    },
    {
        "name": "tiny-mistral", "cls": MistralForCausalLM, "style": "mistral", "vocab": 513,
        "save_dtype": torch.bfloat16, "shard": None,
        "config": lambda v, t: MistralConfig(
            vocab_size=v, hidden_size=64, intermediate_size=97, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, head_dim=24, max_position_embeddings=512, rms_norm_eps=1e-5,
            initializer_range=0.2, rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
            sliding_window=None, tie_word_embeddings=False, **t),
    },
]

STYLES = {
    "llama3": {
        "split": LLAMA3_SPLIT, "nfc": False, "bos": "<|begin_of_text|>", "eos": "<|eot_id|>",
        "specials": ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                     "<|eot_id|>"],
        "add_bos": True,
        "template": ("{{ bos_token }}{% for message in messages %}<|start_header_id|>{{ message['role'] }}"
                     "<|end_header_id|>\n\n{{ message['content'] | trim }}<|eot_id|>{% endfor %}"
                     "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"),
    },
    "qwen2": {
        "split": QWEN2_SPLIT, "nfc": True, "bos": None, "eos": "<|im_end|>",
        "specials": ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        "add_bos": False,
        "template": ("{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}"
                     "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"),
    },
    "mistral": {
        "split": LLAMA3_SPLIT, "nfc": False, "bos": "<s>", "eos": "</s>",
        "specials": ["<unk>", "<s>", "</s>", "[INST]", "[/INST]"],
        "add_bos": True,
        "template": ("{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}"
                     "[INST] {{ message['content'] }} [/INST]{% else %}{{ message['content'] }}{{ eos_token }}"
                     "{% endif %}{% endfor %}"),
    },
}


def train_tokenizer(style, vocab_size):
    s = STYLES[style]
    tk = Tokenizer(models.BPE())
    if s["nfc"]:
        tk.normalizer = normalizers.NFC()
    tk.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(s["split"]), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
    ])
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=s["specials"], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), min_frequency=1)
    tk.train_from_iterator(TINY_CORPUS.splitlines(keepends=True) * 3, trainer=trainer)
    if tk.get_vocab_size() != vocab_size:
        raise SystemExit(f"tokenizer trained to {tk.get_vocab_size()} tokens, wanted {vocab_size}")
    if s["add_bos"]:
        bos = s["bos"]
        tk.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, tk.token_to_id(bos))])
    else:
        tk.post_processor = processors.ByteLevel(trim_offsets=False)
    fast = PreTrainedTokenizerFast(tokenizer_object=tk, bos_token=s["bos"], eos_token=s["eos"],
                                   pad_token=s["eos"], chat_template=s["template"], model_max_length=512,
                                   clean_up_tokenization_spaces=False)
    return fast


def randomize_(model, seed):
    """Make norms and biases non-trivial so a missing scale/bias in the engine changes the logits."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1.0 + 0.3 * torch.randn(p.shape, generator=gen))
            elif name.endswith(".bias"):
                p.copy_(0.5 * torch.randn(p.shape, generator=gen))


def build_tiny(spec, out, seed):
    folder = os.path.join(out, spec["name"])
    if os.path.isdir(folder):
        shutil.rmtree(folder)
    tok = train_tokenizer(spec["style"], spec["vocab"])
    tokens = {"bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id, "pad_token_id": tok.pad_token_id}
    config = spec["config"](len(tok), tokens)
    torch.manual_seed(seed)
    model = spec["cls"](config)
    randomize_(model, seed + 1)
    model.generation_config = GenerationConfig(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                               pad_token_id=tok.pad_token_id, do_sample=False)
    model = model.to(spec["save_dtype"])
    kwargs = {"safe_serialization": True}
    if spec["shard"]:
        kwargs["max_shard_size"] = spec["shard"]
    model.save_pretrained(folder, **kwargs)
    tok.save_pretrained(folder)
    return folder


def tiny(spec, out, base_seed):
    # Random weights often produce exact near-ties; take the first seed whose greedy runs keep every top-1/top-2
    # margin >= TINY_MIN_MARGIN, so an engine within tolerance must reproduce all tokens exactly.
    for seed in range(base_seed, base_seed + 50):
        folder = build_tiny(spec, out, seed)
        # The reference always reloads what was saved, so f16/bf16 weights are the rounded ones, upcast to f32.
        tok = AutoTokenizer.from_pretrained(folder)
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, attn_implementation=ATTN)
        model.eval()
        eos_ids = eos_list(model.generation_config.eos_token_id)
        cases = run_cases(model, tok, TINY_PROMPTS, TINY_NEW_TOKENS, eos_ids, full_inline=True,
                          all_positions_case=TINY_ALL_POSITIONS_CASE, fixed_ids=None, file_case=None, out=out,
                          file_prefix=spec["name"])
        if min(m for c in cases for m in c["greedy"]["margins"]) >= TINY_MIN_MARGIN:
            break
        print(f"  seed {seed}: near-tie in a greedy step, trying the next seed", file=sys.stderr)
    else:
        raise SystemExit(f"{spec['name']}: no seed without near-ties")
    cfg = model.config
    doc = {
        "format": FORMAT,
        "model": {
            "name": spec["name"], "source": "hf-folder", "path": spec["name"], "sha256": None,
            "files": sorted(os.listdir(folder)),
            "architecture": type(model).__name__, "vocab_size": cfg.vocab_size,
            "weights_dtype": str(spec["save_dtype"]).replace("torch.", ""),
            "tie_word_embeddings": bool(cfg.tie_word_embeddings), "init_seed": seed,
        },
        "reference": reference_meta(),
        "tolerance": {"logit_abs": LOGIT_ABS_TOLERANCE},
        "eos_token_ids": eos_ids,
        "cases": cases,
    }
    write_json(os.path.join(out, spec["name"] + ".json"), doc)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gguf", required=True, help="SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--out", required=True, help="output folder, e.g. Tests/Fixtures/models")
    ap.add_argument("--skip-smollm2", action="store_true", help="only rebuild the tiny models")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(SEED)
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    for k, spec in enumerate(TINY_SPECS):
        print(spec["name"], file=sys.stderr)
        tiny(spec, args.out, SEED + 100 * k)
    if not args.skip_smollm2:
        print("SmolLM2-135M-Instruct", file=sys.stderr)
        smollm2(args.gguf, args.out)


if __name__ == "__main__":
    main()
