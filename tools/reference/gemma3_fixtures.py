#!/usr/bin/env python3
"""Reference fixtures for anelm's Gemma 3 text engine (Gemma3ForCausalLM).

Writes, under --out (Tests/Fixtures/models):
  tiny-gemma3*/      small random-weight Gemma3ForCausalLM folders (float32 safetensors + tokenizer.json ...)
  tiny-gemma3*.json  reference logits / greedy continuations (schema anelm-model-fixture/1, see README.md)

Shares the tokenizer trainer, greedy runner and JSON writer with model_fixtures.py. Everything runs on CPU
in float32, one thread, eager attention, fixed seeds: two runs write the same bytes. Usage:
  HF_HUB_OFFLINE=1 python tools/reference/gemma3_fixtures.py --out Tests/Fixtures/models [--gguf gemma-3-270m-q4_k_m.gguf]
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402
from transformers import Gemma3ForCausalLM, Gemma3TextConfig  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

import model_fixtures as mf  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
with open(os.path.join(ROOT, "Tests/Fixtures/chat_templates/templates/gemma-3-it.jinja"), encoding="utf-8") as fh:
    GEMMA3_TEMPLATE = fh.read()

mf.STYLES["gemma3"] = {
    "split": mf.LLAMA3_SPLIT, "nfc": False, "bos": "<bos>", "eos": "<eos>",
    "specials": ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"],
    "add_bos": True, "template": GEMMA3_TEMPLATE,
}

# A prompt of ~100 tokens (with this tokenizer), so prefill and decoding both run far past the 8-token sliding window.
GEMMA_PROMPTS = mf.TINY_PROMPTS[:2] + [{"name": "long", "text": mf.TINY_CORPUS[:230]}]


def norm_randomize_(model, seed, embedding_std):
    """Gemma norms multiply by (1 + w): random w so a missing 1 (or a missing norm) changes the logits.
    A tied model gets smaller embeddings (`embedding_std`): with √hidden · N(0, 0.2) the residual stream is
    mostly the input token's own embedding and the tied head just repeats it."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        if embedding_std is not None:
            model.model.embed_tokens.weight.copy_(embedding_std * torch.randn(model.model.embed_tokens.weight.shape, generator=gen))
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(0.3 * torch.randn(p.shape, generator=gen))
            elif name.endswith(".bias"):
                p.copy_(0.5 * torch.randn(p.shape, generator=gen))


SPECS = [
    {
        # Local/global mix with a tiny window, GQA 4/2, head_dim 16, query_pre_attn_scalar ≠ head_dim,
        # linear RoPE scaling on the global layer only, no soft-caps.
        "name": "tiny-gemma3", "all_positions": "long", "embedding_std": 0.05,
        "config": lambda v, t: Gemma3TextConfig(
            vocab_size=v, hidden_size=64, intermediate_size=80, num_hidden_layers=3, num_attention_heads=4,
            num_key_value_heads=2, head_dim=16, max_position_embeddings=512, rms_norm_eps=1e-6,
            initializer_range=0.2, query_pre_attn_scalar=24, sliding_window=8,
            layer_types=["sliding_attention", "full_attention", "sliding_attention"],
            rope_parameters={"full_attention": {"rope_type": "linear", "factor": 2.0, "rope_theta": 100000.0},
                             "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0}},
            hidden_activation="gelu_pytorch_tanh", tie_word_embeddings=True,
            attn_logit_softcapping=None, final_logit_softcapping=None, **t),
    },
    {
        # Soft-capped logits (cap small enough to bite), 2 heads / 1 KV head of 32, untied head. The config also
        # sets attn_logit_softcapping, which transformers' Gemma3Attention ignores (an engine must too).
        "name": "tiny-gemma3-softcap", "all_positions": "chat", "embedding_std": None,
        "config": lambda v, t: Gemma3TextConfig(
            vocab_size=v, hidden_size=64, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
            num_key_value_heads=1, head_dim=32, max_position_embeddings=512, rms_norm_eps=1e-6,
            initializer_range=0.2, query_pre_attn_scalar=32, sliding_window=8,
            layer_types=["full_attention", "sliding_attention"],
            rope_parameters={"full_attention": {"rope_type": "default", "rope_theta": 1000000.0},
                             "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0}},
            hidden_activation="gelu_pytorch_tanh",
            attn_logit_softcapping=3.0, final_logit_softcapping=6.0, tie_word_embeddings=False, **t),
    },
]


def build(spec, out, seed):
    folder = os.path.join(out, spec["name"])
    if os.path.isdir(folder):
        mf.shutil.rmtree(folder)
    tok = mf.train_tokenizer("gemma3", 512)
    end_of_turn = tok.convert_tokens_to_ids("<end_of_turn>")
    tokens = {"bos_token_id": tok.bos_token_id, "eos_token_id": [tok.eos_token_id, end_of_turn],
              "pad_token_id": tok.pad_token_id}
    config = spec["config"](len(tok), tokens)
    torch.manual_seed(seed)
    model = Gemma3ForCausalLM(config)
    norm_randomize_(model, seed + 1, spec["embedding_std"])
    model.generation_config = mf.GenerationConfig(bos_token_id=tok.bos_token_id, eos_token_id=tokens["eos_token_id"],
                                                  pad_token_id=tok.pad_token_id, do_sample=False)
    model.save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)
    return folder


def tiny(spec, out, base_seed):
    for seed in range(base_seed, base_seed + 50):
        folder = build(spec, out, seed)
        tok = mf.AutoTokenizer.from_pretrained(folder)
        model = mf.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, attn_implementation=mf.ATTN)
        model.eval()
        eos_ids = sorted(set(mf.eos_list(model.generation_config.eos_token_id)))
        cases = mf.run_cases(model, tok, GEMMA_PROMPTS, mf.TINY_NEW_TOKENS, eos_ids, full_inline=True,
                             all_positions_case=spec["all_positions"], fixed_ids=None, file_case=None, out=out,
                             file_prefix=spec["name"])
        if min(m for c in cases for m in c["greedy"]["margins"]) >= mf.TINY_MIN_MARGIN:
            break
        print(f"  seed {seed}: near-tie in a greedy step, trying the next seed", file=sys.stderr)
    else:
        raise SystemExit(f"{spec['name']}: no seed without near-ties")
    if len(cases[-1]["prompt_ids"]) < 80:
        raise SystemExit(f"long prompt has only {len(cases[-1]['prompt_ids'])} tokens")
    cfg = model.config
    doc = {
        "format": mf.FORMAT,
        "model": {
            "name": spec["name"], "source": "hf-folder", "path": spec["name"], "sha256": None,
            "files": sorted(os.listdir(folder)), "architecture": type(model).__name__, "vocab_size": cfg.vocab_size,
            "weights_dtype": "float32", "tie_word_embeddings": bool(cfg.tie_word_embeddings), "init_seed": seed,
        },
        "reference": mf.reference_meta(),
        "tolerance": {"logit_abs": mf.LOGIT_ABS_TOLERANCE},
        "eos_token_ids": eos_ids,
        "cases": cases,
    }
    mf.write_json(os.path.join(out, spec["name"] + ".json"), doc)


