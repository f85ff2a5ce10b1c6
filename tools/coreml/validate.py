#!/usr/bin/env python3
"""Independent check of an .mlpackage written by `anelm export-coreml`, with coremltools (no torch).

    validate.py PACKAGE --source MODEL [--weights fp16|int8|lut4|lut6] [--reference FIXTURE.json [--cases N]]

What it asserts, and what each check is independent of:
- coremltools opens the package (`MLModel(path, skip_model_load=True)`: Manifest.json, the protobuf) and
  rebuilds every function's MIL program from it (`milproto.load`, which runs each op's type inference);
- the functions anelm.json names are in the program and in the model description, each declaring the
  same single state, the KV cache the *source config* implies ((2 x layers x KV heads, head_dim, 1,
  context)), fp16; for xLSTM the mlstm_state ((layers x heads, qk head dim, 1, v head dim + 2): C | n | m);
- op types: only the MIL names of anelm's ANEOpKind (read from Sources/ANELM/CoreML/ANEGraph.swift),
  `reshape` (the export's views for matmul and gather) and the constexpr op of the weights mode;
- every shape is static;
- weight.bin: parsed here with `struct` (header, per-blob metadata, sentinel, dtype, sizes, 64-byte
  alignment, offsets as BlobFileValue gives them); its size is exactly the header plus the blobs; a
  constant shared by several functions is one blob;
- weights: each conv weight, the embedding table, the norms and biases, read back through coremltools
  (its BlobStorageReader, and for constexpr ops its own decompression, `materialized_val_inference`),
  equal the *source file read here* (safetensors parsed with numpy; GGUF through the `gguf` package,
  llama.cpp's reader and dequantizer) after the lowering's two documented transforms (1/sqrt(head_dim)
  folded into q, the GGUF q/k row order undone) and rounding to fp16. int8: the stored integers are
  round(w / scale) of the source weights; LUT: each stored index picks the table entry nearest the
  source weight. Neither the Swift lowering nor its executor is used, so this is independent of them.
- with --reference: the decode function is *run* here in numpy (an interpreter of the MIL ops, per the
  coremltools op definitions) over fixture prompts, and its logits compared with transformers'. An xLSTM
  fixture (one 200-token prompt, logits at every position) gives cases pN: its first N tokens.
- a sentence-embedding package (anelm.json `encoder`): validate_encoder.py's checks, --reference an embeddings fixture;
  a relevance-model package (`export-coreml --relevance`): validate_encoder.py's checks, --source the context store.
- with --lora (an export made with `export-coreml --lora`): the source weights expected are the source file's
  plus each adapter's scale·B·A, read here from the PEFT or MLX-LM files with numpy; --lora-reference runs a
  case of Tests/Fixtures/lora/lora.json and compares every logit of its last position with PEFT's.
"""
import argparse
import json
import logging
import math
import os
import re
import struct
import sys
import time

import numpy as np

# coremltools warns on import that its Core ML runtime (macOS only) is missing; nothing here needs it.
logging.getLogger("coremltools").setLevel(logging.ERROR)
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BLOB_TYPES = {"FLOAT16": (1, 16), "FLOAT32": (2, 32), "UINT8": (3, 8), "INT8": (4, 8), "UINT4": (11, 4), "UINT6": (13, 6), "INT32": (14, 32)}
CONSTEXPR = {"int8": "constexpr_blockwise_shift_scale", "int8-blockwise": "constexpr_blockwise_shift_scale",
             "lut4": "constexpr_lut_to_dense", "lut6": "constexpr_lut_to_dense", "lut8": "constexpr_lut_to_dense"}
LUT_BITS = {"lut4": 4, "lut6": 6, "lut8": 8}


class Failure(Exception):
    pass


def check(condition, message):
    if not condition:
        raise Failure(message)


# ---------------------------------------------------------------------------------------------- source


