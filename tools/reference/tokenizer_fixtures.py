#!/usr/bin/env python3
"""Reference token ids for anelm's tokenizer, from Hugging Face transformers.

    HF_HUB_OFFLINE=1 python tools/reference/tokenizer_fixtures.py --gguf PATH --out Tests/Fixtures/tokenizer

Writes (all deterministic, small):
  smollm2_gguf.json                  ids/decodes of the GGUF tokenizer as transformers loads it
  llama3_bpe/{tokenizer.json,tokenizer_config.json,expected.json}
                                     tiny byte-level BPE trained here, Llama-3 split regex, BOS template
  qwen2_bpe/{tokenizer.json,tokenizer_config.json,expected.json}
                                     tiny byte-level BPE trained here, Qwen2 split regex, NFC
Optionally --dump-gguf-metadata PATH writes the GGUF's tokenizer.ggml.* keys as JSON (dev aid, not committed).
"""
import argparse
import json
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import AutoTokenizer

LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

TEXTS = [
    "",
    " ",
    "  ",
    "   ",
    "\n",
    "\n\n\n",
    " \n \n",
    "Hello, world!",
    "Hello world. How are you doing today?",
    "The quick brown fox jumps over the lazy dog.",
    "  leading spaces and trailing spaces   ",
    "multiple     spaces    between   words",
    "tabs\tand\t\ttabs\n\tindented",
    "I'm sure DON'T you'll we've they're she'd it's IT'S I'LL",
    "digits 1234567 and 3.14159 and 1,000,000 and ٣٤٥ and ½",
    "Café naïve résumé façade Zürich Ångström",
    "e\u0301 composed vs é precomposed",
    "日本語のテキストです。中文测试：你好，世界！한국어 텍스트",
    "emoji 😀 👍🏽 👨‍👩‍👧‍👦 🏳️‍🌈 ❤️ 🇫🇷",
    "def main():\n    for i in range(10):\n        print(f\"{i:>3}\")\n\treturn None\n",
    "if (x != y && z >= 0) { return a->b; } // comment\n",
    "<|im_start|>user\nhi<|im_end|>",
    "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>assistant\n",
    "text<|endoftext|>more text",
    "<|begin_of_text|>Hello<|eot_id|>",
    "<|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|>",
    "a <mask> token and <think>reasoning</think>",
    "Mixed\r\nline\rendings\r\n\r\n",
    "non\u00a0breaking\u3000ideographic\u2003em space",
    "ſt long s and 'S 'ſ apostrophe",
    "URL: https://example.com/path?q=1&r=two#frag",
    "!!!??? ... --- *** ### $$$ %%% ^^^",
    "Ωμέγα Привет мир עברית العربية हिन्दी",
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
class Tokenizer:
    def encode(self, text):
        return [ord(c) for c in text]
Numbers like 1234567, 3.14159, 2024 and 42 appear in text. Prices: $19.99, €5, ¥300.
Café, naïve, résumé, façade: accents are common in French and German (Zürich, Straße).
日本語のテキスト。中文测试。한국어 텍스트. Emoji: 😀 👍 ❤️ 🎉.
Language models predict the next token. Tokenizers split text into pieces called tokens.
Byte pair encoding merges the most frequent pairs of symbols, again and again, until the vocabulary is full.
    Indented lines, tabs\tand\ttabs, and runs of    spaces are all part of source code.
"""


def ids_of(tok, text, special):
    return tok(text, add_special_tokens=special)["input_ids"]


def expected_for(tok, texts=TEXTS):
    cases = []
    for text in texts:
        with_special = ids_of(tok, text, True)
        without = ids_of(tok, text, False)
        cases.append(
            {
                "text": text,
                "ids": with_special,
                "ids_no_special": without,
                "decoded": tok.decode(with_special, skip_special_tokens=False),
                "decoded_skip_special": tok.decode(with_special, skip_special_tokens=True),
            }
        )
    return {
        "vocab_size": len(tok),
        "bos_token": tok.bos_token,
        "eos_token": tok.eos_token,
        "eos_token_id": tok.eos_token_id,
        "cases": cases,
    }


def write_json(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=1, sort_keys=True)
        f.write("\n")


def gguf_fixture(gguf_path, out_dir, dump_path):
    directory, name = os.path.split(os.path.abspath(gguf_path))
    tok = AutoTokenizer.from_pretrained(directory, gguf_file=name)
    expected = expected_for(tok)
    expected["source"] = name
    write_json(os.path.join(out_dir, "smollm2_gguf.json"), expected)
    if dump_path:
        from gguf import GGUFReader

        reader = GGUFReader(gguf_path)
        meta = {}
        for key, field in reader.fields.items():
            if key.startswith("tokenizer."):
                meta[key] = field.contents()
        with open(dump_path, "w", encoding="utf-8") as f:
            json.dump(meta, f, ensure_ascii=False)


def train(split_regex, special_tokens, added, normalizer, vocab_size=700):
    tokenizer = Tokenizer(models.BPE(ignore_merges=split_regex is LLAMA3_SPLIT))
    if normalizer is not None:
        tokenizer.normalizer = normalizer
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(split_regex), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel(add_prefix_space=True, trim_offsets=True, use_regex=True)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=1,
        show_progress=False,
        special_tokens=special_tokens,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator([CORPUS] * 3, trainer=trainer)
    tokenizer.add_tokens(added)
    return tokenizer


def llama3_fixture(out_dir):
    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
    added = [
        AddedToken("<mask>", lstrip=True, rstrip=False, single_word=False, normalized=False, special=True),
        AddedToken(" token", lstrip=False, rstrip=False, normalized=True, special=False),
    ]
    tokenizer = train(LLAMA3_SPLIT, specials, added, None)
    bos = tokenizer.token_to_id("<|begin_of_text|>")
    tokenizer.post_processor = processors.Sequence(
        [
            processors.ByteLevel(add_prefix_space=True, trim_offsets=False, use_regex=True),
            processors.TemplateProcessing(
                single="<|begin_of_text|> $A",
                pair="<|begin_of_text|> $A <|begin_of_text|>:1 $B:1",
                special_tokens=[("<|begin_of_text|>", bos)],
            ),
        ]
    )
    template = (
        "{{ bos_token }}{% for message in messages %}<|start_header_id|>{{ message['role'] }}<|end_header_id|>\n\n"
        "{{ message['content'] | trim }}<|eot_id|>{% endfor %}"
        "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
    )
    config = {
        "bos_token": "<|begin_of_text|>",
        "eos_token": "<|eot_id|>",
        "clean_up_tokenization_spaces": True,
        "model_max_length": 131072,
        "tokenizer_class": "PreTrainedTokenizerFast",
        # Older repos store several named templates; anelm takes "default".
        "chat_template": [{"name": "default", "template": template}, {"name": "tool_use", "template": "unused"}],
    }
    save_and_expect(tokenizer, config, os.path.join(out_dir, "llama3_bpe"))


def qwen2_fixture(out_dir):
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    added = [
        AddedToken("<think>", normalized=False, special=False),
        AddedToken("</think>", normalized=False, special=False),
    ]
    tokenizer = train(QWEN2_SPLIT, specials, added, normalizers.NFC())
    tokenizer.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    template = (
        "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
        "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
    )
    config = {
        "add_prefix_space": False,
        "bos_token": None,
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "clean_up_tokenization_spaces": False,
        "errors": "replace",
        "split_special_tokens": False,
        "model_max_length": 32768,
        "tokenizer_class": "Qwen2Tokenizer",
        "chat_template": template,
    }
    save_and_expect(tokenizer, config, os.path.join(out_dir, "qwen2_bpe"))


def save_and_expect(tokenizer, config, directory):
    os.makedirs(directory, exist_ok=True)
    tokenizer.save(os.path.join(directory, "tokenizer.json"), pretty=False)
    write_json(os.path.join(directory, "tokenizer_config.json"), config)
    # Load back the way a user would: transformers reads both files.
    tok = AutoTokenizer.from_pretrained(directory)
    write_json(os.path.join(directory, "expected.json"), expected_for(tok))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--gguf", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--dump-gguf-metadata", default=None)
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    gguf_fixture(args.gguf, args.out, args.dump_gguf_metadata)
    llama3_fixture(args.out)
    qwen2_fixture(args.out)


if __name__ == "__main__":
    sys.exit(main())
