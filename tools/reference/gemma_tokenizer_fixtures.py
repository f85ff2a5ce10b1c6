#!/usr/bin/env python3
"""Reference token ids for anelm's SentencePiece-style (Gemma) tokenizer, from Hugging Face transformers.

    HF_HUB_OFFLINE=1 python tools/reference/gemma_tokenizer_fixtures.py \
        --gguf /tmp/dl/gemma/gemma-3-270m-q4_k_m.gguf --out Tests/Fixtures/tokenizer

Writes (deterministic, small):
  gemma3_gguf.json       ids/decodes of the Gemma 3 GGUF tokenizer as transformers loads it
                         (`AutoTokenizer.from_pretrained(dir, gguf_file=name)`: BPE with byte fallback, merges
                         rebuilt from the vocabulary order, Replace(" ", "▁") normalizer)
  gemma_spm_bpe/{tokenizer.json,tokenizer_config.json,expected.json}
                         tiny BPE trained here in the shape of Gemma's own tokenizer.json: byte_fallback,
                         <0x00>..<0xFF> tokens, normalizer Replace " "→"▁", decoder Replace/ByteFallback/Fuse
--skip-gguf writes only the tiny tokenizer.json fixture.
"""
import argparse
import json
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import AutoTokenizer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tokenizer_fixtures  # noqa: E402  (shares the case builder and the JSON writer)
from tokenizer_fixtures import write_json  # noqa: E402

TEXTS = [
    "",
    " ",
    "  ",
    "   ",
    "\n",
    "\n\n\n",
    " \n \n",
    "\t",
    "Hello",
    "Hello world",
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    "  leading spaces and trailing spaces   ",
    "multiple     spaces    between   words",
    "tabs\tand\t\ttabs\n\tindented",
    "line one\nline two\n\nline four\r\nwindows",
    "I'm sure DON'T you'll we've they're",
    "digits 1234567 and 3.14159 and 1,000,000 and ٣٤٥ and ½",
    "Café naïve résumé façade Zürich Ångström",
    "e\u0301 composed vs é precomposed",
    "日本語のテキストです。中文测试：你好，世界！한국어 텍스트",
    "emoji 😀 👍🏽 👨‍👩‍👧‍👦 🏳️‍🌈 ❤️ 🇫🇷",
    "rare 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 \U0001F9EC \U00010348 \u0F3A \uE000 \U000E0041 and \x00\x01 controls",
    "def main():\n    for i in range(10):\n        print(f\"{i:>3}\")\n\treturn None\n",
    "if (x != y && z >= 0) { return a->b; } // comment\n",
    "<start_of_turn>user\nhi<end_of_turn>",
    "<start_of_turn>user\nWhat is 2+2?<end_of_turn>\n<start_of_turn>model\n",
    "<bos>text<eos>more <pad> and <unk> and <mask>",
    "not special: <start_of_turn without close, <0x41> and <unused0> inline",
    "[multimodal] marker",
    "non\u00a0breaking\u3000ideographic\u2003em space",
    "URL: https://example.com/path?q=1&r=two#frag",
    "!!!??? ... --- *** ### $$$ %%% ^^^",
    "Ωμέγα Привет мир עברית العربية हिन्दी",
    "▁ literal lower one eighth block ▁▁",
    "x" * 60,
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
]

CORPUS = """
The quick brown fox jumps over the lazy dog. Hello world! Hello, how are you today?
I'm fine, thanks. You're welcome. We've been there. They'll come. She'd know. It's done.
def main():
    for i in range(10):
        print(i)
    return None
Numbers like 1234567, 3.14159, 2024 and 42 appear in text. Prices: $19.99 and 300.
Cafe, naive, resume: accents are common in French and German (Zurich, Strasse).
Language models predict the next token. Tokenizers split text into pieces called tokens.
Byte pair encoding merges the most frequent pairs of symbols, again and again, until the vocabulary is full.
    Indented lines, tabs\tand\ttabs, and runs of    spaces are all part of source code.
"""

SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "<start_of_turn>", "<end_of_turn>"]