def read_safetensors(path):
    """Every floating-point tensor of a safetensors file as float32 (integer buffers such as BERT's position_ids are skipped)."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for k, h in header.items():
        if k == "__metadata__" or h["dtype"].startswith(("I", "U")):
            continue
        begin, end = h["data_offsets"]
        raw = np.frombuffer(data[begin:end], dtype=np.uint8)
        if h["dtype"] == "BF16":
            a = (raw.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
        else:
            a = raw.view({"F32": np.float32, "F16": np.float16}[h["dtype"]]).astype(np.float32)
        out[k] = a.reshape(h["shape"])
    return out


def lora_deltas(spec):
    """PATH[:SCALE] of a PEFT or MLX-LM adapter folder → {base weight name: scale · B @ A}, as those libraries
    define the update (PEFT: alpha / r, or alpha / sqrt(r) with use_rslora; MLX-LM: lora_parameters.scale, with
    lora_a = Aᵀ and lora_b = Bᵀ)."""
    path, scale = spec, 1.0
    if ":" in spec:
        head, tail = spec.rsplit(":", 1)
        try:
            path, scale = head, float(tail)
        except ValueError:
            pass
    config = json.load(open(os.path.join(path, "adapter_config.json")))
    deltas = {}
    if os.path.exists(os.path.join(path, "adapter_model.safetensors")):
        t = read_safetensors(os.path.join(path, "adapter_model.safetensors"))
        for k, a in t.items():
            if not k.endswith(".lora_A.weight"):
                continue
            module = k[len("base_model.model."):-len(".lora_A.weight")]
            b = t[k.replace(".lora_A.", ".lora_B.")]
            r = a.shape[0]
            factor = config["lora_alpha"] / (math.sqrt(r) if config.get("use_rslora") else r)
            deltas[module + ".weight"] = np.float32(scale * factor) * (b.astype(np.float64) @ a.astype(np.float64)).astype(np.float32)
    else:
        t = read_safetensors(os.path.join(path, "adapters.safetensors"))
        factor = config["lora_parameters"]["scale"]
        for k, a in t.items():
            if k.endswith(".lora_a"):
                b = t[k[:-len(".lora_a")] + ".lora_b"]
                deltas[k[:-len(".lora_a")] + ".weight"] = np.float32(scale * factor) * (b.T.astype(np.float64) @ a.T.astype(np.float64)).astype(np.float32)
    return deltas


class Source:
    """The source model, read without anelm: config facts and tensors as float32 (rows, cols), with the LoRA
    adapters' updates added (`loras`: PATH[:SCALE] specs) as `export-coreml --lora` merges them."""

    def __init__(self, path, loras=()):
        self.path = path
        self.deltas = {}
        for spec in loras:
            for name, d in lora_deltas(spec).items():
                self.deltas[name] = self.deltas.get(name, 0) + d
        self.gguf = os.path.isfile(path)
        if self.gguf:
            import gguf
            self.reader = gguf.GGUFReader(path)
            self.tensors = {t.name: t for t in self.reader.tensors}
            self.arch = self.meta("general.architecture")
            a = self.arch
            self.layers = self.meta(f"{a}.block_count")
            self.hidden = self.meta(f"{a}.embedding_length")
            self.heads = self.meta(f"{a}.attention.head_count")
            self.kv_heads = self.meta(f"{a}.attention.head_count_kv") or self.heads
            self.head_dim = self.meta(f"{a}.attention.key_length") or self.hidden // self.heads
            self.theta = self.meta(f"{a}.rope.freq_base") or 10000.0
            self.scaled_rope = self.meta(f"{a}.rope.scaling.type") not in (None, "none")
            self.vocab = int(self.tensors["token_embd.weight"].shape[1])
            self.names = {"embed": "token_embd.weight", "q": "blk.{}.attn_q.weight", "k": "blk.{}.attn_k.weight", "v": "blk.{}.attn_v.weight",
                          "o": "blk.{}.attn_output.weight", "gate": "blk.{}.ffn_gate.weight", "up": "blk.{}.ffn_up.weight", "down": "blk.{}.ffn_down.weight",
                          "q_bias": "blk.{}.attn_q.bias", "k_bias": "blk.{}.attn_k.bias", "v_bias": "blk.{}.attn_v.bias",
                          "attn_norm": "blk.{}.attn_norm.weight", "mlp_norm": "blk.{}.ffn_norm.weight", "final_norm": "output_norm.weight", "lm_head": "output.weight"}
            # llama.cpp's converter permutes q/k rows of `llama` models so RoPE pairs adjacent dims.
            self.permuted = self.arch == "llama"
            self.gemma = False  # (Gemma 3 GGUF rules: not written yet)
        else:
            self.config = json.load(open(os.path.join(path, "config.json")))
            c = self.config
            self.arch = (c.get("architectures") or [c.get("model_type")])[0]
            self.xlstm = self.arch == "xLSTMForCausalLM"
            self.files = self._safetensors_headers(path)
            self.permuted, self.gemma, self.scaled_rope = False, False, False
            if self.xlstm:
                # transformers' xLSTMConfig (defaults and aliases as it has them); widths are int(hidden * factor).
                self.layers = c.get("num_hidden_layers") or c.get("num_blocks") or 32
                self.hidden = c.get("hidden_size") or c.get("embedding_dim") or 4096
                self.heads = c.get("num_heads", 8)
                self.qk_dim = int(self.hidden * c.get("qk_dim_factor", 0.5))
                self.v_dim = int(self.hidden * c.get("v_dim_factor", 1.0))
                m = c.get("ffn_round_up_to_multiple_of", 64)
                self.ffn_dim = int((self.hidden * c.get("ffn_proj_factor", 2.667) + m - 1) // m * m)
                self.vocab = c.get("vocab_size", 50304)
                self.names = {"embed": "backbone.embeddings.weight", "lm_head": "lm_head.weight"}
                return
            self.layers, self.hidden, self.heads = c["num_hidden_layers"], c["hidden_size"], c["num_attention_heads"]
            self.kv_heads = c.get("num_key_value_heads") or self.heads
            self.head_dim = c.get("head_dim") or self.hidden // self.heads
            rope = c.get("rope_parameters") or {}
            self.theta = c.get("rope_theta") or rope.get("rope_theta") or 10000.0
            self.scaled_rope = bool(c.get("rope_scaling")) or rope.get("rope_type", "default") != "default"
            self.vocab = c["vocab_size"]
            self.names = {"embed": "model.embed_tokens.weight", "q": "model.layers.{}.self_attn.q_proj.weight", "k": "model.layers.{}.self_attn.k_proj.weight",
                          "v": "model.layers.{}.self_attn.v_proj.weight", "o": "model.layers.{}.self_attn.o_proj.weight",
                          "gate": "model.layers.{}.mlp.gate_proj.weight", "up": "model.layers.{}.mlp.up_proj.weight", "down": "model.layers.{}.mlp.down_proj.weight",
                          "q_bias": "model.layers.{}.self_attn.q_proj.bias", "k_bias": "model.layers.{}.self_attn.k_proj.bias", "v_bias": "model.layers.{}.self_attn.v_proj.bias",
                          "attn_norm": "model.layers.{}.input_layernorm.weight", "mlp_norm": "model.layers.{}.post_attention_layernorm.weight",
                          "final_norm": "model.norm.weight", "lm_head": "lm_head.weight"}
            self.gemma = self.arch == "Gemma3ForCausalLM"
            if self.gemma:
                self.query_pre_attn_scalar = c.get("query_pre_attn_scalar") or self.head_dim
                self.names.update({"attn_norm": "model.layers.{}.input_layernorm.weight", "post_attn_norm": "model.layers.{}.post_attention_layernorm.weight",
                                   "pre_ffw_norm": "model.layers.{}.pre_feedforward_layernorm.weight", "post_ffw_norm": "model.layers.{}.post_feedforward_layernorm.weight",
                                   "q_norm": "model.layers.{}.self_attn.q_norm.weight", "k_norm": "model.layers.{}.self_attn.k_norm.weight"})

    def meta(self, key):
        f = self.reader.fields.get(key)
        if f is None:
            return None
        v = f.contents()
        return v

    @staticmethod
    def _safetensors_headers(folder):
        index = os.path.join(folder, "model.safetensors.index.json")
        files = sorted(set(json.load(open(index))["weight_map"].values())) if os.path.exists(index) else ["model.safetensors"]
        out = {}
        for name in files:
            p = os.path.join(folder, name)
            with open(p, "rb") as f:
                n = struct.unpack("<Q", f.read(8))[0]
                header = json.loads(f.read(n))
            for k, v in header.items():
                if k != "__metadata__":
                    out[k] = (p, 8 + n, v)
        return out

    def has(self, key, layer=None):
        name = self.names[key].format(layer)
        return name in (self.tensors if self.gguf else self.files)

    def tensor(self, key, layer=None):
        """float32, rows = output features (GGUF's ne reversed), plus the adapters' update of that weight."""
        name = self.names[key].format(layer)
        w = self.stored(name)
        return w + self.deltas[name] if name in self.deltas else w

    def stored(self, name):
        if self.gguf:
            check(not self.deltas, "--lora is checked for Hugging Face sources only")
            from gguf.quants import dequantize
            t = self.tensors[name]
            return np.asarray(dequantize(t.data, t.tensor_type), dtype=np.float32).reshape([int(d) for d in reversed(t.shape)])
        path, start, h = self.files[name]
        begin, end = h["data_offsets"]
        raw = np.memmap(path, dtype=np.uint8, mode="r", offset=start + begin, shape=(end - begin,))
        if h["dtype"] == "BF16":
            a = (raw.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
        else:
            a = raw.view({"F32": np.float32, "F16": np.float16}[h["dtype"]]).astype(np.float32)
        return a.reshape(h["shape"])

    def lm_head(self):
        if self.has("lm_head"):
            return self.tensor("lm_head")
        name = self.names["lm_head"]
        return self.tensor("embed") + (self.deltas[name] if name in self.deltas else 0)

    def rotate_half_order(self, w):
        """Rows of a GGUF llama q/k weight back in rotate_half order, per head (what the lowering does)."""
        if not self.permuted:
            return w
        hd, half = self.head_dim, self.head_dim // 2
        order = np.array([h * hd + (j * 2 if j < half else (j - half) * 2 + 1) for h in range(w.shape[0] // hd) for j in range(hd)])
        return w[order]

    def expected_constants(self, chunks):
        """The lowering's constants by name, as float32 before fp16 rounding: weights as (rows = outputs or
        table entries, cols) matrices, norms and biases as vectors."""
        if self.gemma:
            return self.gemma_constants(chunks)
        if getattr(self, "xlstm", False):
            return self.xlstm_constants(chunks)
        scale = np.float32(1) / np.float32(math.sqrt(self.head_dim))
        out = {"embedding": self.tensor("embed")}
        for l in range(self.layers):
            for p in ("q", "k", "v", "o", "gate", "up", "down"):
                w = self.tensor(p, l)
                if p in ("q", "k"):
                    w = self.rotate_half_order(w)
                out[f"l{l}_{p}_weight"] = w * scale if p == "q" else w
                if p in ("q", "k", "v") and self.has(p + "_bias", l):
                    b = self.tensor(p + "_bias", l)
                    if p in ("q", "k"):
                        b = self.rotate_half_order(b)
                    out[f"l{l}_{p}_bias"] = b * scale if p == "q" else b
            out[f"l{l}_attn_norm_weight"] = self.tensor("attn_norm", l)
            out[f"l{l}_mlp_norm_weight"] = self.tensor("mlp_norm", l)
        out["final_norm_weight"] = self.tensor("final_norm")
        head = self.lm_head()
        start = 0
        for i, n in enumerate(chunks):
            out[f"output_{i}"] = head[start:start + n]
            start += n
        return out

    def gemma_constants(self, chunks):
        """Gemma 3 (Hugging Face folder): the lowering carries the residual stream at 1/16, folded into the
        embedding (also times sqrt(hidden), rounded to the weights' dtype as transformers does) and the
        post-norms; norms multiply by (1 + w); query_pre_attn_scalar^-1/2 is folded into the q norms."""
        s = np.float32(1 / 16)
        embed_scale = rounded(np.float32(math.sqrt(self.hidden)), self.files[self.names["embed"]][2]["dtype"])
        out = {"embedding": self.tensor("embed") * np.float32(embed_scale * s)}

        def norm(key, layer=None):
            return np.float32(1) + self.tensor(key, layer)

        score = np.float32(1) / np.float32(math.sqrt(self.query_pre_attn_scalar))
        for l in range(self.layers):
            for p in ("q", "k", "v", "o", "gate", "up", "down"):
                out[f"l{l}_{p}_weight"] = self.tensor(p, l)
            out[f"l{l}_input_norm_weight"] = norm("attn_norm", l)
            out[f"l{l}_post_attn_norm_weight"] = norm("post_attn_norm", l) * s
            out[f"l{l}_pre_ffw_norm_weight"] = norm("pre_ffw_norm", l)
            out[f"l{l}_post_ffw_norm_weight"] = norm("post_ffw_norm", l) * s
            for h in range(self.heads):
                out[f"l{l}_q{h}_norm_weight"] = norm("q_norm", l) * score
            for h in range(self.kv_heads):
                out[f"l{l}_k{h}_norm_weight"] = norm("k_norm", l)
        out["final_norm_weight"] = norm("final_norm")
        head, start = self.lm_head(), 0
        for i, n in enumerate(chunks):
            out[f"output_{i}"] = head[start:start + n]
            start += n
        return out

    def xlstm_constants(self, chunks):
        """xLSTM (mLSTM blocks): every projection one conv, fused weights split by rows (q | k | v | o, i | f,
        gate | up); 1/sqrt(qk head dim) folded into q; the per-head norm's weight sliced per head."""
        c, heads = self.config, self.heads
        dk, dv = self.qk_dim // heads, self.v_dim // heads
        scale = np.float32(1) / np.float32(math.sqrt(dk))
        bias = c.get("use_bias", False)
        out = {"embedding": self.stored("backbone.embeddings.weight")}
        for l in range(self.layers):
            b = f"backbone.blocks.{l}."
            t = lambda name: self.stored(b + name)  # noqa: E731
            parts = {}
            if c.get("weight_mode", "single") == "fused":
                w, g = t("mlstm_layer.qkv_opreact.weight"), t("mlstm_layer.ifgate_preact.weight")
                cuts = np.cumsum([0, self.qk_dim, self.qk_dim, self.v_dim, self.v_dim])
                for i, p in enumerate(("q", "k", "v", "ogate")):
                    parts[p] = (w[cuts[i]:cuts[i + 1]], t("mlstm_layer.qkv_opreact.bias")[cuts[i]:cuts[i + 1]] if bias else None)
                gb = t("mlstm_layer.ifgate_preact.bias")
                parts["igate"], parts["fgate"] = (g[:heads], gb[:heads]), (g[heads:], gb[heads:])
                z = t("ffn.proj_up_gate_z.weight")
                zb = t("ffn.proj_up_gate_z.bias") if bias else None
                parts["ffn_gate"] = (z[:self.ffn_dim], None if zb is None else zb[:self.ffn_dim])
                parts["ffn_up"] = (z[self.ffn_dim:], None if zb is None else zb[self.ffn_dim:])
            else:
                for p, name in (("q", "q"), ("k", "k"), ("v", "v"), ("ogate", "ogate_preact"), ("igate", "igate_preact"), ("fgate", "fgate_preact")):
                    has_bias = bias or p in ("igate", "fgate")
                    parts[p] = (t(f"mlstm_layer.{name}.weight"), t(f"mlstm_layer.{name}.bias") if has_bias else None)
                for p, name in (("ffn_gate", "proj_up_gate"), ("ffn_up", "proj_up")):
                    parts[p] = (t(f"ffn.{name}.weight"), t(f"ffn.{name}.bias") if bias else None)
            parts["out_proj"] = (t("mlstm_layer.out_proj.weight"), t("mlstm_layer.out_proj.bias") if bias else None)
            parts["ffn_down"] = (t("ffn.proj_down.weight"), t("ffn.proj_down.bias") if bias else None)
            for p, (w, bb) in parts.items():
                s = scale if p == "q" else np.float32(1)
                out[f"l{l}_{p}_weight"] = w * s
                if bb is not None:
                    out[f"l{l}_{p}_bias"] = bb * s
            for norm, name in (("mlstm_norm", "norm_mlstm"), ("ffn_norm", "norm_ffn")):
                out[f"l{l}_{norm}_weight"] = t(f"{name}.weight")
                if bias:
                    out[f"l{l}_{norm}_bias"] = t(f"{name}.bias")
            mh = t("mlstm_layer.multihead_norm.weight")
            for h in range(heads):
                out[f"l{l}_h{h}_norm_weight"] = mh[h * dv:(h + 1) * dv]
            if bias:
                out[f"l{l}_multihead_norm_bias"] = t("mlstm_layer.multihead_norm.bias")
        out["final_norm_weight"] = self.stored("backbone.out_norm.weight")
        head = self.stored("lm_head.weight") if "lm_head.weight" in self.files else out["embedding"]
        start = 0
        for i, n in enumerate(chunks):
            out[f"output_{i}"] = head[start:start + n]
            start += n
        return out

    def state_shape(self, layers):
        """The one state's shape: xLSTM's mlstm_state (a slot per layer and head: C | n | m columns), else
        the KV cache (a slot per layer, KV head and K/V)."""
        if getattr(self, "xlstm", False):
            return (layers * self.heads, self.qk_dim // self.heads, 1, self.v_dim // self.heads + 2)
        return (2 * layers * self.kv_heads, self.head_dim, 1, None)

    def rope_tables(self, n):
        inv = 1.0 / (self.theta ** (np.arange(0, self.head_dim, 2, dtype=np.float64) / self.head_dim))
        d = np.arange(self.head_dim)
        angle = np.arange(n)[None, :] * inv[d % (self.head_dim // 2)][:, None]
        sign = np.where(d < self.head_dim // 2, -1.0, 1.0)[:, None]
        return np.cos(angle).reshape(1, self.head_dim, 1, n), (np.sin(angle) * sign).reshape(1, self.head_dim, 1, n)


def rounded(x, dtype):
    """A float32 scalar rounded to a safetensors dtype (nearest, ties to even), back as float32."""
    if dtype == "F16":
        return np.float32(np.float16(x))
    if dtype == "BF16":
        b = int(np.array([x], np.float32).view(np.uint32)[0])
        return np.array([(b + 0x7FFF + ((b >> 16) & 1)) & 0xFFFF0000], np.uint32).view(np.float32)[0]
    return np.float32(x)


def fp16(a):
    return np.asarray(a, dtype=np.float32).astype(np.float16).astype(np.float32)


# ---------------------------------------------------------------------------------------------- package


def op_kinds():
    """MIL names of ANEOpKind, from the Swift enum."""
    src = open(os.path.join(ROOT, "Sources/ANELM/CoreML/ANEGraph.swift")).read()
    body = re.search(r"enum ANEOpKind[^{]*\{(.*?)\n\}", src, re.S).group(1)
    names = set()
    for line in body.splitlines():
        line = line.split("//")[0].strip()
        if line.startswith("case "):
            for item in line[5:].split(","):
                item = item.strip()
                m = re.match(r'\w+\s*=\s*"([^"]+)"', item)
                names.add(m.group(1) if m else item)
    return names


def blob_refs(spec):
    """Every BlobFileValue in the program: (function, op output name, input name, offset, dtype name, shape)."""
    from coremltools.proto import MIL_pb2
    refs = []

    def visit(fname, opname, key, value):
        if value.WhichOneof("value") == "blobFileValue":
            t = value.type.tensorType
            refs.append((fname, opname, key, value.blobFileValue.offset, MIL_pb2.DataType.Name(t.dataType), tuple(d.constant.size for d in t.dimensions)))

    for fname, f in spec.mlProgram.functions.items():
        for op in f.block_specializations[f.opset].operations:
            opname = op.outputs[0].name if op.outputs else op.type
            for k, v in op.attributes.items():
                visit(fname, opname, k, v)
            for k, arg in op.inputs.items():
                for b in arg.arguments:
                    if b.WhichOneof("binding") == "value":
                        visit(fname, opname, k, b.value)
    return refs


def check_weight_file(path, refs):
    """weight.bin laid out as MILBlob storage v2; returns (blobs, expected size)."""
    data = open(path, "rb").read()
    count, version = struct.unpack_from("<II", data, 0)
    check(version == 2 and data[8:64] == bytes(56), f"weight.bin header: version {version}, reserved bytes not zero")
    blobs = {}
    for fname, opname, key, offset, dtype, shape in refs:
        entry = (dtype, shape)
        check(blobs.setdefault(offset, entry) == entry, f"blob at {offset} is read as {entry} and {blobs[offset]}")
    expected_end, offsets = 64, sorted(blobs)
    for offset in offsets:
        dtype, shape = blobs[offset]
        check(dtype in BLOB_TYPES, f"blob at {offset}: no weight.bin type for {dtype}")
        code, bits = BLOB_TYPES[dtype]
        n = int(np.prod(shape))
        size = (n * bits + 7) // 8
        aligned = (expected_end + 63) // 64 * 64
        check(offset == aligned, f"blob metadata at {offset}, expected the next 64-byte boundary {aligned}")
        sentinel, mil_dtype, size_in_bytes, data_offset, padding_bits = struct.unpack_from("<IIQQQ", data, offset)
        check(sentinel == 0xDEADBEEF, f"blob at {offset}: sentinel {sentinel:#x}")
        check(mil_dtype == code, f"blob at {offset}: data type {mil_dtype}, the program reads {dtype} ({code})")
        check(size_in_bytes == size, f"blob at {offset}: {size_in_bytes} bytes for {n} {dtype} values ({size} expected)")
        check(data_offset == offset + 64 and data_offset % 64 == 0, f"blob at {offset}: data at {data_offset}")
        check(padding_bits == (8 - n * bits % 8) % 8, f"blob at {offset}: padding {padding_bits} bits")
        check(data[offset + 32:offset + 64] == bytes(32), f"blob at {offset}: reserved fields not zero")
        check(data[expected_end:offset] == bytes(offset - expected_end), f"gap before blob at {offset} not zero")
        expected_end = data_offset + size
    check(count == len(blobs), f"weight.bin header counts {count} blobs, the program references {len(blobs)}")
    check(len(data) == expected_end, f"weight.bin is {len(data)} bytes; header + blobs make {expected_end}")
    return blobs, expected_end


def state_inputs(f):
    from coremltools.proto import MIL_pb2
    out = []
    for i in f.inputs:
        if i.type.WhichOneof("type") == "stateType":
            t = i.type.stateType.wrappedType.tensorType
            out.append((i.name, MIL_pb2.DataType.Name(t.dataType), tuple(d.constant.size for d in t.dimensions)))
    return out


def check_ane_rules(spec, prog, args, pkg):
    """The rules `anelm info --ane` lints (issue #20), asserted here from the rebuilt MIL program: one
    state shape and at most two states; no reduce_argmax / gather_along_axis (CPU-placed on devices);
    int8 scales per output channel unless --weights int8-blockwise; LUTs of at most 16 output channels;
    no fp32 tensor; no computed tensor dimension above 16,384; weight.bin at most 1 GB."""
    from coremltools.converters.mil.mil import types
    for name, f in prog.functions.items():
        states = [v for v in f.inputs.values() if types.is_state(v.sym_type)]
        shapes = {tuple(v.sym_type.wrapped_type().get_shape()) for v in states}
        check(len(states) <= 2 and len(shapes) <= 1, f"{name}: {len(states)} states of {len(shapes)} shapes")
        for op in f.operations:
            check(op.op_type not in ("reduce_argmax", "gather_along_axis"), f"{name}: {op.op_type} {op.name} (CPU-placed on devices)")
            if op.op_type == "constexpr_blockwise_shift_scale":
                data, scale = op.data.val.shape, op.scale.val.shape
                per_channel = sum(s != 1 for s in scale) <= 1 and all(s in (1, d) for s, d in zip(scale, data))
                check(per_channel == (args.weights == "int8"), f"{name}: {op.name}: scale {scale} for {data} under --weights {args.weights}")
            constant = op.op_type == "const" or op.op_type.startswith("constexpr_")
            for v in op.outputs:
                if not types.is_tensor(v.sym_type) and not types.is_scalar(v.sym_type):
                    continue
                check(v.dtype != types.fp32, f"{name}: {v.name} is fp32")
                check(constant or max(v.shape, default=0) <= 16384, f"{name}: {v.name} has a dimension above 16,384: {v.shape}")
    size = os.path.getsize(os.path.join(pkg, "Data/com.apple.CoreML/weights/weight.bin"))
    check(size <= 1_000_000_000, f"weight.bin is {size} bytes, above 1 GB")
    return "states, CPU-placed ops, quantization granularity, fp32, dimensions and size within the lint's limits"


def validate(args):
    """The package, or every package of its chain (anelm.json `chunks`), then the run over all of them."""
    info = json.load(open(os.path.join(args.package, "Data/com.anelm/anelm.json")))
    if "encoder" in info or info["architecture"] == "anelm-relevance-model":  # their checks are in validate_encoder.py
        sys.modules.setdefault("validate", sys.modules[__name__])
        import validate_encoder
        return (validate_encoder.validate_encoder if "encoder" in info else validate_encoder.validate_relevance)(args, info)
    names = info.get("chunks") or [os.path.basename(args.package)]
    folder = os.path.dirname(os.path.abspath(args.package))
    report, progs = {}, []
    for i, name in enumerate(names):
        r, prog, info = validate_package(os.path.join(folder, name), args, i, len(names))
        progs.append(prog)
        report.update(r if len(names) == 1 else {f"{name}: {k}": v for k, v in r.items()})
    if args.reference:
        report["run"] = run_reference(progs, info, args)
    if args.lora_reference:
        report["lora run"] = run_lora_reference(progs, info, args)
    return report


def validate_package(pkg, args, index, count):
    """One package; `index` of `count` in a chain."""
    import coremltools as ct
    from coremltools.converters.mil.frontend.milproto import load as milproto
    from coremltools.converters.mil.mil import types
    from coremltools.proto import FeatureTypes_pb2

    report = {}
    # Manifest.json: the root model item and every item present.
    manifest = json.load(open(os.path.join(pkg, "Manifest.json")))
    check(manifest.get("fileFormatVersion") == "1.0.0", "Manifest.json: fileFormatVersion")
    items = manifest["itemInfoEntries"]
    check(items[manifest["rootModelIdentifier"]]["path"] == "com.apple.CoreML/model.mlmodel", "Manifest.json: the root model is not model.mlmodel")
    for ident, item in items.items():
        check({"path", "name", "author", "description"} <= set(item), f"Manifest.json item {ident} lacks a key")
        check(os.path.exists(os.path.join(pkg, "Data", item["path"])), f"Manifest.json item {item['path']} is missing")
    info = json.load(open(os.path.join(pkg, "Data/com.anelm/anelm.json")))
    check(info["format_version"] == 1, "anelm.json format_version")
    check(info["weights"] == args.weights, f"anelm.json weights {info['weights']}, expected {args.weights}")
    # A chunk of a chain: its layers [first, end), consecutive with its neighbours' (the first chunk
    # starts at 0, the last ends at the model's last layer, checked against the source below).
    first_layer, end_layer = info.get("chunk_layers") or (0, None)
    check(info.get("chunk_index", 0) == index, f"anelm.json chunk_index {info.get('chunk_index')}, the chain lists it {index}")
    check(index > 0 or first_layer == 0, "the first chunk does not start at layer 0")
    if index > 0:
        check(first_layer == validate_package.previous_end, f"chunk {index} starts at layer {first_layer}, the previous one ended at {validate_package.previous_end}")

    # coremltools loads it and rebuilds the MIL program (type inference of every op).
    model = ct.models.MLModel(pkg, skip_model_load=True)
    spec = model.get_spec()
    check(spec.specificationVersion == 9 and spec.WhichOneof("Type") == "mlProgram", "not an ML Program of specification version 9")
    weights_dir = os.path.join(pkg, "Data/com.apple.CoreML/weights")
    started = time.time()
    prog = milproto.load(spec, specification_version=9, file_weights_dir=weights_dir)
    report["milproto.load"] = f"{time.time() - started:.1f} s"
    described = {f.name: f for f in spec.description.functions}
    check(list(described) == info["functions"], f"description functions {list(described)}, anelm.json {info['functions']}")
    check(set(prog.functions) == set(info["functions"]), f"program functions {sorted(prog.functions)}, anelm.json {info['functions']}")
    check(spec.description.defaultFunctionName in described, "defaultFunctionName is not a function")

    src = Source(args.source, args.lora)
    end_layer = src.layers if end_layer is None else end_layer
    check(index + 1 < count or end_layer == src.layers, f"the last chunk ends at layer {end_layer} of {src.layers}")
    validate_package.previous_end = end_layer
    is_first, is_last = first_layer == 0, end_layer == src.layers
    # States: the same in every function, and the KV cache the source config implies.
    n = info["context_length"]
    # One state, the whole KV cache: a slot (head_dim, 1, context) per layer, KV head and K/V (issue #20:
    # three or more states, or states of different shapes, are reported to fail on the ANE).
    shape = src.state_shape(end_layer - first_layer)
    expected_states = [("FLOAT16", shape if shape[3] is not None else shape[:3] + (n,))]
    first = None
    for name in info["functions"]:
        states = state_inputs(spec.mlProgram.functions[name])
        check([s[1:] for s in states] == expected_states, f"{name}: states {states}; the source's KV cache is {expected_states}")
        check(len({s[0] for s in states}) == len(states), f"{name}: a state is declared twice")
        first = first or states
        check(states == first, f"{name}: states differ from {info['functions'][0]}'s")
        desc = [(s.name, tuple(s.type.stateType.arrayType.shape), s.type.stateType.arrayType.dataType) for s in described[name].state]
        check(desc == [(s[0], s[2], FeatureTypes_pb2.ArrayFeatureType.FLOAT16) for s in states], f"{name}: described states differ from the program's")
        reads = {op.inputs["input"].name for op in prog.functions[name].operations if op.op_type == "read_state"}
        writes = {op.inputs["state"].name for op in prog.functions[name].operations if op.op_type == "coreml_update_state"}
        check(reads == writes == {s[0] for s in states}, f"{name}: not every state is read and written")
    report["states"] = f"one, {expected_states[0][1]} fp16, read and written by every function"

    # Op types, static shapes, descriptions against the program.
    allowed = op_kinds() | {"reshape"} | ({CONSTEXPR[args.weights]} if args.weights in CONSTEXPR else set())
    for name, f in prog.functions.items():
        proto_ops = spec.mlProgram.functions[name].block_specializations["CoreML8"].operations
        kinds = {op.type for op in proto_ops}
        check(kinds <= allowed, f"{name}: op types outside the lowered set: {sorted(kinds - allowed)}")
        if args.weights in CONSTEXPR:
            check(CONSTEXPR[args.weights] in kinds, f"{name}: no {CONSTEXPR[args.weights]} for --weights {args.weights}")
        for op in f.operations:
            for v in op.outputs:
                check(types.is_tensor(v.sym_type) or types.is_scalar(v.sym_type), f"{name}: {v.name} is not a tensor")
                check(all(isinstance(d, (int, np.integer)) for d in v.shape), f"{name}: {v.name} has a non-static shape {v.shape}")
        for inp in described[name].input:
            var = f.inputs[inp.name]
            check(tuple(inp.type.multiArrayType.shape) == tuple(var.shape), f"{name}: input {inp.name} described as {inp.type.multiArrayType.shape}, program {var.shape}")
        outs = {v.name: v for v in f.outputs}
        for o in described[name].output:
            check(o.name in outs and tuple(o.type.multiArrayType.shape) == tuple(outs[o.name].shape), f"{name}: output {o.name} not the program's")
        report[f"{name} ops"] = f"{len(proto_ops)} ({', '.join(sorted(kinds))})"

    report["ane rules"] = check_ane_rules(spec, prog, args, pkg)

    # weight.bin, parsed here.
    refs = blob_refs(spec)
    blobs, size = check_weight_file(os.path.join(weights_dir, "weight.bin"), refs)
    by_name = {}
    for fname, opname, key, offset, _, _ in refs:
        by_name.setdefault((opname, key), set()).add(offset)
    check(all(len(o) == 1 for o in by_name.values()), "a constant shared by functions is written more than once: " +
          str([k for k, o in by_name.items() if len(o) > 1][:3]))
    report["weight.bin"] = f"{size} bytes = 64 + {len(blobs)} x (64 + data), aligned"

    # Weights against the source.
    decode = prog.functions[info["functions"][0]]
    producers = {op.outputs[0].name: op for op in decode.operations if op.outputs}
    if is_last:
        chunks = [int(producers[f"output_{i}"].outputs[0].shape[0]) for i in range(info["output_chunks"])]
        check(sum(chunks) == src.vocab == info["vocab_size"] and max(chunks) <= 16384, f"output chunks {chunks} for vocabulary {src.vocab}")
    else:
        chunks = [src.vocab]

    # A chunk holds its layers' constants, the embedding if first, the output layer if last.
    def held(name):
        m = re.match(r"l(\d+)_", name)
        if m:
            return first_layer <= int(m.group(1)) < end_layer
        return is_first if name == "embedding" else is_last
    expected = {k: v for k, v in src.expected_constants(chunks).items() if held(k)}
    # Every function's conv weights and gather tables must be source tensors. Values are compared in the
    # first function; the others read the same blobs (checked above), so they hold the same values.
    weight_inputs = set()
    for f in prog.functions.values():
        weight_inputs |= {op.weight.name for op in f.operations if op.op_type == "conv"}
        weight_inputs |= {op.x.name for op in f.operations if op.op_type == "gather" and (op.x.op.op_type == "const" or op.x.op.op_type.startswith("constexpr_"))}
    unmatched = sorted(weight_inputs - set(expected))
    check(not unmatched, f"weights with no source tensor to check against: {unmatched[:5]}")
    # Where each weight's rows are in its rank-4 constant: a conv's output channels (axis 0), a gather
    # table's entries (the gather axis); the cols are the one other axis that is not 1.
    row_axis = {}
    for op in decode.operations:
        if op.op_type == "conv":
            row_axis[op.weight.name] = 0
        elif op.op_type == "gather":
            row_axis[op.x.name] = int(op.axis.val)

    def matrix(a, name, rows, cols):
        shape = a.shape
        r = row_axis.get(name)
        check(r is not None and shape[r] == rows, f"{name}: {shape} is not a weight with {rows} rows")
        c = [i for i in range(len(shape)) if i != r and shape[i] > 1] or [i for i in range(len(shape)) if i != r][:1]
        check(len(c) == 1 and shape[c[0]] == cols and int(np.prod(shape)) == rows * cols, f"{name}: {shape} is not a ({rows}, {cols}) matrix")
        return np.moveaxis(a, [r, c[0]], [0, 1]).reshape(rows, cols)

    errors, compressed = [0.0, 0.0], 0
    for cname, want in expected.items():
        check(cname in producers, f"constant {cname} is not in the program")
        op = producers[cname]
        w = fp16(want)
        if op.op_type == "const":
            got = np.asarray(op.outputs[0].val, dtype=np.float32)
            got = matrix(got, cname, *w.shape) if w.ndim == 2 else got.reshape(-1)
            check(got.shape == w.shape, f"{cname}: shape {got.shape}, source {w.shape}")
            if not np.array_equal(got, w) and args.lora:
                # A merged adapter's weight is W + scale·B·A summed in f32 by anelm (rank terms that can cancel), in
                # float64 here: a value near an fp16 halfway point may round the other way. Allowed: one of the two fp16
                # neighbours of the expected value (within one fp16 step of it).
                want32 = np.asarray(want, dtype=np.float32).reshape(w.shape)
                step = np.spacing(np.maximum(np.abs(w), np.abs(got)).astype(np.float16)).astype(np.float32)
                check((np.abs(got - want32) <= step).all(),
                      f"{cname}: values differ from the source plus the adapters' update beyond fp16 rounding (max {np.abs(got - w).max()})")
                w = got
            check(np.array_equal(got, w), f"{cname}: {int((got != w).sum())} values differ from the source (max {np.abs(got - w).max()})")
            check(cname not in weight_inputs or args.weights == "fp16", f"{cname} is not compressed under --weights {args.weights}")
            continue
        check(op.op_type == CONSTEXPR.get(args.weights), f"{cname}: {op.op_type} under --weights {args.weights}")
        rows, cols = w.shape
        got = matrix(np.asarray(op.materialized_val_inference(), dtype=np.float32), cname, rows, cols)
        if op.op_type == "constexpr_blockwise_shift_scale":
            check(op.offset is None, f"{cname}: unexpected offset")
            data = matrix(op.data.val, cname, rows, cols).astype(np.float32)
            scale = op.scale.val.astype(np.float32)
            r = row_axis[cname]
            blocks = int(np.prod(scale.shape)) // rows
            check(scale.shape[r] == rows and cols % blocks == 0, f"{cname}: scale shape {scale.shape} for {op.data.val.shape}")
            # int8: one scale per output channel, the only int8 granularity the ANE supports (coremltools
            # issue 2510); int8-blockwise: blocks of at most 32 input channels.
            if args.weights == "int8":
                check(blocks == 1, f"{cname}: {blocks} scales per output channel under --weights int8 (per channel expected)")
            else:
                check(cols // blocks <= 32 and (blocks > 1 or cols <= 32), f"{cname}: blocks of {cols // blocks} input channels")
            c = [i for i in range(scale.ndim) if i != r and op.data.val.shape[i] > 1][0]
            s = np.repeat(np.moveaxis(scale, [r, c], [0, 1]).reshape(rows, blocks), cols // blocks, axis=1)
            q = np.where(s > 0, np.clip(np.rint(w / np.where(s > 0, s, 1)), -127, 127), 0)
            check(np.array_equal(q, data), f"{cname}: {int((q != data).sum())} int8 values are not round(w / scale) of the source")
            # Core ML's output is fp16: half a quantization step plus half an fp16 step of the result.
            check(np.all(np.abs(got - w) <= s / 2 + np.spacing(np.abs(got).astype(np.float16)).astype(np.float32) / 2), f"{cname}: dequantized beyond half a step")
        else:
            lut = op.lut.val.astype(np.float32)
            k = lut.shape[-2]
            tables = lut.reshape(-1, k)
            check(lut.shape[row_axis[cname]] == len(tables) and rows % len(tables) == 0, f"{cname}: LUT shape {lut.shape}")
            g = rows // len(tables)
            check(k == 2 ** LUT_BITS[args.weights], f"{cname}: {k} LUT entries under --weights {args.weights}")
            # Per grouped channel: one table per group of at most lut_group output channels (Apple's
            # guidance: 8 or 16), never one table for the whole tensor.
            group = info["metadata"].get("lut_group")
            check(group is not None and g <= group and (g == rows or len(tables) > 1), f"{cname}: {len(tables)} tables of {g} rows, lut_group {group}")
            idx = matrix(op.indices.val, cname, rows, cols).astype(np.int64)
            for start in range(0, rows, g):
                table = tables[start // g].astype(np.float64)
                block = w[start:start + g].astype(np.float64).reshape(-1)
                best = np.abs(block[:, None] - table[None, :]).min(axis=1)
                chosen = np.abs(block - table[idx[start:start + g].reshape(-1)])
                check(np.all(chosen <= best + 1e-6 * np.abs(block) + 1e-12), f"{cname}: rows {start}…: an index is not the nearest LUT entry")
        compressed += 1
        errors[0] += float(((got - w) ** 2).sum())
        errors[1] += float((w ** 2).sum())
    report["weights"] = f"{len(expected)} constants equal the source" + ("" if not compressed else
        f" ({compressed} compressed: stored values are the quantization of the source; relative RMS error {math.sqrt(errors[0] / errors[1]):.4g})")
    if not src.scaled_rope and "rope_cos" in producers:
        cos, sin = src.rope_tables(n)
        for cname, table in (("rope_cos", cos), ("rope_sin", sin)):
            got = np.asarray(producers[cname].outputs[0].val, dtype=np.float32)
            check(np.abs(got - table).max() <= 1e-3, f"{cname}: {np.abs(got - table).max()} from cos/sin of the source's rope_theta")
        report["rope tables"] = f"within fp16 rounding of theta {src.theta}"

    # The tokenizer folder (the first package of a chain).
    tok = os.path.join(pkg, "Data/com.anelm/tokenizer")
    if not is_first:
        pass
    elif src.gguf:
        import gguf
        r = gguf.GGUFReader(os.path.join(tok, "tokenizer.gguf"))
        check(len(r.tensors) == 0, "tokenizer.gguf has tensors")
        a, b = src.reader.fields, r.fields
        check(list(k for k in a if not k.startswith("GGUF.")) == list(k for k in b if not k.startswith("GGUF.")), "tokenizer.gguf metadata keys differ from the source")
        for k in a:
            if not k.startswith("GGUF."):
                check(a[k].types == b[k].types and all(np.array_equal(x, y) for x, y in zip(a[k].parts, b[k].parts)), f"tokenizer.gguf: {k} differs")
        report["tokenizer"] = f"tokenizer.gguf: {len(b)} metadata fields, equal to the source's"
    else:
        for name in ("tokenizer.json", "config.json"):
            check(open(os.path.join(tok, name), "rb").read() == open(os.path.join(args.source, name), "rb").read(), f"tokenizer/{name} is not the source's")
        report["tokenizer"] = ", ".join(sorted(os.listdir(tok)))

    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(pkg) for f in fs)
    report["package"] = f"{total} bytes (model.mlmodel {os.path.getsize(os.path.join(pkg, 'Data/com.apple.CoreML/model.mlmodel'))})"

    return report, prog, info


# ---------------------------------------------------------------------------------------------- running


def run_function(f, feeds, states):
    """Runs a rebuilt MIL function in numpy (float32 math), each op as coremltools defines it."""
    env = dict(feeds)

    def val(v):
        if v.name in env:
            return env[v.name]
        if v.val is not None:
            return np.asarray(v.val)
        raise Failure(f"run: {v.name} has no value")

    for op in f.operations:
        t = op.op_type
        ins = op.inputs
        if t == "const":
            continue
        with np.errstate(divide="raise", invalid="raise", over="ignore", under="ignore"):
            try:
                r = run_op(op, t, ins, val, states)
            except FloatingPointError as e:
                raise Failure(f"run: {t} {op.outputs[0].name}: {e}")
        results = r if isinstance(r, tuple) else (r,)
        check(len(results) == len(op.outputs), f"run: {t} computed {len(results)} results for {len(op.outputs)} outputs")
        for out, r in zip(op.outputs, results):
            r = np.asarray(r)
            check(tuple(r.shape) == tuple(out.shape), f"run: {t} {out.name} computed {r.shape}, typed {out.shape}")
            env[out.name] = r.astype(np.float32) if out.dtype == types_fp16() else r
    return {v.name: env[v.name] for v in f.outputs}


DECOMPRESSED = {}  # constexpr outputs by op name, decompressed once


def run_op(op, t, ins, val, states):
    """One op, as coremltools defines it (float32 math; fp16 values are read exactly)."""
    if t.startswith("constexpr_"):
        if op.name not in DECOMPRESSED:
            DECOMPRESSED[op.name] = op.materialized_val_inference()
        r = DECOMPRESSED[op.name]
    elif t == "read_state":
        r = states[ins["input"].name].copy()
    elif t == "coreml_update_state":
        states[ins["state"].name] = val(ins["value"]).astype(np.float32)
        r = states[ins["state"].name]
    elif t == "reshape":
        r = val(ins["x"]).reshape([int(d) for d in val(ins["shape"])])
    elif t == "gather":
        check(int(val(ins["batch_dims"])) == 0, "run: gather batch_dims")
        r = np.take(val(ins["x"]), val(ins["indices"]).astype(np.int64), axis=int(val(ins["axis"])))
    elif t == "gather_along_axis":
        r = np.take_along_axis(val(ins["x"]), val(ins["indices"]).astype(np.int64), axis=int(val(ins["axis"])))
    elif t == "tanh":
        r = np.tanh(val(ins["x"]))
    elif t == "exp":
        r = np.exp(val(ins["x"]))
    elif t == "softplus":
        r = np.logaddexp(np.float32(0), val(ins["x"]))
    elif t in ("maximum", "minimum"):
        r = (np.maximum if t == "maximum" else np.minimum)(val(ins["x"]), val(ins["y"]))
    elif t == "gelu":
        x = val(ins["x"]).astype(np.float64)
        if str(val(ins["mode"])) == "TANH_APPROXIMATION":
            r = 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
        else:
            r = 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))
    elif t == "conv":
        w = val(ins["weight"]).astype(np.float32)
        check(w.shape[2:] == (1, 1) and int(val(ins["groups"])) == 1 and list(val(ins["strides"])) == [1, 1] and list(val(ins["dilations"])) == [1, 1],
              "run: only 1x1 convs")
        r = np.einsum("oc,nchw->nohw", w[:, :, 0, 0], val(ins["x"]).astype(np.float32))
        if "bias" in ins:
            r = r + val(ins["bias"]).astype(np.float32)[None, :, None, None]
    elif t in ("add", "sub", "mul"):
        x, y = val(ins["x"]), val(ins["y"])
        r = x + y if t == "add" else x - y if t == "sub" else x * y
    elif t == "abs":
        r = np.abs(val(ins["x"]))
    elif t == "square":
        r = np.square(val(ins["x"]))
    elif t == "sigmoid":
        r = 1 / (1 + np.exp(-val(ins["x"])))
    elif t == "inverse":
        r = 1 / (val(ins["x"]) + np.float32(val(ins["epsilon"])))
    elif t == "rsqrt":
        r = 1 / np.sqrt(val(ins["x"]) + np.float32(val(ins["epsilon"])))
    elif t in ("reduce_mean", "reduce_max"):
        fn = np.mean if t == "reduce_mean" else np.max
        r = fn(val(ins["x"]), axis=tuple(int(a) for a in val(ins["axes"])), keepdims=bool(val(ins["keep_dims"])))
    elif t == "reduce_argmax":
        r = np.argmax(val(ins["x"]), axis=int(val(ins["axis"])))
        if bool(val(ins["keep_dims"])):
            r = np.expand_dims(r, int(val(ins["axis"])))
        r = r.astype(np.int32)
    elif t == "topk":
        # k largest along axis, descending; on a tie the lower index first (a stable sort of -x).
        x, k, axis = val(ins["x"]), int(val(ins["k"])), int(val(ins["axis"]))
        check(not bool(val(ins["ascending"])) and bool(val(ins["return_indices"])), "run: only descending topk with indices")
        order = np.take(np.argsort(-x, axis=axis, kind="stable"), np.arange(k), axis=axis)
        r = (np.take_along_axis(x, order, axis=axis), order.astype(np.int32))
    elif t == "softmax":
        x = val(ins["x"])
        e = np.exp(x - x.max(axis=int(val(ins["axis"])), keepdims=True))
        r = e / e.sum(axis=int(val(ins["axis"])), keepdims=True)
    elif t == "matmul":
        x, y = val(ins["x"]).astype(np.float32), val(ins["y"]).astype(np.float32)
        if bool(val(ins["transpose_x"])):
            x = np.swapaxes(x, -1, -2)
        if bool(val(ins["transpose_y"])):
            y = np.swapaxes(y, -1, -2)
        r = np.matmul(x, y)
    elif t == "slice_by_index":
        b, e, s = val(ins["begin"]), val(ins["end"]), val(ins["stride"])
        check(not any(val(ins[m]).any() for m in ("begin_mask", "end_mask", "squeeze_mask")), "run: slice masks")
        r = val(ins["x"])[tuple(slice(int(i), int(j), int(k)) for i, j, k in zip(b, e, s))]
    elif t == "concat":
        check(not bool(val(ins["interleave"])), "run: interleaved concat")
        r = np.concatenate([val(v) for v in ins["values"]], axis=int(val(ins["axis"])))
    else:
        raise Failure(f"run: no numpy rule for {t}")
    return r


def types_fp16():
    from coremltools.converters.mil.mil import types
    return types.fp16


def call_inputs(f, tokens, start, n, window, hidden=None):
    """The inputs of one call on `tokens` at positions start…: token ids, the one-hot placement of each
    column and its additive masks (a full block: every column a real token)."""
    from coremltools.converters.mil.mil import types
    width = len(tokens)
    positions = start + np.arange(width)[:, None]
    keys = np.arange(n)[None, :]
    masked = np.float32(-65504)
    rows = {"position_onehot": (keys == positions).astype(np.float32),
            "attention_mask": np.where(keys <= positions, 0, masked).astype(np.float32)}
    rows["column_mask"] = np.ones(width, np.float32)  # a recurrent model's real columns (every one, in full blocks)
    if window:
        rows["sliding_mask"] = np.where((keys <= positions) & (keys > positions - window), 0, masked).astype(np.float32)
    feeds = {}
    for name, v in f.inputs.items():
        if types.is_state(v.sym_type):
            continue
        if name == "hidden_in":
            check(hidden is not None, "run: hidden_in with no previous chunk")
            feeds[name] = hidden
        elif v.dtype == types.int32:
            feeds[name] = np.asarray(tokens, np.int32).reshape(v.shape)
        else:
            check(name in rows, f"run: no rule for the input {name}")
            feeds[name] = rows[name].reshape(v.shape)
    return feeds


def run_chain(progs, function, tokens, start, n, window, states):
    """One call through every package of the chain: each chunk's `hidden_out` is the next one's `hidden_in`."""
    hidden, out = None, None
    for i, prog in enumerate(progs):
        f = prog.functions[function]
        out = run_function(f, call_inputs(f, tokens, start, n, window, hidden), states[i])
        hidden = out.get("hidden_out")
    return out


def run_reference(progs, info, args):
    """Each fixture prompt through the program (the chain of packages) as an app runs it (full prefill
    blocks, then decode token by token); the last position's top-20 logits against transformers'."""
    from coremltools.converters.mil.mil import types
    n, block = info["context_length"], info.get("prefill_block")
    window = info["metadata"].get("sliding_window")
    has_prefill = "prefill" in progs[0].functions
    worst, calls, agree = 0.0, {"decode": 0, "prefill": 0}, 0
    cases = fixture_cases(args)
    for case in cases:
        ids = case["prompt_ids"]
        check(len(ids) <= n, f"run: case {case['name']} is longer than the context {n}")
        states = [{name: np.zeros(v.sym_type.wrapped_type().get_shape(), np.float32) for name, v in prog.functions["decode"].inputs.items()
                   if types.is_state(v.sym_type)} for prog in progs]
        p = 0
        while has_prefill and block and len(ids) - p > block:
            run_chain(progs, "prefill", ids[p:p + block], p, n, window, states)
            calls["prefill"] += 1
            p += block
        for i in range(p, len(ids)):
            out = run_chain(progs, "decode", ids[i:i + 1], i, n, window, states)
            calls["decode"] += 1
        chunks = [out[f"logits_{i}"].reshape(-1) for i in range(info["output_chunks"])]
        logits = np.concatenate(chunks)
        check(np.isfinite(logits).all(), f"run: case {case['name']}: logits not finite")
        # The token the app picks: the chunk with the largest top value (the first on a tie), its index
        # offset by the chunks before it.
        values = [float(out[f"top_value_{i}"].reshape(-1)[0]) for i in range(len(chunks))]
        winner = int(np.argmax(values))
        token = sum(len(c) for c in chunks[:winner]) + int(out[f"top_index_{winner}"].reshape(-1)[0])
        top = case["last_logits_top20"]
        worst = max(worst, float(np.abs(logits[top["ids"]] - np.array(top["values"])).max()))
        agree += int(token == top["ids"][0] == int(np.argmax(logits)))
    limit = args.tolerance
    check(limit is None or worst <= limit, f"run: top-20 logits {worst:.4g} from the reference (limit {limit})")
    chained = f"{len(progs)} chained packages, " if len(progs) > 1 else ""
    return f"{len(cases)} prompts in numpy ({chained}{calls['prefill']} prefill blocks, {calls['decode']} decode steps): argmax = reference top-1 in {agree}, " + \
        f"max top-20 logit error {worst:.4g}" + ("" if limit is None else f" (limit {limit})")


def fixture_cases(args):
    """The --cases of the --reference fixture. An xLSTM fixture (anelm-xlstm-fixture/1) has one prompt with
    transformers' logits at every position: case pN is its first N tokens, checked at position N - 1."""
    fixture = json.load(open(args.reference))
    names = args.cases.split(",")
    if fixture.get("format") == "anelm-xlstm-fixture/1":
        ids, vocab = fixture["prompt_ids"], fixture["model"]["vocab_size"]
        logits = np.fromfile(os.path.join(os.path.dirname(args.reference), fixture["prompt_logits_file"]), dtype="<f4").reshape(-1, vocab)
        cases = []
        for name in names:
            check(re.fullmatch(r"p[0-9]+", name) is not None and 0 < int(name[1:]) <= len(ids), f"run: case {name} is not pN, N in 1…{len(ids)}")
            row = logits[int(name[1:]) - 1]
            top = np.argsort(-row, kind="stable")[:20]
            cases.append({"name": name, "prompt_ids": ids[:int(name[1:])], "last_logits_top20": {"ids": top.tolist(), "values": row[top].tolist()}})
        return cases
    cases = [c for c in fixture["cases"] if c["name"] in names]
    check(len(cases) == len(names), f"run: the fixture has no case among {names}")
    return cases


def run_lora_reference(progs, info, args):
    """The case's prompt through the program, token by token after full prefill blocks; the last position's logits
    (every one of them) against PEFT's."""
    from coremltools.converters.mil.mil import types
    fixture = json.load(open(args.lora_reference))
    cases = [c for c in fixture["cases"] if c["name"] == args.lora_case]
    check(len(cases) == 1, f"lora run: {args.lora_reference} has no case {args.lora_case!r}")
    case = cases[0]
    vocab = case["model"]["vocab_size"]
    expected = np.fromfile(os.path.join(os.path.dirname(args.lora_reference), case["logits"]), dtype="<f4").reshape(-1, vocab)[-1]
    n, block = info["context_length"], info.get("prefill_block")
    window = info["metadata"].get("sliding_window")
    ids = case["prompt_ids"]
    states = [{name: np.zeros(v.sym_type.wrapped_type().get_shape(), np.float32) for name, v in prog.functions["decode"].inputs.items()
               if types.is_state(v.sym_type)} for prog in progs]
    p = 0
    while "prefill" in progs[0].functions and block and len(ids) - p > block:
        run_chain(progs, "prefill", ids[p:p + block], p, n, window, states)
        p += block
    for i in range(p, len(ids)):
        out = run_chain(progs, "decode", ids[i:i + 1], i, n, window, states)
    logits = np.concatenate([out[f"logits_{i}"].reshape(-1) for i in range(info["output_chunks"])])[:vocab]
    worst = float(np.abs(logits - expected).max())
    limit = args.tolerance
    check(limit is None or worst <= limit, f"lora run: logits {worst:.4g} from PEFT's (limit {limit})")
    check(int(np.argmax(logits)) == int(np.argmax(expected)), "lora run: the argmax differs from PEFT's")
    return f"case {case['name']}: argmax = PEFT's, max logit error over the vocabulary {worst:.4g}" + ("" if limit is None else f" (limit {limit})")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("package")
    ap.add_argument("--source", required=True, help="the model file or folder the package was exported from")
    ap.add_argument("--weights", default="fp16", choices=["fp16", "int8", "int8-blockwise", "lut4", "lut6", "lut8"])
    ap.add_argument("--reference", help="a Tests/Fixtures/models/*.json fixture: run the decode function over its prompts")
    ap.add_argument("--cases", default="short", help="fixture cases to run, comma-separated (default: short)")
    ap.add_argument("--tolerance", type=float, help="largest top-20 logit error allowed in the run (default: report only)")
    ap.add_argument("--lora", action="append", default=[], help="PATH[:SCALE] of an adapter the export merged (repeatable)")
    ap.add_argument("--lora-reference", help="Tests/Fixtures/lora/lora.json: run --lora-case and compare every logit of its last position")
    ap.add_argument("--lora-case", help="the lora.json case to run")
    args = ap.parse_args()
    started = time.time()
    try:
        report = validate(args)
    except Failure as e:
        print(f"FAIL {args.package}: {e}", file=sys.stderr)
        return 1
    print(f"ok {os.path.basename(args.package)} ({args.weights}, {time.time() - started:.1f} s)")
    for k, v in report.items():
        print(f"  {k}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