def gguf_config(gguf_path, out):
    """The `gemma3.*` metadata of a real GGUF and the Gemma3TextConfig transformers builds from it."""
    from gguf import GGUFReader
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    reader = GGUFReader(gguf_path)
    metadata = []
    for key, field in reader.fields.items():
        if not (key.startswith("gemma3.") or key == "general.architecture"):
            continue
        kind = field.types[0].name
        metadata.append({"key": key, "type": kind, "value": field.contents()})
    raw = load_gguf_checkpoint(gguf_path, return_tensors=False)["config"]
    cfg = Gemma3TextConfig(**{k: v for k, v in raw.items() if k not in ("model_type", "_model_name_or_path")})
    doc = {
        "source": os.path.basename(gguf_path),
        "metadata": metadata,
        "tensor_names": sorted(t.name for t in reader.tensors if t.name.startswith("blk.0.") or "." not in t.name[:4]),
        "transformers_config": {
            "hidden_size": cfg.hidden_size, "intermediate_size": cfg.intermediate_size,
            "num_hidden_layers": cfg.num_hidden_layers, "num_attention_heads": cfg.num_attention_heads,
            "num_key_value_heads": cfg.num_key_value_heads, "head_dim": cfg.head_dim,
            "rms_norm_eps": mf.f32(cfg.rms_norm_eps), "vocab_size": cfg.vocab_size,
            "max_position_embeddings": cfg.max_position_embeddings, "tie_word_embeddings": cfg.tie_word_embeddings,
            "query_pre_attn_scalar": cfg.query_pre_attn_scalar, "sliding_window": cfg.sliding_window,
            "layer_types": cfg.layer_types, "rope_parameters": cfg.rope_parameters,
            "attn_logit_softcapping": cfg.attn_logit_softcapping,
            "final_logit_softcapping": cfg.final_logit_softcapping,
        },
    }
    mf.write_json(os.path.join(out, "gemma3-270m-gguf-config.json"), doc)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="output folder, e.g. Tests/Fixtures/models")
    ap.add_argument("--gguf", help="gemma-3-270m GGUF: also write gemma3-270m-gguf-config.json from its metadata")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(mf.SEED)
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    for k, spec in enumerate(SPECS):
        print(spec["name"], file=sys.stderr)
        tiny(spec, args.out, mf.SEED + 1000 + 100 * k)
    if args.gguf:
        gguf_config(args.gguf, args.out)


if __name__ == "__main__":
    main()
