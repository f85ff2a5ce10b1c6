#!/usr/bin/env python3
"""Reference fixtures for anelm's LoRA adapters (PEFT, MLX-LM, llama.cpp GGUF).

Writes, under --out (Tests/Fixtures/lora):
  <model>-peft/          random PEFT LoRA adapters (adapter_config.json + adapter_model.safetensors) on the tiny
                         models of Tests/Fixtures/models: Llama (every projection and lm_head), Qwen2 (rsLoRA, with q/k/v
                         biases in the base, tied embeddings), Gemma 3 (attention and MLP projections)
  tiny-llama-second/     a second Llama adapter (o/up projections), to check that two adapters stack
  tiny-llama-mlx/        the first Llama adapter written by hand as MLX-LM writes its adapters (lora_a = Aᵀ, lora_b = Bᵀ,
                         lora_parameters.scale = alpha / r)
  tiny-llama-lora.gguf   the same adapter as llama.cpp's convert_lora_to_gguf.py writes it (q/k rows of B in llama.cpp's
                         RoPE-pair order, adapter.lora.alpha)
  *.logits.f32           PEFT's logits for every prompt position (little-endian f32, positions × vocabulary)
  lora.json              the cases: model, adapters with scales, prompt ids, logits files

Every adapter's B is random (non-zero, unlike a fresh PEFT adapter). CPU, float32, one thread, fixed seeds.
Usage: HF_HUB_OFFLINE=1 python tools/reference/lora_fixtures.py --out Tests/Fixtures/lora
"""
import argparse
import json
import math
import os
import shutil
import sys

import numpy as np
import torch
from peft import LoraConfig, get_peft_model
from safetensors.numpy import save_file
from transformers import AutoModelForCausalLM

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "bench/.llamacpp/src/gguf-py"))
import gguf  # noqa: E402

MODELS = os.path.join(ROOT, "Tests/Fixtures/models")
ALL = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
GGUF_NAMES = {"q_proj": "attn_q", "k_proj": "attn_k", "v_proj": "attn_v", "o_proj": "attn_output",
              "gate_proj": "ffn_gate", "up_proj": "ffn_up", "down_proj": "ffn_down"}

SPECS = [
    {"model": "tiny-llama", "seed": 1, "lora": dict(r=4, lora_alpha=8, target_modules=ALL + ["lm_head"])},
    {"model": "tiny-qwen2", "seed": 2, "lora": dict(r=3, lora_alpha=5, use_rslora=True, target_modules=["q_proj", "v_proj", "down_proj"])},
    # Not lm_head here: it is tied to the embeddings, and PEFT's merge would change both.
    {"model": "tiny-gemma3", "seed": 3, "lora": dict(r=2, lora_alpha=6, target_modules=["q_proj", "o_proj", "up_proj", "down_proj"])},
]
SECOND = dict(r=2, lora_alpha=2, target_modules=["o_proj", "up_proj"])


def load(name):
    model = AutoModelForCausalLM.from_pretrained(os.path.join(MODELS, name), dtype=torch.float32, attn_implementation="eager")
    return model.eval()


def randomize(model, adapter, seed):
    """Random A and B (PEFT starts B at zero, which would test nothing)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if f".{adapter}." in name and ("lora_A" in name or "lora_B" in name):
                p.copy_(0.15 * torch.randn(p.shape, generator=gen))


def logits(model, ids):
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].float().numpy()


def write_logits(out, name, values):
    np.ascontiguousarray(values, dtype="<f4").tofile(os.path.join(out, name))
    return name


def adapter_weights(model, adapter, module_filter=None):
    """(module path as transformers names it, A [r, in], B [out, r]) of every adapted linear layer."""
    found = []
    for name, module in model.named_modules():
        if hasattr(module, "lora_A") and adapter in module.lora_A:
            path = name.removeprefix("base_model.model.")
            found.append((path, module.lora_A[adapter].weight.detach().numpy().copy(), module.lora_B[adapter].weight.detach().numpy().copy()))
    return found


def write_mlx(out, weights, rank, scale, layers):
    """As mlx_lm's LoRALinear keeps them: x @ lora_a @ lora_b · scale."""
    os.makedirs(out, exist_ok=True)
    tensors = {}
    for path, a, b in weights:
        tensors[path + ".lora_a"] = np.ascontiguousarray(a.T)
        tensors[path + ".lora_b"] = np.ascontiguousarray(b.T)
    save_file(tensors, os.path.join(out, "adapters.safetensors"))
    config = {"fine_tune_type": "lora", "num_layers": layers,
              "lora_parameters": {"rank": rank, "scale": scale, "dropout": 0.0, "keys": sorted({p.split(".", 3)[-1] for p, _, _ in weights})}}
    with open(os.path.join(out, "adapter_config.json"), "w") as fh:
        json.dump(config, fh, indent=2)