def expected_for(tok):
    expected = tokenizer_fixtures.expected_for(tok, TEXTS)
    # Decoding generated ids: byte tokens that do not form valid UTF-8 become one U+FFFD per byte.
    byte = {b: tok.convert_tokens_to_ids(f"<0x{b:02X}>") for b in (0xE4, 0xB8, 0xAD, 0xF0, 0x41)}
    hello = tok("Hello", add_special_tokens=False)["input_ids"]
    raw = [
        [byte[0xE4], byte[0xB8], byte[0xAD]],
        [byte[0xE4], byte[0xB8]] + hello,
        hello + [byte[0xF0]],
        [byte[0x41], byte[0xE4]] + hello + [byte[0xE4], byte[0xB8], byte[0xAD]],
    ]
    expected["raw_decodes"] = [{"ids": ids, "decoded": tok.decode(ids)} for ids in raw]
    return expected


def gguf_fixture(gguf_path, out_dir):
    directory, name = os.path.split(os.path.abspath(gguf_path))
    tok = AutoTokenizer.from_pretrained(directory, gguf_file=name)
    expected = expected_for(tok)
    expected["source"] = name
    write_json(os.path.join(out_dir, "gemma3_gguf.json"), expected)


def tiny_fixture(out_dir):
    """A Gemma-shaped tokenizer.json: specials, then the 256 byte tokens, then trained pieces."""
    trainer_tokenizer = Tokenizer(models.BPE())
    trainer_tokenizer.normalizer = normalizers.Replace(" ", "▁")
    trainer_tokenizer.pre_tokenizer = pre_tokenizers.Split(" ", behavior="merged_with_previous")
    trainer = trainers.BpeTrainer(vocab_size=340, min_frequency=1, show_progress=False, special_tokens=[])
    trainer_tokenizer.train_from_iterator(CORPUS.splitlines(keepends=True) * 3, trainer=trainer)
    trained = json.loads(trainer_tokenizer.to_str())["model"]

    vocab = {}
    for token in SPECIALS + [f"<0x{b:02X}>" for b in range(256)]:
        vocab[token] = len(vocab)
    for token, _ in sorted(trained["vocab"].items(), key=lambda item: item[1]):
        if token not in vocab:
            vocab[token] = len(vocab)
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in trained["merges"]]

    tokenizer = Tokenizer(
        models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", fuse_unk=True, byte_fallback=True)
    )
    tokenizer.normalizer = normalizers.Replace(" ", "▁")
    tokenizer.pre_tokenizer = pre_tokenizers.Split(" ", behavior="merged_with_previous")
    tokenizer.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()])
    tokenizer.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in SPECIALS])
    tokenizer.add_tokens([AddedToken("\n\n", normalized=False, special=False)])
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A <bos>:1 $B:1", special_tokens=[("<bos>", vocab["<bos>"])]
    )
    config = {
        "add_bos_token": True,
        "add_eos_token": False,
        "bos_token": "<bos>",
        "eos_token": "<eos>",
        "pad_token": "<pad>",
        "unk_token": "<unk>",
        "clean_up_tokenization_spaces": False,
        "tokenizer_class": "PreTrainedTokenizerFast",
        "chat_template": "{{ bos_token }}{% for m in messages %}<start_of_turn>{{ m['role'] }}\n"
        "{{ m['content'] }}<end_of_turn>\n{% endfor %}",
    }
    directory = os.path.join(out_dir, "gemma_spm_bpe")
    os.makedirs(directory, exist_ok=True)
    tokenizer.save(os.path.join(directory, "tokenizer.json"), pretty=False)
    write_json(os.path.join(directory, "tokenizer_config.json"), config)
    tok = AutoTokenizer.from_pretrained(directory)
    write_json(os.path.join(directory, "expected.json"), expected_for(tok))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--gguf", default="/tmp/dl/gemma/gemma-3-270m-q4_k_m.gguf")
    parser.add_argument("--out", required=True)
    parser.add_argument("--skip-gguf", action="store_true")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    tiny_fixture(args.out)
    if not args.skip_gguf:
        gguf_fixture(args.gguf, args.out)


if __name__ == "__main__":
    sys.exit(main())