def permute(w, n_head, n_head_kv):
    """convert_hf_to_gguf.py's q/k row order for `llama` models."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_gguf(path, weights, alpha, config):
    """As convert_lora_to_gguf.py writes a llama adapter: `<base>.lora_a` [r, in], `.lora_b` [out, r], B's q/k rows permuted."""
    writer = gguf.GGUFWriter(path, "llama")
    writer.add_type("adapter")
    writer.add_string("adapter.type", "lora")
    writer.add_float32("adapter.lora.alpha", float(alpha))
    for module, a, b in weights:
        if module == "lm_head":
            writer.add_tensor("output.weight.lora_a", np.ascontiguousarray(a, dtype=np.float32))
            writer.add_tensor("output.weight.lora_b", np.ascontiguousarray(b, dtype=np.float32))
            continue
        parts = module.split(".")  # model.layers.N.self_attn.q_proj
        layer, proj = int(parts[2]), parts[4]
        if proj == "q_proj":
            b = permute(b, config.num_attention_heads, config.num_attention_heads)
        elif proj == "k_proj":
            b = permute(b, config.num_attention_heads, config.num_key_value_heads)
        base = f"blk.{layer}.{GGUF_NAMES[proj]}.weight"
        writer.add_tensor(base + ".lora_a", np.ascontiguousarray(a, dtype=np.float32))
        writer.add_tensor(base + ".lora_b", np.ascontiguousarray(b, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    out = args.out
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(7)
    cases = []
    for spec in SPECS:
        name = spec["model"]
        base = load(name)
        vocab = base.config.vocab_size
        ids = [int(i) for i in rng.integers(1, vocab, size=9)]
        base_logits = logits(base, ids)
        model = get_peft_model(base, LoraConfig(init_lora_weights=False, lora_dropout=0.0, **spec["lora"]))
        randomize(model, "default", spec["seed"])
        adapter_dir = os.path.join(out, f"{name}-peft")
        shutil.rmtree(adapter_dir, ignore_errors=True)
        model.save_pretrained(adapter_dir)
        for extra in ("README.md",):
            if os.path.exists(os.path.join(adapter_dir, extra)):
                os.remove(os.path.join(adapter_dir, extra))
        unmerged = logits(model, ids)
        assert np.abs(unmerged - base_logits).max() > 0.05, "the adapter must change the logits"
        model_ref = {"path": f"models/{name}", "vocab_size": vocab}

        def case(case_name, adapters, values, merged=None):
            entry = {"name": case_name, "model": model_ref, "adapters": adapters, "prompt_ids": ids,
                     "logits": write_logits(out, f"{case_name}.logits.f32", values)}
            if merged is not None:
                entry["merged_logits"] = write_logits(out, f"{case_name}.merged.logits.f32", merged)
            cases.append(entry)

        if name == "tiny-llama":
            weights = adapter_weights(model, "default")
            r, alpha = spec["lora"]["r"], spec["lora"]["lora_alpha"]
            # Scale 0.5: B halved is the same update at half the scale.
            with torch.no_grad():
                for _, module in model.named_modules():
                    if hasattr(module, "lora_B") and "default" in module.lora_B:
                        module.lora_B["default"].weight.mul_(0.5)
                half = logits(model, ids)
                for _, module in model.named_modules():
                    if hasattr(module, "lora_B") and "default" in module.lora_B:
                        module.lora_B["default"].weight.mul_(2.0)
            # A second adapter on top of the first.
            model.add_adapter("second", LoraConfig(init_lora_weights=False, lora_dropout=0.0, **SECOND))
            randomize(model, "second", 11)
            model.base_model.set_adapter(["default", "second"])
            stacked = logits(model, ids)
            second_dir = os.path.join(out, "tiny-llama-second")
            shutil.rmtree(second_dir, ignore_errors=True)
            model.save_pretrained(out + "/.second-tmp", selected_adapters=["second"])
            shutil.move(os.path.join(out, ".second-tmp", "second"), second_dir)
            shutil.rmtree(os.path.join(out, ".second-tmp"))
            if os.path.exists(os.path.join(second_dir, "README.md")):
                os.remove(os.path.join(second_dir, "README.md"))
            model.base_model.set_adapter("default")
            mlx_dir = os.path.join(out, "tiny-llama-mlx")
            shutil.rmtree(mlx_dir, ignore_errors=True)
            write_mlx(mlx_dir, weights, r, alpha / r, base.config.num_hidden_layers)
            write_gguf(os.path.join(out, "tiny-llama-lora.gguf"), weights, alpha, base.config)
            case("tiny-llama-half", [{"path": "lora/tiny-llama-peft", "scale": 0.5}], half)
            case("tiny-llama-stacked", [{"path": "lora/tiny-llama-peft", "scale": 1.0}, {"path": "lora/tiny-llama-second", "scale": 1.0}], stacked)
            case("tiny-llama-mlx", [{"path": "lora/tiny-llama-mlx", "scale": 1.0}], unmerged)
            case("tiny-llama-gguf", [{"path": "lora/tiny-llama-lora.gguf", "scale": 1.0}], unmerged)
        merged = logits(model.merge_and_unload(adapter_names=["default"]), ids)
        case(f"{name}-peft", [{"path": f"lora/{name}-peft", "scale": 1.0}], unmerged, merged)
        print(f"{name}: adapter changes logits by up to {np.abs(unmerged - base_logits).max():.3f}; merged vs unmerged {np.abs(unmerged - merged).max():.2e}",
              file=sys.stderr)
    with open(os.path.join(out, "lora.json"), "w") as fh:
        json.dump({"schema": "anelm-lora-fixture/1", "generator": {"peft": __import__("peft").__version__, "torch": torch.__version__},
                   "cases": sorted(cases, key=lambda c: c["name"])}, fh, indent=1)
        fh.write("\n")


if __name__ == "__main__":
    main()
